//! The names known for remote addresses, and which addresses to ask about: pure bookkeeping,
//! no I/O, so that its bounds can be tested without a DNS server.
//!
//! Every entry is in one of three states: a lookup is on its way (pending), a name was
//! confirmed (named), or none was (unnamed: no PTR record, one that is not confirmed, a
//! timeout or an error). A named entry expires after the positive lifetime, an unnamed one
//! after the negative lifetime; an expired entry is asked about again, and an expired name
//! is still shown until the new answer arrives, so that a series does not flip between name
//! and address at every refresh.
//!
//! The cache never holds more than its capacity. When it is full, it makes room once per
//! render by dropping the entries that neither the latest render nor the one before wanted
//! (pending entries stay: their answers are on the way); an address that still finds no room
//! is shown as it is and not asked about.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long cached answers live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetimes {
    /// A confirmed name.
    pub named: Duration,
    /// The absence of one.
    pub unnamed: Duration,
}

/// Names of remote addresses, bounded in entries.
#[derive(Debug)]
pub(crate) struct Cache {
    entries: HashMap<IpAddr, Slot>,
    capacity: usize,
    lifetimes: Lifetimes,
    /// The number of the current render.
    render: u64,
    /// Whether the current render already made room.
    room_made: bool,
}

#[derive(Debug)]
struct Slot {
    state: State,
    /// The latest render that showed this address.
    wanted: u64,
}

#[derive(Debug)]
enum State {
    /// Asked about; the name known before, if any, is shown meanwhile.
    Pending { previous: Option<Arc<str>> },
    /// A confirmed name, valid until `expires`.
    Named { name: Arc<str>, expires: Instant },
    /// No confirmed name, until `expires`.
    Unnamed { expires: Instant },
}

impl Cache {
    /// An empty cache of at most `capacity` entries.
    pub(crate) fn new(capacity: usize, lifetimes: Lifetimes) -> Cache {
        Cache {
            entries: HashMap::new(),
            capacity,
            lifetimes,
            render: 0,
            room_made: false,
        }
    }

    /// Entries held now.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Starts a render: what it shows is wanted from now on.
    pub(crate) fn begin_render(&mut self) {
        self.render += 1;
        self.room_made = false;
    }

    /// The name to show for `address` in the current render. When it has no valid answer,
    /// `ask` is called to request a lookup (it returns whether the request was taken; a
    /// request not taken is made again at the next render).
    pub(crate) fn name_to_show(
        &mut self,
        address: IpAddr,
        now: Instant,
        ask: impl FnOnce(IpAddr) -> bool,
    ) -> Option<Arc<str>> {
        if !self.entries.contains_key(&address) {
            if self.entries.len() >= self.capacity {
                self.make_room(now);
            }
            if self.entries.len() < self.capacity && ask(address) {
                let state = State::Pending { previous: None };
                let wanted = self.render;
                self.entries.insert(address, Slot { state, wanted });
            }
            return None;
        }
        let slot = self.entries.get_mut(&address)?;
        slot.wanted = self.render;
        match &slot.state {
            State::Pending { previous } => previous.clone(),
            State::Named { name, expires } => {
                let name = Arc::clone(name);
                if *expires <= now && ask(address) {
                    let previous = Some(Arc::clone(&name));
                    slot.state = State::Pending { previous };
                }
                Some(name)
            }
            State::Unnamed { expires } => {
                if *expires <= now && ask(address) {
                    slot.state = State::Pending { previous: None };
                }
                None
            }
        }
    }

    /// The name known for `address`, without asking about it: for the event log.
    pub(crate) fn known(&self, address: IpAddr) -> Option<Arc<str>> {
        match &self.entries.get(&address)?.state {
            State::Pending { previous } => previous.clone(),
            State::Named { name, .. } => Some(Arc::clone(name)),
            State::Unnamed { .. } => None,
        }
    }

    /// Records the answer to a lookup of `address`: its confirmed name, or none.
    pub(crate) fn settle(&mut self, address: IpAddr, name: Option<Arc<str>>, now: Instant) {
        let state = match name {
            Some(name) => State::Named {
                name,
                expires: now + self.lifetimes.named,
            },
            None => State::Unnamed {
                expires: now + self.lifetimes.unnamed,
            },
        };
        // Pending entries are never dropped, so the address is still here.
        if let Some(slot) = self.entries.get_mut(&address) {
            slot.state = state;
        }
    }

