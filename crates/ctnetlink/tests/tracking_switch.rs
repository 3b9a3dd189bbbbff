//! Switching connection tracking on and off against the real kernel, each test in a private
//! network namespace: real connections are tracked only after `enable`, the ruleset is exactly
//! one table, chain and rule however often it runs, and other tables are left alone. An owned
//! switch's table is its own: others cannot delete it, and it goes with its holder.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use ctnetlink::ConntrackSocket;
use ctnetlink::tracking_switch::{self, CHAIN_NAME, OWNED_TABLE_PREFIX, OwnedSwitch, TABLE_NAME};

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

/// The names of the `inet` tables in the namespace.
fn tables() -> Vec<String> {
    nft(&["list", "tables"])
        .lines()
        .filter_map(|line| line.strip_prefix("table inet ").map(str::to_owned))
        .collect()
}

#[test]
fn an_owned_switch_tracks_until_dropped() {
    let Some(_namespace) = testkit::enter("an_owned_switch_tracks_until_dropped") else {
        return;
    };
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let switch = OwnedSwitch::on().unwrap();
    let name = switch.table_name().to_owned();
    assert!(name.starts_with(OWNED_TABLE_PREFIX), "{name}");
    assert_eq!(tables(), std::slice::from_ref(&name));
    let listing = nft(&["list", "table", "inet", &name]);
    assert!(listing.contains("flags owner"), "{listing}");
    assert_eq!(count(&listing, "ct state != 0x0 comment"), 1, "{listing}");
    let port = connect(v4);
    assert_eq!(tracked(v4, port).1, 1, "connection not tracked");

    drop(switch);
    assert_eq!(
        tables(),
        Vec::<String>::new(),
        "the table outlived its switch"
    );
}

#[test]
fn two_owned_switches_keep_their_own_tables() {
    let Some(_namespace) = testkit::enter("two_owned_switches_keep_their_own_tables") else {
        return;
    };
    let first = OwnedSwitch::on().unwrap();
    let second = OwnedSwitch::on().unwrap();
    assert_ne!(first.table_name(), second.table_name());
    let mut both = vec![
        first.table_name().to_owned(),
        second.table_name().to_owned(),
    ];
    both.sort();
    let mut listed = tables();
    listed.sort();
    assert_eq!(listed, both);

    let kept = second.table_name().to_owned();
    drop(first);
    assert_eq!(tables(), [kept]);
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let port = connect(v4);
    assert_eq!(
        tracked(v4, port).1,
        1,
        "tracking stopped with the other switch"
    );
}

#[test]
fn others_cannot_remove_an_owned_table() {
    let Some(_namespace) = testkit::enter("others_cannot_remove_an_owned_table") else {
        return;
    };
    let switch = OwnedSwitch::on().unwrap();
    let name = switch.table_name();

    let deleted = testkit::run("nft", &["delete", "table", "inet", name]);
    let error = deleted.expect_err("nft deleted a table it does not own");
    assert!(
        error.to_string().contains("Operation not permitted"),
        "{error}"
    );
    let flushed = testkit::run("nft", &["flush", "ruleset"]);
    assert!(flushed.is_ok(), "{flushed:?}");
    let deleted = testkit::run("nft", &["delete", "chain", "inet", name, CHAIN_NAME]);
    assert!(deleted.is_err(), "nft deleted a chain of an owned table");
    assert_eq!(tables(), [name.to_owned()]);

    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    ConntrackSocket::open().unwrap().flush(None).unwrap();
    let port = connect(v4);
    assert_eq!(tracked(v4, port).1, 1, "tracking stopped");
}

#[test]
fn disable_says_whether_a_table_was_there() {
    let Some(_namespace) = testkit::enter("disable_says_whether_a_table_was_there") else {
        return;
    };
    let switch = OwnedSwitch::on().unwrap();
    assert!(!tracking_switch::disable().unwrap());
    tracking_switch::enable().unwrap();
    assert!(tracking_switch::disable().unwrap());
    assert_eq!(tables(), [switch.table_name().to_owned()]);
}
