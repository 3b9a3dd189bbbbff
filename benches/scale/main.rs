//! The scale and burst harness: runs the release exporter in a private network namespace,
//! drives the kernel's conntrack table with synthetic entries, and prints one JSON report.
//! Every figure comes with a reference measured in the same run (the floor reader,
//! `conntrack -E`, `conntrack -L`, or the same measurement at a smaller size) and the ratio
//! to it. See `benches/README.md`.
//!
//! Usage (as root, after `cargo build --release -p conntrack-exporter -p benches`):
//! `target/release/scale [--entries N] [--churn-seconds S] [--phases burst,scale,...]`

mod dump_rounds;
mod kernel_limits;
mod namespaces;
mod workload;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ctnetlink::{ConntrackSocket, DecoderPriority};
use serde_json::{Value, json};

use testkit::{
    Exporter, ExporterCommand, Process, SEED_FAMILIES, Scrape, TempDir, peak_rss_bytes,
    with_connections,
};

use crate::kernel_limits::TableLimit;
use crate::workload::{create, create_made, delete, flush, kernel_counts, mixed_entry};

/// The queue size the exporter uses by default, given to the floor reader too.
const DEFAULT_QUEUE: usize = 32 << 20;
/// How long the numbers may take to settle after a workload.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);
/// How long the exporter may take to answer after it starts (with a large table in place).
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// Scrapes timed per table size.
const SCRAPES: usize = 200;
/// Scrapes timed in the million phase (each renders 10,000 hosts).
const MILLION_SCRAPES: usize = 50;
/// Remote hosts of the million phase.
const MILLION_HOSTS: u32 = 10_000;
/// Workload rounds of the million phase: the table, its replacement in the churn, and the
/// two halves of the burst on top of it. Entries of one round span 16 source networks at a
/// million entries (see [`workload::entry`]), so these rounds are 4 apart.
const MILLION_ROUND: u32 = 10;
const MILLION_CHURN_ROUND: u32 = 14;
const LIVE_BURST_ROUNDS: (u32, u32) = (18, 19);

struct Options {
    exporter: PathBuf,
    floor_reader: PathBuf,
    entries: u32,
    scale_entries: u32,
    million_entries: u32,
    dump_rounds: u32,
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
            million_entries: 1_000_000,
            dump_rounds: 9,
            churn_seconds: 60,
            phases: ["burst", "scale", "churn", "cardinality", "namespaces"]
                .map(String::from)
                .into(),
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
                "--million-entries" => {
                    options.million_entries = value.parse().expect("--million-entries N")
                }
                "--dump-rounds" => options.dump_rounds = value.parse().expect("--dump-rounds N"),
                "--churn-seconds" => {
                    options.churn_seconds = value.parse().expect("--churn-seconds S")
                }
                "--phases" => options.phases = value.split(',').map(str::to_owned).collect(),
                other => panic!(
                    "unknown option {other}; known: --exporter PATH, --entries N, \
                     --scale-entries N, --million-entries N, --dump-rounds N, --churn-seconds S, \
                     --phases burst,scale,churn,cardinality,namespaces,million,mixed"
                ),
            }
        }
        options
    }
}

fn main() {
    let options = Options::parse();
    // The table's limit is global on recent kernels (read-only inside a network
    // namespace): it is raised before entering one, and restored when the harness ends.
    let _limit = options
        .phases
        .iter()
        .any(|phase| phase == "million")
        .then(|| {
            let needed = options.million_entries + options.entries;
            TableLimit::raise(needed + needed / 8).expect("raising the conntrack table's limit")
        });
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
        failures: Vec::new(),
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
            "cardinality" => harness.cardinality(),
            "namespaces" => harness.namespaces(),
            "million" => harness.million(),
            "mixed" => harness.mixed(),
            other => panic!(
                "unknown phase {other}; known: burst, scale, churn, cardinality, namespaces, \
                 million, mixed"
            ),
        };
        report.insert(phase.clone(), result);
    }
    let report = serde_json::to_string_pretty(&Value::Object(report)).unwrap_or_default();
    println!("{report}");
    assert!(
        harness.failures.is_empty(),
        "the harness's checks failed: {:?}",
        harness.failures
    );
}

struct Harness<'a> {
    options: &'a Options,
    dir: &'a TempDir,
    socket: &'a mut ConntrackSocket,
    next_port: u16,
    /// Checks that failed; reported after the JSON report, which is printed whole first.
    failures: Vec<String>,
}

