//! What the collector publishes for each network namespace it watches, and the exposition
//! renders: the namespace's label values, its tracker, its table's figures and its counters.
//!
//! Without `namespaces` there is one, the exporter's own namespace, with no label; with
//! them, one per namespace, each labelled. The label values belong to the namespace, not to
//! its connections: a connection's label set stays what it was, and the namespace's labels
//! are added once per series at render, so more of them cost nothing per event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use tracker::{SeriesBound, Tracker};

use crate::exposition::KERNEL_STATS;

/// A counter the collector increments and a scrape reads. Unlike a recorder's counter, it
/// goes when its namespace goes, so that a departed namespace's series leave the output.
#[derive(Debug, Clone, Default)]
pub struct Tally(Arc<AtomicU64>);

impl Tally {
    /// Adds `by`.
    pub fn increment(&self, by: u64) {
        self.0.fetch_add(by, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters of one namespace that the collector increments directly.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// NEW events applied.
    pub events_new: Tally,
    /// UPDATE events applied.
    pub events_update: Tally,
    /// DESTROY events applied.
    pub events_destroy: Tally,
    /// Receive queue overruns (each: an unknown number of lost events).
    pub events_lost: Tally,
    /// Kernel messages that could not be decoded and were skipped.
    pub parse_errors: Tally,
    /// Malformed optional attributes left out of entries that were otherwise applied.
    pub attribute_errors: Tally,
    /// Resyncs at start (or when the namespace was found).
    pub resyncs_startup: Tally,
    /// Periodic resyncs.
    pub resyncs_periodic: Tally,
    /// Resyncs after lost events.
    pub resyncs_events_lost: Tally,
    /// Resyncs after a config reload changed which hosts are counted.
    pub resyncs_reload: Tally,
    /// Entries corrected by all resyncs after the first.
    pub resync_corrected: Tally,
}

/// Figures of one namespace's table and sockets that the collector keeps current.
#[derive(Debug, Default)]
pub struct TableStatus {
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
    /// File descriptors the exporter holds for this namespace.
    pub open_files: AtomicU64,
    /// Bytes of receive buffers the exporter holds for this namespace.
    pub buffer_bytes: AtomicU64,
}

/// Labels of a namespace's series: name and value, in output order, before the labels of
/// each label set.
pub type NamespaceLabels = Vec<(&'static str, String)>;

/// One watched namespace, as the exposition sees it.
#[derive(Debug)]
pub struct NamespaceView {
    /// Unique among the views of a run: tells their series apart between scrapes.
    pub key: u64,
    /// The labels every series of this namespace carries.
    pub labels: NamespaceLabels,
    /// Its connections.
    pub tracker: Arc<Tracker>,
    /// Its table's figures.
    pub status: Arc<TableStatus>,
    /// Its counters.
    pub counters: Counters,
}

impl NamespaceView {
    /// A view with empty figures and counters.
    pub fn new(key: u64, labels: NamespaceLabels, tracker: Arc<Tracker>) -> NamespaceView {
        NamespaceView {
            key,
            labels,
            tracker,
            status: Arc::default(),
            counters: Counters::default(),
        }
    }

    /// The same namespace under another key and other labels: its tracker, figures and
    /// counters carry on, so no connection and no count is lost when its labels change.
    pub fn relabelled(&self, key: u64, labels: NamespaceLabels) -> NamespaceView {
        NamespaceView {
            key,
            labels,
            tracker: Arc::clone(&self.tracker),
            status: Arc::clone(&self.status),
            counters: self.counters.clone(),
        }
    }
}

/// The namespaces watched now, shared by the collector (which adds and drops them) and the
/// exposition (which renders them).
#[derive(Debug, Default)]
pub struct Namespaces {
    views: RwLock<Vec<Arc<NamespaceView>>>,
    /// Namespace files matched but not watched, because `max_namespaces` were watched.
    skipped: AtomicU64,
    /// Whether the exporter watches namespaces other than its own (then it reports them).
    several: bool,
    /// The bound on label sets that the trackers of all namespaces share.
    series_bound: Arc<SeriesBound>,
}

impl Namespaces {
    /// The exporter's own namespace alone, unlabelled, as without `namespaces`.
    pub fn own(tracker: Arc<Tracker>) -> (Arc<Namespaces>, Arc<NamespaceView>) {
        let namespaces = Arc::new(Namespaces::empty(false, tracker.series_bound()));
        let view = Arc::new(NamespaceView::new(0, Vec::new(), tracker));
        namespaces.add(Arc::clone(&view));
        (namespaces, view)
    }

    /// None yet; `several` when namespaces other than the own one are to be watched. The
    /// trackers of the namespaces added take their label sets' places from `series_bound`.
    pub fn empty(several: bool, series_bound: Arc<SeriesBound>) -> Namespaces {
        Namespaces {
            views: RwLock::default(),
            skipped: AtomicU64::default(),
            several,
            series_bound,
        }
    }

    /// The bound on label sets that the trackers of all namespaces share.
    pub fn series_bound(&self) -> &Arc<SeriesBound> {
        &self.series_bound
    }

    /// Whether namespaces other than the own one are watched.
    pub fn several(&self) -> bool {
        self.several
    }

    /// Starts publishing `view`.
    pub fn add(&self, view: Arc<NamespaceView>) {
        self.write().push(view);
    }

    /// Publishes `view` in place of the view whose key is `key`, in one step, so that no
    /// scrape sees both or neither.
    pub fn replace(&self, key: u64, view: Arc<NamespaceView>) {
        let mut views = self.write();
        match views.iter_mut().find(|old| old.key == key) {
            Some(old) => *old = view,
            None => views.push(view),
        }
    }

    /// Stops publishing the view whose key is `key`.
    pub fn remove(&self, key: u64) {
        self.write().retain(|view| view.key != key);
    }

    /// Every view now.
    pub fn all(&self) -> Vec<Arc<NamespaceView>> {
        self.views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records how many matched namespace files are not watched for lack of room.
    pub fn set_skipped(&self, skipped: usize) {
        self.skipped.store(skipped as u64, Ordering::Relaxed);
    }

    /// How many matched namespace files are not watched for lack of room.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<NamespaceView>>> {
        self.views.write().unwrap_or_else(PoisonError::into_inner)
    }
}
