//! Connections follow the host's addresses: when an address is added inside the namespace,
//! the connections it makes local move to their new labels without a resync (periodic
//! resyncs are off here), and back when it is removed.

mod common;

use common::{create_tcp, start_exporter};
use conntrack_codec::TcpState;
use testkit::{SEED_FAMILIES, eventually};

/// Waits until the open connections are `expected`: (host, direction) with their count.
#[track_caller]
fn wait_for_open(exporter: &testkit::Exporter, expected: &[(&str, &str, u64)]) {
    let expected: Vec<(String, String, u64)> = expected
        .iter()
        .map(|(host, direction, count)| ((*host).to_owned(), (*direction).to_owned(), *count))
        .collect();
    eventually(
        "the connections carry the labels of the current addresses",
        || {
            let mut found = Vec::new();
            for (labels, counts) in exporter.scrape().label_set_counts(SEED_FAMILIES)? {
                if counts[1] > 0 {
                    found.push((
                        labels["host"].clone(),
                        labels["direction"].clone(),
                        counts[1],
                    ));
                }
            }
            if found == expected {
                Ok(())
            } else {
                Err(format!("expected {expected:?}, found {found:?}"))
            }
        },
    );
}

#[test]
fn connections_move_when_an_address_is_added_or_removed() {
    let Some(_namespace) = testkit::enter("connections_move_when_an_address_is_added_or_removed")
    else {
        return;
    };
    create_tcp(
        "198.51.100.31",
        5000,
        "10.20.0.2",
        80,
        TcpState::Established,
    );
    create_tcp(
        "198.51.100.31",
        5001,
        "10.20.0.2",
        80,
        TcpState::Established,
    );
    let exporter = start_exporter(&["--resync-interval", "0", "--labels", "host,direction"]);
    // Neither end is local: forwarded, counted under the destination.
    wait_for_open(&exporter, &[("10.20.0.2", "forwarded", 2)]);

    testkit::run("ip", &["addr", "add", "10.20.0.2/32", "dev", "lo"]).unwrap();
    // The destination is local now: inbound, counted under the source.
    wait_for_open(&exporter, &[("198.51.100.31", "in", 2)]);

    testkit::run("ip", &["addr", "del", "10.20.0.2/32", "dev", "lo"]).unwrap();
    wait_for_open(&exporter, &[("10.20.0.2", "forwarded", 2)]);
    let scrape = exporter.scrape();
    let resyncs = scrape.sum("conntrack_exporter_resyncs_total");
    assert_eq!(resyncs, 1.0, "only the start-up resync ran");
}
