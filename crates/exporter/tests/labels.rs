//! Labels against the real kernel: entries going out, coming in and forwarded, in two zones,
//! learnt from the initial dump and from events, and a real loopback connection. With every
//! label on, each label set carries exactly the values its entry gives; with `host` left
//! out, the numbers are summed over hosts.

mod common;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};

use common::start_exporter;
use conntrack_codec::{NewEntry, TcpState, Tuple};
use ctnetlink::ConntrackSocket;
use testkit::{SEED_FAMILIES, address, eventually};

/// The local address of the test's namespace that the synthetic entries use.
const LOCAL: &str = "10.9.0.1";

/// Creates a synthetic TCP entry in `state` in `zone`.
fn create(src: &str, sport: u16, dst: &str, dport: u16, state: TcpState, zone: Option<u16>) {
    let original = Tuple::tcp(address(src), sport, address(dst), dport);
    let entry = NewEntry {
        zone,
        ..NewEntry::tcp(original, state, 600)
    };
    ConntrackSocket::open()
        .and_then(|mut table| table.create(&entry))
        .unwrap_or_else(|error| panic!("creating {entry:?}: {error}"));
}

type LabelSetCounts = BTreeMap<BTreeMap<String, String>, [u64; 4]>;

/// A label set as the parsed page holds it.
fn label_set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// Waits until the label sets with connections are exactly `expected`.
#[track_caller]
fn wait_for(exporter: &testkit::Exporter, expected: &LabelSetCounts) -> String {
    eventually("the label sets equal the entries made", || {
        let text = exporter.metrics_text();
        let scrape = testkit::Scrape::parse(&text).map_err(|error| error.to_string())?;
        let mut found = scrape.label_set_counts(SEED_FAMILIES)?;
        found.retain(|_, counts| counts.iter().any(|&count| count > 0));
        if &found == expected {
            Ok(text)
        } else {
            Err(format!("\n  expected {expected:?}\n  found    {found:?}"))
        }
    })
}

#[test]
fn every_label_carries_the_value_of_its_entries() {
    let Some(_namespace) = testkit::enter("every_label_carries_the_value_of_its_entries") else {
        return;
    };
    testkit::run("ip", &["addr", "add", &format!("{LOCAL}/32"), "dev", "lo"]).unwrap();
    // Before the exporter starts (seen in the initial dump): one connection out, two in.
    create(
        LOCAL,
        40001,
        "198.51.100.7",
        5432,
        TcpState::Established,
        None,
    );
    create("203.0.113.5", 51000, LOCAL, 443, TcpState::SynRecv, None);
    create(
        "203.0.113.5",
        51001,
        LOCAL,
        443,
        TcpState::Established,
        None,
    );

    let every = "zone,protocol,local_host,service_port,direction,host";
    let exporter = start_exporter(&["--ensure-tracking", "--labels", every]);

    // While it runs (seen as events): forwarded traffic in zone 7, and a real connection.
    create(
        "192.0.2.1",
        50000,
        "198.51.100.8",
        80,
        TcpState::TimeWait,
        Some(7),
    );
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let _server = listener.accept().unwrap();

    let set = |host, direction, service_port, local_host, zone| {
        label_set(&[
            ("host", host),
            ("direction", direction),
            ("service_port", service_port),
            ("local_host", local_host),
            ("protocol", "tcp"),
            ("zone", zone),
        ])
    };
    let expected: LabelSetCounts = [
        (set("198.51.100.7", "out", "5432", LOCAL, "0"), [0, 1, 0, 0]),
        (set("203.0.113.5", "in", "443", LOCAL, "0"), [1, 1, 0, 0]),
        (
            set("198.51.100.8", "forwarded", "80", "192.0.2.1", "7"),
            [0, 0, 1, 0],
        ),
        (
            set("127.0.0.1", "out", &port, "127.0.0.1", "0"),
            [0, 1, 0, 0],
        ),
    ]
    .into();
    let text = wait_for(&exporter, &expected);
    // The labels appear in the order they were chosen.
    let ordered = "conntrack_open_connections_total{zone=\"0\",protocol=\"tcp\",\
                   local_host=\"10.9.0.1\",service_port=\"5432\",direction=\"out\",\
                   host=\"198.51.100.7\"} 1\n";
    assert!(text.contains(ordered), "{ordered} missing from {text}");
    drop(exporter);

    // Without host, connections to different hosts share a label set.
    let exporter = start_exporter(&["--labels", "direction,service_port"]);
    let by_service = |direction, service_port: &str| {
        label_set(&[("direction", direction), ("service_port", service_port)])
    };
    create(LOCAL, 40002, "198.51.100.9", 5432, TcpState::SynSent, None);
    let expected: LabelSetCounts = [
        (by_service("out", "5432"), [1, 1, 0, 0]),
        (by_service("in", "443"), [1, 1, 0, 0]),
        (by_service("forwarded", "80"), [0, 0, 1, 0]),
        (by_service("out", &port), [0, 1, 0, 0]),
    ]
    .into();
    wait_for(&exporter, &expected);
    drop(exporter);

    // With no label at all, one series per family holds the totals.
    let exporter = start_exporter(&["--labels", ""]);
    let expected: LabelSetCounts = [(label_set(&[]), [2, 3, 1, 0])].into();
    wait_for(&exporter, &expected);
}
