//! One exporter, in a namespace of its own, watching three more that the test makes (their
//! files bind-mounted in a temporary directory, as `ip netns add` does under /run/netns):
//! each namespace holds real loopback connections and synthetic entries of its own, and the
//! series labelled with its `netns` must equal its own table exactly. A namespace made after
//! start is picked up; one deleted is dropped with all its series. A file that is no
//! namespace is skipped, and `max_namespaces` bounds how many are watched. Each namespace's
//! own addresses decide which end of its connections is remote.

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::Command;

use common::{
    binary, connect, create_tcp, exporter_command, namespace_directory, single_error_line,
};
use conntrack_codec::TcpState;
use testkit::{
    Exporter, NamedNamespace, SEED_FAMILIES, Scrape, TempDir, eventually, kernel_host_counts, show,
    with_connections,
};

/// `CAP_NET_ADMIN` (bit 12), `CAP_SYS_PTRACE` (bit 19) and `CAP_SYS_ADMIN` (bit 21) as
/// `/proc/PID/status` prints them.
const NAMESPACE_CAPABILITIES: &str = "0000000000281000";

/// In the namespace, `pairs` established loopback connections, and synthetic entries from
/// 10.0.0.1 to `remote`: `pairs` open ones and one opening. Returns the sockets to keep open.
fn workload(namespace: &NamedNamespace, pairs: u16, remote: &'static str) -> Vec<TcpStream> {
    namespace.run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut keep = Vec::new();
        for _ in 0..pairs {
            let (client, server) = connect(&listener);
            keep.extend([client, server]);
        }
        for port in 0..pairs {
            create_tcp("10.0.0.1", 30000 + port, remote, 443, TcpState::Established);
        }
        create_tcp("10.0.0.1", 31000, remote, 443, TcpState::SynSent);
        keep
    })
}

/// Waits until the series labelled `netns = name` with connections equal that namespace's
/// own table, as the `conntrack` tool lists it inside the namespace (or in the test's own for
/// `host`).
#[track_caller]
fn wait_until_namespace_matches(
    exporter: &Exporter,
    name: &str,
    namespace: Option<&NamedNamespace>,
) {
    let kernel = || match namespace {
        Some(namespace) => namespace.run(kernel_host_counts),
        None => kernel_host_counts(),
    };
    eventually(&format!("netns {name} equals its own table"), || {
        let before = kernel();
        // Hosts whose connections have all gone stay on the page with zeros for a while.
        let scraped = with_connections(exporter.scrape().host_counts_with(
            SEED_FAMILIES,
            "netns",
            name,
        )?);
        if kernel() != before {
            return Err("the table changed during the scrape".into());
        }
        if scraped != before {
            return Err(format!(
                "\n  kernel:   {}\n  exporter: {}\n  log:\n{}",
                show(&before),
                show(&scraped),
                exporter.stderr.text()
            ));
        }
        if before.is_empty() && namespace.is_some() {
            return Err("the namespace's table is empty".into());
        }
        Ok(())
    });
}

/// Starts the exporter watching the namespace files `pattern` matches, with the config file
/// `config` (written in `directory`).
fn watching(directory: &TempDir, pattern: &str, config: &str) -> Exporter {
    let config = directory.write("config.toml", config);
    exporter_command()
        .arg("--config")
        .arg(&config)
        .args(["--namespaces", pattern])
        .start()
}

/// The number of namespaces in `state` (`watched`, `skipped`).
fn namespaces(scrape: &Scrape, state: &str) -> Option<f64> {
    scrape.value("conntrack_exporter_namespaces", &[("state", state)])
}

/// Every sample of the page that carries `netns = name`.
fn samples_of(scrape: &Scrape, name: &str) -> Vec<String> {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.labels.get("netns").map(String::as_str) == Some(name))
        .map(|sample| format!("{} {:?}", sample.name, sample.labels))
        .collect()
}

