//! The dump rounds of the scale and million phases: the exporter's start-up dump and its
//! resyncs against a dump that decodes nothing, and its scrapes during back-to-back resyncs
//! against its own idle scrapes, on the table in place.
//!
//! On a small shared machine the kernel's own dump time moves by a quarter or more within a
//! run, and the render time by up to half between two exporter processes on the same table,
//! more than the margins of the targets. So every ratio is taken within one round, between
//! measurements made next to each other (the scrape figures within one exporter process),
//! and the report gives the median over the rounds with every round's figures.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::Exporter;

use crate::{Harness, quantile, value, wait_until_idle};

/// The two configs a round's reloads switch between: `ignore_hosts` changes, so every
/// reload classifies each connection again with a resync, and no connection of the
/// workload is ignored (192.0.2.0/24 is a documentation network). Periodic resyncs are off:
/// a round decides when the exporter resyncs.
const CONFIGS: [&str; 2] = [
    "resync_interval = \"0\"\nignore_hosts = []\n",
    "resync_interval = \"0\"\nignore_hosts = [\"192.0.2.1\"]\n",
];
/// The series counting the resyncs that reloads started.
const RELOAD_RESYNCS: &str = "conntrack_exporter_resyncs_total{reason=\"reload\"}";
/// The gauge holding the duration of the latest resync (the start-up dump at first).
const RESYNC_DURATION: &str = "conntrack_exporter_resync_duration_seconds";
/// Idle scrapes timed in each round (each renders every host).
const IDLE_SCRAPES: usize = 50;
/// Resyncs timed during back-to-back scrapes in each round.
const RESYNCS_DURING_SCRAPES: u32 = 3;
/// How long a round waits for a resync that a reload asked for.
const RESYNC_DEADLINE: Duration = Duration::from_secs(120);

/// One round's figures: seconds for the dumps, milliseconds for the scrapes.
struct Round {
    dump_without_decoding: f64,
    startup_dump: f64,
    resync_alone: f64,
    resync_during_scrapes: f64,
    idle_scrapes: Vec<f64>,
    scrapes_during_resyncs: Vec<f64>,
    rss_after_startup_dump: u64,
}

impl Harness<'_> {
    /// `--dump-rounds` rounds, each with a new exporter on the table in place: a dump that
    /// decodes nothing (the kernel's own cost), then the exporter's start-up dump,
    /// [`IDLE_SCRAPES`] idle scrapes, one resync while nothing scrapes, and scrapes back to
    /// back while reloads make it resync [`RESYNCS_DURING_SCRAPES`] times in a row.
    pub(crate) fn dump_rounds(&mut self) -> Value {
        let rounds: Vec<Round> = (0..self.options.dump_rounds)
            .map(|_| self.dump_round())
            .collect();
        let median_of = |ratio: fn(&Round) -> f64| median(rounds.iter().map(ratio).collect());
        json!({
            "rounds": rounds.iter().map(Round::report).collect::<Vec<_>>(),
            "startup_dump_vs_dump_without_decoding": median_of(|r| r.startup_dump / r.dump_without_decoding),
            "resync_vs_dump_without_decoding": median_of(|r| r.resync_alone / r.dump_without_decoding),
            "resync_during_scrapes_vs_dump_without_decoding": median_of(|r| r.resync_during_scrapes / r.dump_without_decoding),
            "dump_target": 1.1,
            "scrape_p50_ms": median_of(|r| quantile(&r.idle_scrapes, 0.5)),
            "slowest_scrape_during_resyncs_vs_scrape_p50": median_of(Round::slowest_during_resyncs_vs_p50),
            "slowest_idle_scrape_vs_scrape_p50": median_of(Round::slowest_idle_vs_p50),
            "slowest_scrape_during_resyncs_vs_slowest_idle": median_of(Round::slowest_during_resyncs_vs_idle),
            "slowest_scrape_target": 1.2,
            "rss_after_startup_dump_bytes": rounds.first().map(|r| r.rss_after_startup_dump),
        })
    }

    fn dump_round(&mut self) -> Round {
        let dump_without_decoding = self.dump_without_decoding();
        let mut reloads = 0;
        let exporter = self.start_exporter(CONFIGS[0]);
        let startup_dump = value(&exporter.scrape(), RESYNC_DURATION, &[]);
        let rss_after_startup_dump = exporter.process.rss_bytes();
        let idle_scrapes = (0..IDLE_SCRAPES)
            .map(|_| time_scrape(&exporter).0)
            .collect();

        self.reload(&exporter, &mut reloads);
        let deadline = Instant::now() + RESYNC_DEADLINE;
        let resynced = loop {
            wait_until_idle(&exporter.process);
            if sample(&exporter.metrics_text(), RELOAD_RESYNCS) >= f64::from(reloads) {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
        };
        self.check(resynced, "a reload's resync ran alone");
        let resync_alone = value(&exporter.scrape(), RESYNC_DURATION, &[]);

        let mut scrapes_during_resyncs = Vec::new();
        let last = reloads + RESYNCS_DURING_SCRAPES;
        self.reload(&exporter, &mut reloads);
        let deadline = Instant::now() + RESYNC_DEADLINE;
        let resynced = loop {
            let (took, page) = time_scrape(&exporter);
            scrapes_during_resyncs.push(took);
            if sample(&page, RELOAD_RESYNCS) >= f64::from(reloads) {
                if reloads == last {
                    break true;
                }
                self.reload(&exporter, &mut reloads);
            }
            if Instant::now() > deadline {
                break false;
            }
        };
        self.check(resynced, "reloads' resyncs ran during scrapes");
        let resync_during_scrapes = value(&exporter.scrape(), RESYNC_DURATION, &[]);
        Round {
            dump_without_decoding,
            startup_dump,
            resync_alone,
            resync_during_scrapes,
            idle_scrapes,
            scrapes_during_resyncs,
            rss_after_startup_dump,
        }
    }

    /// Switches the exporter's config to the other `ignore_hosts` and makes it reload: it
    /// resyncs once more than before.
    fn reload(&self, exporter: &Exporter, reloads: &mut u32) {
        *reloads += 1;
        self.write_config(exporter.port, CONFIGS[*reloads as usize % 2]);
        exporter.signal(libc::SIGHUP);
    }
}

