//! Opened, closed and failed counters against the real kernel, with real connections on
//! loopback that begin and end between two scrapes: one that completes (opened, then
//! closed), one that is refused and one whose SYN is never answered (both failed).

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ctnetlink::ConntrackSocket;
use testkit::eventually;

/// Sets a conntrack timeout of the test's namespace, in seconds.
fn set_timeout(name: &str, seconds: u32) {
    let path = format!("/proc/sys/net/netfilter/{name}");
    std::fs::write(&path, seconds.to_string()).unwrap_or_else(|error| panic!("{path}: {error}"));
}

/// Dumps the table, which makes the kernel remove expired entries (and send their DESTROY
/// events) at once instead of at its next clean-up pass.
fn evict_expired_entries() {
    ConntrackSocket::open()
        .and_then(|mut table| table.dump(None, |_| {}))
        .unwrap();
}

#[test]
fn opened_closed_and_failed_count_every_connection_once() {
    let Some(_namespace) = testkit::enter("opened_closed_and_failed_count_every_connection_once")
    else {
        return;
    };
    // Short timeouts, so that the ends happen within the test.
    set_timeout("nf_conntrack_tcp_timeout_time_wait", 1);
    set_timeout("nf_conntrack_tcp_timeout_syn_sent", 1);
    // SYNs to 127.0.0.4 are dropped once tracked, so they are never answered.
    testkit::nft(&[
        "table inet test_drop { chain input { type filter hook input priority filter; \
         ip daddr 127.0.0.4 tcp flags syn drop; }; }",
    ]);
    let exporter = common::start_exporter(&["--ensure-tracking"]);

    // Completed: a byte each way, then both ends close.
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    let (client, server) = common::connect(&listener);
    drop(client);
    drop(server);

    // Refused: nothing listens.
    let closed = TcpListener::bind("127.0.0.3:0").unwrap();
    let closed_address = closed.local_addr().unwrap();
    drop(closed);
    let refused = TcpStream::connect(closed_address).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);

    // Timed out: the SYN is dropped; the client gives up.
    let unanswered: SocketAddr = "127.0.0.4:9".parse().unwrap();
    let timed_out = TcpStream::connect_timeout(&unanswered, Duration::from_millis(500));
    assert!(timed_out.is_err(), "a dropped SYN was answered");

    let expected = [
        ("127.0.0.2", [1.0, 1.0, 0.0]),
        ("127.0.0.3", [0.0, 0.0, 1.0]),
        ("127.0.0.4", [0.0, 0.0, 1.0]),
    ];
    eventually("every connection counted once", || {
        evict_expired_entries();
        let scrape = exporter.scrape();
        let found: Vec<(&str, [f64; 3])> = expected
            .iter()
            .map(|(host, _)| {
                let value = |family| {
                    let name = format!("conntrack_connections_{family}_total");
                    scrape.value(&name, &[("host", host)]).unwrap_or(-1.0)
                };
                (*host, ["opened", "closed", "failed"].map(value))
            })
            .collect();
        if found == expected {
            Ok(())
        } else {
            Err(format!("expected {expected:?}, found {found:?}"))
        }
    });
    // The gauges agree: nothing is left open.
    let scrape = exporter.scrape();
    for family in ["opening", "open", "closing"] {
        let name = format!("conntrack_{family}_connections_total");
        assert_eq!(scrape.sum(&name), 0.0, "{name}");
    }
}
