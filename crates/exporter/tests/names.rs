//! Names instead of addresses (`--resolve-hosts`) against a real DNS server in the test's
//! namespace: dnsmasq serving records from its command line, or a server that never
//! answers. The exporter reads the server from a resolver configuration mounted over
//! `/etc/resolv.conf` in its own mount namespace, as it would read the system's.
//!
//! A confirmed name replaces its addresses (which share one series), a PTR record whose name
//! does not resolve back leaves the address, as does NXDOMAIN; a server that never answers
//! costs timeouts and nothing else; ten thousand addresses are looked up at the configured
//! pace within the cache's bound, while the numbers stay exact.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use common::{create_tcp, exporter_command};
use conntrack_codec::TcpState::{Established, SynSent, TimeWait};
use testkit::{
    DnsServer, Exporter, SEED_FAMILIES, Scrape, SilentDnsServer, TempDir, address, eventually,
    kernel_host_counts, require_tool, resolv_conf, show,
};

/// Where the test's DNS server listens, in the test's namespace.
const SERVER: &str = "127.0.0.1";

const LOOKUPS: &str = "conntrack_exporter_dns_lookups_total";
const CACHE_ENTRIES: &str = "conntrack_exporter_dns_cache_entries";

/// Starts the exporter with names on, `settings` as its config file, reading the DNS server
/// at [`SERVER`] through its resolver configuration.
#[track_caller]
fn start_naming_exporter(directory: &TempDir, settings: &str, args: &[&str]) -> Exporter {
    let config = directory.write("conntrack_exporter.toml", settings);
    exporter_command()
        .arg("--config")
        .arg(config)
        .arg("--resolve-hosts")
        .args(args)
        .resolv_conf(resolv_conf(directory, address(SERVER)))
        .start()
}

/// The page's numbers by `host` label, summed over any other label.
fn counts_by_host(scrape: &Scrape) -> Result<BTreeMap<String, [u64; 4]>, String> {
    let mut counts = BTreeMap::new();
    for (labels, numbers) in scrape.label_set_counts(SEED_FAMILIES)? {
        let host = labels.get("host").cloned().unwrap_or_default();
        let sum: &mut [u64; 4] = counts.entry(host).or_default();
        for (total, number) in sum.iter_mut().zip(numbers) {
            *total += number;
        }
    }
    Ok(counts)
}

/// The kernel's table as the page should show it: each remote address under its name in
/// `names`, or as itself.
fn kernel_counts_named(names: &HashMap<IpAddr, &str>) -> BTreeMap<String, [u64; 4]> {
    let mut counts = BTreeMap::new();
    for (host, numbers) in kernel_host_counts() {
        let label = names
            .get(&host)
            .map_or_else(|| host.to_string(), |name| (*name).to_owned());
        let sum: &mut [u64; 4] = counts.entry(label).or_default();
        for (total, number) in sum.iter_mut().zip(numbers) {
            *total += number;
        }
    }
    counts
}

/// Waits until the page shows the kernel's table under the names of `names`.
#[track_caller]
fn wait_for_named_counts(exporter: &Exporter, names: &HashMap<IpAddr, &str>) {
    eventually(
        "the page shows the kernel's table under the confirmed names",
        || {
            let expected = kernel_counts_named(names);
            let shown = counts_by_host(&exporter.scrape())?;
            if shown == expected {
                Ok(())
            } else {
                Err(format!(
                    "\n  expected: {expected:?}\n  shown:    {shown:?}\n  exporter log:\n{}",
                    exporter.stderr.text()
                ))
            }
        },
    );
}

/// The lookups counted with `result`.
fn lookups(scrape: &Scrape, result: &str) -> u64 {
    scrape.value(LOOKUPS, &[("result", result)]).unwrap_or(0.0) as u64
}

