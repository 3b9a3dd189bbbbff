//! Stopping: SIGTERM and SIGINT end the exporter with exit code 0, and with
//! `--ensure-tracking` its nftables table `inet conntrack_exporter_<id>` goes on the way out,
//! leaving other tables alone. Open connections, idle or stalled, do not hold it up.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::start_exporter;
use loadgen::hostile::{HalfSentRequests, UnreadPipelines, ZeroWindowStreams};
use testkit::{http_get, nft};

/// The start of the exporter's table's line in `nft list tables`.
const TABLE: &str = "table inet conntrack_exporter_";

fn stops_cleanly_on(test: &str, signal: libc::c_int) {
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let mut exporter = start_exporter(&["--ensure-tracking"]);
    let tables = nft(&["list", "tables"]);
    assert!(tables.contains(TABLE), "tracking table missing:\n{tables}");
    assert_eq!(http_get(exporter.port, "/metrics").unwrap().0, 200);

    let status = exporter.stop_with(signal);
    assert_eq!(
        status.code(),
        Some(0),
        "{status}; its log:\n{}",
        exporter.stderr.text()
    );
    let tables = nft(&["list", "tables"]);
    assert!(
        !tables.contains(TABLE),
        "tracking table left behind:\n{tables}"
    );
    assert!(
        tables.contains("table inet test_raw"),
        "another table was removed:\n{tables}"
    );
    assert!(
        http_get(exporter.port, "/").is_err(),
        "the endpoint still answers"
    );
}

#[test]
fn sigterm_stops_it_and_removes_the_tracking_table() {
    stops_cleanly_on(
        "sigterm_stops_it_and_removes_the_tracking_table",
        libc::SIGTERM,
    );
}

#[test]
fn sigint_stops_it_and_removes_the_tracking_table() {
    stops_cleanly_on(
        "sigint_stops_it_and_removes_the_tracking_table",
        libc::SIGINT,
    );
}

#[test]
fn sigterm_does_not_wait_for_slow_or_idle_connections() {
    let test = "sigterm_does_not_wait_for_slow_or_idle_connections";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let mut exporter = start_exporter(&[]);
    let port = exporter.port;
    let _half_sent = HalfSentRequests::open(port, 50).expect("opening half-sent requests");
    let _unread = UnreadPipelines::open(port, 50, 20).expect("opening unread pipelines");
    let _stalled = ZeroWindowStreams::open(port, "/metrics", 2, 8).expect("opening HTTP/2");
    let mut idle = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    write!(idle, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("sending a request");

    // Waits a bounded time for the exit: the connections are given a short grace period,
    // not waited for.
    exporter.stop_cleanly();
}
