//! Keeping the number of series sane, against the real kernel: named host groups (IPv4 and
//! IPv6, nested networks, the longest prefix wins), addresses outside every group aggregated
//! into their networks, and `max_series`: thousands of distinct remote addresses give at most
//! that many label sets plus one whose labels read `other`, the sums over all series equal the
//! kernel's table, and a label set frees its place once it leaves the output.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use common::{create_tcp, delete, start_exporter};
use conntrack_codec::{NewEntry, TcpState, Tuple};
use ctnetlink::ConntrackSocket;
use testkit::{Exporter, SEED_FAMILIES, Scrape, TempDir, eventually, kernel_host_counts};

/// Label sets by their `host` value, with their four numbers.
type ByHost = BTreeMap<String, [u64; 4]>;

/// The label sets of one scrape by host value, with connections or not.
fn by_host(scrape: &Scrape) -> Result<ByHost, String> {
    scrape
        .label_set_counts(SEED_FAMILIES)?
        .into_iter()
        .map(|(labels, counts)| match labels.get("host") {
            Some(host) => Ok((host.clone(), counts)),
            None => Err(format!("{labels:?} without a host label")),
        })
        .collect()
}

/// The kernel's table, as the number of TCP connections in each state group summed over all
/// hosts.
fn kernel_totals() -> [u64; 4] {
    let mut totals = [0; 4];
    for counts in kernel_host_counts().values() {
        for (total, count) in totals.iter_mut().zip(counts) {
            *total += count;
        }
    }
    totals
}

/// The sums over every label set of `sets`.
fn totals(sets: &ByHost) -> [u64; 4] {
    let mut totals = [0; 4];
    for counts in sets.values() {
        for (total, count) in totals.iter_mut().zip(counts) {
            *total += count;
        }
    }
    totals
}

const GROUPS: &str = r#"
host_prefix_length_v4 = 24
host_prefix_length_v6 = 64

[[host_groups]]
name = "private"
networks = ["10.0.0.0/8", "fd00::/8"]

[[host_groups]]
name = "postgres"
networks = ["10.1.2.0/24", "fd00:1:2::/64"]

[[host_groups]]
name = "postgres-primary"
networks = ["10.1.2.5", "fd00:1:2::5/128"]
"#;

/// One round of entries from `src4` and `src6`, neither local: the remote end of each is its
/// original destination.
fn create_round(src4: &str, src6: &str) {
    use TcpState::{Established, SynSent, TimeWait};
    for (port, dst, state) in [
        (40001, "10.9.9.9", Established),
        (40002, "10.1.2.4", Established),
        (40003, "10.1.2.5", SynSent),
        (40004, "203.0.113.7", Established),
        (40005, "203.0.113.99", TimeWait),
        (40006, "198.51.100.1", Established),
    ] {
        create_tcp(src4, port, dst, 5432, state);
    }
    for (port, dst, state) in [
        (40001, "fd00:9::1", Established),
        (40002, "fd00:1:2::4", Established),
        (40003, "fd00:1:2::5", Established),
        (40004, "2001:db8:1:2::7", SynSent),
        (40005, "2001:db8:1:2:ffff::8", Established),
    ] {
        create_tcp(src6, port, dst, 5432, state);
    }
}

#[test]
fn host_groups_and_networks_aggregate_remote_addresses() {
    let test = "host_groups_and_networks_aggregate_remote_addresses";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let directory = TempDir::new(test);
    let config = directory.write("groups.toml", GROUPS);
    // Found by the initial dump, then learnt from events.
    create_round("192.0.2.1", "2001:db8:ffff::1");
    let exporter = start_exporter(&["--config", config.to_str().unwrap()]);
    create_round("192.0.2.2", "2001:db8:ffff::2");

    let expected: ByHost = [
        ("private", [0, 4, 0, 0]),
        ("postgres", [0, 4, 0, 0]),
        ("postgres-primary", [2, 2, 0, 0]),
        ("203.0.113.0/24", [0, 2, 2, 0]),
        ("198.51.100.0/24", [0, 2, 0, 0]),
        ("2001:db8:1:2::/64", [2, 2, 0, 0]),
    ]
    .map(|(host, counts)| (host.to_owned(), counts))
    .into();
    wait_for(&exporter, |found| {
        if found == &expected {
            Ok(())
        } else {
            Err(format!("\n  expected {expected:?}\n  found    {found:?}"))
        }
    });
    assert_eq!(totals(&expected), kernel_totals());
}

/// Waits until the label sets with connections pass `check`; returns the scrape.
#[track_caller]
fn wait_for(exporter: &Exporter, check: impl Fn(&ByHost) -> Result<(), String>) -> Scrape {
    eventually("the label sets are as expected", || {
        let scrape = exporter.scrape();
        let mut found = by_host(&scrape)?;
        found.retain(|_, counts| counts.iter().any(|&count| count > 0));
        check(&found).map_err(|error| format!("{error}\n  log:\n{}", exporter.stderr.text()))?;
        Ok(scrape)
    })
}

/// The bound of the test, and how many distinct remote addresses it meets.
const MAX_SERIES: usize = 100;
const ADDRESSES: u32 = 5_000;

