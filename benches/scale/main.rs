//! The scale and burst harness: runs the release exporter in a private network namespace,
//! drives the kernel's conntrack table with synthetic entries, and prints one JSON report.
//! Every figure comes with a reference measured in the same run (the floor reader,
//! `conntrack -E`, `conntrack -L`, or the same measurement at a smaller size) and the ratio
//! to it. See `benches/README.md`.
//!
//! Usage (as root, after `cargo build --release -p conntrack-exporter -p benches`):
//! `target/release/scale [--entries N] [--churn-seconds S]`

mod namespaces;
mod workload;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ctnetlink::ConntrackSocket;
use serde_json::{Value, json};

use testkit::{
    Exporter, ExporterCommand, Process, SEED_FAMILIES, Scrape, TempDir, with_connections,
};

use crate::workload::{create, flush, kernel_counts};

/// The queue size the exporter uses by default, given to the floor reader too.
const DEFAULT_QUEUE: usize = 32 << 20;
/// How long the numbers may take to settle after a workload.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);
/// How long the exporter may take to answer after it starts (with a large table in place).
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// Scrapes timed per table size.
const SCRAPES: usize = 200;

struct Options {
    exporter: PathBuf,
    floor_reader: PathBuf,
    entries: u32,
    scale_entries: u32,
    churn_seconds: u64,
    phases: Vec<String>,
}

impl Options {
    fn parse() -> Options {
        let dir = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_owned))
            .unwrap_or_default();
        let mut options = Options {
            exporter: dir.join("conntrack_exporter"),
            floor_reader: dir.join("floor_reader"),
            entries: 100_000,
            scale_entries: 250_000,
            churn_seconds: 60,
            phases: ["burst", "scale", "churn", "namespaces"]
                .map(String::from)
                .to_vec(),
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        for pair in args.chunks(2) {
            let value = pair.get(1).map(String::as_str).unwrap_or_default();
            match pair[0].as_str() {
                "--exporter" => options.exporter = value.into(),
                "--entries" => options.entries = value.parse().expect("--entries N"),
                "--scale-entries" => {
                    options.scale_entries = value.parse().expect("--scale-entries N")
                }
                "--churn-seconds" => {
                    options.churn_seconds = value.parse().expect("--churn-seconds S")
                }
                "--phases" => options.phases = value.split(',').map(str::to_owned).collect(),
                other => panic!(
                    "unknown option {other}; known: --exporter PATH, --entries N, \
                     --scale-entries N, --churn-seconds S, --phases burst,scale,churn,namespaces"
                ),
            }
        }
        options
    }
}

