//! The exporter's model of the conntrack table, without any I/O.
//!
//! A [`Classifier`] decides for each kernel entry whether it is counted, under which remote
//! host, and in which [`StateGroup`]. A [`Tracker`] holds the live connections and keeps
//! per-host counts current as events arrive, reconciles itself with a full dump when asked,
//! and hands out the counts in time proportional to the number of hosts.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use conntrack_codec::{Entry, EntryKind, TcpState, Tuple};
//! use tracker::{Classifier, StateGroup, Tracker};
//!
//! let mut classifier = Classifier::new(Vec::new());
//! classifier.set_local_addresses(["10.0.0.1".parse().unwrap()].into());
//! let tracker = Tracker::new();
//!
//! let mut entry = Entry::new(Tuple::tcp(
//!     "10.0.0.1".parse().unwrap(), 40000, "10.0.0.9".parse().unwrap(), 5432,
//! ));
//! entry.tcp_state = Some(TcpState::Established);
//! tracker.apply(EntryKind::New, &entry, classifier.classify(&entry));
//!
//! let hosts = tracker.snapshot(Instant::now(), Duration::from_secs(300));
//! assert_eq!(hosts[0].labels.host.to_string(), "10.0.0.9");
//! assert_eq!(hosts[0].get(StateGroup::Open), 1);
//! ```

mod classify;
mod networks;
mod patterns;
mod state;
mod table;

pub use classify::{Classification, Classifier, Labels};
pub use networks::NetworkMap;
pub use patterns::{HostPattern, HostPatterns, PatternError};
pub use state::StateGroup;
pub use table::{Change, HostCounts, Resync, ResyncOutcome, Tracker};
