//! `--ignore-hosts` against the real kernel: an address, an address with the remote end's
//! port and a network, for IPv4 and IPv6. Connections to ignored hosts are not counted and
//! their hosts are absent from the output; everything else is counted exactly, whether the
//! exporter learnt it from the initial dump or from events. An IPv4-mapped IPv6 network
//! ignores the IPv4 hosts it carries, and the collector goes on after matching it.

mod common;

use common::{create_tcp, start_exporter};
use conntrack_codec::TcpState;
use testkit::{Exporter, HostCounts, SEED_FAMILIES, address, eventually, show};

const IGNORED: &str =
    "198.51.100.7,192.0.2.9:443,203.0.113.0/24,[2001:db8::9]:443,2001:db8:dead::/48";

/// Creates one round of entries from `src4` and `src6` (none of them local, so the remote
/// end is the original destination, with its port).
fn create_round(src4: &str, src6: &str) {
    let entries = [
        (src4, 40001, "198.51.100.7", 80, TcpState::Established),
        (src4, 40002, "198.51.100.8", 80, TcpState::Established),
        (src4, 40003, "192.0.2.9", 443, TcpState::Established),
        (src4, 40004, "192.0.2.9", 443, TcpState::TimeWait),
        (src4, 40005, "192.0.2.9", 80, TcpState::SynSent),
        // The local end's port is 443: only the remote end's port counts.
        (src4, 443, "192.0.2.9", 8080, TcpState::Established),
        (src4, 40006, "203.0.113.5", 22, TcpState::Established),
        (src4, 40007, "203.0.113.200", 22, TcpState::Close),
        (src4, 40008, "203.0.114.1", 22, TcpState::Established),
        (src6, 40001, "2001:db8::9", 443, TcpState::Established),
        (src6, 40002, "2001:db8::9", 80, TcpState::FinWait),
        (src6, 40003, "2001:db8:dead::1", 22, TcpState::Established),
        (src6, 40004, "2001:db8:beef::1", 22, TcpState::CloseWait),
    ];
    for (src, sport, dst, dport, state) in entries {
        create_tcp(src, sport, dst, dport, state);
    }
}

#[test]
fn ignored_hosts_are_absent_and_the_others_counted() {
    let Some(_namespace) = testkit::enter("ignored_hosts_are_absent_and_the_others_counted") else {
        return;
    };
    create_round("10.0.0.1", "fd00:1::1");
    let exporter = start_exporter(&["--ignore-hosts", IGNORED]);
    create_round("10.0.0.2", "fd00:1::2");

    wait_for_hosts(
        &exporter,
        &[
            ("198.51.100.8", [0, 2, 0, 0]),
            ("192.0.2.9", [2, 2, 0, 0]),
            ("203.0.114.1", [0, 2, 0, 0]),
            ("2001:db8::9", [0, 0, 2, 0]),
            ("2001:db8:beef::1", [0, 0, 2, 0]),
        ],
    );

    let scrape = exporter.scrape();
    for host in [
        "198.51.100.7",
        "203.0.113.5",
        "203.0.113.200",
        "2001:db8:dead::1",
    ] {
        for family in SEED_FAMILIES {
            assert_eq!(
                scrape.value(family, &[("host", host)]),
                None,
                "{family} {host}"
            );
        }
    }
}

/// Waits until the exporter shows exactly `expected`: `(host, [opening, open, closing,
/// closed])`.
#[track_caller]
fn wait_for_hosts(exporter: &Exporter, expected: &[(&str, [u64; 4])]) {
    let expected: HostCounts = expected
        .iter()
        .map(|(host, counts)| (address(host), *counts))
        .collect();
    eventually("the counted hosts are exactly the ones not ignored", || {
        let scraped = exporter.scrape().host_counts(SEED_FAMILIES)?;
        if scraped == expected {
            Ok(())
        } else {
            Err(format!(
                "\n  expected: {}\n  exporter: {}\n  exporter log:\n{}",
                show(&expected),
                show(&scraped),
                exporter.stderr.text()
            ))
        }
    });
}

#[test]
fn an_ipv4_mapped_network_ignores_ipv4_hosts_and_the_collector_goes_on() {
    let test = "an_ipv4_mapped_network_ignores_ipv4_hosts_and_the_collector_goes_on";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    use conntrack_codec::TcpState::{Established, SynSent};
    // Found by the initial dump.
    create_tcp("192.0.2.1", 40001, "10.1.2.3", 80, Established);
    create_tcp("192.0.2.1", 40002, "198.51.100.1", 80, Established);
    let exporter = start_exporter(&["--ignore-hosts", "::ffff:10.0.0.0/104"]);
    wait_for_hosts(&exporter, &[("198.51.100.1", [0, 1, 0, 0])]);

    // Learnt from events: the first one matches the pattern (which once ended the
    // collector), the ones after it must still be counted.
    create_tcp("192.0.2.1", 40003, "10.200.0.1", 22, SynSent);
    create_tcp("192.0.2.1", 40004, "198.51.100.2", 80, Established);
    create_tcp("192.0.2.1", 40005, "11.0.0.1", 80, SynSent);
    wait_for_hosts(
        &exporter,
        &[
            ("198.51.100.1", [0, 1, 0, 0]),
            ("198.51.100.2", [0, 1, 0, 0]),
            ("11.0.0.1", [1, 0, 0, 0]),
        ],
    );
    let log = exporter.stderr.text();
    assert!(!log.contains("panicked"), "{log}");
}