#[test]
fn every_namespace_is_counted_apart_and_namespaces_come_and_go() {
    let test = "every_namespace_is_counted_apart_and_namespaces_come_and_go";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let directory = TempDir::new("namespaces");
    let (netns, pattern) = namespace_directory(&directory);
    let pods = ["pod-a", "pod-b", "pod-c"].map(|name| NamedNamespace::create(&netns.join(name)));
    let _kept: Vec<_> = pods
        .iter()
        .zip(1..)
        .map(|(pod, pairs)| workload(pod, pairs, "192.0.2.9"))
        .collect();
    create_tcp("10.0.0.1", 40000, "198.51.100.1", 80, TcpState::Established);

    let exporter = exporter_command()
        .args(["--namespaces", &pattern, "--ensure-tracking"])
        .start();
    for (pod, name) in pods.iter().zip(["pod-a", "pod-b", "pod-c"]) {
        wait_until_namespace_matches(&exporter, name, Some(pod));
    }
    wait_until_namespace_matches(&exporter, "host", None);
    let scrape = exporter.scrape();
    assert_eq!(namespaces(&scrape, "watched"), Some(4.0), "{}", scrape.text);
    assert_eq!(namespaces(&scrape, "skipped"), Some(0.0));
    for name in ["pod-a", "pod-b", "pod-c", "host"] {
        for (family, labels) in [
            ("conntrack_exporter_connections", vec![]),
            (
                "conntrack_exporter_resyncs_total",
                vec![("reason", "startup")],
            ),
            ("conntrack_exporter_namespace_open_files", vec![]),
        ] {
            let mut labels = labels;
            labels.push(("netns", name));
            assert!(
                scrape.value(family, &labels).is_some(),
                "{family} {labels:?} missing:\n{}",
                scrape.text
            );
        }
    }
    // pod-c: three loopback pairs (both ends tracked as one entry each way: three entries),
    // three synthetic open entries and one opening.
    assert_eq!(
        scrape.value("conntrack_exporter_connections", &[("netns", "pod-c")]),
        Some(7.0)
    );

    // A namespace made while the exporter runs is picked up, with its own numbers.
    let late = NamedNamespace::create(&netns.join("pod-d"));
    let _late_kept = workload(&late, 2, "192.0.2.10");
    wait_until_namespace_matches(&exporter, "pod-d", Some(&late));
    // Events keep each namespace current: a new entry in pod-a shows up there only.
    pods[0].run(|| create_tcp("10.0.0.1", 32000, "192.0.2.77", 22, TcpState::Established));
    wait_until_namespace_matches(&exporter, "pod-a", Some(&pods[0]));
    let scrape = exporter.scrape();
    let elsewhere = scrape
        .samples
        .iter()
        .filter(|sample| sample.labels.get("host").map(String::as_str) == Some("192.0.2.77"))
        .filter(|sample| sample.labels.get("netns").map(String::as_str) != Some("pod-a"))
        .count();
    assert_eq!(elsewhere, 0, "{}", scrape.text);

    // A namespace deleted is dropped: none of its series stays.
    let [pod_a, pod_b, pod_c] = pods;
    pod_b.delete();
    eventually("pod-b leaves the output", || {
        let scrape = exporter.scrape();
        let left = samples_of(&scrape, "pod-b");
        match namespaces(&scrape, "watched") {
            Some(4.0) if left.is_empty() => Ok(()),
            watched => Err(format!("{watched:?} watched; pod-b series: {left:?}")),
        }
    });
    wait_until_namespace_matches(&exporter, "pod-a", Some(&pod_a));
    wait_until_namespace_matches(&exporter, "pod-c", Some(&pod_c));

    // Each namespace has its own local addresses: 192.0.2.9 becoming local in pod-c moves
    // pod-c's connections to their other end, and pod-a's stay where they were.
    pod_c.run(|| testkit::run("ip", &["addr", "add", "192.0.2.9/32", "dev", "lo"]).unwrap());
    wait_until_namespace_matches(&exporter, "pod-c", Some(&pod_c));
    let scrape = exporter.scrape();
    let open = |netns: &str, host: &str| {
        let labels = [("netns", netns), ("host", host)];
        scrape.value("conntrack_open_connections_total", &labels)
    };
    assert_eq!(open("pod-c", "10.0.0.1"), Some(3.0), "{}", scrape.text);
    assert_eq!(open("pod-a", "192.0.2.9"), Some(1.0), "{}", scrape.text);

    // It kept CAP_SYS_ADMIN, which entering the namespaces needs, CAP_SYS_PTRACE, which
    // finding their pods needs, and nothing else more.
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", exporter.process.pid())).unwrap();
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .map(str::trim);
    assert_eq!(effective, Some(NAMESPACE_CAPABILITIES));
    let mut exporter = exporter;
    exporter.stop_cleanly();
}

#[test]
fn files_that_are_not_namespaces_are_skipped_and_the_bound_holds() {
    let test = "files_that_are_not_namespaces_are_skipped_and_the_bound_holds";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let directory = TempDir::new("namespace-bound");
    let (netns, pattern) = namespace_directory(&directory);
    std::fs::write(netns.join("junk"), "not a namespace").unwrap();
    let _pods = ["one", "two", "three"].map(|name| NamedNamespace::create(&netns.join(name)));
    let exporter = watching(
        &directory,
        &pattern,
        "max_namespaces = 2\nwatch_own_namespace = false\n",
    );
    let scrape = exporter.scrape();
    assert_eq!(namespaces(&scrape, "watched"), Some(2.0), "{}", scrape.text);
    assert_eq!(namespaces(&scrape, "skipped"), Some(1.0), "{}", scrape.text);
    assert!(samples_of(&scrape, "host").is_empty(), "{}", scrape.text);
    // Watched in name order: "one" and "junk" come first, "junk" is no namespace.
    assert!(!samples_of(&scrape, "one").is_empty(), "{}", scrape.text);
    let junk = format!(
        "not watching {}: not a namespace file",
        netns.join("junk").display()
    );
    // Rescans go on; the file is reported once.
    std::thread::sleep(std::time::Duration::from_secs(6));
    let log = exporter.stderr.text();
    assert_eq!(log.matches(&junk).count(), 1, "{log}");
    assert_eq!(
        log.matches("not watched: max_namespaces (2)").count(),
        1,
        "{log}"
    );
}

