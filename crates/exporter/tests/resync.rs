//! Connections that existed before the exporter started, and that later change or go away
//! without the kernel saying so, are corrected by the next periodic resync.
//!
//! The kernel reports changes of an entry only when the entry got an event cache at
//! creation. With the default `nf_conntrack_events=2` that is meant to depend on a listener
//! existing then, but on current kernels (seen on 6.18) entries created with no listener,
//! real or through ctnetlink, still report their later updates, expiry and deletion. So the
//! test switches events off in its namespace (`nf_conntrack_events=0`) while it creates its
//! early entries: they carry no event cache and never report anything. Then a real
//! connection is closed, a synthetic entry's state is changed and synthetic entries are
//! deleted, and only the resync can tell the exporter.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use common::{create_tcp, delete, start_exporter};
use conntrack_codec::TcpState;
use testkit::{Exporter, SEED_FAMILIES, address, show};

const EVENTS_SYSCTL: &str = "net.netfilter.nf_conntrack_events";

fn sysctl_events() -> String {
    testkit::run("sysctl", &["-n", EVENTS_SYSCTL])
        .unwrap()
        .trim()
        .to_owned()
}

fn set_sysctl_events(value: &str) {
    testkit::run("sysctl", &["-q", "-w", &format!("{EVENTS_SYSCTL}={value}")]).unwrap();
}

/// A counter's value on the metrics page (0 when absent).
fn counter(exporter: &Exporter, name: &str, labels: &[(&str, &str)]) -> f64 {
    exporter.scrape().value(name, labels).unwrap_or(0.0)
}

#[test]
fn changes_without_events_are_corrected_by_the_periodic_resync() {
    corrected_by_the_periodic_resync(
        "changes_without_events_are_corrected_by_the_periodic_resync",
        &[],
    );
}

/// The same corrections, summed over every other label, with every label on.
#[test]
fn changes_without_events_are_corrected_with_every_label() {
    let every = [
        "--labels",
        "host,direction,service_port,local_host,protocol,zone",
    ];
    corrected_by_the_periodic_resync(
        "changes_without_events_are_corrected_with_every_label",
        &every,
    );
}

/// Connections and entries changed behind the exporter's back, with the exporter started
/// with `extra_args`.
fn corrected_by_the_periodic_resync(test_name: &str, extra_args: &[&str]) {
    let Some(_namespace) = testkit::enter(test_name) else {
        return;
    };
    // Tracking on before the exporter exists, so that real connections predate it.
    ctnetlink::tracking_switch::enable().unwrap();
    let events_setting = sysctl_events();
    set_sysctl_events("0");

    let host = address("127.0.0.2");
    let listener = TcpListener::bind((host, 0)).unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"?").unwrap();
    let mut byte = [0u8];
    server.read_exact(&mut byte).unwrap();
    let _kept_client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let _kept_server = listener.accept().unwrap();

    let deleted_v4 = create_tcp(
        "192.0.2.1",
        41001,
        "198.51.100.41",
        443,
        TcpState::Established,
    );
    create_tcp(
        "192.0.2.1",
        41002,
        "198.51.100.41",
        443,
        TcpState::Established,
    );
    let changed = create_tcp(
        "192.0.2.1",
        41003,
        "198.51.100.42",
        443,
        TcpState::Established,
    );
    let deleted_v6 = create_tcp("2001:db8::1", 41004, "2001:db8::42", 443, TcpState::SynSent);
    create_tcp(
        "2001:db8::1",
        41005,
        "2001:db8::42",
        443,
        TcpState::Established,
    );
    set_sysctl_events(&events_setting);

    let args = [&["--resync-interval", "1s"], extra_args].concat();
    let exporter = start_exporter(&args);
    let before = exporter.wait_until_kernel_table_matches(SEED_FAMILIES);
    assert_eq!(before.get(&host), Some(&[0, 2, 0, 0]), "{}", show(&before));
    assert_eq!(
        before.get(&address("198.51.100.42")),
        Some(&[0, 1, 0, 0]),
        "{}",
        show(&before)
    );
    let periodic = [("reason", "periodic")];
    let resyncs_before = counter(&exporter, "conntrack_exporter_resyncs_total", &periodic);
    let corrected_before = counter(
        &exporter,
        "conntrack_exporter_resync_corrected_entries_total",
        &[],
    );

    // Change everything behind the exporter's back.
    drop(client);
    drop(server);
    delete(&deleted_v4);
    delete(&deleted_v6);
    let tuple = format!(
        "-s {} -d {} --sport {} --dport {}",
        changed.src,
        changed.dst,
        changed.src_port().unwrap(),
        changed.dst_port().unwrap()
    );
    let mut update = vec!["-U", "-p", "tcp"];
    update.extend(tuple.split_whitespace());
    update.extend(["--state", "TIME_WAIT"]);
    testkit::run("conntrack", &update).unwrap();

    let after = exporter.wait_until_kernel_table_matches(SEED_FAMILIES);
    assert_eq!(after.get(&host), Some(&[0, 1, 1, 0]), "{}", show(&after));
    assert_eq!(
        after.get(&address("198.51.100.41")),
        Some(&[0, 1, 0, 0]),
        "{}",
        show(&after)
    );
    assert_eq!(
        after.get(&address("198.51.100.42")),
        Some(&[0, 0, 1, 0]),
        "{}",
        show(&after)
    );
    assert_eq!(
        after.get(&address("2001:db8::42")),
        Some(&[0, 1, 0, 0]),
        "{}",
        show(&after)
    );

    let scrape = exporter.scrape();
    for kind in ["new", "update", "destroy"] {
        let events = scrape.value("conntrack_exporter_events_total", &[("type", kind)]);
        assert_eq!(
            events,
            Some(0.0),
            "{kind} events arrived, so the correction did not need the resync"
        );
    }
    let resyncs_after = scrape
        .value("conntrack_exporter_resyncs_total", &periodic)
        .unwrap_or(0.0);
    assert!(
        resyncs_after > resyncs_before,
        "periodic resyncs: {resyncs_before} before the changes, {resyncs_after} after"
    );
    let corrected = scrape
        .value("conntrack_exporter_resync_corrected_entries_total", &[])
        .unwrap_or(0.0);
    assert!(
        corrected > corrected_before,
        "corrected entries: {corrected_before} before the changes, {corrected} after"
    );
}
