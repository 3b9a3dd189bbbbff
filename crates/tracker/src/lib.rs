//! The exporter's model of the conntrack table, without any I/O.
//!
//! A [`Classifier`] decides for each kernel entry whether it is counted, under which
//! [`LabelSet`] (remote host by default; the [`LabelName`]s chosen), and in which
//! [`StateGroup`]. A [`Tracker`] holds the live connections and keeps counts per label set
//! current as events arrive, reconciles itself with a full dump when asked, and hands out
//! the counts in time proportional to the number of label sets.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use conntrack_codec::{Entry, EntryKind, TcpState, Tuple};
//! use tracker::{Classifier, Host, StateGroup, Tracker};
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
//! assert_eq!(hosts[0].labels.host, Some(Host::Address("10.0.0.9".parse().unwrap())));
//! assert_eq!(hosts[0].get(StateGroup::Open), 1);
//! ```

mod bound;
mod classify;
mod hosts;
mod labels;
mod networks;
mod patterns;
mod protocols;
mod state;
mod table;
mod traffic;

pub use bound::SeriesBound;
pub use classify::{Classification, Classifier};
pub use hosts::{Host, HostGroup, HostGroupError, HostLabels, OVERFLOW_VALUE, check_host_groups};
pub use labels::{Direction, LabelError, LabelName, LabelNames, LabelSet};
pub use networks::NetworkMap;
pub use patterns::{HostPattern, HostPatterns, PatternError};
pub use protocols::{ProtocolError, ProtocolSet};
pub use state::StateGroup;
pub use table::{Change, LabelCounts, Reclassified, Resync, ResyncOutcome, Totals, Tracker};