/// The sum over every namespace of `family` (the self-metrics are per namespace).
fn summed(scrape: &Scrape, family: &str) -> f64 {
    let samples = scrape.samples.iter().filter(|sample| sample.name == family);
    samples.map(|sample| sample.value).sum()
}

#[test]
fn max_series_bounds_the_label_sets_of_all_namespaces_together() {
    let test = "max_series_bounds_the_label_sets_of_all_namespaces_together";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let directory = TempDir::new("namespace-series");
    let (netns, pattern) = namespace_directory(&directory);
    let remotes =
        |prefix: &'static str, count: u8| (1..=count).map(move |host| format!("{prefix}.{host}"));
    let pod_a = NamedNamespace::create(&netns.join("pod-a"));
    let pod_b = NamedNamespace::create(&netns.join("pod-b"));
    for (pod, prefix) in [(&pod_a, "192.0.2"), (&pod_b, "198.51.100")] {
        pod.run(|| {
            for remote in remotes(prefix, 6) {
                create_tcp("10.0.0.1", 30000, &remote, 443, TcpState::Established);
            }
        });
    }
    let exporter = watching(
        &directory,
        &pattern,
        "max_series = 8\nwatch_own_namespace = false\nresync_interval = \"0\"\n",
    );
    // Twelve label sets in two namespaces, eight places for both: four connections are
    // counted under "other", in the overflow set of whichever namespace they are in.
    let scrape = eventually("both namespaces' twelve connections are counted", || {
        let scrape = exporter.scrape();
        match summed(&scrape, "conntrack_open_connections_total") {
            12.0 => Ok(scrape),
            counted => Err(format!("{counted} counted:\n{}", scrape.text)),
        }
    });
    assert_eq!(
        summed(&scrape, "conntrack_exporter_series"),
        8.0,
        "{}",
        scrape.text
    );
    assert_eq!(
        summed(&scrape, "conntrack_exporter_overflow_connections"),
        4.0,
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.value("conntrack_exporter_series_limit", &[]),
        Some(8.0)
    );
    let placed_b = scrape
        .samples
        .iter()
        .filter(|sample| sample.name == "conntrack_open_connections_total")
        .filter(|sample| sample.labels.get("netns").map(String::as_str) == Some("pod-b"))
        .filter(|sample| sample.labels.get("host").map(String::as_str) != Some("other"))
        .count();

    // A namespace that goes away gives its places back: a new one gets its own sets for
    // as many hosts as the places left free.
    pod_a.delete();
    eventually("pod-a leaves the output", || {
        let left = samples_of(&exporter.scrape(), "pod-a");
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
    let pod_c = NamedNamespace::create(&netns.join("pod-c"));
    let free = 8 - placed_b;
    assert!(free >= 2, "pod-b holds {placed_b} places");
    pod_c.run(|| {
        for remote in remotes("203.0.113", 2) {
            create_tcp("10.0.0.1", 30000, &remote, 443, TcpState::Established);
        }
    });
    wait_until_namespace_matches(&exporter, "pod-c", Some(&pod_c));
    let scrape = exporter.scrape();
    assert_eq!(
        scrape.value(
            "conntrack_exporter_overflow_connections",
            &[("netns", "pod-c")]
        ),
        Some(0.0),
        "{}",
        scrape.text
    );
    assert_eq!(
        summed(&scrape, "conntrack_exporter_series"),
        (placed_b + 2) as f64,
        "{}",
        scrape.text
    );
}

#[test]
fn without_cap_sys_admin_the_start_fails_naming_it() {
    let test = "without_cap_sys_admin_the_start_fails_naming_it";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    if !testkit::require_tool(test, "setpriv", "util-linux") {
        return;
    }
    let directory = TempDir::new("namespace-privilege");
    let (netns, pattern) = namespace_directory(&directory);
    let _pod = NamedNamespace::create(&netns.join("pod"));
    let config = directory.write("config.toml", "watch_own_namespace = false\n");
    let line = single_error_line(
        Command::new("setpriv")
            .args([
                "--bounding-set",
                "-sys_admin",
                "--inh-caps",
                "-sys_admin",
                binary(),
            ])
            .arg("--config")
            .arg(&config)
            .args(["--namespaces", &pattern, "--listen-port", "0"]),
    );
    assert!(line.contains("needs CAP_SYS_ADMIN"), "{line}");
}
