//! Switching connection tracking on and off against the real kernel, each test in a private
//! network namespace: real connections are tracked only after `enable`, the ruleset is exactly
//! one table, chain and rule however often it runs, and other tables are left alone.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use ctnetlink::ConntrackSocket;
use ctnetlink::tracking_switch::{self, CHAIN_NAME, TABLE_NAME};

/// Opens a TCP connection to `address` on a fresh port, exchanges a byte each way, and
/// returns the listener's port.
fn connect(address: IpAddr) -> u16 {
    let listener = TcpListener::bind(SocketAddr::new(address, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut client = TcpStream::connect((address, port)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"?").unwrap();
    let mut byte = [0u8];
    server.read_exact(&mut byte).unwrap();
    server.write_all(b"!").unwrap();
    client.read_exact(&mut byte).unwrap();
    port
}

/// Entries in the table, and how many of them are TCP connections to `address`:`port`.
fn tracked(address: IpAddr, port: u16) -> (u64, usize) {
    let mut matching = 0;
    let summary = ConntrackSocket::open()
        .unwrap()
        .dump(None, |decoded| {
            let entry = decoded.unwrap().entry;
            if entry.original.dst == address && entry.original.dst_port() == Some(port) {
                matching += 1;
            }
        })
        .unwrap();
    (summary.entries, matching)
}

fn nft(args: &[&str]) -> String {
    testkit::run("nft", args).unwrap()
}

/// Occurrences of `needle` in `haystack`.
fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn connections_are_tracked_only_once_enabled() {
    let Some(_namespace) = testkit::enter("connections_are_tracked_only_once_enabled") else {
        return;
    };
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);

    let port = connect(v4);
    assert_eq!(tracked(v4, port), (0, 0), "IPv4 tracked before enable");
    let port = connect(v6);
    assert_eq!(tracked(v6, port), (0, 0), "IPv6 tracked before enable");

    tracking_switch::enable().unwrap();
    let port = connect(v4);
    assert_eq!(tracked(v4, port).1, 1, "IPv4 connection not tracked");
    let port = connect(v6);
    assert_eq!(tracked(v6, port).1, 1, "IPv6 connection not tracked");
}

#[test]
fn tracking_stops_once_disabled() {
    let Some(_namespace) = testkit::enter("tracking_stops_once_disabled") else {
        return;
    };
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    tracking_switch::enable().unwrap();
    tracking_switch::disable().unwrap();

    // The kernel releases the rule, and with it the conntrack hooks, in deferred work after
    // the transaction: allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        ConntrackSocket::open().unwrap().flush(None).unwrap();
        let port = connect(v4);
        if tracked(v4, port).1 == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "still tracking after disable");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn enabling_twice_leaves_one_rule() {
    let Some(_namespace) = testkit::enter("enabling_twice_leaves_one_rule") else {
        return;
    };
    tracking_switch::enable().unwrap();
    tracking_switch::enable().unwrap();

    let ruleset = nft(&["-j", "list", "ruleset"]);
    assert_eq!(count(&ruleset, "\"table\": {"), 1, "{ruleset}");
    assert_eq!(count(&ruleset, "\"chain\": {"), 1, "{ruleset}");
    assert_eq!(count(&ruleset, "\"rule\": {"), 1, "{ruleset}");
    assert!(ruleset.contains(&format!("\"name\": \"{TABLE_NAME}\"")));
    assert!(ruleset.contains(&format!("\"name\": \"{CHAIN_NAME}\"")));
    assert!(ruleset.contains("\"family\": \"inet\""));
    // A regular chain: no hook, so no packet ever traverses it.
    assert!(!ruleset.contains("\"hook\""), "{ruleset}");

    assert!(
        ruleset.contains("{\"ct\": {\"key\": \"state\"}}"),
        "{ruleset}"
    );

    // The bytecode: one load of the connection state, the one thing the kernel needs.
    let bytecode = nft(&["--debug=netlink", "list", "table", "inet", TABLE_NAME]);
    assert_eq!(
        count(&bytecode, "[ ct load state => reg 1 ]"),
        1,
        "{bytecode}"
    );
    let listing = nft(&["list", "table", "inet", TABLE_NAME]);
    assert_eq!(count(&listing, "ct state != 0x0 comment"), 1, "{listing}");

    // Still tracking after the rule was replaced.
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let port = connect(v4);
    assert_eq!(tracked(v4, port).1, 1);
}

#[test]
fn other_tables_are_left_alone() {
    let Some(_namespace) = testkit::enter("other_tables_are_left_alone") else {
        return;
    };
    nft(&["add", "table", "inet", "other_table"]);
    nft(&[
        "add",
        "chain",
        "inet",
        "other_table",
        "input",
        "{ type filter hook input priority 0; policy accept; }",
    ]);
    nft(&[
        "add",
        "rule",
        "inet",
        "other_table",
        "input",
        "tcp",
        "dport",
        "22",
        "accept",
    ]);
    let other = || nft(&["-a", "list", "table", "inet", "other_table"]);
    let before = other();

    tracking_switch::enable().unwrap();
    assert_eq!(other(), before, "enable changed another table");
    tracking_switch::disable().unwrap();
    assert_eq!(other(), before, "disable changed another table");
    assert_eq!(nft(&["list", "tables"]), "table inet other_table\n");

    // Disabling again, with the table absent, succeeds and changes nothing.
    tracking_switch::disable().unwrap();
    assert_eq!(other(), before);
    assert_eq!(nft(&["list", "tables"]), "table inet other_table\n");
}

#[test]
fn disabling_an_empty_ruleset_succeeds() {
    let Some(_namespace) = testkit::enter("disabling_an_empty_ruleset_succeeds") else {
        return;
    };
    tracking_switch::disable().unwrap();
    assert_eq!(nft(&["list", "ruleset"]), "");

    tracking_switch::enable().unwrap();
    tracking_switch::disable().unwrap();
    tracking_switch::enable().unwrap();
    let ruleset = nft(&["-j", "list", "ruleset"]);
    assert_eq!(count(&ruleset, "\"rule\": {"), 1, "{ruleset}");
}
