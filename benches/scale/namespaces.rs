//! The namespaces phase: one exporter watching 100 network namespaces of 1,000 connections
//! each, against one exporter reading the same 100,000 connections in its own namespace
//! alone. Start-up time, resident memory, open files, CPU per event and idle CPU, each with
//! the single-namespace figure of the same run and the ratio to it. CPU is the collector
//! thread's, which reads every namespace: scrapes, which the harness makes to check the
//! numbers, run on other threads and are left out.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ctnetlink::ConntrackSocket;
use serde_json::{Value, json};
use testkit::{Exporter, HostCounts, NamedNamespace, SEED_FAMILIES, with_connections};

use crate::workload::{self, create, flush, kernel_counts};
use crate::{Harness, SETTLE_DEADLINE, value, wait_until_idle};

/// Namespaces watched.
const NAMESPACES: u32 = 100;
/// Connections in each, over as many remote hosts as [`HOSTS`].
const PER_NAMESPACE: u32 = 1_000;
/// Remote hosts per namespace.
const HOSTS: u32 = 100;
/// How long idle CPU is measured.
const IDLE: Duration = Duration::from_secs(10);

impl Harness<'_> {
    pub(crate) fn namespaces(&mut self) -> Value {
        let total = NAMESPACES * PER_NAMESPACE;
        flush(self.socket);
        create(self.socket, 5, total, HOSTS * NAMESPACES);
        let started = Instant::now();
        let exporter = self.start_exporter("resync_interval = \"0\"\n");
        let single_startup = started.elapsed();
        self.settle(&exporter).expect("exact in one namespace");
        let single = footprint(&exporter, single_startup);
        let single_burst = self.single_burst(&exporter, total);
        drop(exporter);
        flush(self.socket);

        let directory = self.dir.path().join("netns");
        std::fs::create_dir_all(&directory).expect("creating the namespace directory");
        let pods: Vec<NamedNamespace> = (0..NAMESPACES)
            .map(|index| NamedNamespace::create(&directory.join(format!("pod-{index:03}"))))
            .collect();
        for pod in &pods {
            pod.run(|| create(&mut open(), 5, PER_NAMESPACE, HOSTS));
        }
        let config = format!(
            "namespaces = [\"{}/*\"]\nwatch_own_namespace = false\nresync_interval = \"0\"\n\
             max_namespaces = {NAMESPACES}\n",
            directory.display()
        );
        let started = Instant::now();
        let exporter = self.start_exporter(&config);
        let startup = started.elapsed();
        let exact = settle_each(&exporter, &pods);
        let many = footprint(&exporter, startup);
        let scrape = exporter.scrape();
        let dumps: Vec<f64> = scrape
            .samples
            .iter()
            .filter(|sample| sample.name == "conntrack_exporter_resync_duration_seconds")
            .map(|sample| sample.value)
            .collect();
        let mean_dump = dumps.iter().sum::<f64>() / dumps.len().max(1) as f64;

        let events_before = scrape.sum("conntrack_exporter_events_total");
        let cpu_before = collector_cpu_ns(&exporter);
        for pod in &pods {
            pod.run(|| churn(&mut open(), 6, PER_NAMESPACE, HOSTS));
        }
        wait_until_idle(&exporter.process);
        let cpu = collector_cpu_ns(&exporter) - cpu_before;
        let burst_exact = settle_each(&exporter, &pods);
        let scrape = exporter.scrape();
        let events = scrape.sum("conntrack_exporter_events_total") - events_before;
        let per_event = cpu as f64 / events.max(1.0);
        let single_per_event = single_burst["cpu_ns_per_event"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let ratio = |key: &str| {
            many[key].as_f64().unwrap_or(f64::NAN) / single[key].as_f64().unwrap_or(f64::NAN)
        };
        json!({
            "workload": format!(
                "{NAMESPACES} namespaces x {PER_NAMESPACE} connections over {HOSTS} hosts each; \
                 reference: the same {total} connections in the exporter's own namespace"
            ),
            "namespaces_watched": value(&scrape, "conntrack_exporter_namespaces", &[("state", "watched")]),
            "exact_after_start": exact,
            "initial_dump_seconds_mean_per_namespace": mean_dump,
            "resync_share_of_a_core_at_60s_interval": mean_dump * f64::from(NAMESPACES) / 60.0,
            "namespaces": many,
            "one_namespace": single,
            "startup_vs_one_namespace": ratio("startup_seconds"),
            "rss_vs_one_namespace": ratio("rss_bytes"),
            "rss_bytes_per_namespace_over_one_namespace":
                (ratio("rss_bytes") - 1.0) * single["rss_bytes"].as_f64().unwrap_or(f64::NAN)
                    / f64::from(NAMESPACES),
            "open_files_per_namespace":
                (many["open_files"].as_f64().unwrap_or(f64::NAN)
                    - single["open_files"].as_f64().unwrap_or(f64::NAN))
                    / f64::from(NAMESPACES - 1),
            "burst": {
                "events_applied": events,
                "exact": burst_exact,
                "cpu_ns_per_event": per_event,
                "one_namespace": single_burst,
                "cpu_per_event_vs_one_namespace": per_event / single_per_event,
            },
        })
    }

    /// In the own namespace: the same events as the namespaces' burst, all at once.
    fn single_burst(&mut self, exporter: &Exporter, total: u32) -> Value {
        let events_before = exporter.scrape().sum("conntrack_exporter_events_total");
        let cpu_before = collector_cpu_ns(exporter);
        churn(self.socket, 6, total, HOSTS * NAMESPACES);
        wait_until_idle(&exporter.process);
        let cpu = collector_cpu_ns(exporter) - cpu_before;
        let exact = self.settle(exporter);
        let events = exporter.scrape().sum("conntrack_exporter_events_total") - events_before;
        json!({
            "events_applied": events,
            "exact": exact.is_some(),
            "cpu_ns_per_event": cpu as f64 / events.max(1.0),
        })
    }
}