fn main() {
    let options = Options::parse();
    let Some(_namespace) = testkit::enter("the scale harness") else {
        panic!("the scale harness needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)");
    };
    let dir = TempDir::new("scale");
    let mut socket = ConntrackSocket::open().expect("opening a ctnetlink socket");
    let mut harness = Harness {
        options: &options,
        dir: &dir,
        socket: &mut socket,
        next_port: 19318,
    };

    let mut report = serde_json::Map::new();
    report.insert(
        "machine".into(),
        json!({ "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()) }),
    );
    for phase in &options.phases {
        let result = match phase.as_str() {
            "burst" => harness.bursts(),
            "scale" => harness.scale(),
            "churn" => harness.churn(),
            "namespaces" => harness.namespaces(),
            other => panic!("unknown phase {other}; known: burst, scale, churn, namespaces"),
        };
        report.insert(phase.clone(), result);
    }
    let report = serde_json::to_string_pretty(&Value::Object(report)).unwrap_or_default();
    println!("{report}");
}

struct Harness<'a> {
    options: &'a Options,
    dir: &'a TempDir,
    socket: &'a mut ConntrackSocket,
    next_port: u16,
}

impl Harness<'_> {
    /// The burst against the exporter, the floor reader and `conntrack -E`, and against the
    /// exporter again with a queue too small for it.
    fn bursts(&mut self) -> Value {
        let exporter = self.burst_exporter("", "default settings");
        let floor = self.burst_floor_reader();
        let conntrack_events = self.burst_conntrack_tool();
        let small_queue = self.burst_exporter(
            "netlink_buffer_bytes = 262144\nnetlink_buffer_max_bytes = 262144\n\
             resync_interval = \"0\"\n",
            "a 256 KiB queue that may not grow: events are lost, the resync repairs",
        );
        let per_event = |run: &Value| run["cpu_ns_per_event"].as_f64().unwrap_or(f64::NAN);
        json!({
            "workload": format!(
                "create {n}, flush, create {n} other entries over 1000 hosts",
                n = self.options.entries
            ),
            "exporter_cpu_per_event_vs_floor_reader": per_event(&exporter) / per_event(&floor),
            "exporter": exporter,
            "floor_reader": floor,
            "conntrack_tool_events": conntrack_events,
            "exporter_small_queue": small_queue,
        })
    }

    fn start_exporter(&mut self, config: &str) -> Exporter {
        self.next_port += 1;
        let port = self.next_port;
        let config = self.dir.write(&format!("exporter-{port}.toml"), config);
        ExporterCommand::new(&self.options.exporter)
            .port(port)
            .arg("--config")
            .arg(config)
            .args(["--bind-address", "127.0.0.1"])
            .track_own_port()
            .ready_within(STARTUP_DEADLINE)
            .start()
    }

    /// Creates `entries`, flushes, creates `entries` others: 3 × `entries` events.
    fn run_burst(&mut self) -> Value {
        let entries = self.options.entries;
        let first = create(self.socket, 0, entries, 1000);
        let flushed = flush(self.socket);
        let second = create(self.socket, 1, entries, 1000);
        json!({
            "creates_per_second": f64::from(entries) / first.as_secs_f64(),
            "creates_per_second_second_round": f64::from(entries) / second.as_secs_f64(),
            "flush_seconds": flushed.as_secs_f64(),
            "events_generated": 3 * u64::from(entries),
        })
    }

    /// The burst against the exporter started with `config`.
    fn burst_exporter(&mut self, config: &str, settings: &str) -> Value {
        flush(self.socket);
        let exporter = self.start_exporter(config);
        let events_before = exporter.scrape().sum("conntrack_exporter_events_total");
        let cpu_before = exporter.process.cpu_ns();
        let workload = self.run_burst();
        let settled = self.settle(&exporter);
        let cpu = exporter.process.cpu_ns() - cpu_before;
        let scrape = exporter.scrape();
        let events = scrape.sum("conntrack_exporter_events_total") - events_before;
        json!({
            "settings": settings,
            "workload": workload,
            "events_applied": events,
            "events_lost_overruns": value(&scrape, "conntrack_exporter_events_lost_total", &[]),
            "resyncs_after_loss": value(&scrape, "conntrack_exporter_resyncs_total", &[("reason", "events_lost")]),
            "resync_corrected_entries_total": value(&scrape, "conntrack_exporter_resync_corrected_entries_total", &[]),
            "receive_queue_bytes": value(&scrape, "conntrack_exporter_netlink_receive_queue_bytes", &[]),
            "exact": settled.is_some(),
            "seconds_to_exact_after_workload": settled.map(|d| d.as_secs_f64()),
            "cpu_seconds": cpu as f64 / 1e9,
            "cpu_ns_per_event": cpu as f64 / events.max(1.0),
        })
    }

    /// Waits until the exporter's per-host numbers equal the kernel's table; `None` if
    /// they do not within the deadline.
    fn settle(&mut self, exporter: &Exporter) -> Option<Duration> {
        let started = Instant::now();
        let socket = &mut *self.socket;
        testkit::poll_until(started + SETTLE_DEADLINE, || {
            // Hosts whose connections are all gone stay on the page with zeros for a while.
            let scraped = with_connections(exporter.scrape().host_counts(SEED_FAMILIES)?);
            if scraped == kernel_counts(socket) {
                Ok(started.elapsed())
            } else {
                Err("not yet".into())
            }
        })
        .ok()
    }

    /// The same burst with only the floor reader listening.
    fn burst_floor_reader(&mut self) -> Value {
        flush(self.socket);
        let reader = Process::spawn(
            Command::new(&self.options.floor_reader)
                .arg(DEFAULT_QUEUE.to_string())
                .stdout(Stdio::piped()),
        );
        std::thread::sleep(Duration::from_millis(200));
        let cpu_before = reader.cpu_ns();
        let workload = self.run_burst();
        wait_until_idle(&reader);
        let cpu = reader.cpu_ns() - cpu_before;
        let output: Value = serde_json::from_str(&reader.terminate()).unwrap_or(Value::Null);
        let events = output["events"].as_f64().unwrap_or(0.0);
        json!({
            "queue_bytes": DEFAULT_QUEUE,
            "workload": workload,
            "events_received": events,
            "overruns": output["overruns"],
            "cpu_seconds": cpu as f64 / 1e9,
            "cpu_ns_per_event": cpu as f64 / events.max(1.0),
        })
    }

    /// The same burst with `conntrack -E` and a 64 MiB buffer listening.
    fn burst_conntrack_tool(&mut self) -> Value {
        flush(self.socket);
        let mut tool = Process::spawn(
            Command::new("conntrack")
                .args(["-E", "-b", &(64u32 << 20).to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let lines = Arc::new(AtomicU64::new(0));
        let stdout = tool.take_stdout();
        let counter = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for _ in BufReader::new(stdout).lines() {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        let cpu_before = tool.cpu_ns();
        let workload = self.run_burst();
        wait_until_idle(&tool);
        let cpu = tool.cpu_ns() - cpu_before;
        drop(tool);
        let _ = reader.join();
        let received = lines.load(Ordering::Relaxed) as f64;
        let generated = workload["events_generated"].as_f64().unwrap_or(0.0);
        json!({
            "command": "conntrack -E -b 67108864",
            "workload": workload,
            "events_printed": received,
            "events_lost": generated - received,
            "cpu_ns_per_event": cpu as f64 / received.max(1.0),
        })
    }

    /// Scrape cost by table size and host count, memory per connection, start-up dump and
    /// resync times.
    fn scale(&mut self) -> Value {
        let big = self.options.scale_entries;
        flush(self.socket);
        let exporter = self.start_exporter("resync_interval = \"0\"\n");
        let rss_empty = exporter.process.rss_bytes();
        create(self.socket, 2, 1000, 1000);
        self.settle(&exporter).expect("exact at 1k connections");
        let small = scrape_times(&exporter);
        create_range(self.socket, 2, 1000, big, 1000);
        self.settle(&exporter).expect("exact at the large table");
        let large = scrape_times(&exporter);
        let rss_full = exporter.process.rss_bytes();
        drop(exporter);

        flush(self.socket);
        let exporter = self.start_exporter("resync_interval = \"0\"\n");
        create(self.socket, 3, big, 10_000);
        self.settle(&exporter).expect("exact with 10k hosts");
        let many_hosts = scrape_times(&exporter);
        drop(exporter);

        // Start-up and resync with the large table in place, and scrapes during resyncs.
        let listed = Instant::now();
        let status = Command::new("conntrack")
            .args(["-L", "-p", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let conntrack_list = listed.elapsed().as_secs_f64();
        assert!(status.is_ok_and(|s| s.success()), "conntrack -L failed");
        // The kernel's own cost of a dump: a reader that decodes nothing.
        let dumped = Instant::now();
        self.socket
            .dump(None, |_| {})
            .expect("dumping the large table");
        let kernel_dump = dumped.elapsed().as_secs_f64();
        let exporter = self.start_exporter("resync_interval = \"1s\"\n");
        let startup_dump = value(
            &exporter.scrape(),
            "conntrack_exporter_resync_duration_seconds",
            &[],
        );
        let mut slowest = Duration::ZERO;
        let started = Instant::now();
        while value(
            &exporter.scrape(),
            "conntrack_exporter_resyncs_total",
            &[("reason", "periodic")],
        ) < 3.0
            && started.elapsed() < Duration::from_secs(30)
        {
            slowest = slowest.max(exporter.time_scrape());
        }
        let resync = value(
            &exporter.scrape(),
            "conntrack_exporter_resync_duration_seconds",
            &[],
        );
        let p50_10k = many_hosts["p50_ms"].as_f64().unwrap_or(f64::NAN);

        json!({
            "scrape_1000_hosts_1k_connections": small,
            "scrape_1000_hosts_large_table": large,
            "scrape_10000_hosts_large_table": many_hosts,
            "large_table_connections": big,
            "scrape_p50_large_vs_small_table": large["p50_ms"].as_f64().unwrap_or(f64::NAN)
                / small["p50_ms"].as_f64().unwrap_or(f64::NAN),
            "rss_empty_bytes": rss_empty,
            "rss_large_table_bytes": rss_full,
            "rss_bytes_per_connection": (rss_full.saturating_sub(rss_empty)) as f64 / f64::from(big),
            "startup_dump_seconds": startup_dump,
            "resync_seconds": resync,
            "conntrack_list_seconds": conntrack_list,
            "startup_dump_vs_conntrack_list": startup_dump / conntrack_list,
            "dump_without_decoding_seconds": kernel_dump,
            "startup_dump_vs_dump_without_decoding": startup_dump / kernel_dump,
            "slowest_scrape_during_resyncs_ms": slowest.as_secs_f64() * 1e3,
            "slowest_scrape_during_resyncs_vs_p50_10000_hosts": slowest.as_secs_f64() * 1e3 / p50_10k,
        })
    }

    /// Entries deleted and created again as fast as one client can for the configured time,
    /// with the exporter's resident memory sampled every 5 seconds.
    fn churn(&mut self) -> Value {
        const LIVE: u32 = 50_000;
        flush(self.socket);
        let exporter = self.start_exporter("");
        create(self.socket, 4, LIVE, 1000);
        let mut samples = Vec::new();
        let started = Instant::now();
        let mut next_sample = started;
        let mut operations = 0u64;
        let mut index = 0;
        let mut round = 4;
        while started.elapsed() < Duration::from_secs(self.options.churn_seconds) {
            if Instant::now() >= next_sample {
                // Scraped as Prometheus would, so that the metrics registry is part of what
                // is measured.
                exporter.scrape();
                samples.push(exporter.process.rss_bytes());
                next_sample += Duration::from_secs(5);
            }
            let old = workload::entry(round, index, 1000);
            self.socket
                .delete(&old.original, None)
                .expect("deleting during churn");
            self.socket
                .create(&workload::entry(round + 1, index, 1000))
                .expect("creating during churn");
            operations += 2;
            index += 1;
            if index == LIVE {
                index = 0;
                round += 1;
            }
        }
        let exact = self.settle(&exporter).is_some();
        samples.push(exporter.process.rss_bytes());
        let first = samples.get(1).copied().unwrap_or_default();
        json!({
            "seconds": self.options.churn_seconds,
            "live_connections": LIVE,
            "events": operations,
            "events_per_second": operations as f64 / started.elapsed().as_secs_f64(),
            "rss_samples_bytes": samples,
            "rss_last_vs_first_sample_after_warmup": *samples.last().unwrap_or(&0) as f64 / first as f64,
            "exact_afterwards": exact,
            "events_lost_overruns": value(&exporter.scrape(), "conntrack_exporter_events_lost_total", &[]),
        })
    }
}

/// Creates entries `from..to` of `round`.
fn create_range(socket: &mut ConntrackSocket, round: u32, from: u32, to: u32, hosts: u32) {
    for index in from..to {
        socket
            .create(&workload::entry(round, index, hosts))
            .unwrap_or_else(|error| panic!("creating entry {index}: {error}"));
    }
}

/// A sample's value; 0 when absent (a counter not yet incremented may be absent).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape.value(name, labels).unwrap_or(0.0)
}

/// p50 and p99 of [`SCRAPES`] scrapes, in milliseconds.
fn scrape_times(exporter: &Exporter) -> Value {
    let mut times: Vec<f64> = (0..SCRAPES)
        .map(|_| exporter.time_scrape().as_secs_f64() * 1e3)
        .collect();
    times.sort_by(f64::total_cmp);
    let at = |quantile: f64| times[((times.len() - 1) as f64 * quantile).round() as usize];
    json!({ "p50_ms": at(0.5), "p99_ms": at(0.99), "scrapes": SCRAPES })
}

/// Waits until `process` has used no CPU for half a second: it has read everything.
fn wait_until_idle(process: &Process) {
    let mut last = process.cpu_ns();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = process.cpu_ns();
        if now - last < 5_000_000 {
            return;
        }
        last = now;
    }
}
