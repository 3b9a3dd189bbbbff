//! Spacing lookups in time: at most a given number per second, evenly spread, so that a
//! flood of new addresses costs the DNS servers a steady, known load instead of a burst.

use std::time::{Duration, Instant};

/// When the next lookup may start.
#[derive(Debug)]
pub(crate) struct Pace {
    interval: Duration,
    next: Option<Instant>,
}

impl Pace {
    /// At most `per_second` starts a second.
    pub(crate) fn new(per_second: u32) -> Pace {
        Pace {
            interval: Duration::from_secs(1) / per_second.max(1),
            next: None,
        }
    }

    /// How long to wait, from `now`, before the next start; the start is then booked.
    /// A quiet period builds up no credit: starts never come closer than the interval.
    pub(crate) fn wait(&mut self, now: Instant) -> Duration {
        let start = self.next.map_or(now, |next| next.max(now));
        self.next = Some(start + self.interval);
        start - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_are_spaced_by_the_interval_and_quiet_builds_no_credit() {
        let mut pace = Pace::new(4);
        let start = Instant::now();
        let waits: Vec<Duration> = (0..4).map(|_| pace.wait(start)).collect();
        let quarter = Duration::from_millis(250);
        assert_eq!(waits, [Duration::ZERO, quarter, 2 * quarter, 3 * quarter]);
        // After ten quiet seconds, the next start is at once, the one after a quarter later.
        let later = start + Duration::from_secs(10);
        assert_eq!(pace.wait(later), Duration::ZERO);
        assert_eq!(pace.wait(later), quarter);
    }

    #[test]
    fn a_thousand_starts_take_as_long_as_the_rate_says() {
        let mut pace = Pace::new(100);
        let start = Instant::now();
        let last = (0..1_000).map(|_| pace.wait(start)).last().unwrap();
        assert_eq!(last, Duration::from_millis(9_990));
    }
}
