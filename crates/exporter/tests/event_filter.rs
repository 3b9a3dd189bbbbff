//! The kernel-side event filter against the real kernel: with the default protocols (TCP
//! alone), UDP events are dropped before the exporter reads them (its event counters see
//! only TCP's), while every TCP event, NEW and DESTROY, over IPv4 and IPv6, to counted and
//! to ignored hosts, still arrives, so the numbers equal the kernel's table. With
//! `kernel_event_filter = false` every event is read, and the numbers are the same.

mod common;

use std::net::IpAddr;

use common::start_exporter;
use conntrack_codec::{NewEntry, TcpState, Tuple};
use ctnetlink::ConntrackSocket;
use testkit::{
    HostCounts, TempDir, address, eventually, kernel_host_counts, show, with_connections,
};

const IGNORED: &str = "198.51.100.7,203.0.113.0/24";

fn ignored(host: &IpAddr) -> bool {
    *host == address("198.51.100.7")
        || matches!(host, IpAddr::V4(v4) if v4.octets()[..3] == [203, 0, 113])
}

/// Ten UDP entries for each TCP entry, to the same hosts; returns the TCP tuples.
fn create_mix(table: &mut ConntrackSocket, round: u16) -> Vec<Tuple> {
    let hosts = ["198.51.100.7", "198.51.100.8", "203.0.113.5", "2001:db8::8"];
    let mut tcp = Vec::new();
    for (index, host) in hosts.iter().cycle().take(20).enumerate() {
        let port = round * 1000 + index as u16 * 11;
        let src = if host.contains(':') {
            "fd00::1"
        } else {
            "10.0.0.1"
        };
        let tuple = Tuple::tcp(address(src), port, address(host), 443);
        let state = [TcpState::Established, TcpState::SynSent, TcpState::TimeWait][index % 3];
        table.create(&NewEntry::tcp(tuple, state, 600)).unwrap();
        tcp.push(tuple);
        for flow in 1..=10 {
            let udp = Tuple::udp(address(src), port + flow, address(host), 53);
            let mut entry = NewEntry::tcp(udp, TcpState::Established, 600);
            entry.tcp_state = None;
            table.create(&entry).unwrap();
        }
    }
    tcp
}

fn expected() -> HostCounts {
    kernel_host_counts()
        .into_iter()
        .filter(|(host, _)| !ignored(host))
        .collect()
}

#[test]
fn udp_events_never_reach_the_exporter_and_tcp_numbers_stay_exact() {
    let Some(_namespace) = testkit::enter("event_filter") else {
        return;
    };
    let mut table = ConntrackSocket::open().unwrap();
    // Some entries before the start (found by the initial dump), the rest as events.
    create_mix(&mut table, 1);
    let exporter = start_exporter(&["--ignore-hosts", IGNORED]);
    let after = create_mix(&mut table, 2);
    // (Entries created before anyone listened may leave without a DESTROY event: only
    // later ones are deleted.)
    for tuple in after.iter().step_by(3) {
        table.delete(tuple, None).unwrap();
    }
    let deleted = after.len().div_ceil(3);
    let events = (after.len() + deleted) as f64;

    let scrape = eventually("the exporter's numbers equal the kernel's table", || {
        let scrape = exporter.scrape();
        let scraped = with_connections(scrape.host_counts(testkit::SEED_FAMILIES)?);
        let wanted = expected();
        if scraped == wanted && scrape.sum("conntrack_exporter_events_total") >= events {
            Ok(scrape)
        } else {
            Err(format!(
                "scraped {}, kernel {}",
                show(&scraped),
                show(&wanted)
            ))
        }
    });
    assert!(!expected().is_empty());
    // Only the TCP events were read: 20 NEW, then the DESTROY of each TCP entry deleted.
    let of = |kind| scrape.value("conntrack_exporter_events_total", &[("type", kind)]);
    assert_eq!(of("new"), Some(after.len() as f64));
    assert_eq!(of("destroy"), Some(deleted as f64));
    assert_eq!(of("update").unwrap_or(0.0), 0.0);
    // The UDP entries are in the kernel's table all the while.
    let mut udp = 0;
    table
        .dump(None, |entry| {
            udp += usize::from(
                entry.unwrap().entry.original.protocol == conntrack_codec::Protocol::UDP,
            )
        })
        .unwrap();
    assert_eq!(udp, 2 * 20 * 10);

    // With the filter off, the same events reach the exporter, UDP's too, and the numbers
    // are the same.
    let directory = TempDir::new("event_filter");
    let config = directory.write("conntrack_exporter.toml", "kernel_event_filter = false\n");
    let config = config.to_str().expect("a UTF-8 path");
    let unfiltered = start_exporter(&["--ignore-hosts", IGNORED, "--config", config]);
    let more = create_mix(&mut table, 3);
    let new_events = (more.len() * 11) as f64;
    eventually("the unfiltered exporter reads every NEW event", || {
        let scrape = unfiltered.scrape();
        let read = scrape.value("conntrack_exporter_events_total", &[("type", "new")]);
        let scraped = with_connections(scrape.host_counts(testkit::SEED_FAMILIES)?);
        if read == Some(new_events) && scraped == expected() {
            Ok(())
        } else {
            Err(format!("{read:?} NEW events read, {}", show(&scraped)))
        }
    });
}
