//! Publishing the tracker's counts and the exporter's own health as Prometheus text.
//!
//! Per-connection gauges are written at scrape time, just before rendering, from the
//! tracker's aggregates, one per label set: the cost is one step per label set, never per
//! connection. The recorder
//! forgets gauges that were not written since the previous render, which is how a host that
//! left the tracker leaves the output (the recorder has no per-series delete).
//!
//! The counters per label set (opened, closed, failed) are written as text beside the
//! recorder's page: the recorder never forgets a counter, so label sets that left the tracker
//! would stay in its memory for good.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ctnetlink::CpuStats;
use metrics::{Counter, Gauge, Label, counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::MetricKindMask;
use tracker::{LabelCounts, LabelNames, LabelSet, StateGroup, Totals, Tracker};

use crate::settings::Naming;

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

/// Gauges that the collector thread keeps current and each scrape publishes.
#[derive(Debug, Default)]
pub struct Status {
    /// Duration of the latest resync, in nanoseconds.
    pub last_resync_nanos: AtomicU64,
    /// Entries the latest resync corrected.
    pub last_resync_corrected: AtomicU64,
    /// Entries in the kernel's table.
    pub kernel_entries: AtomicU64,
    /// The kernel table's limit.
    pub kernel_limit: AtomicU64,
    /// The event receive queue size in force.
    pub receive_queue_bytes: AtomicU64,
    /// The kernel's statistics summed over its CPUs, in the order of [`KERNEL_STATS`].
    pub kernel_stats: [AtomicU64; KERNEL_STATS.len()],
}

/// Counters the collector thread increments directly.
#[derive(Debug, Clone)]
pub struct Counters {
    /// NEW events applied.
    pub events_new: Counter,
    /// UPDATE events applied.
    pub events_update: Counter,
    /// DESTROY events applied.
    pub events_destroy: Counter,
    /// Receive queue overruns (each: an unknown number of lost events).
    pub events_lost: Counter,
    /// Kernel messages that could not be decoded and were skipped.
    pub parse_errors: Counter,
    /// Resyncs at start.
    pub resyncs_startup: Counter,
    /// Periodic resyncs.
    pub resyncs_periodic: Counter,
    /// Resyncs after lost events.
    pub resyncs_events_lost: Counter,
    /// Entries corrected by all resyncs after the first.
    pub resync_corrected: Counter,
    /// Event log lines dropped because standard output did not take them in time.
    pub event_log_dropped: Counter,
}

/// Renders the metrics page.
pub struct Exposition {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    tracker: Arc<Tracker>,
    status: Arc<Status>,
    names: [&'static str; 4],
    labels: LabelNames,
    /// The counter families per label set: with accounting, the byte and packet ones too.
    counter_families: Vec<CounterFamily>,
    host_idle_timeout: Duration,
    /// The gauges of every label set in the output, kept between scrapes so that a scrape
    /// sets values through handles instead of looking each series up by name and labels. Its
    /// lock also serialises scrapes.
    host_gauges: Mutex<HashMap<LabelSet, [Gauge; 4]>>,
}

impl Exposition {
    /// Sets up the recorder, describes every family, and returns the counters for the
    /// collector.
    pub fn new(
        tracker: Arc<Tracker>,
        status: Arc<Status>,
        naming: Naming,
        labels: LabelNames,
        accounting: bool,
        host_idle_timeout: Duration,
    ) -> (Exposition, Counters) {
        let recorder = PrometheusBuilder::new()
            .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE_TIMEOUT))
            .build_recorder();
        let handle = recorder.handle();
        let names = HOST_FAMILIES.map(|(seed, plain, _)| match naming {
            Naming::Seed => seed,
            Naming::Plain => plain,
        });
        let counters = metrics::with_local_recorder(&recorder, || {
            for (name, (_, _, help)) in names.iter().zip(HOST_FAMILIES) {
                describe_gauge!(*name, help);
            }
            describe_self_metrics();
            Counters {
                events_new: counter!("conntrack_exporter_events_total", "type" => "new"),
                events_update: counter!("conntrack_exporter_events_total", "type" => "update"),
                events_destroy: counter!("conntrack_exporter_events_total", "type" => "destroy"),
                events_lost: counter!("conntrack_exporter_events_lost_total"),
                parse_errors: counter!("conntrack_exporter_parse_errors_total"),
                resyncs_startup: counter!("conntrack_exporter_resyncs_total", "reason" => "startup"),
                resyncs_periodic: counter!("conntrack_exporter_resyncs_total", "reason" => "periodic"),
                resyncs_events_lost: counter!("conntrack_exporter_resyncs_total", "reason" => "events_lost"),
                resync_corrected: counter!("conntrack_exporter_resync_corrected_entries_total"),
                event_log_dropped: counter!("conntrack_exporter_event_log_dropped_total"),
            }
        });
        let exposition = Exposition {
            recorder,
            handle,
            tracker,
            status,
            names,
            labels,
            counter_families: COUNTER_FAMILIES
                .into_iter()
                .chain(ACCOUNTING_FAMILIES.into_iter().filter(|_| accounting))
                .collect(),
            host_idle_timeout,
            host_gauges: Mutex::new(HashMap::new()),
        };
        (exposition, counters)
    }

    /// Publishes the current counts and renders the text exposition format.
    pub fn render(&self) -> String {
        let mut host_gauges = self
            .host_gauges
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let hosts = self
            .tracker
            .snapshot(Instant::now(), self.host_idle_timeout);
        metrics::with_local_recorder(&self.recorder, || {
            // Hosts that left the output lose their handles; the recorder then forgets
            // their series, which nobody sets any more.
            let mut departed = std::mem::take(&mut *host_gauges);
            for host in &hosts {
                let gauges = departed.remove(&host.labels).unwrap_or_else(|| {
                    let labels = self.label_pairs(&host.labels);
                    self.names.map(|name| gauge!(name, labels.iter()))
                });
                for group in StateGroup::ALL {
                    gauges[group.index()].set(host.get(group));
                }
                host_gauges.insert(host.labels, gauges);
            }
            self.publish_status(hosts.len());
        });
        let mut text = self.handle.render();
        self.write_counters(&hosts, &mut text);
        if hosts.is_empty() {
            // With no host there is no sample, and the recorder would leave the families out
            // entirely; announce them anyway so that users and tools see what exists.
            for (name, (_, _, help)) in self.names.iter().zip(HOST_FAMILIES) {
                text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n\n"));
            }
        }
        text
    }

    /// Appends the counter families of every label set in `sets` to `text`.
    fn write_counters(&self, sets: &[LabelCounts], text: &mut String) {
        let labels: Vec<String> = sets
            .iter()
            .map(|set| self.label_text(&set.labels))
            .collect();
        for &(name, help, value) in &self.counter_families {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} counter");
            for (set, labels) in sets.iter().zip(&labels) {
                let _ = writeln!(text, "{name}{labels} {}", value(&set.totals));
            }
            text.push('\n');
        }
    }

    /// The chosen labels of `set` in the text format: `{name="value",...}`, or nothing
    /// when no label is chosen.
    fn label_text(&self, set: &LabelSet) -> String {
        if self.labels.names().is_empty() {
            return String::new();
        }
        let pairs: Vec<String> = self
            .labels
            .names()
            .iter()
            .map(|&name| format!("{name}=\"{}\"", escape_label_value(&set.value(name))))
            .collect();
        format!("{{{}}}", pairs.join(","))
    }

    /// The chosen labels of `set`, in order, as the recorder takes them.
    fn label_pairs(&self, set: &LabelSet) -> Vec<Label> {
        let names = self.labels.names().iter();
        names
            .map(|&name| Label::new(name.as_str(), set.value(name)))
            .collect()
    }

    fn publish_status(&self, hosts: usize) {
        let status = &self.status;
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed) as f64;
        gauge!("conntrack_exporter_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        gauge!("conntrack_exporter_connections").set(self.tracker.connections() as f64);
        gauge!("conntrack_exporter_hosts").set(hosts as f64);
        gauge!("conntrack_exporter_resync_duration_seconds")
            .set(load(&status.last_resync_nanos) / 1e9);
        gauge!("conntrack_exporter_resync_corrected_entries")
            .set(load(&status.last_resync_corrected));
        gauge!("conntrack_exporter_kernel_table_entries").set(load(&status.kernel_entries));
        gauge!("conntrack_exporter_kernel_table_limit").set(load(&status.kernel_limit));
        gauge!("conntrack_exporter_netlink_receive_queue_bytes")
            .set(load(&status.receive_queue_bytes));
        for ((stat, _), value) in KERNEL_STATS.iter().zip(&status.kernel_stats) {
            counter!("conntrack_exporter_kernel_stat_total", "stat" => *stat)
                .absolute(value.load(Ordering::Relaxed));
        }
    }
}

