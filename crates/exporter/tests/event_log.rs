//! `--log-events` against the real kernel.
//!
//! With `-f json`, every line on standard output is one JSON object, and synthetic entries
//! created while the exporter runs show up as `new` events with their remote host (address
//! and remote port) and state group, and as `destroy` events when deleted.
//!
//! With a standard output that nobody reads, event processing goes on: the numbers follow
//! the kernel's table through a workload of far more events than the pipe and the exporter's
//! line queue hold, the lines that did not fit are counted as dropped, and the exporter
//! still stops at once.

mod common;

use std::net::{Ipv4Addr, TcpListener, TcpStream};

use common::{create_tcp, delete, exporter_command, start_exporter};
use conntrack_codec::{NewEntry, TcpState, Tuple};
use ctnetlink::ConntrackSocket;
use serde_json::Value;
use testkit::{Exporter, SEED_FAMILIES, eventually, show};

/// Every line the exporter printed so far, each parsed as a JSON object.
fn json_lines(exporter: &Exporter) -> Vec<Value> {
    exporter
        .stdout
        .lines()
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line:?}"));
            assert!(value.is_object(), "not a JSON object: {line:?}");
            value
        })
        .collect()
}

/// Waits for the event of `kind` whose remote host is `remote`, and returns it.
#[track_caller]
fn wait_for_event(exporter: &Exporter, kind: &str, remote: &str) -> Value {
    eventually(&format!("a {kind} event for {remote}"), || {
        json_lines(exporter)
            .into_iter()
            .find(|event| event["event_type"] == kind && event["remote_host"] == remote)
            .ok_or_else(|| format!("standard output so far:\n{}", exporter.stdout.text()))
    })
}

#[test]
fn json_event_lines_name_remote_host_and_state() {
    let Some(_namespace) = testkit::enter("json_event_lines_name_remote_host_and_state") else {
        return;
    };
    let exporter = start_exporter(&["--log-events", "-f", "json"]);
    let v4 = create_tcp(
        "192.0.2.30",
        40000,
        "198.51.100.30",
        443,
        TcpState::Established,
    );
    create_tcp(
        "2001:db8::30",
        40001,
        "2001:db8::31",
        8443,
        TcpState::SynSent,
    );

    let event = wait_for_event(&exporter, "new", "198.51.100.30:443");
    assert_eq!(event["state"], "Open", "{event}");
    assert_eq!(event["original_source_host"], "192.0.2.30:40000", "{event}");
    assert_eq!(
        event["original_destination_host"], "198.51.100.30:443",
        "{event}"
    );
    assert_eq!(event["reply_source_host"], "198.51.100.30:443", "{event}");
    assert_eq!(
        event["reply_destination_host"], "192.0.2.30:40000",
        "{event}"
    );

    let event = wait_for_event(&exporter, "new", "[2001:db8::31]:8443");
    assert_eq!(event["state"], "Opening", "{event}");
    assert_eq!(
        event["original_source_host"], "[2001:db8::30]:40001",
        "{event}"
    );

    delete(&v4);
    let event = wait_for_event(&exporter, "destroy", "198.51.100.30:443");
    assert_eq!(event["state"], "Open", "{event}");
}

const DROPPED: &str = "conntrack_exporter_event_log_dropped_total";
const EVENTS: &str = "conntrack_exporter_events_total";
/// Synthetic entries created, of which every fifth is kept and the others deleted again:
/// 21,600 events, each a line, beyond what the pipe (64 KiB, a few hundred lines) and the
/// exporter's queue (16,384 lines) can hold together.
const ENTRIES: u16 = 12_000;
/// Remote hosts of the synthetic entries: coprime to 5, so that every host keeps entries (a
/// host with none stays on the page with zeros for a while, and the kernel's table knows
/// nothing of it).
const HOSTS: u16 = 32;

/// The original tuple of synthetic entry `n`: from a non-local address (so the destination
/// counts as the remote host) to one of [`HOSTS`] hosts, one source port each.
fn tuple(n: u16) -> Tuple {
    let host = Ipv4Addr::new(198, 51, 100, 1 + (n % HOSTS) as u8);
    Tuple::tcp(
        Ipv4Addr::new(192, 0, 2, 1).into(),
        10_000 + n,
        host.into(),
        443,
    )
}

#[test]
fn an_event_log_nobody_reads_never_holds_up_the_numbers() {
    let test = "an_event_log_nobody_reads_never_holds_up_the_numbers";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    // Only events can keep the numbers right: no periodic resync.
    let mut exporter = exporter_command()
        .args([
            "--log-events",
            "--ensure-tracking",
            "--resync-interval",
            "0",
        ])
        .leave_stdout_unread()
        .start();

    // Real loopback connections: ten kept open, ten closed (TIME_WAIT).
    let listener = TcpListener::bind(("127.0.0.2", 0)).unwrap();
    let mut kept = Vec::new();
    for round in 0..20 {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        if round % 2 == 0 {
            kept.extend([client, server]);
        }
    }
    let mut table = ConntrackSocket::open().unwrap();
    for n in 0..ENTRIES {
        let state = if n % 3 == 0 {
            TcpState::SynSent
        } else {
            TcpState::Established
        };
        table.create(&NewEntry::tcp(tuple(n), state, 600)).unwrap();
    }
    let mut deleted = 0;
    for n in (0..ENTRIES).filter(|n| n % 5 != 0) {
        table.delete(&tuple(n), None).unwrap();
        deleted += 1;
    }

    let counts = exporter.wait_until_kernel_table_matches(SEED_FAMILIES);
    let synthetic: u64 = (1..=HOSTS)
        .map(|host| counts.get(&Ipv4Addr::new(198, 51, 100, host as u8).into()))
        .map(|numbers| numbers.map_or(0, |numbers| numbers.iter().sum::<u64>()))
        .sum();
    assert_eq!(synthetic, u64::from(ENTRIES / 5), "{}", show(&counts));
    let real = counts
        .get(&"127.0.0.2".parse().unwrap())
        .copied()
        .unwrap_or_default();
    assert!(real[1] >= 10 && real[2] >= 1, "127.0.0.2: {real:?}");

    let scrape = exporter.scrape();
    assert_eq!(
        scrape.kind(DROPPED),
        Some("counter"),
        "{DROPPED} is a counter"
    );
    let dropped = scrape.value(DROPPED, &[]).unwrap_or(0.0);
    assert!(
        dropped > 0.0,
        "{DROPPED} = {dropped} although nobody reads the log"
    );
    let destroyed = scrape.value(EVENTS, &[("type", "destroy")]).unwrap_or(0.0);
    assert!(
        destroyed >= f64::from(deleted),
        "{destroyed} destroy events applied for {deleted} deletions"
    );

    exporter.stop_cleanly();
}
