//! Stopping: SIGTERM and SIGINT end the exporter with exit code 0, and with
//! `--ensure-tracking` its nftables table `inet conntrack_exporter_<id>` goes on the way out,
//! leaving other tables alone.

mod common;

use common::start_exporter;
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
