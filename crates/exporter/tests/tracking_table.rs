//! The `--ensure-tracking` table belongs to the exporter that made it: the kernel removes it
//! when the exporter ends however it ends (`SIGKILL` included), two exporters in one namespace
//! each keep their own, others cannot delete it, and a leftover of the shared table older
//! exporters used is removed at start.

mod common;

use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};

use common::start_exporter;
use testkit::{conntrack_list, nft};

/// The names of the `inet` tables in the namespace that an exporter may have made.
fn exporter_tables() -> Vec<String> {
    let mut tables: Vec<String> = nft(&["list", "tables"])
        .lines()
        .filter_map(|line| line.strip_prefix("table inet "))
        .filter(|name| name.starts_with("conntrack_exporter"))
        .map(str::to_owned)
        .collect();
    tables.sort();
    tables
}

/// Whether a new TCP connection to `127.0.0.9` shows up in the kernel's table.
fn a_new_connection_is_tracked() -> bool {
    let address = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
    let listener = TcpListener::bind((address, 0)).unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let _server = listener.accept().unwrap();
    conntrack_list()
        .iter()
        .any(|entry| entry.original.1 == address)
}

#[test]
fn sigkill_leaves_no_table_behind() {
    let Some(_namespace) = testkit::enter("sigkill_leaves_no_table_behind") else {
        return;
    };
    let mut exporter = start_exporter(&["--ensure-tracking"]);
    assert_eq!(exporter_tables().len(), 1, "{}", exporter.stderr.text());
    assert!(a_new_connection_is_tracked());

    let status = exporter.stop_with(libc::SIGKILL);
    assert_eq!(status.code(), None, "{status}");
    assert_eq!(exporter_tables(), Vec::<String>::new());
}

#[test]
fn two_exporters_keep_their_own_tables() {
    let Some(_namespace) = testkit::enter("two_exporters_keep_their_own_tables") else {
        return;
    };
    let mut first = start_exporter(&["--ensure-tracking"]);
    let after_first = exporter_tables();
    let second = start_exporter(&["--ensure-tracking"]);
    let both = exporter_tables();
    assert_eq!(both.len(), 2, "{both:?}");
    let second_table: Vec<String> = both
        .iter()
        .filter(|table| !after_first.contains(table))
        .cloned()
        .collect();
    assert_eq!(second_table.len(), 1, "{both:?}");

    first.stop_cleanly();
    assert_eq!(exporter_tables(), second_table);
    assert!(a_new_connection_is_tracked(), "{}", second.stderr.text());
}

#[test]
fn others_cannot_delete_the_table() {
    let Some(_namespace) = testkit::enter("others_cannot_delete_the_table") else {
        return;
    };
    let mut exporter = start_exporter(&["--ensure-tracking"]);
    let tables = exporter_tables();
    assert_eq!(tables.len(), 1, "{}", exporter.stderr.text());

    let deleted = testkit::run("nft", &["delete", "table", "inet", &tables[0]]);
    assert!(deleted.is_err(), "nft deleted the exporter's table");
    nft(&["flush", "ruleset"]);
    assert_eq!(exporter_tables(), tables);
    assert!(a_new_connection_is_tracked());
    assert!(
        exporter.process.exit_status().is_none(),
        "{}",
        exporter.stderr.text()
    );
}

#[test]
fn a_leftover_shared_table_is_removed_at_start() {
    let Some(_namespace) = testkit::enter("a_leftover_shared_table_is_removed_at_start") else {
        return;
    };
    ctnetlink::tracking_switch::enable().unwrap();
    assert_eq!(exporter_tables(), ["conntrack_exporter"]);

    let exporter = start_exporter(&["--ensure-tracking"]);
    let tables = exporter_tables();
    assert_eq!(tables.len(), 1, "{tables:?}");
    assert!(tables[0].starts_with("conntrack_exporter_"), "{tables:?}");
    assert!(
        exporter
            .stderr
            .text()
            .contains("removed the leftover nftables table inet conntrack_exporter"),
        "{}",
        exporter.stderr.text()
    );
}
