//! `--ignore-hosts` against the real kernel: an address, an address with the remote end's
//! port and a network, for IPv4 and IPv6. Connections to ignored hosts are not counted and
//! their hosts are absent from the output; everything else is counted exactly, whether the
//! exporter learnt it from the initial dump or from events.

mod common;

use common::{Exporter, HostCounts, SEED_FAMILIES, address, create_tcp, eventually, show};
use conntrack_codec::TcpState;

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
    let Some(_namespace) = netns::enter("ignored_hosts_are_absent_and_the_others_counted") else {
        return;
    };
    create_round("10.0.0.1", "fd00:1::1");
    let exporter = Exporter::start(&["--ignore-hosts", IGNORED]);
    create_round("10.0.0.2", "fd00:1::2");

    let expected: HostCounts = [
        ("198.51.100.8", [0, 2, 0, 0]),
        ("192.0.2.9", [2, 2, 0, 0]),
        ("203.0.114.1", [0, 2, 0, 0]),
        ("2001:db8::9", [0, 0, 2, 0]),
        ("2001:db8:beef::1", [0, 0, 2, 0]),
    ]
    .into_iter()
    .map(|(host, counts)| (address(host), counts))
    .collect();
    eventually("the counted hosts are exactly the ones not ignored", || {
        let scraped = exporter.scrape().host_counts(SEED_FAMILIES)?;
        if scraped == expected {
            Ok(())
        } else {
            Err(format!(
                "\n  expected: {}\n  exporter: {}",
                show(&expected),
                show(&scraped)
            ))
        }
    });

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
