//! One bound on the label sets in the output, shared by every tracker that feeds the same
//! page (one per watched network namespace), so that `max_series` bounds the page and the
//! exporter's memory however many namespaces there are.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Places for label sets: each tracker takes one when it adds a label set other than the
/// overflow set, and gives it back when the set leaves the output or the tracker is dropped.
#[derive(Debug, Default)]
pub struct SeriesBound {
    /// The most places (`None`: any number).
    limit: Option<NonZeroUsize>,
    /// Places taken now.
    used: AtomicUsize,
    /// A label set was ever refused a place.
    reached: AtomicBool,
}

impl SeriesBound {
    /// A bound of `limit` label sets (`None`: no bound).
    pub fn new(limit: Option<NonZeroUsize>) -> SeriesBound {
        SeriesBound {
            limit,
            ..SeriesBound::default()
        }
    }

    /// The bound, if any.
    pub fn limit(&self) -> Option<NonZeroUsize> {
        self.limit
    }

    /// Whether a label set was ever refused a place.
    pub fn reached(&self) -> bool {
        self.reached.load(Ordering::Relaxed)
    }

    /// Label sets holding a place now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes a place for a new label set; `false` when none is left.
    pub(crate) fn take(&self) -> bool {
        let Some(limit) = self.limit else {
            self.used.fetch_add(1, Ordering::Relaxed);
            return true;
        };
        let taken = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used < limit.get()).then_some(used + 1)
            })
            .is_ok();
        if !taken {
            self.reached.store(true, Ordering::Relaxed);
        }
        taken
    }

    /// Gives back `places`.
    pub(crate) fn release(&self, places: usize) {
        self.used.fetch_sub(places, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_taken_up_to_the_limit_and_come_back() {
        let bound = SeriesBound::new(NonZeroUsize::new(2));
        assert!(bound.take() && bound.take());
        assert!(!bound.reached());
        assert!(!bound.take());
        assert!(bound.reached());
        bound.release(1);
        assert!(bound.take());
        assert_eq!(bound.used(), 2);
        let unbounded = SeriesBound::new(None);
        assert!((0..1000).all(|_| unbounded.take()));
        assert!(!unbounded.reached());
    }
}