/// Creates an established connection from 192.0.2.1 to each address of `remotes`, through
/// one socket.
fn create_many(remotes: impl Iterator<Item = Ipv4Addr>) -> Vec<Tuple> {
    let mut table = ConntrackSocket::open().unwrap();
    remotes
        .map(|remote| {
            let tuple = Tuple::tcp("192.0.2.1".parse().unwrap(), 40000, remote.into(), 443);
            table
                .create(&NewEntry::tcp(tuple, TcpState::Established, 600))
                .unwrap_or_else(|error| panic!("creating {tuple:?}: {error}"));
            tuple
        })
        .collect()
}

/// The `n`th remote address of the test, in 198.18.0.0/15.
fn remote(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + n)
}

#[test]
fn the_series_bound_counts_the_rest_as_other_and_frees_places() {
    let test = "the_series_bound_counts_the_rest_as_other_and_frees_places";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let directory = TempDir::new(test);
    // No periodic resync: the test decides when connections change.
    let config = directory.write(
        "bound.toml",
        &format!(
            "max_series = {MAX_SERIES}\nhost_idle_timeout = \"2s\"\nresync_interval = \"0\"\n"
        ),
    );
    let exporter = start_exporter(&["--config", config.to_str().unwrap()]);
    // Learnt from events, so that deleting them sends DESTROY events too (entries made while
    // nobody listens leave without one, to be found by the next resync).
    let tuples = create_many((0..ADDRESSES).map(remote));

    let kernel = kernel_totals();
    assert_eq!(kernel, [0, u64::from(ADDRESSES), 0, 0]);
    let scrape = wait_for(&exporter, |found| {
        let named = found.keys().filter(|host| *host != "other").count();
        let other = found.get("other").copied().unwrap_or_default();
        if named == MAX_SERIES && other[1] == u64::from(ADDRESSES) - MAX_SERIES as u64 {
            Ok(())
        } else {
            Err(format!("{named} label sets, other {other:?}"))
        }
    });
    assert_eq!(totals(&by_host(&scrape).unwrap()), kernel);
    let gauge = |scrape: &Scrape, name: &str| scrape.value(name, &[]).unwrap_or(-1.0);
    assert_eq!(
        gauge(&scrape, "conntrack_exporter_series"),
        MAX_SERIES as f64
    );
    assert_eq!(
        gauge(&scrape, "conntrack_exporter_series_limit"),
        MAX_SERIES as f64
    );
    assert_eq!(
        gauge(&scrape, "conntrack_exporter_overflow_connections"),
        f64::from(ADDRESSES) - MAX_SERIES as f64
    );
    // One entry per connection, nothing per address beyond the bound.
    assert_eq!(
        gauge(&scrape, "conntrack_exporter_connections"),
        f64::from(ADDRESSES)
    );
    // Every label of the overflow set reads "other", counters included.
    assert_eq!(
        scrape.value("conntrack_connections_opened_total", &[("host", "other")]),
        Some(f64::from(ADDRESSES) - MAX_SERIES as f64)
    );
    // The collector logs the warning at its next timer tick, which may follow the scrape.
    let warnings = || {
        exporter
            .stderr
            .lines()
            .into_iter()
            .filter(|line| line.contains("max_series reached"))
            .count()
    };
    eventually(
        "the warning that max_series is reached",
        || match warnings() {
            0 => Err(exporter.stderr.text()),
            _ => Ok(()),
        },
    );
    assert_eq!(warnings(), 1, "{}", exporter.stderr.text());

    // The connections of the label sets in the output end: after the idle timeout, those
    // sets leave the output and their places go to new remote addresses.
    let placed: Vec<IpAddr> = by_host(&scrape)
        .unwrap()
        .into_keys()
        .filter(|host| host != "other")
        .map(|host| host.parse().unwrap())
        .collect();
    for tuple in tuples.iter().filter(|tuple| placed.contains(&tuple.dst)) {
        delete(tuple);
    }
    eventually("the emptied label sets leave the output", || {
        let scrape = exporter.scrape();
        match gauge(&scrape, "conntrack_exporter_series") {
            0.0 => Ok(()),
            series => Err(format!(
                "{series} label sets besides other, {} resyncs; log:\n{}",
                scrape.sum("conntrack_exporter_resyncs_total"),
                exporter.stderr.text()
            )),
        }
    });
    let newcomers = 50;
    create_many((ADDRESSES..ADDRESSES + newcomers).map(remote));
    let scrape = wait_for(&exporter, |found| {
        let named: Vec<&String> = found.keys().filter(|host| *host != "other").collect();
        let new = (ADDRESSES..ADDRESSES + newcomers).map(|n| remote(n).to_string());
        if named.len() == newcomers as usize && new.into_iter().all(|n| found.contains_key(&n)) {
            Ok(())
        } else {
            Err(format!("{} label sets: {named:?}", named.len()))
        }
    });
    let kernel = kernel_totals();
    assert_eq!(
        kernel,
        [
            0,
            u64::from(ADDRESSES + newcomers) - MAX_SERIES as u64,
            0,
            0
        ]
    );
    assert_eq!(totals(&by_host(&scrape).unwrap()), kernel);
}
