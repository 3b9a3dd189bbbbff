//! Publishing the tracker's counts and the exporter's own health as Prometheus text.
//!
//! Per-connection gauges are written at scrape time, just before rendering, from the
//! tracker's aggregates, one per label set: the cost is one step per label set, never per
//! connection. The recorder forgets gauges that were not written since the previous render,
//! which is how a host that left the tracker leaves the output (the recorder has no
//! per-series delete).
//!
//! The counters per label set (opened, closed, failed) are written as text beside the
//! recorder's page: the recorder never forgets a counter, so label sets that left the tracker
//! would stay in its memory for good.
//!
//! Each watched network namespace ([`Namespaces`]) has its own tracker, figures and counters;
//! its series carry its labels (`netns`) ahead of the label set's. The self-metrics of the
//! namespaces go through a recorder of their own that forgets every series not written by
//! the latest scrape, counters too: so a namespace that is dropped takes all its series
//! along, while the exporter-wide counters (HTTP, renders) stay in the main recorder, which
//! keeps them.
//!
//! Scrapes get their page through [`SharedRender`]: one render at a time, whose page every
//! scrape that arrived during it shares, compressed once.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use conntrack_codec::CpuStats;
use flate2::Compression;
use flate2::write::GzEncoder;
use metrics::{Counter, Gauge, Label, counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::MetricKindMask;
use tokio::sync::watch;
use tracker::{Host, HostLabels, LabelCounts, LabelName, LabelNames, LabelSet, StateGroup, Totals};

use crate::names::Names;
use crate::settings::Naming;
use crate::watched::{NamespaceLabels, NamespaceView, Namespaces};

/// How long a gauge survives without being written. Every scrape writes all live gauges
/// right before rendering (scrapes are serialised), so anything older than this was not
/// written by the latest scrape and is gone.
const GAUGE_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// Names (seed, plain) and help text of the per-host families, by state group.
const HOST_FAMILIES: [(&str, &str, &str); 4] = [
    (
        "conntrack_opening_connections_total",
        "conntrack_opening_connections",
        "How many connections to the remote host are currently opening?",
    ),
    (
        "conntrack_open_connections_total",
        "conntrack_open_connections",
        "How many open connections are there to the remote host?",
    ),
    (
        "conntrack_closing_connections_total",
        "conntrack_closing_connections",
        "How many connections to the remote host are currently closing?",
    ),
    (
        "conntrack_closed_connections_total",
        "conntrack_closed_connections",
        "How many connections to the remote host have recently closed?",
    ),
];

/// A counter family per label set: name, help text, and its value among the totals.
type CounterFamily = (&'static str, &'static str, fn(&Totals) -> u64);

/// The counter families per label set.
const COUNTER_FAMILIES: [CounterFamily; 3] = [
    (
        "conntrack_connections_opened_total",
        "Connections to the remote host that reached the open state.",
        |totals| totals.opened,
    ),
    (
        "conntrack_connections_closed_total",
        "Connections to the remote host that ended after being open.",
        |totals| totals.closed,
    ),
    (
        "conntrack_connections_failed_total",
        "Connections to the remote host that ended without ever being open (refused, reset or timed out).",
        |totals| totals.failed,
    ),
];

/// The counter families per label set that accounting adds.
const ACCOUNTING_FAMILIES: [CounterFamily; 4] = [
    (
        "conntrack_sent_bytes_total",
        "Bytes sent to the remote host.",
        |totals| totals.sent_bytes,
    ),
    (
        "conntrack_received_bytes_total",
        "Bytes received from the remote host.",
        |totals| totals.received_bytes,
    ),
    (
        "conntrack_sent_packets_total",
        "Packets sent to the remote host.",
        |totals| totals.sent_packets,
    ),
    (
        "conntrack_received_packets_total",
        "Packets received from the remote host.",
        |totals| totals.received_packets,
    ),
];

/// One of the kernel's per-CPU statistics: its `stat` label value, and how to read it from
/// one CPU's statistics.
pub(crate) type KernelStat = (&'static str, fn(&CpuStats) -> u32);

/// The kernel's per-CPU statistics, in the order `conntrack -S` shows them.
pub(crate) const KERNEL_STATS: [KernelStat; 10] = [
    ("found", |stats| stats.found),
    ("invalid", |stats| stats.invalid),
    ("insert", |stats| stats.insert),
    ("insert_failed", |stats| stats.insert_failed),
    ("drop", |stats| stats.drop),
    ("early_drop", |stats| stats.early_drop),
    ("error", |stats| stats.error),
    ("search_restart", |stats| stats.search_restart),
    ("clash_resolve", |stats| stats.clash_resolve),
    ("chaintoolong", |stats| stats.chain_too_long),
];

/// What the running exporter knows about itself as a whole: the HTTP connections, which each
/// scrape publishes, and the collector's progress, which the health endpoints report. What it
/// knows of each namespace's table is in [`crate::watched::TableStatus`].
#[derive(Debug, Default)]
pub struct Status {
    /// When the collector last went round its loop.
    pub heartbeat: Heartbeat,
    /// Whether the initial dump of every table is applied (before, the counts are
    /// incomplete).
    pub ready: AtomicBool,
    /// HTTP connections open now.
    pub http_connections: AtomicU64,
}

/// The time of a thread's latest sign of progress, readable from any other thread: the
/// collector beats it once per turn of its loop, the liveness endpoint reads its age.
#[derive(Debug)]
pub struct Heartbeat {
    origin: Instant,
    /// Milliseconds from `origin` to the latest beat.
    latest: AtomicU64,
}

impl Default for Heartbeat {
    /// A heartbeat that beats now.
    fn default() -> Heartbeat {
        Heartbeat {
            origin: Instant::now(),
            latest: AtomicU64::new(0),
        }
    }
}

impl Heartbeat {
    /// Records progress now.
    pub fn beat(&self) {
        let millis = self.origin.elapsed().as_millis();
        self.latest
            .store(u64::try_from(millis).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// How long ago the latest beat was.
    pub fn age(&self) -> Duration {
        let latest = Duration::from_millis(self.latest.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(latest)
    }
}

#[cfg(test)]
impl Heartbeat {
    /// A heartbeat whose latest beat was `ago` before now.
    pub(crate) fn last_beat_ago(ago: Duration) -> Heartbeat {
        Heartbeat {
            origin: Instant::now() - ago,
            latest: AtomicU64::new(0),
        }
    }
}

/// Renders the metrics page.
pub struct Exposition {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// The recorder of the namespaces' self-metrics, which forgets counters too.
    namespace_recorder: PrometheusRecorder,
    namespace_handle: PrometheusHandle,
    namespaces: Arc<Namespaces>,
    status: Arc<Status>,
    names: [&'static str; 4],
    labels: LabelNames,
    /// The counter families per label set: with accounting, the byte and packet ones too.
    counter_families: Vec<CounterFamily>,
    host_idle_timeout: Duration,
    /// The values of the `host` label (groups, networks).
    hosts: Arc<HostLabels>,
    /// The gauges of every series in the output, by namespace key, kept between scrapes so
    /// that a scrape sets values through handles instead of looking each series up by name
    /// and labels. Its lock also serialises scrapes.
    host_gauges: Mutex<HashMap<(u64, SeriesLabels), [Gauge; 4]>>,
    /// Pages rendered.
    renders: Counter,
    /// The names of remote addresses, when the host label shows names.
    host_names: Option<Arc<Names>>,
}

/// The labels of one series on the page: a label set whose host, when names are shown and
/// its address has one, reads that name (the set's address is then left out, so that
/// addresses sharing a name share the series).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesLabels {
    set: LabelSet,
    host_name: Option<Arc<str>>,
}

impl SeriesLabels {
    /// The labels of `set`, as they are.
    fn of(set: LabelSet) -> SeriesLabels {
        SeriesLabels {
            set,
            host_name: None,
        }
    }

    /// The value of the label `name` as the page shows it: every label value of a label
    /// set on the page comes from here.
    fn value(&self, name: LabelName, hosts: &HostLabels) -> String {
        match (&self.host_name, name) {
            (Some(host_name), LabelName::Host) => host_name.to_string(),
            _ => self.set.value(name, hosts),
        }
    }
}

/// The series of one namespace on a page.
type NamespaceSeries = (Arc<NamespaceView>, Vec<(SeriesLabels, LabelCounts)>);

impl Exposition {
    /// Sets up the recorders and describes every family.
    pub fn new(
        namespaces: Arc<Namespaces>,
        status: Arc<Status>,
        naming: Naming,
        labels: LabelNames,
        hosts: Arc<HostLabels>,
        accounting: bool,
        host_idle_timeout: Duration,
    ) -> Exposition {
        let recorder = PrometheusBuilder::new()
            .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE_TIMEOUT))
            .build_recorder();
        let handle = recorder.handle();
        let namespace_recorder = PrometheusBuilder::new()
            .idle_timeout(MetricKindMask::ALL, Some(GAUGE_IDLE_TIMEOUT))
            .build_recorder();
        let namespace_handle = namespace_recorder.handle();
        metrics::with_local_recorder(&namespace_recorder, describe_namespace_metrics);
        let names = HOST_FAMILIES.map(|(seed, plain, _)| match naming {
            Naming::Seed => seed,
            Naming::Plain => plain,
        });
        let renders = metrics::with_local_recorder(&recorder, || {
            for (name, (_, _, help)) in names.iter().zip(HOST_FAMILIES) {
                describe_gauge!(*name, help);
            }
            describe_exporter_metrics();
            counter!("conntrack_exporter_renders_total")
        });
        Exposition {
            recorder,
            handle,
            namespace_recorder,
            namespace_handle,
            namespaces,
            status,
            names,
            labels,
            counter_families: COUNTER_FAMILIES
                .into_iter()
                .chain(ACCOUNTING_FAMILIES.into_iter().filter(|_| accounting))
                .collect(),
            host_idle_timeout,
            hosts,
            host_gauges: Mutex::new(HashMap::new()),
            renders,
            host_names: None,
        }
    }

    /// Shows remote hosts by the names `names` knows for their addresses.
    pub(crate) fn with_names(self, names: Arc<Names>) -> Exposition {
        Exposition {
            host_names: Some(names),
            ..self
        }
    }

    /// Runs `register` with this exposition's recorder, so that the metrics it creates
    /// (counters of another part of the exporter) appear on the page.
    pub fn register<T>(&self, register: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, register)
    }

    /// Publishes the current counts and renders the text exposition format.
    pub fn render(&self) -> String {
        let mut host_gauges = self
            .host_gauges
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.renders.increment(1);
        let now = Instant::now();
        if let Some(names) = &self.host_names {
            names.begin_render();
        }
        let tables: Vec<NamespaceSeries> = self
            .namespaces
            .all()
            .into_iter()
            .map(|view| {
                let sets = view.tracker.snapshot(now, self.host_idle_timeout);
                (view, self.series(sets))
            })
            .collect();
        metrics::with_local_recorder(&self.recorder, || {
            // Series that left the output lose their handles; the recorder then forgets
            // them, as nobody sets them any more.
            let mut departed = std::mem::take(&mut *host_gauges);
            for (view, series) in &tables {
                for (labels, counts) in series {
                    let key = (view.key, labels.clone());
                    let gauges = departed.remove(&key).unwrap_or_else(|| {
                        let pairs = self.label_pairs(&view.labels, labels);
                        self.names.map(|name| gauge!(name, pairs.iter()))
                    });
                    for group in StateGroup::ALL {
                        gauges[group.index()].set(counts.get(group));
                    }
                    host_gauges.insert(key, gauges);
                }
            }
            self.publish_status();
            if let Some(names) = &self.host_names {
                names.publish();
            }
        });
        metrics::with_local_recorder(&self.namespace_recorder, || {
            for (view, series) in &tables {
                self.publish_namespace(view, series);
            }
        });
        let mut text = self.handle.render();
        text.push_str(&self.namespace_handle.render());
        self.write_counters(&tables, &mut text);
        if tables.iter().all(|(_, series)| series.is_empty()) {
            // With no host there is no sample, and the recorder would leave the families out
            // entirely; announce them anyway so that users and tools see what exists.
            for (name, (_, _, help)) in self.names.iter().zip(HOST_FAMILIES) {
                text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n\n"));
            }
        }
        text
    }

    /// The series of one namespace, from its tracker's label sets. With names shown, a
    /// set's host reads its address's name when one is known, and sets whose labels then
    /// read the same are summed into one series: one step per label set.
    fn series(&self, sets: Vec<LabelCounts>) -> Vec<(SeriesLabels, LabelCounts)> {
        let Some(names) = &self.host_names else {
            return sets
                .into_iter()
                .map(|counts| (SeriesLabels::of(counts.labels), counts))
                .collect();
        };
        let mut series: Vec<(SeriesLabels, LabelCounts)> = Vec::with_capacity(sets.len());
        let mut named: HashMap<SeriesLabels, usize> = HashMap::new();
        for counts in sets {
            let host_name = match counts.labels.host {
                Some(Host::Address(address)) => names.name_to_show(address),
                _ => None,
            };
            let Some(host_name) = host_name else {
                series.push((SeriesLabels::of(counts.labels), counts));
                continue;
            };
            let labels = SeriesLabels {
                set: LabelSet {
                    host: None,
                    ..counts.labels
                },
                host_name: Some(host_name),
            };
            match named.entry(labels) {
                std::collections::hash_map::Entry::Occupied(index) => {
                    series[*index.get()].1.add(&counts);
                }
                std::collections::hash_map::Entry::Vacant(vacant) => {
                    series.push((vacant.key().clone(), counts));
                    vacant.insert(series.len() - 1);
                }
            }
        }
        series
    }

    /// Appends the counter families of every series of every namespace to `text`.
    fn write_counters(&self, tables: &[NamespaceSeries], text: &mut String) {
        let labels: Vec<Vec<String>> = tables
            .iter()
            .map(|(view, series)| {
                let text = |(labels, _): &(SeriesLabels, LabelCounts)| {
                    self.label_text(&view.labels, labels)
                };
                series.iter().map(text).collect()
            })
            .collect();
        for &(name, help, value) in &self.counter_families {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((_, series), labels) in tables.iter().zip(&labels) {
                for ((_, counts), labels) in series.iter().zip(labels) {
                    let _ = writeln!(text, "{name}{labels} {}", value(&counts.totals));
                }
            }
            text.push('\n');
        }
    }

    /// The labels of `namespace` and the chosen labels of a series, in order: name and
    /// value.
    fn label_values(&self, namespace: &NamespaceLabels, labels: &SeriesLabels) -> NamespaceLabels {
        let mut values = namespace.clone();
        let chosen = self.labels.names().iter();
        values.extend(chosen.map(|&name| (name.as_str(), labels.value(name, &self.hosts))));
        values
    }

    /// The labels of a series in the text format: `{name="value",...}`, or nothing when it
    /// has none.
    fn label_text(&self, namespace: &NamespaceLabels, labels: &SeriesLabels) -> String {
        let pairs: Vec<String> = self
            .label_values(namespace, labels)
            .into_iter()
            .map(|(name, value)| format!("{name}=\"{}\"", escape_label_value(&value)))
            .collect();
        if pairs.is_empty() {
            return String::new();
        }
        format!("{{{}}}", pairs.join(","))
    }

    /// The labels of a series, in order, as the recorder takes them.
    fn label_pairs(&self, namespace: &NamespaceLabels, labels: &SeriesLabels) -> Vec<Label> {
        self.label_values(namespace, labels)
            .into_iter()
            .map(|(name, value)| Label::new(name, value))
            .collect()
    }

    /// The exporter-wide gauges.
    fn publish_status(&self) {
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed) as f64;
        gauge!("conntrack_exporter_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        gauge!("conntrack_exporter_http_connections").set(load(&self.status.http_connections));
        let limit = self.namespaces.series_bound().limit();
        gauge!("conntrack_exporter_series_limit").set(limit.map_or(0, NonZeroUsize::get) as f64);
        if self.namespaces.several() {
            let watched = self.namespaces.all().len() as f64;
            gauge!("conntrack_exporter_namespaces", "state" => "watched").set(watched);
            gauge!("conntrack_exporter_namespaces", "state" => "skipped")
                .set(self.namespaces.skipped() as f64);
        }
    }

    /// The self-metrics of one namespace, whose series in the output are `series`.
    fn publish_namespace(&self, view: &NamespaceView, series: &[(SeriesLabels, LabelCounts)]) {
        let overflow = series.iter().find(|(labels, _)| labels.set.overflow);
        let bounded = series.len() - usize::from(overflow.is_some());
        let overflowed: u32 = overflow.map_or(0, |(_, counts)| counts.counts.iter().sum());
        let status = &view.status;
        let counters = &view.counters;
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
        let labels: Vec<Label> = view
            .labels
            .iter()
            .map(|(name, value)| Label::new(*name, value.clone()))
            .collect();
        let with = |name: &'static str, value: &'static str| {
            let mut labels = labels.clone();
            labels.push(Label::new(name, value));
            labels
        };
        let gauges = [
            (
                "conntrack_exporter_connections",
                view.tracker.connections() as f64,
            ),
            ("conntrack_exporter_hosts", series.len() as f64),
            ("conntrack_exporter_series", bounded as f64),
            (
                "conntrack_exporter_overflow_connections",
                f64::from(overflowed),
            ),
            (
                "conntrack_exporter_resync_duration_seconds",
                load(&status.last_resync_nanos) as f64 / 1e9,
            ),
            (
                "conntrack_exporter_resync_corrected_entries",
                load(&status.last_resync_corrected) as f64,
            ),
            (
                "conntrack_exporter_kernel_table_entries",
                load(&status.kernel_entries) as f64,
            ),
            (
                "conntrack_exporter_kernel_table_limit",
                load(&status.kernel_limit) as f64,
            ),
            (
                "conntrack_exporter_netlink_receive_queue_bytes",
                load(&status.receive_queue_bytes) as f64,
            ),
        ];
        for (name, value) in gauges {
            gauge!(name, labels.iter()).set(value);
        }
        if self.namespaces.several() {
            gauge!("conntrack_exporter_namespace_open_files", labels.iter())
                .set(load(&status.open_files) as f64);
            gauge!("conntrack_exporter_namespace_buffer_bytes", labels.iter())
                .set(load(&status.buffer_bytes) as f64);
        }
        let counted = [
            (
                "conntrack_exporter_events_total",
                Some(("type", "new")),
                &counters.events_new,
            ),
            (
                "conntrack_exporter_events_total",
                Some(("type", "update")),
                &counters.events_update,
            ),
            (
                "conntrack_exporter_events_total",
                Some(("type", "destroy")),
                &counters.events_destroy,
            ),
            (
                "conntrack_exporter_events_lost_total",
                None,
                &counters.events_lost,
            ),
            (
                "conntrack_exporter_parse_errors_total",
                None,
                &counters.parse_errors,
            ),
            (
                "conntrack_exporter_attribute_errors_total",
                None,
                &counters.attribute_errors,
            ),
            (
                "conntrack_exporter_resyncs_total",
                Some(("reason", "startup")),
                &counters.resyncs_startup,
            ),
            (
                "conntrack_exporter_resyncs_total",
                Some(("reason", "periodic")),
                &counters.resyncs_periodic,
            ),
            (
                "conntrack_exporter_resyncs_total",
                Some(("reason", "events_lost")),
                &counters.resyncs_events_lost,
            ),
            (
                "conntrack_exporter_resyncs_total",
                Some(("reason", "reload")),
                &counters.resyncs_reload,
            ),
            (
                "conntrack_exporter_resync_corrected_entries_total",
                None,
                &counters.resync_corrected,
            ),
        ];
        for (name, extra, tally) in counted {
            let labels = match extra {
                Some((label, value)) => with(label, value),
                None => labels.clone(),
            };
            counter!(name, labels.iter()).absolute(tally.get());
        }
        for ((stat, _), value) in KERNEL_STATS.iter().zip(&status.kernel_stats) {
            counter!(
                "conntrack_exporter_kernel_stat_total",
                with("stat", stat).iter()
            )
            .absolute(load(value));
        }
    }

    /// Renders the page as scrapes receive it: the text and its gzip compression.
    pub fn render_page(&self) -> Page {
        let rendered = Instant::now();
        let text = self.render();
        let gzip = gzip(text.as_bytes());
        Page {
            rendered,
            text: Bytes::from(text),
            gzip,
        }
    }
}

/// Compresses `text` with gzip. Scrape pages repeat their metric names on every line, so even
/// the fastest level shrinks them about 15 times.
fn gzip(text: &[u8]) -> Bytes {
    let mut encoder = GzEncoder::new(Vec::with_capacity(text.len() / 8), Compression::fast());
    // Writing to a `Vec` cannot fail.
    let _ = encoder.write_all(text);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// One rendered metrics page, as served.
#[derive(Debug)]
pub struct Page {
    /// When the render began.
    pub rendered: Instant,
    /// The text exposition format.
    pub text: Bytes,
    /// The same, gzip-compressed.
    pub gzip: Bytes,
}

/// The metrics page for scrapes: one render runs at a time, and every scrape that arrives
/// while it runs waits for it and gets its page. However many scrapes come at once, they
/// cost one render and share one page in memory (and its compression), instead of queueing a
/// render each and holding a copy each.
pub struct SharedRender {
    exposition: Arc<Exposition>,
    running: RunningRender,
}

/// The page of the render running now, for scrapes that arrive meanwhile (it is `None` until
/// the render is done); `None` when no render runs.
type RunningRender = Arc<Mutex<Option<watch::Receiver<Option<Arc<Page>>>>>>;

/// A render ended without a page (it panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderFailed;

impl SharedRender {
    /// Shares the renders of `exposition`.
    pub fn new(exposition: Arc<Exposition>) -> SharedRender {
        SharedRender {
            exposition,
            running: Arc::default(),
        }
    }

    /// Whether a render runs now.
    pub fn rendering(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// The page of the render running now, or of a new render if none runs. The render
    /// itself runs on a blocking thread, so that the tasks serving connections go on.
    pub async fn page(&self) -> Result<Arc<Page>, RenderFailed> {
        let mut receiver = {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            match &*running {
                Some(receiver) => receiver.clone(),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    *running = Some(receiver.clone());
                    let exposition = Arc::clone(&self.exposition);
                    let finished = RenderFinished(Arc::clone(&self.running));
                    tokio::task::spawn_blocking(move || {
                        let page = Arc::new(exposition.render_page());
                        // Scrapes from now on start a new render: this page may be older
                        // than what they want to see.
                        drop(finished);
                        let _ = sender.send(Some(page));
                    });
                    receiver
                }
            }
        };
        let page = receiver
            .wait_for(Option::is_some)
            .await
            .map_err(|_| RenderFailed)?;
        page.as_ref().map(Arc::clone).ok_or(RenderFailed)
    }
}

/// Marks the running render as finished when dropped: when its page is ready, and also when
/// the render panics, so that the next scrape starts a new one.
struct RenderFinished(RunningRender);

impl Drop for RenderFinished {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// A label value as the text format writes it: backslash, double quote and line feed escaped.
fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Describes the exporter-wide self-metrics.
fn describe_exporter_metrics() {
    describe_gauge!(
        "conntrack_exporter_build_info",
        "The exporter's version, as a label; the value is always 1."
    );
    describe_counter!(
        "conntrack_exporter_event_log_dropped_total",
        "Event log lines dropped because standard output did not take them fast enough."
    );
    describe_gauge!(
        "conntrack_exporter_http_connections",
        "HTTP connections open now."
    );
    describe_counter!(
        "conntrack_exporter_renders_total",
        "Metrics pages rendered; scrapes that arrive during a render share its page."
    );
    describe_gauge!(
        "conntrack_exporter_namespaces",
        "Network namespaces watched, and matched but skipped because max_namespaces were watched, by state."
    );
    describe_gauge!(
        "conntrack_exporter_series_limit",
        "The most label sets in the output besides the overflow sets (max_series), over all namespaces; 0: no bound."
    );
}

/// Describes the self-metrics of each watched namespace.
fn describe_namespace_metrics() {
    describe_gauge!(
        "conntrack_exporter_namespace_open_files",
        "File descriptors the exporter holds for the network namespace (its sockets and its file)."
    );
    describe_gauge!(
        "conntrack_exporter_namespace_buffer_bytes",
        "Bytes of receive buffers the exporter holds for the network namespace, besides its connections."
    );
    describe_counter!(
        "conntrack_exporter_events_total",
        "Connection events applied, by type (new, update, destroy)."
    );
    describe_counter!(
        "conntrack_exporter_events_lost_total",
        "Times the kernel dropped events because the receive queue was full; each triggers a resync."
    );
    describe_counter!(
        "conntrack_exporter_parse_errors_total",
        "Kernel messages that could not be decoded and were skipped."
    );
    describe_counter!(
        "conntrack_exporter_attribute_errors_total",
        "Malformed optional attributes left out of kernel messages whose entries were applied."
    );
    describe_counter!(
        "conntrack_exporter_resyncs_total",
        "Full re-reads of the conntrack table, by reason (startup, periodic, events_lost, reload)."
    );
    describe_counter!(
        "conntrack_exporter_resync_corrected_entries_total",
        "Connections whose counted state the resyncs after start-up had to correct."
    );
    describe_gauge!(
        "conntrack_exporter_resync_duration_seconds",
        "How long the latest resync took."
    );
    describe_gauge!(
        "conntrack_exporter_resync_corrected_entries",
        "Connections the latest resync had to correct (added, changed or removed)."
    );
    describe_gauge!(
        "conntrack_exporter_connections",
        "Connections the exporter is tracking now."
    );
    describe_gauge!(
        "conntrack_exporter_hosts",
        "Series (remote hosts, with the default labels) in the output now, the overflow set included."
    );
    describe_gauge!(
        "conntrack_exporter_series",
        "Series in the output other than the overflow set (labels \"other\"); over all namespaces, at most conntrack_exporter_series_limit."
    );
    describe_gauge!(
        "conntrack_exporter_overflow_connections",
        "Connections counted now in the overflow label set, whose labels all read \"other\", because max_series was reached."
    );
    describe_gauge!(
        "conntrack_exporter_kernel_table_entries",
        "Entries in the kernel's conntrack table, all protocols."
    );
    describe_gauge!(
        "conntrack_exporter_kernel_table_limit",
        "The kernel conntrack table's limit (nf_conntrack_max)."
    );
    describe_counter!(
        "conntrack_exporter_kernel_stat_total",
        "The kernel's conntrack statistics summed over its CPUs, as conntrack -S shows them, by stat."
    );
    describe_gauge!(
        "conntrack_exporter_netlink_receive_queue_bytes",
        "Size of the kernel receive queue for connection events."
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use conntrack_codec::{Entry, EntryKind, TcpState, Tuple};
    use std::net::IpAddr;
    use tracker::{Classifier, SeriesBound, Tracker};

    fn exposition(naming: Naming) -> (Exposition, Arc<Tracker>) {
        labelled(naming, LabelNames::default())
    }

    fn labelled(naming: Naming, labels: LabelNames) -> (Exposition, Arc<Tracker>) {
        let tracker = Arc::new(Tracker::new());
        let status = Arc::new(Status::default());
        let idle = Duration::from_secs(300);
        let exposition = Exposition::new(
            Namespaces::own(Arc::clone(&tracker)).0,
            status,
            naming,
            labels,
            Arc::default(),
            false,
            idle,
        );
        (exposition, tracker)
    }

    /// The page of `tracker` alone, with the host label values of `hosts`.
    fn with_hosts(
        tracker: &Arc<Tracker>,
        labels: LabelNames,
        hosts: Arc<HostLabels>,
    ) -> Exposition {
        Exposition::new(
            Namespaces::own(Arc::clone(tracker)).0,
            Arc::new(Status::default()),
            Naming::Seed,
            labels,
            hosts,
            false,
            Duration::from_secs(300),
        )
    }

    #[test]
    fn labels_appear_in_the_chosen_order_and_hosts_are_summed_when_left_out() {
        let labels: LabelNames = "service_port,direction,protocol".parse().unwrap();
        let (exposition, tracker) = labelled(Naming::Seed, labels.clone());
        let mut classifier = Classifier::new(Vec::new()).with_labels(labels);
        classifier.set_local_addresses(["10.0.0.1".parse().unwrap()].into());
        for (remote, port) in [("10.0.0.9", 40000), ("10.0.0.8", 40001)] {
            let mut entry = Entry::new(Tuple::tcp(
                "10.0.0.1".parse().unwrap(),
                port,
                remote.parse().unwrap(),
                443,
            ));
            entry.tcp_state = Some(TcpState::Established);
            tracker.apply(EntryKind::New, &entry, classifier.classify(&entry));
        }
        let text = exposition.render();
        let sample = "conntrack_open_connections_total{service_port=\"443\",direction=\"out\",protocol=\"tcp\"} 2\n";
        assert!(text.contains(sample), "{sample} missing from {text}");
        assert!(!text.contains("host="), "{text}");
    }

    #[test]
    fn counters_follow_a_connection_to_its_end() {
        let (exposition, tracker) = exposition(Naming::Seed);
        let mut classifier = Classifier::new(Vec::new());
        classifier.set_local_addresses(["10.0.0.1".parse().unwrap()].into());
        let mut entry = Entry::new(Tuple::tcp(
            "10.0.0.1".parse().unwrap(),
            40000,
            "10.0.0.9".parse().unwrap(),
            80,
        ));
        for (kind, state) in [
            (EntryKind::New, TcpState::SynSent),
            (EntryKind::Update, TcpState::Established),
            (EntryKind::Destroy, TcpState::TimeWait),
        ] {
            entry.tcp_state = Some(state);
            tracker.apply(kind, &entry, classifier.classify(&entry));
        }
        entry.original.layer4 = conntrack_codec::Layer4::Ports {
            src: 40001,
            dst: 80,
        };
        entry.tcp_state = Some(TcpState::SynSent);
        tracker.apply(EntryKind::New, &entry, classifier.classify(&entry));
        tracker.apply(EntryKind::Destroy, &entry, None);
        let text = exposition.render();
        for sample in [
            "# TYPE conntrack_connections_opened_total counter\n",
            "conntrack_connections_opened_total{host=\"10.0.0.9\"} 1\n",
            "conntrack_connections_closed_total{host=\"10.0.0.9\"} 1\n",
            "conntrack_connections_failed_total{host=\"10.0.0.9\"} 1\n",
        ] {
            assert!(text.contains(sample), "{sample} missing from {text}");
        }
    }

    #[test]
    fn groups_are_named_and_label_sets_beyond_the_bound_read_other() {
        let groups = [tracker::HostGroup::parse("db", ["10.0.1.0/24"]).unwrap()];
        let hosts = Arc::new(tracker::HostLabels::new(&groups, 32, 128).unwrap());
        let labels: LabelNames = "host,service_port".parse().unwrap();
        let bound = Arc::new(SeriesBound::new(NonZeroUsize::new(2)));
        let tracker = Arc::new(Tracker::new().with_series_bound(bound));
        let exposition = with_hosts(&tracker, labels.clone(), Arc::clone(&hosts));
        let mut classifier = Classifier::new(Vec::new())
            .with_labels(labels)
            .with_hosts(hosts);
        classifier.set_local_addresses(["10.0.0.1".parse().unwrap()].into());
        for (remote, port) in [
            ("10.0.1.7", 5432),
            ("10.0.1.8", 5432),
            ("10.0.0.9", 443),
            ("10.0.0.10", 443),
            ("10.0.0.11", 80),
        ] {
            let mut entry = Entry::new(Tuple::tcp(
                "10.0.0.1".parse().unwrap(),
                40000,
                remote.parse().unwrap(),
                port,
            ));
            entry.tcp_state = Some(TcpState::Established);
            tracker.apply(EntryKind::New, &entry, classifier.classify(&entry));
        }
        let text = exposition.render();
        for sample in [
            "conntrack_open_connections_total{host=\"db\",service_port=\"5432\"} 2\n",
            "conntrack_open_connections_total{host=\"10.0.0.9\",service_port=\"443\"} 1\n",
            "conntrack_open_connections_total{host=\"other\",service_port=\"other\"} 2\n",
            "conntrack_connections_opened_total{host=\"other\",service_port=\"other\"} 2\n",
            "conntrack_exporter_series 2\n",
            "conntrack_exporter_series_limit 2\n",
            "conntrack_exporter_overflow_connections 2\n",
            "conntrack_exporter_hosts 3\n",
        ] {
            assert!(text.contains(sample), "{sample} missing from {text}");
        }
    }

    #[test]
    fn only_single_addresses_are_named_not_groups_or_networks() {
        let groups = [tracker::HostGroup::parse("db", ["10.0.1.0/24"]).unwrap()];
        let hosts = Arc::new(tracker::HostLabels::new(&groups, 24, 128).unwrap());
        let tracker = Arc::new(Tracker::new());
        let exposition = with_hosts(&tracker, LabelNames::default(), Arc::clone(&hosts));
        let (names, mut requests) = Names::without_lookups(10);
        let exposition = exposition.with_names(names);
        let classifier = Classifier::new(Vec::new()).with_hosts(hosts);
        for remote in ["10.0.1.7", "10.0.2.8", "fd00::9"] {
            let local = if remote.contains(':') {
                "fd00::1"
            } else {
                "10.0.0.1"
            };
            let tuple = Tuple::tcp(local.parse().unwrap(), 40000, remote.parse().unwrap(), 80);
            let mut entry = Entry::new(tuple);
            entry.tcp_state = Some(TcpState::Established);
            tracker.apply(EntryKind::New, &entry, classifier.classify(&entry));
        }
        let text = exposition.render();
        for host in ["db", "10.0.2.0/24", "fd00::9"] {
            let sample = format!("conntrack_open_connections_total{{host=\"{host}\"}} 1\n");
            assert!(text.contains(&sample), "{sample} missing from {text}");
        }
        let asked: Vec<IpAddr> = std::iter::from_fn(|| requests.try_recv().ok()).collect();
        assert_eq!(asked, ["fd00::9".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn addresses_sharing_a_name_are_one_series_with_their_numbers_summed() {
        let (exposition, tracker) = exposition(Naming::Seed);
        let (names, mut requests) = Names::without_lookups(10);
        let exposition = exposition.with_names(Arc::clone(&names));
        let classifier = Classifier::new(Vec::new());
        let local = "10.0.0.1".parse().unwrap();
        for (remote, state) in [
            ("10.0.0.9", TcpState::Established),
            ("10.0.0.8", TcpState::SynSent),
            ("10.0.0.7", TcpState::Established),
        ] {
            let mut entry = Entry::new(Tuple::tcp(local, 40000, remote.parse().unwrap(), 80));
            entry.tcp_state = Some(state);
            tracker.apply(EntryKind::New, &entry, classifier.classify(&entry));
        }
        // The first render shows addresses and asks about each once.
        let text = exposition.render();
        assert!(text.contains("conntrack_open_connections_total{host=\"10.0.0.9\"} 1\n"));
        let mut asked = Vec::new();
        while let Ok(address) = requests.try_recv() {
            asked.push(address.to_string());
        }
        asked.sort();
        assert_eq!(asked, ["10.0.0.7", "10.0.0.8", "10.0.0.9"]);

        names.answer("10.0.0.9".parse().unwrap(), Some("web.example.test"));
        names.answer("10.0.0.8".parse().unwrap(), Some("web.example.test"));
        names.answer("10.0.0.7".parse().unwrap(), None);
        let text = exposition.render();
        for sample in [
            "conntrack_open_connections_total{host=\"web.example.test\"} 1\n",
            "conntrack_opening_connections_total{host=\"web.example.test\"} 1\n",
            "conntrack_connections_opened_total{host=\"web.example.test\"} 1\n",
            "conntrack_open_connections_total{host=\"10.0.0.7\"} 1\n",
            "conntrack_exporter_hosts 2\n",
        ] {
            assert!(text.contains(sample), "{sample} missing from {text}");
        }
        // The addresses' counters leave at once (their gauges when the recorder forgets them).
        for address in ["10.0.0.9", "10.0.0.8"] {
            let sample = format!("conntrack_connections_opened_total{{host=\"{address}\"}}");
            assert!(!text.contains(&sample), "{text}");
        }
        assert!(
            requests.try_recv().is_err(),
            "answered addresses are not asked again"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn families_are_announced_before_any_host_exists() {
        let (exposition, _) = exposition(Naming::Seed);
        let text = exposition.render();
        for (name, _, help) in HOST_FAMILIES {
            assert!(text.contains(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n")));
        }
        assert!(text.contains("conntrack_exporter_build_info{version="));
    }

    #[tokio::test]
    async fn scrapes_during_a_render_share_its_page_and_later_ones_get_a_new_one() {
        let (exposition, _) = exposition(Naming::Seed);
        let exposition = Arc::new(exposition);
        let shared = Arc::new(SharedRender::new(Arc::clone(&exposition)));
        // A render needs the host gauges' lock: holding it keeps the first render running
        // until every scrape has arrived.
        let (locked, wait_locked) = std::sync::mpsc::channel();
        let (release, wait_release) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn({
            let exposition = Arc::clone(&exposition);
            move || {
                let _gauges = exposition.host_gauges.lock().unwrap();
                locked.send(()).unwrap();
                let _ = wait_release.recv();
            }
        });
        wait_locked.recv().unwrap();
        let scrapes: Vec<_> = (0..5)
            .map(|_| {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move { shared.page().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(shared.rendering());
        release.send(()).unwrap();
        holder.join().unwrap();
        let mut pages = Vec::new();
        for scrape in scrapes {
            pages.push(scrape.await.unwrap().unwrap());
        }
        assert!(pages.iter().all(|page| Arc::ptr_eq(page, &pages[0])));
        assert!(!shared.rendering());

        let later = shared.page().await.unwrap();
        assert!(!Arc::ptr_eq(&later, &pages[0]));
        let text = String::from_utf8(later.text.to_vec()).unwrap();
        assert!(
            text.contains("conntrack_exporter_renders_total 2\n"),
            "{text}"
        );
        let mut unzipped = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&later.gzip[..]),
            &mut unzipped,
        )
        .unwrap();
        assert_eq!(unzipped, text);
    }

    /// Applies one established connection from 10.0.0.1 to 10.0.0.9:80.
    fn open_one_connection(tracker: &Tracker) {
        let mut entry = Entry::new(Tuple::tcp(
            "10.0.0.1".parse().unwrap(),
            40000,
            "10.0.0.9".parse().unwrap(),
            80,
        ));
        entry.tcp_state = Some(TcpState::Established);
        let classifier = Classifier::new(Vec::new());
        tracker.apply(EntryKind::New, &entry, classifier.classify(&entry));
    }

    #[test]
    fn a_host_shows_all_four_families_with_zeros() {
        let (exposition, tracker) = exposition(Naming::Plain);
        open_one_connection(&tracker);
        let text = exposition.render();
        assert!(
            text.contains("conntrack_open_connections{host=\"10.0.0.9\"} 1\n"),
            "{text}"
        );
        for family in ["opening", "closing", "closed"] {
            let sample = format!("conntrack_{family}_connections{{host=\"10.0.0.9\"}} 0\n");
            assert!(text.contains(&sample), "{sample} missing from {text}");
        }
        assert!(!text.contains("_connections_total"));
        assert!(text.contains("conntrack_exporter_hosts 1\n"));
        // No bound: no overflow set either.
        assert!(text.contains("conntrack_exporter_series 1\n"));
        assert!(text.contains("conntrack_exporter_series_limit 0\n"));
        assert!(text.contains("conntrack_exporter_overflow_connections 0\n"));
    }

    #[test]
    fn a_relabelled_namespace_keeps_its_numbers_and_counters_under_its_new_labels() {
        let tracker = Arc::new(Tracker::new());
        let namespaces = Arc::new(Namespaces::empty(true, tracker.series_bound()));
        let netns = ("netns", "cni-a".to_owned());
        let view = Arc::new(NamespaceView::new(1, vec![netns.clone()], tracker.clone()));
        namespaces.add(Arc::clone(&view));
        let exposition = Exposition::new(
            Arc::clone(&namespaces),
            Arc::new(Status::default()),
            Naming::Seed,
            LabelNames::default(),
            Arc::default(),
            false,
            Duration::from_secs(300),
        );
        open_one_connection(&tracker);
        view.counters.events_new.increment(1);
        let text = exposition.render();
        let before = "conntrack_open_connections_total{netns=\"cni-a\",host=\"10.0.0.9\"} 1\n";
        assert!(text.contains(before), "{text}");

        let labels = vec![netns, ("pod_uid", "1a2b".to_owned())];
        namespaces.replace(1, Arc::new(view.relabelled(2, labels)));
        // Past the recorder's idle timeout, so that what the latest scrape did not write is
        // gone: a scrape that soon after the previous one could still show the old series.
        std::thread::sleep(GAUGE_IDLE_TIMEOUT + Duration::from_millis(100));
        let text = exposition.render();
        for sample in [
            "conntrack_open_connections_total{netns=\"cni-a\",pod_uid=\"1a2b\",host=\"10.0.0.9\"} 1\n",
            "conntrack_connections_opened_total{netns=\"cni-a\",pod_uid=\"1a2b\",host=\"10.0.0.9\"} 1\n",
            "conntrack_exporter_events_total{netns=\"cni-a\",pod_uid=\"1a2b\",type=\"new\"} 1\n",
            "conntrack_exporter_namespaces{state=\"watched\"} 1\n",
        ] {
            assert!(text.contains(sample), "{sample} missing from {text}");
        }
        assert!(!text.contains("{netns=\"cni-a\",host="), "{text}");
        assert!(!text.contains("{netns=\"cni-a\",type="), "{text}");
    }
}
