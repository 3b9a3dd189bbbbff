//! The kernel's per-CPU conntrack statistics, summed, against `conntrack -S`: after packets
//! the kernel cannot track (a connection whose entries were deleted, with loose pick-up off),
//! every stat the exporter shows equals the tool's sum over the CPUs.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;

use ctnetlink::ConntrackSocket;
use testkit::eventually;

/// The stats `conntrack -S` shows, summed over the CPUs.
fn conntrack_stats() -> BTreeMap<String, f64> {
    let listing = testkit::run("conntrack", &["-S"]).unwrap_or_else(|error| panic!("{error}"));
    let mut sums = BTreeMap::new();
    for pair in listing.split_whitespace() {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        if name != "cpu" {
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{pair:?}"));
            *sums.entry(name.to_owned()).or_default() += value;
        }
    }
    sums
}

#[test]
fn kernel_stats_equal_conntrack_s() {
    let Some(_namespace) = testkit::enter("kernel_stats_equal_conntrack_s") else {
        return;
    };
    let exporter = common::start_exporter(&["--ensure-tracking"]);
    // A connection whose entry is gone and may not be picked up again mid-stream: its next
    // packets are invalid.
    std::fs::write("/proc/sys/net/netfilter/nf_conntrack_tcp_loose", "0").unwrap();
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    let (mut client, _server) = common::connect(&listener);
    ConntrackSocket::open().unwrap().flush(None).unwrap();
    client.write_all(b"after the flush").unwrap();

    let names = [
        "found",
        "invalid",
        "insert",
        "insert_failed",
        "drop",
        "early_drop",
        "error",
        "search_restart",
        "clash_resolve",
        "chaintoolong",
    ];
    let stats = eventually("the exporter's kernel stats equal conntrack -S", || {
        let before = conntrack_stats();
        let scrape = exporter.scrape();
        if conntrack_stats() != before {
            return Err("the kernel's stats changed during the scrape".into());
        }
        let mut found = BTreeMap::new();
        for name in names {
            let value = scrape.value("conntrack_exporter_kernel_stat_total", &[("stat", name)]);
            found.insert(name.to_owned(), value.ok_or(format!("no stat {name}"))?);
        }
        if found == before {
            Ok(found)
        } else {
            Err(format!(
                "\n  conntrack -S {before:?}\n  exporter     {found:?}"
            ))
        }
    });
    assert!(
        stats["invalid"] > 0.0,
        "no invalid packet counted: {stats:?}"
    );
}