impl Round {
    fn slowest_during_resyncs_vs_p50(&self) -> f64 {
        slowest(&self.scrapes_during_resyncs) / quantile(&self.idle_scrapes, 0.5)
    }

    /// The floor of the ratio above: the idle scrapes' own spread.
    fn slowest_idle_vs_p50(&self) -> f64 {
        slowest(&self.idle_scrapes) / quantile(&self.idle_scrapes, 0.5)
    }

    /// What the resyncs add to the slowest scrape, apart from that spread.
    fn slowest_during_resyncs_vs_idle(&self) -> f64 {
        slowest(&self.scrapes_during_resyncs) / slowest(&self.idle_scrapes)
    }

    fn report(&self) -> Value {
        json!({
            "dump_without_decoding_seconds": self.dump_without_decoding,
            "startup_dump_seconds": self.startup_dump,
            "resync_seconds": self.resync_alone,
            "resync_during_scrapes_seconds": self.resync_during_scrapes,
            "scrape_p50_ms": quantile(&self.idle_scrapes, 0.5),
            "scrape_p99_ms": quantile(&self.idle_scrapes, 0.99),
            "slowest_idle_scrape_ms": slowest(&self.idle_scrapes),
            "scrapes_during_resyncs": self.scrapes_during_resyncs.len(),
            "slowest_scrape_during_resyncs_ms": slowest(&self.scrapes_during_resyncs),
            "slowest_scrape_during_resyncs_vs_scrape_p50": self.slowest_during_resyncs_vs_p50(),
            "slowest_idle_scrape_vs_scrape_p50": self.slowest_idle_vs_p50(),
            "slowest_scrape_during_resyncs_vs_slowest_idle": self.slowest_during_resyncs_vs_idle(),
        })
    }
}

/// One scrape's time in milliseconds, end to end, and the page.
fn time_scrape(exporter: &Exporter) -> (f64, String) {
    let started = Instant::now();
    let page = exporter.metrics_text();
    (started.elapsed().as_secs_f64() * 1e3, page)
}

/// The value of one series in a page, found by its exact name and labels (0 when absent):
/// cheaper than parsing the page, which would take CPU from the exporter while it resyncs.
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn slowest(times: &[f64]) -> f64 {
    times.iter().copied().fold(f64::NAN, f64::max)
}

fn median(values: Vec<f64>) -> f64 {
    quantile(&values, 0.5)
}