#[test]
fn confirmed_names_replace_addresses_and_the_others_stay() {
    let test = "confirmed_names_replace_addresses_and_the_others_stay";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    if !require_tool(test, "dnsmasq", "dnsmasq-base") {
        return;
    }
    let records = [
        // Two addresses with one name, and an IPv6 address with another.
        "--host-record=web.example.test,198.51.100.1",
        "--host-record=web.example.test,198.51.100.2",
        "--host-record=db.example.test,2001:db8::10",
        // A PTR record naming a host whose address is another one: not confirmed.
        "--ptr-record=7.100.51.198.in-addr.arpa,trusted.example.test",
        "--host-record=trusted.example.test,198.51.100.99",
        // 198.51.100.8 has no record at all: NXDOMAIN.
    ]
    .map(String::from);
    let server = DnsServer::start(address(SERVER), &records);
    let directory = TempDir::new(test);

    // Found by the initial dump.
    create_tcp("10.0.0.1", 40001, "198.51.100.1", 443, Established);
    create_tcp("10.0.0.1", 40002, "198.51.100.7", 443, Established);
    let exporter = start_naming_exporter(&directory, "", &["--log-events"]);
    // Learnt from events.
    create_tcp("10.0.0.1", 40003, "198.51.100.2", 443, SynSent);
    create_tcp("10.0.0.1", 40004, "198.51.100.2", 80, Established);
    create_tcp("10.0.0.1", 40005, "198.51.100.8", 443, TimeWait);
    create_tcp("fd00::1", 40006, "2001:db8::10", 5432, Established);

    let names: HashMap<IpAddr, &str> = [
        ("198.51.100.1", "web.example.test"),
        ("198.51.100.2", "web.example.test"),
        ("2001:db8::10", "db.example.test"),
    ]
    .into_iter()
    .map(|(host, name)| (address(host), name))
    .collect();
    wait_for_named_counts(&exporter, &names);

    // The addresses shown as themselves may still be awaiting their answers.
    let scrape = eventually("every lookup answered", || {
        let scrape = exporter.scrape();
        let answered: u64 = ["name", "no_name", "unconfirmed", "timeout", "error"]
            .iter()
            .map(|result| lookups(&scrape, result))
            .sum();
        match answered {
            5 => Ok(scrape),
            _ => Err(format!("{answered} lookups answered:\n{}", scrape.text)),
        }
    });
    let web = [("host", "web.example.test")];
    assert_eq!(
        scrape.value("conntrack_open_connections_total", &web),
        Some(2.0)
    );
    assert_eq!(
        scrape.value("conntrack_opening_connections_total", &web),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("conntrack_connections_opened_total", &web),
        Some(2.0),
        "the counters of both addresses are summed"
    );
    for address in ["198.51.100.1", "198.51.100.2", "2001:db8::10"] {
        assert_eq!(
            scrape.value("conntrack_open_connections_total", &[("host", address)]),
            None,
            "{address} is shown by its name"
        );
    }
    assert_eq!(lookups(&scrape, "name"), 3, "{}", scrape.text);
    assert_eq!(lookups(&scrape, "unconfirmed"), 1, "{}", scrape.text);
    assert_eq!(lookups(&scrape, "no_name"), 1, "{}", scrape.text);
    assert_eq!(lookups(&scrape, "timeout") + lookups(&scrape, "error"), 0);
    assert_eq!(scrape.value(CACHE_ENTRIES, &[]), Some(5.0));
    assert_eq!(scrape.value("conntrack_exporter_hosts", &[]), Some(4.0));
    eventually("the PTR name of 198.51.100.7 was looked up forward", || {
        let queries = server.log.text();
        match queries.contains("query[A] trusted.example.test") {
            true => Ok(()),
            false => Err(queries),
        }
    });

    // Event lines carry the name once it is known.
    create_tcp("10.0.0.1", 40007, "198.51.100.1", 8443, SynSent);
    create_tcp("10.0.0.1", 40008, "198.51.100.8", 8443, SynSent);
    let lines = eventually("the new connections' event lines", || {
        let lines = exporter.stdout.lines();
        let named = lines
            .iter()
            .find(|line| line.contains("dport=8443 ") && line.contains("dst=198.51.100.1 "));
        let unnamed = lines
            .iter()
            .find(|line| line.contains("dport=8443 ") && line.contains("dst=198.51.100.8 "));
        match (named, unnamed) {
            (Some(named), Some(unnamed)) => Ok((named.clone(), unnamed.clone())),
            _ => Err(lines.join("\n")),
        }
    });
    assert!(
        lines
            .0
            .contains("remote=198.51.100.1:8443 remote_name=web.example.test "),
        "{}",
        lines.0
    );
    assert!(!lines.1.contains("remote_name="), "{}", lines.1);
}

