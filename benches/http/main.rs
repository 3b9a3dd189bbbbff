//! The HTTP endpoint under load and under attack. Runs an exporter binary (this build's, or
//! any other given with `--exporter`, such as a build of an older commit, for a before and
//! after comparison) in a private network namespace with 1,000 hosts × 20 connections in the
//! table, runs each scenario against a fresh process, and prints one JSON report. See
//! `benches/README.md`.
//!
//! Usage (as root, after `cargo build --release -p conntrack-exporter -p benches`):
//! `target/release/http_attacks [--exporter PATH]`

// The scale harness's process handling; this harness uses part of it.
#[allow(dead_code)]
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use loadgen::hostile::{HalfSentRequests, UnreadPipelines, ZeroWindowStreams};
use loadgen::scrape::{concurrent_scrapes, scrape};
use serde_json::{Value, json};

use testkit::{Exporter, ExporterCommand, limit_open_files, peak_rss_bytes, rss_bytes};

const HOSTS: u32 = 1_000;
const CONNECTIONS_PER_HOST: u32 = 20;
/// How long an attack runs before the scrapes that measure it.
const ATTACK_SETTLE: Duration = Duration::from_secs(2);
/// Scrapes timed during each attack, one after the other.
const SCRAPES_DURING: usize = 5;
/// How long after an attack ends its memory is measured again.
const AFTER_ATTACK: Duration = Duration::from_secs(2);

fn main() {
    let exporter = std::env::args()
        .skip(1)
        .collect::<Vec<_>>()
        .chunks(2)
        .find(|pair| pair[0] == "--exporter")
        .and_then(|pair| pair.get(1).map(PathBuf::from))
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("the harness's own path");
            exe.with_file_name("conntrack_exporter")
        });
    raise_file_limit();
    let Some(_namespace) = testkit::enter("the HTTP harness") else {
        panic!("the HTTP harness needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)");
    };
    loadgen::table::fill(HOSTS, CONNECTIONS_PER_HOST).expect("creating conntrack entries");
    let mut harness = Harness {
        exporter: &exporter,
    };
    let report = json!({
        "exporter": exporter.display().to_string(),
        "table": format!("{HOSTS} hosts × {CONNECTIONS_PER_HOST} connections"),
        "page": harness.page_sizes(),
        "concurrent_scrapes": [harness.concurrent(100), harness.concurrent(1_000)],
        "attacks": [
            harness.attack("10 HTTP/2 connections × 200 streams at a zero window", false, |port| {
                ZeroWindowStreams::open(port, "/metrics", 10, 200)
            }),
            harness.attack("2,000 connections × 20 pipelined requests never read", false, |port| {
                UnreadPipelines::open(port, 2_000, 20)
            }),
            harness.attack("4,000 connections × 20 pipelined requests never read", false, |port| {
                UnreadPipelines::open(port, 4_000, 20)
            }),
            harness.attack("1,100 half-sent requests, open-file limit 1,024", true, |port| {
                HalfSentRequests::open(port, 1_100)
            }),
        ],
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
}

struct Harness<'a> {
    exporter: &'a Path,
}