    /// Drops, once per render, what no recent render wanted and is not awaiting an answer.
    fn make_room(&mut self, now: Instant) {
        if self.room_made {
            return;
        }
        self.room_made = true;
        let recent = self.render.saturating_sub(1);
        self.entries.retain(|_, slot| match slot.state {
            State::Pending { .. } => true,
            State::Unnamed { expires } if expires <= now => false,
            _ => slot.wanted >= recent,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFETIMES: Lifetimes = Lifetimes {
        named: Duration::from_secs(600),
        unnamed: Duration::from_secs(60),
    };

    fn address(index: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0xc633_6400 + index))
    }

    /// Shows `address`, asking through a queue that takes every request; returns the name
    /// shown and whether it asked.
    fn show(cache: &mut Cache, address: IpAddr, now: Instant) -> (Option<Arc<str>>, bool) {
        let mut asked = false;
        let name = cache.name_to_show(address, now, |_| {
            asked = true;
            true
        });
        (name, asked)
    }

    #[test]
    fn an_address_is_asked_about_once_and_shows_its_name_when_settled() {
        let mut cache = Cache::new(10, LIFETIMES);
        let now = Instant::now();
        cache.begin_render();
        assert_eq!(show(&mut cache, address(1), now), (None, true));
        cache.begin_render();
        assert_eq!(show(&mut cache, address(1), now), (None, false));
        cache.settle(address(1), Some("web.example.test".into()), now);
        assert_eq!(cache.known(address(1)).as_deref(), Some("web.example.test"));
        let (name, asked) = show(&mut cache, address(1), now);
        assert_eq!((name.as_deref(), asked), (Some("web.example.test"), false));
    }

    #[test]
    fn a_request_the_queue_refuses_is_made_again_at_the_next_render() {
        let mut cache = Cache::new(10, LIFETIMES);
        let now = Instant::now();
        cache.begin_render();
        assert_eq!(cache.name_to_show(address(1), now, |_| false), None);
        assert_eq!(cache.len(), 0);
        cache.begin_render();
        assert_eq!(show(&mut cache, address(1), now), (None, true));
    }

    #[test]
    fn an_expired_name_is_shown_until_its_refresh_answers() {
        let mut cache = Cache::new(10, LIFETIMES);
        let start = Instant::now();
        cache.begin_render();
        show(&mut cache, address(1), start);
        cache.settle(address(1), Some("old.example.test".into()), start);
        let later = start + LIFETIMES.named;
        cache.begin_render();
        let (name, asked) = show(&mut cache, address(1), later);
        assert_eq!((name.as_deref(), asked), (Some("old.example.test"), true));
        // While the refresh is on its way, the old name stays and nobody asks again.
        let (name, asked) = show(&mut cache, address(1), later);
        assert_eq!((name.as_deref(), asked), (Some("old.example.test"), false));
        cache.settle(address(1), None, later);
        assert_eq!(show(&mut cache, address(1), later), (None, false));
    }

    #[test]
    fn the_absence_of_a_name_is_cached_for_the_negative_lifetime() {
        let mut cache = Cache::new(10, LIFETIMES);
        let start = Instant::now();
        cache.begin_render();
        show(&mut cache, address(1), start);
        cache.settle(address(1), None, start);
        let almost = start + LIFETIMES.unnamed - Duration::from_millis(1);
        assert_eq!(show(&mut cache, address(1), almost), (None, false));
        let expired = start + LIFETIMES.unnamed;
        assert_eq!(show(&mut cache, address(1), expired), (None, true));
    }

    #[test]
    fn a_full_cache_makes_room_from_entries_no_recent_render_wanted() {
        let mut cache = Cache::new(3, LIFETIMES);
        let now = Instant::now();
        cache.begin_render();
        for index in 0..3 {
            show(&mut cache, address(index), now);
            cache.settle(address(index), Some(format!("h{index}.test").into()), now);
        }
        // Full, and every entry wanted by this render: a fourth address is not asked about.
        assert_eq!(show(&mut cache, address(3), now), (None, false));
        assert_eq!(cache.len(), 3);
        // Two renders later, only address 0 is still shown: the others make room.
        cache.begin_render();
        cache.begin_render();
        assert!(show(&mut cache, address(0), now).0.is_some());
        assert_eq!(show(&mut cache, address(3), now), (None, true));
        assert_eq!(show(&mut cache, address(4), now), (None, true));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.known(address(1)), None);
    }

    #[test]
    fn pending_entries_are_never_dropped_and_the_bound_holds_for_many_addresses() {
        let mut cache = Cache::new(100, LIFETIMES);
        let now = Instant::now();
        let mut asked = 0;
        for render in 0..50 {
            cache.begin_render();
            for index in 0..1_000 {
                if show(&mut cache, address(render * 1_000 + index), now).1 {
                    asked += 1;
                }
                assert!(cache.len() <= 100);
            }
        }
        // Nothing was answered: the first hundred stay pending, nothing else is asked.
        assert_eq!(asked, 100);
        assert_eq!(cache.len(), 100);
    }
}