impl Harness<'_> {
    /// The burst against the exporter, the floor reader and `conntrack -E`, and against the
    /// exporter again with a queue too small for it.
    fn bursts(&mut self) -> Value {
        let exporter = self.burst_exporter("", "default settings", Self::run_burst);
        let floor = self.burst_floor_reader(Self::run_burst);
        let conntrack_events = self.burst_conntrack_tool();
        let small_queue = self.burst_exporter(
            "netlink_buffer_bytes = 262144\nnetlink_buffer_max_bytes = 262144\n\
             resync_interval = \"0\"\n",
            "a 256 KiB queue that may not grow: events are lost, the resync repairs",
            Self::run_burst,
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
        let config = self.write_config(port, config);
        ExporterCommand::new(&self.options.exporter)
            .port(port)
            .arg("--config")
            .arg(config)
            .args(["--bind-address", "127.0.0.1"])
            .track_own_port()
            .ready_within(STARTUP_DEADLINE)
            .start()
    }

    /// Writes the config file of the exporter on `port`, at start or for a reload.
    fn write_config(&self, port: u16, config: &str) -> PathBuf {
        self.dir.write(&format!("exporter-{port}.toml"), config)
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

    /// The burst against the exporter started with `config`, on an empty table.
    fn burst_exporter(
        &mut self,
        config: &str,
        settings: &str,
        burst: fn(&mut Self) -> Value,
    ) -> Value {
        flush(self.socket);
        let exporter = self.start_exporter(config);
        self.burst_against(&exporter, settings, burst)
    }

    /// `burst` against a running exporter: its CPU time per event, overruns, and whether its
    /// numbers settle on the kernel's.
    fn burst_against(
        &mut self,
        exporter: &Exporter,
        settings: &str,
        burst: fn(&mut Self) -> Value,
    ) -> Value {
        let before = exporter.scrape();
        let events_before = before.sum("conntrack_exporter_events_total");
        let lost_before = value(&before, "conntrack_exporter_events_lost_total", &[]);
        let cpu_before = exporter.process.cpu_ns();
        let workload = burst(self);
        // Read before the checks' own scrapes, which cost one render each.
        wait_until_idle(&exporter.process);
        let cpu = exporter.process.cpu_ns() - cpu_before;
        let settled = self.settle(exporter);
        let scrape = exporter.scrape();
        let events = scrape.sum("conntrack_exporter_events_total") - events_before;
        json!({
            "settings": settings,
            "workload": workload,
            "events_applied": events,
            "events_lost_overruns": value(&scrape, "conntrack_exporter_events_lost_total", &[]) - lost_before,
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

    /// The burst with only the floor reader listening, on an empty table.
    fn burst_floor_reader(&mut self, burst: fn(&mut Self) -> Value) -> Value {
        flush(self.socket);
        self.floor_reader_against(burst)
    }

    /// `burst` with only the floor reader listening, on the table as it is.
    fn floor_reader_against(&mut self, burst: fn(&mut Self) -> Value) -> Value {
        let reader = Process::spawn(
            Command::new(&self.options.floor_reader)
                .arg(DEFAULT_QUEUE.to_string())
                .stdout(Stdio::piped()),
        );
        std::thread::sleep(Duration::from_millis(200));
        let cpu_before = reader.cpu_ns();
        let workload = burst(self);
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
        let small = scrape_times(&exporter, SCRAPES);
        create_range(self.socket, 2, 1000, big, 1000);
        self.settle(&exporter).expect("exact at the large table");
        let large = scrape_times(&exporter, SCRAPES);
        let rss_full = exporter.process.rss_bytes();
        drop(exporter);

        flush(self.socket);
        let exporter = self.start_exporter("resync_interval = \"0\"\n");
        create(self.socket, 3, big, 10_000);
        self.settle(&exporter).expect("exact with 10k hosts");
        let many_hosts = scrape_times(&exporter, SCRAPES);
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
        let dumps = self.dump_rounds();

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
            "conntrack_list_seconds": conntrack_list,
            "dumps": dumps,
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

    /// A million connections over 10,000 hosts (`--million-entries`): exactness after the
    /// load and after a churn of the whole table, memory per connection and over the churn,
    /// a burst on top of the full table against the floor reader, the start-up dump and
    /// resyncs against a dump that decodes nothing, and scrapes during back-to-back resyncs.
    fn million(&mut self) -> Value {
        let count = self.options.million_entries;
        flush(self.socket);
        let exporter = self.start_exporter("resync_interval = \"0\"\n");
        let rss_empty = exporter.process.rss_bytes();
        // One connection per host first: what the hosts cost (their aggregates, series and
        // pages) is then apart from what each further connection costs.
        let started = Instant::now();
        create_range(self.socket, MILLION_ROUND, 0, MILLION_HOSTS, MILLION_HOSTS);
        let exact_per_host = self.settle(&exporter).is_some();
        self.check(exact_per_host, "exact with one connection per host");
        let rss_hosts = exporter.process.rss_bytes();
        create_range(
            self.socket,
            MILLION_ROUND,
            MILLION_HOSTS,
            count,
            MILLION_HOSTS,
        );
        let load = started.elapsed();
        let exact_after_load = self.settle(&exporter);
        self.check(exact_after_load.is_some(), "exact after loading the table");
        let rss_loaded = exporter.process.rss_bytes();
        let scrapes = scrape_times(&exporter, MILLION_SCRAPES);
        let burst = self.burst_against(&exporter, "default settings", Self::run_live_burst);
        self.check(
            burst["exact"] == true,
            "exact after the burst on the full table",
        );

        // Every connection replaced by another one, scraped and sampled every 5 seconds.
        let mut samples = Vec::new();
        let churn_started = Instant::now();
        let mut next_sample = churn_started;
        for index in 0..count {
            if Instant::now() >= next_sample {
                exporter.scrape();
                samples.push(exporter.process.rss_bytes());
                next_sample += Duration::from_secs(5);
            }
            let old = workload::entry(MILLION_ROUND, index, MILLION_HOSTS);
            self.socket
                .delete(&old.original, None)
                .expect("deleting during the churn");
            self.socket
                .create(&workload::entry(MILLION_CHURN_ROUND, index, MILLION_HOSTS))
                .expect("creating during the churn");
        }
        let churn_seconds = churn_started.elapsed().as_secs_f64();
        let exact_after_churn = self.settle(&exporter);
        self.check(exact_after_churn.is_some(), "exact after the churn");
        samples.push(exporter.process.rss_bytes());
        let churn_scrape = exporter.scrape();
        let churn_lost = value(&churn_scrape, "conntrack_exporter_events_lost_total", &[]);
        drop(exporter);

        let floor = self.floor_reader_against(Self::run_live_burst);

        let dumps = self.dump_rounds();
        let kernel_dump = self.dump_without_decoding();
        // Decoding alone, without the exporter's apply: on the receiving thread, and on a
        // second one while the first receives.
        let decoded = Instant::now();
        self.socket.dump(None, |_| {}).expect("dumping the table");
        let decoded = decoded.elapsed().as_secs_f64();
        let overlapped = Instant::now();
        self.socket
            .dump_overlapped(None, DecoderPriority::Caller, |_| {})
            .expect("dumping the table");
        let overlapped = overlapped.elapsed().as_secs_f64();
        flush(self.socket);

        let per_connection = |rss: u64| rss.saturating_sub(rss_empty) as f64 / f64::from(count);
        let first = samples.get(1).copied().unwrap_or_default();
        let last = samples.last().copied().unwrap_or_default();
        let cpu_per_event = |run: &Value| run["cpu_ns_per_event"].as_f64().unwrap_or(f64::NAN);
        json!({
            "connections": count,
            "hosts": MILLION_HOSTS,
            "creates_per_second": f64::from(count) / load.as_secs_f64(),
            "exact_after_load": exact_after_load.is_some(),
            "seconds_to_exact_after_load": exact_after_load.map(|d| d.as_secs_f64()),
            "rss_empty_bytes": rss_empty,
            "rss_one_connection_per_host_bytes": rss_hosts,
            "rss_loaded_bytes": rss_loaded,
            "rss_bytes_per_connection": per_connection(rss_loaded),
            "rss_bytes_per_further_connection": rss_loaded.saturating_sub(rss_hosts) as f64
                / f64::from(count - MILLION_HOSTS),
            "rss_bytes_per_connection_target": 64,
            "rss_bytes_per_connection_after_startup_dump":
                dumps["rss_after_startup_dump_bytes"].as_u64().map(per_connection),
            "scrape": scrapes,
            "burst_on_full_table": {
                "exporter": burst,
                "floor_reader": floor,
                "exporter_cpu_per_event_vs_floor_reader": cpu_per_event(&burst) / cpu_per_event(&floor),
                "target": 1.0,
            },
            "churn": {
                "replaced_connections": count,
                "events": 2 * u64::from(count),
                "seconds": churn_seconds,
                "events_per_second": 2.0 * f64::from(count) / churn_seconds,
                "events_lost_overruns": churn_lost,
                "exact_afterwards": exact_after_churn.is_some(),
                "rss_samples_bytes": samples,
                "rss_last_vs_first_sample_after_warmup": last as f64 / first as f64,
                "target": 1.05,
            },
            "dumps": dumps,
            "dump_without_decoding_seconds": kernel_dump,
            "dump_decoding_on_the_receiving_thread_seconds": decoded,
            "dump_decoding_on_a_second_thread_seconds": overlapped,
        })
    }

    /// The burst with ten UDP entries for each TCP one, against the exporter with the
    /// kernel's event filter (the default) and without, at the default queue and at a
    /// queue too small for the burst: CPU time per counted (TCP) event and overruns.
    fn mixed(&mut self) -> Value {
        let small_queue = "netlink_buffer_bytes = 1048576\nnetlink_buffer_max_bytes = 1048576\n";
        let unfiltered = "kernel_event_filter = false\n";
        let runs = [
            (
                "filtered",
                String::new(),
                "default settings: the kernel drops UDP events",
            ),
            ("unfiltered", unfiltered.to_owned(), "every event read"),
            (
                "filtered_small_queue",
                small_queue.to_owned(),
                "a 1 MiB queue that may not grow, the kernel drops UDP events",
            ),
            (
                "unfiltered_small_queue",
                format!("{small_queue}{unfiltered}"),
                "a 1 MiB queue that may not grow, every event read",
            ),
        ];
        let mut report = serde_json::Map::new();
        let counted = 3 * u64::from(self.options.entries.div_ceil(11));
        for (name, config, settings) in runs {
            let mut run = self.burst_exporter(&config, settings, Self::run_mixed_burst);
            let cpu = run["cpu_seconds"].as_f64().unwrap_or(f64::NAN);
            run["cpu_ns_per_counted_event"] = json!(cpu * 1e9 / counted as f64);
            self.check(run["exact"] == true, &format!("mixed burst {name}: exact"));
            report.insert(name.to_owned(), run);
        }
        flush(self.socket);
        let per_counted = |name: &str| {
            report[name]["cpu_ns_per_counted_event"]
                .as_f64()
                .unwrap_or(f64::NAN)
        };
        let ratio = per_counted("filtered") / per_counted("unfiltered");
        report.insert("counted_events".into(), json!(counted));
        report.insert(
            "cpu_per_counted_event_filtered_vs_unfiltered".into(),
            json!(ratio),
        );
        Value::Object(report)
    }

    /// [`Harness::run_burst`] with ten UDP entries for each TCP one.
    fn run_mixed_burst(&mut self) -> Value {
        let entries = self.options.entries;
        let first = create_made(self.socket, mixed_entry, 0, entries, 1000);
        let flushed = flush(self.socket);
        let second = create_made(self.socket, mixed_entry, 1, entries, 1000);
        json!({
            "creates_per_second": f64::from(entries) / first.as_secs_f64(),
            "creates_per_second_second_round": f64::from(entries) / second.as_secs_f64(),
            "flush_seconds": flushed.as_secs_f64(),
            "events_generated": 3 * u64::from(entries),
            "tcp_entries_per_round": entries.div_ceil(11),
        })
    }

    /// A burst on top of the table as it is, which stays in place: creates
    /// `--entries` entries over 1,000 hosts, deletes them one by one, creates as many
    /// others (3 × `--entries` events); the last ones are deleted again afterwards, outside
    /// the measurement.
    fn run_live_burst(&mut self) -> Value {
        let entries = self.options.entries;
        let (first_round, second_round) = LIVE_BURST_ROUNDS;
        let first = create(self.socket, first_round, entries, 1000);
        let deleted = delete(self.socket, first_round, entries, 1000);
        let second = create(self.socket, second_round, entries, 1000);
        let workload = json!({
            "creates_per_second": f64::from(entries) / first.as_secs_f64(),
            "deletes_per_second": f64::from(entries) / deleted.as_secs_f64(),
            "creates_per_second_second_round": f64::from(entries) / second.as_secs_f64(),
            "events_generated": 3 * u64::from(entries),
        });
        delete(self.socket, second_round, entries, 1000);
        workload
    }

    /// Seconds a dump of the whole table takes when the reader decodes nothing: the
    /// kernel's own cost.
    fn dump_without_decoding(&mut self) -> f64 {
        let started = Instant::now();
        self.socket.dump_undecoded(None).expect("dumping the table");
        started.elapsed().as_secs_f64()
    }

    /// Records a failed check; the run goes on so that every figure is reported.
    fn check(&mut self, passed: bool, what: &str) {
        if !passed {
            eprintln!("scale: check failed: {what}");
            self.failures.push(what.to_owned());
        }
    }
}

impl Harness<'_> {
    /// As many distinct remote addresses as the large table has connections (a scan, or SYNs
    /// from spoofed sources), under the default `max_series`, next to a fifth of them with no
    /// bound: unbounded, the full size makes pages that take longer to render than a scrape
    /// here waits (see `benches/README.md` for its figures).
    fn cardinality(&mut self) -> Value {
        let addresses = self.options.scale_entries;
        let bounded = self.distinct_addresses("resync_interval = \"0\"\n", addresses, SCRAPES);
        let unbounded = self.distinct_addresses(
            "resync_interval = \"0\"\nmax_series = 0\n",
            addresses / 5,
            20,
        );
        let ratio = |key: &str| {
            bounded[key].as_f64().unwrap_or(f64::NAN) / unbounded[key].as_f64().unwrap_or(f64::NAN)
        };
        let p50 = |run: &Value| run["scrape"]["p50_ms"].as_f64().unwrap_or(f64::NAN);
        json!({
            "distinct_remote_addresses": addresses,
            "distinct_remote_addresses_without_bound": addresses / 5,
            "default_bound": bounded,
            "no_bound": unbounded,
            "samples_bounded_vs_unbounded": ratio("samples"),
            "page_bytes_bounded_vs_unbounded": ratio("page_bytes"),
            "rss_growth_bounded_vs_unbounded": ratio("rss_growth_bytes"),
            "scrape_p50_bounded_vs_unbounded": p50(&bounded) / p50(&unbounded),
        })
    }

    /// One exporter started with `config`, facing `addresses` connections to as many
    /// distinct remote addresses; `scrapes` scrapes timed once its numbers add up to the
    /// kernel's table.
    fn distinct_addresses(&mut self, config: &str, addresses: u32, scrapes: usize) -> Value {
        flush(self.socket);
        let exporter = self.start_exporter(config);
        let rss_empty = exporter.process.rss_bytes();
        create(self.socket, 5, addresses, addresses);
        // The sum over every label set, `other` included, is what must equal the table.
        let socket = &mut *self.socket;
        let exact = testkit::poll_until(Instant::now() + SETTLE_DEADLINE, || {
            let sets = exporter.scrape().label_set_counts(SEED_FAMILIES)?;
            let sum: u64 = sets.values().flatten().sum();
            let kernel: u64 = kernel_counts(socket).values().flatten().sum();
            if sum == kernel {
                Ok(())
            } else {
                Err(format!("{sum} of {kernel}"))
            }
        });
        let text = exporter.metrics_text();
        let samples = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .count();
        let scrape = Scrape::parse(&text).expect("parsing the page");
        let timed = scrape_times(&exporter, scrapes);
        let rss = exporter.process.rss_bytes();
        json!({
            "config": config,
            "exact": exact.is_ok(),
            "series_gauge": value(&scrape, "conntrack_exporter_series", &[]),
            "overflow_connections": value(&scrape, "conntrack_exporter_overflow_connections", &[]),
            "samples": samples,
            "page_bytes": text.len(),
            "scrape": timed,
            "rss_empty_bytes": rss_empty,
            "rss_bytes": rss,
            "rss_growth_bytes": rss.saturating_sub(rss_empty),
            "peak_rss_bytes": peak_rss_bytes(exporter.process.pid()).unwrap_or_default(),
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

/// p50 and p99 of `scrapes` scrapes, in milliseconds.
fn scrape_times(exporter: &Exporter, scrapes: usize) -> Value {
    let times: Vec<f64> = (0..scrapes)
        .map(|_| exporter.time_scrape().as_secs_f64() * 1e3)
        .collect();
    json!({ "p50_ms": quantile(&times, 0.5), "p99_ms": quantile(&times, 0.99), "scrapes": scrapes })
}

/// The value at `quantile` of `times` (nearest rank); NaN when there is none.
fn quantile(times: &[f64], quantile: f64) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = ((sorted.len().max(1) - 1) as f64 * quantile).round() as usize;
    sorted.get(at).copied().unwrap_or(f64::NAN)
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