/// A request socket in the calling thread's namespace.
fn open() -> ConntrackSocket {
    ConntrackSocket::open().expect("opening a ctnetlink socket")
}

/// Creates entries `0..count` of `round`, then deletes them: two events each.
fn churn(socket: &mut ConntrackSocket, round: u32, count: u32, hosts: u32) {
    create(socket, round, count, hosts);
    for index in 0..count {
        let entry = workload::entry(round, index, hosts);
        socket
            .delete(&entry.original, None)
            .unwrap_or_else(|error| panic!("deleting entry {index}: {error}"));
    }
}

/// Start-up time, memory, open files and idle CPU of a settled exporter.
fn footprint(exporter: &Exporter, startup: Duration) -> Value {
    let pid = exporter.process.pid();
    let open_files = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    let cpu_before = collector_cpu_ns(exporter);
    std::thread::sleep(IDLE);
    let idle_cpu = (collector_cpu_ns(exporter) - cpu_before) as f64 / IDLE.as_nanos() as f64;
    json!({
        "startup_seconds": startup.as_secs_f64(),
        "rss_bytes": exporter.process.rss_bytes(),
        "open_files": open_files,
        "idle_cpu_share_of_a_core": idle_cpu,
    })
}

/// CPU time of the exporter's collector thread, in nanoseconds.
fn collector_cpu_ns(exporter: &Exporter) -> u64 {
    let tasks = format!("/proc/{}/task", exporter.process.pid());
    std::fs::read_dir(tasks)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim() == "collector")
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Waits until every namespace's series equal its own table; says whether they did within
/// the deadline.
fn settle_each(exporter: &Exporter, pods: &[NamedNamespace]) -> bool {
    let expected: BTreeMap<String, HostCounts> = pods
        .iter()
        .map(|pod| {
            let name = pod
                .path()
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, pod.run(|| kernel_counts(&mut open())))
        })
        .collect();
    testkit::poll_until(Instant::now() + SETTLE_DEADLINE, || {
        let mut scraped: BTreeMap<String, HostCounts> = BTreeMap::new();
        for (labels, numbers) in exporter.scrape().label_set_counts(SEED_FAMILIES)? {
            let (Some(name), Some(host)) = (labels.get("netns"), labels.get("host")) else {
                continue;
            };
            let host: IpAddr = host.parse().map_err(|_| format!("host {host:?}"))?;
            let counts = scraped.entry(name.clone()).or_default();
            let sum = counts.entry(host).or_default();
            for (total, number) in sum.iter_mut().zip(numbers) {
                *total += number;
            }
        }
        let scraped: BTreeMap<String, HostCounts> = scraped
            .into_iter()
            .map(|(name, counts)| (name, with_connections(counts)))
            .filter(|(_, counts)| !counts.is_empty())
            .collect();
        match expected
            .iter()
            .find(|(name, counts)| scraped.get(*name) != Some(counts))
        {
            None if scraped.len() == expected.len() => Ok(()),
            None => Err(format!("{} namespaces on the page", scraped.len())),
            Some((name, counts)) => Err(format!(
                "{name}: kernel {}, exporter {}",
                testkit::show(counts),
                scraped.get(name).map(testkit::show).unwrap_or_default()
            )),
        }
    })
    .inspect_err(|reason| eprintln!("not exact: {reason}"))
    .is_ok()
}