impl Harness<'_> {
    /// A fresh exporter (its peak memory is its own), scraped a few times.
    fn start(&mut self) -> Exporter {
        let exporter = ExporterCommand::new(self.exporter)
            .ready_within(Duration::from_secs(60))
            .start();
        for _ in 0..3 {
            exporter.metrics_text();
        }
        exporter
    }

    fn page_sizes(&mut self) -> Value {
        let exporter = self.start();
        let plain = exporter.metrics_text().len();
        let gzipped = scrape(exporter.port, "/metrics").expect("scraping the exporter");
        json!({
            "bytes": plain,
            "bytes_as_prometheus_asks": gzipped.body.len(),
            "content_encoding": gzipped.header("content-encoding"),
        })
    }

    /// `count` scrapes at once, as Prometheus sends them.
    fn concurrent(&mut self, count: usize) -> Value {
        let exporter = self.start();
        let pid = exporter.process.pid();
        let before = rss_bytes(pid).unwrap_or(0);
        let renders =
            |exporter: &Exporter| exporter.scrape().sum("conntrack_exporter_renders_total");
        let renders_before = renders(&exporter);
        let started = Instant::now();
        let results = concurrent_scrapes(exporter.port, "/metrics", count).expect("a runtime");
        let wall = started.elapsed();
        let mut times: Vec<Duration> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        let errors: Vec<String> = results
            .iter()
            .filter_map(|result| result.as_ref().err().map(ToString::to_string))
            .take(3)
            .collect();
        json!({
            "concurrency": count,
            "answered_200": times.len(),
            "first_errors": errors,
            "p50_ms": quantile_ms(&mut times, 0.5),
            "p99_ms": quantile_ms(&mut times, 0.99),
            "all_done_s": wall.as_secs_f64(),
            "rss_before_mb": mb(before),
            "peak_rss_mb": mb(peak_rss_bytes(pid).unwrap_or(0)),
            // The scrape that reads the counter renders once more. (0: no such counter.)
            "renders": (renders(&exporter) - renders_before - 1.0).max(0.0),
        })
    }

    /// Runs `attack` against a fresh exporter (with an open-file limit of 1,024 when
    /// `limit_files`), times scrapes during it, and measures memory during and after.
    fn attack<A>(
        &mut self,
        name: &str,
        limit_files: bool,
        attack: impl FnOnce(u16) -> io::Result<A>,
    ) -> Value {
        let exporter = self.start();
        let pid = exporter.process.pid();
        if limit_files {
            limit_open_files(pid, 1024).expect("limiting the exporter's open files");
        }
        let before = rss_bytes(pid).unwrap_or(0);
        let started = Instant::now();
        let attack = attack(exporter.port);
        let opened_s = started.elapsed().as_secs_f64();
        let attack = match attack {
            Ok(attack) => attack,
            Err(error) => {
                return json!({ "attack": name, "could_not_open": error.to_string(), "after_s": opened_s });
            }
        };
        std::thread::sleep(ATTACK_SETTLE);
        let mut times = Vec::new();
        let mut errors = Vec::new();
        for _ in 0..SCRAPES_DURING {
            match scrape(exporter.port, "/metrics") {
                Ok(answer) if answer.status == 200 => times.push(answer.elapsed),
                Ok(answer) => errors.push(format!("status {}", answer.status)),
                Err(error) => errors.push(error.to_string()),
            }
        }
        let during = rss_bytes(pid).unwrap_or(0);
        let peak = peak_rss_bytes(pid).unwrap_or(0);
        drop(attack);
        std::thread::sleep(AFTER_ATTACK);
        let after = rss_bytes(pid).unwrap_or(0);
        let log = exporter.stderr.text();
        json!({
            "attack": name,
            "opened_s": opened_s,
            "scrapes_during": {
                "answered_200": times.len(),
                "of": SCRAPES_DURING,
                "errors": errors,
                "p50_ms": quantile_ms(&mut times, 0.5),
                "max_ms": quantile_ms(&mut times, 1.0),
            },
            "rss_before_mb": mb(before),
            "rss_during_mb": mb(during),
            "peak_rss_mb": mb(peak),
            "rss_after_mb": mb(after),
            "log_lines": log.lines().count(),
            "log_warnings": log.lines().filter(|line| line.contains("WARN")).collect::<Vec<_>>(),
        })
    }
}

/// The `quantile` of `times`, in milliseconds; `None` when there is none.
fn quantile_ms(times: &mut [Duration], quantile: f64) -> Option<f64> {
    times.sort();
    let index = ((times.len().checked_sub(1)?) as f64 * quantile).round() as usize;
    Some(times[index].as_secs_f64() * 1e3)
}

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / 1e5).round() / 10.0
}

/// Lets this process open as many files as its hard limit allows: the attacks open
/// thousands of connections.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct given, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