#[test]
fn a_server_that_never_answers_costs_timeouts_and_nothing_else() {
    let test = "a_server_that_never_answers_costs_timeouts_and_nothing_else";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let server = SilentDnsServer::start(address(SERVER));
    let directory = TempDir::new(test);
    for index in 1..=5 {
        create_tcp(
            "10.0.0.1",
            40000 + index,
            &format!("198.51.100.{index}"),
            443,
            Established,
        );
    }
    let exporter = start_naming_exporter(&directory, "resolve_timeout = \"500ms\"\n", &[]);
    exporter.wait_until_kernel_table_matches(SEED_FAMILIES);

    // While the lookups hang, events go on being applied and scrapes answered.
    for index in 6..=10 {
        create_tcp(
            "10.0.0.1",
            40000 + index,
            &format!("198.51.100.{index}"),
            80,
            SynSent,
        );
    }
    exporter.wait_until_kernel_table_matches(SEED_FAMILIES);
    let scrape = eventually("every address's lookup timed out", || {
        let scrape = exporter.scrape();
        match lookups(&scrape, "timeout") {
            10.. => Ok(scrape),
            timeouts => Err(format!("{timeouts} timeouts:\n{}", scrape.text)),
        }
    });
    assert_eq!(lookups(&scrape, "timeout"), 10, "{}", scrape.text);
    for result in ["name", "no_name", "unconfirmed", "error"] {
        assert_eq!(lookups(&scrape, result), 0, "{result}: {}", scrape.text);
    }
    assert!(server.queries() >= 10, "{} queries", server.queries());
    let counts = exporter.wait_until_kernel_table_matches(SEED_FAMILIES);
    assert_eq!(counts.len(), 10, "{}", show(&counts));
}

#[test]
fn ten_thousand_addresses_are_looked_up_at_the_configured_pace_within_the_cache_bound() {
    let test = "ten_thousand_addresses_are_looked_up_at_the_configured_pace_within_the_cache_bound";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    if !require_tool(test, "dnsmasq", "dnsmasq-base") {
        return;
    }
    // No records: every lookup ends in NXDOMAIN.
    let _server = DnsServer::start(address(SERVER), &[]);
    let directory = TempDir::new(test);
    let created = loadgen::table::fill(10_000, 1).expect("creating 10,000 entries");
    assert_eq!(created, 10_000);
    let (rate, entries) = (100, 2_000);
    // No bound on series: each of the 10,001 addresses keeps its own.
    let settings = format!(
        "resolve_rate = {rate}\nresolve_cache_entries = {entries}\nresolve_max_concurrent = 4\n\
         max_series = 0\n"
    );
    let started = Instant::now();
    let exporter = start_naming_exporter(&directory, &settings, &[]);
    exporter.wait_until_kernel_table_matches(SEED_FAMILIES);

    // Scrape for a while: every scrape asks about the addresses without an answer.
    let mut scrapes = 0;
    let scrape = eventually("a few hundred lookups answered", || {
        scrapes += 1;
        let scrape = exporter.scrape();
        let answered = lookups(&scrape, "no_name");
        if answered >= 200 {
            Ok(scrape)
        } else {
            Err(format!("{answered} answered after {scrapes} scrapes"))
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let total: u64 = ["name", "no_name", "unconfirmed", "timeout", "error"]
        .iter()
        .map(|result| lookups(&scrape, result))
        .sum();
    assert!(
        total as f64 <= f64::from(rate) * elapsed + 1.0,
        "{total} lookups in {elapsed:.2}s exceed {rate} per second"
    );
    assert_eq!(total, lookups(&scrape, "no_name"), "{}", scrape.text);
    let cached = scrape.value(CACHE_ENTRIES, &[]).unwrap_or_default();
    assert!(
        (1.0..=f64::from(entries)).contains(&cached),
        "{cached} cache entries, at most {entries} allowed"
    );

    // Nothing waits for the lookups still queued: new events are counted at once.
    create_tcp("10.9.0.1", 40000, "198.51.100.1", 443, Established);
    let counts = exporter.wait_until_kernel_table_matches(SEED_FAMILIES);
    assert_eq!(counts.len(), 10_001);
}
