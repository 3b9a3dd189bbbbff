//! Bytes and packets per connection, as the kernel's accounting reports them, turned into
//! growth that only ever adds up.

use conntrack_codec::{Counters, Entry};

/// A connection's counters in both directions, as one message reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Traffic {
    original: Counters,
    reply: Counters,
}

impl Traffic {
    /// The counters `entry` carries, if any (dumps and DESTROY events do when the kernel's
    /// accounting is on; UPDATE events never do).
    pub(crate) fn of(entry: &Entry) -> Option<Traffic> {
        if entry.counters_original.is_none() && entry.counters_reply.is_none() {
            return None;
        }
        Some(Traffic {
            original: entry.counters_original.unwrap_or_default(),
            reply: entry.counters_reply.unwrap_or_default(),
        })
    }

    /// What these counters add to `last`, the counters seen before for the same tuple. A
    /// counter lower than before means the tuple now belongs to a new connection, all of
    /// whose traffic is new.
    pub(crate) fn growth_since(self, last: Option<Traffic>) -> Traffic {
        let Some(last) = last else { return self };
        let grew = |now: Counters, before: Counters| {
            now.bytes >= before.bytes && now.packets >= before.packets
        };
        if !grew(self.original, last.original) || !grew(self.reply, last.reply) {
            return self;
        }
        let minus = |now: Counters, before: Counters| Counters {
            packets: now.packets - before.packets,
            bytes: now.bytes - before.bytes,
        };
        Traffic {
            original: minus(self.original, last.original),
            reply: minus(self.reply, last.reply),
        }
    }

    /// The counters towards the remote host and from it: the original direction goes
    /// towards it unless the remote host opened the connection.
    pub(crate) fn sent_and_received(self, remote_is_source: bool) -> (Counters, Counters) {
        if remote_is_source {
            (self.reply, self.original)
        } else {
            (self.original, self.reply)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conntrack_codec::Tuple;

    fn traffic(original: (u64, u64), reply: (u64, u64)) -> Traffic {
        let counters = |(packets, bytes)| Counters { packets, bytes };
        Traffic {
            original: counters(original),
            reply: counters(reply),
        }
    }

    #[test]
    fn growth_is_the_difference_or_everything_for_a_new_connection() {
        let before = traffic((2, 120), (1, 60));
        let now = traffic((5, 1120), (3, 180));
        assert_eq!(now.growth_since(None), now);
        assert_eq!(now.growth_since(Some(before)), traffic((3, 1000), (2, 120)));
        let restarted = traffic((1, 60), (0, 0));
        assert_eq!(restarted.growth_since(Some(before)), restarted);
    }

    #[test]
    fn counters_are_read_from_entries_and_oriented_by_the_remote_end() {
        let mut entry = Entry::new(Tuple::tcp(
            "10.0.0.1".parse().unwrap(),
            1,
            "10.0.0.2".parse().unwrap(),
            2,
        ));
        assert_eq!(Traffic::of(&entry), None);
        entry.counters_reply = Some(Counters {
            packets: 1,
            bytes: 52,
        });
        let seen = Traffic::of(&entry).unwrap();
        assert_eq!(seen, traffic((0, 0), (1, 52)));
        assert_eq!(seen.sent_and_received(false).1.bytes, 52);
        assert_eq!(seen.sent_and_received(true).0.bytes, 52);
    }
}
