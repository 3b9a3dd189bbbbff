//! Benchmarks of the conntrack exporter; see `README.md` in this folder. This library holds
//! what the criterion benchmarks share.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use conntrack_codec::{Entry, EntryKind, TcpState, Tuple};
use tracker::{Classifier, LabelNames, ProtocolSet, Tracker};

/// The messages of a fixture file: one hex-encoded netlink message per non-comment line.
pub fn parse_fixture(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            (0..line.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&line[i..i + 2], 16).expect("hex fixture"))
                .collect()
        })
        .collect()
}

/// The messages of one of the captured fixtures in `crates/codec/tests/fixtures/`.
#[macro_export]
macro_rules! fixture {
    ($name:literal) => {
        $crate::parse_fixture(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crates/codec/tests/fixtures/",
            $name
        )))
    };
}

/// A small deterministic generator (splitmix64), so that every run benchmarks the same data
/// in the same order.
pub struct Random(pub u64);

impl Random {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The local address of every connection in [`table`].
pub const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// A table of `connections` TCP connections spread evenly over `hosts` remote hosts, in a mix
/// of states (mostly established, some opening, closing and closed), labelled with `labels`.
pub fn table(hosts: u32, connections: u32, labels: &LabelNames) -> Arc<Tracker> {
    const STATES: [TcpState; 10] = [
        TcpState::Established,
        TcpState::Established,
        TcpState::Established,
        TcpState::Established,
        TcpState::Established,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::TimeWait,
        TcpState::FinWait,
        TcpState::Close,
    ];
    let mut classifier = Classifier::new(Vec::new())
        .with_protocols(ProtocolSet::ALL)
        .with_labels(labels.clone());
    classifier.set_local_addresses(HashSet::from([IpAddr::V4(LOCAL)]));
    let tracker = Tracker::with_accounting();
    for index in 0..connections {
        let host = index % hosts;
        let remote = Ipv4Addr::new(10, (host >> 16) as u8, (host >> 8) as u8, host as u8);
        let port = u16::try_from(1024 + index / hosts).expect("few connections per host");
        let mut entry = Entry::new(Tuple::tcp(IpAddr::V4(LOCAL), port, remote.into(), 443));
        entry.tcp_state = Some(STATES[index as usize % STATES.len()]);
        tracker.apply(EntryKind::New, &entry, classifier.classify(&entry));
    }
    assert_eq!(tracker.connections(), connections as usize);
    Arc::new(tracker)
}