/// A label value as the text format writes it: backslash, double quote and line feed escaped.
fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn describe_self_metrics() {
    describe_gauge!(
        "conntrack_exporter_build_info",
        "The exporter's version, as a label; the value is always 1."
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
        "conntrack_exporter_resyncs_total",
        "Full re-reads of the conntrack table, by reason (startup, periodic, events_lost)."
    );
    describe_counter!(
        "conntrack_exporter_resync_corrected_entries_total",
        "Connections whose counted state the resyncs after start-up had to correct."
    );
    describe_counter!(
        "conntrack_exporter_event_log_dropped_total",
        "Event log lines dropped because standard output did not take them fast enough."
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
        "Label sets (remote hosts, with the default labels) in the output now."
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
    use ctnetlink::{Entry, EntryKind, TcpState, Tuple};
    use tracker::Classifier;

    fn exposition(naming: Naming) -> (Exposition, Arc<Tracker>) {
        labelled(naming, LabelNames::default())
    }

    fn labelled(naming: Naming, labels: LabelNames) -> (Exposition, Arc<Tracker>) {
        let tracker = Arc::new(Tracker::new());
        let status = Arc::new(Status::default());
        let idle = Duration::from_secs(300);
        let (exposition, _) =
            Exposition::new(Arc::clone(&tracker), status, naming, labels, false, idle);
        (exposition, tracker)
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
        entry.original.layer4 = ctnetlink::Layer4::Ports {
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

    #[test]
    fn a_host_shows_all_four_families_with_zeros() {
        let (exposition, tracker) = exposition(Naming::Plain);
        let mut entry = Entry::new(Tuple::tcp(
            "10.0.0.1".parse().unwrap(),
            40000,
            "10.0.0.9".parse().unwrap(),
            80,
        ));
        entry.tcp_state = Some(TcpState::Established);
        let classifier = Classifier::new(Vec::new());
        tracker.apply(EntryKind::New, &entry, classifier.classify(&entry));
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
    }
}
