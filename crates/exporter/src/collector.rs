//! The collector thread: it owns the netlink sockets (they are not `Send`), applies events
//! to the trackers as they arrive, and re-dumps each table periodically and after lost
//! events.
//!
//! Without `namespaces` it reads the exporter's own namespace, waiting for events in the
//! read itself. With them it watches every namespace the patterns match from this same
//! thread: it enters each namespace to open its sockets there (they stay bound to it), then
//! waits for all of them at once with one `poll` over every namespace's event and address
//! sockets and the directory watch. Each namespace keeps its own tracker, queue, timers and
//! loss handling, by the same rules as the own namespace.
//!
//! With them it also labels each namespace with the Kubernetes pod its processes belong to
//! (`pod_uid`), looked up in one walk of `/proc` for every namespace that has none yet, when
//! namespaces appear and at each rescan: a pod's processes may start after its namespace
//! file appears. The label changes once, from none to the pod's UID; the namespace's series
//! then move to a new view whose tracker is the same, so no count is lost.

use std::collections::{HashSet, hash_map::DefaultHasher};
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use conntrack_codec::{EntryKind, EntryMessage, ParseError, Protocol, event_filter};
use ctnetlink::addresses::{self, AddressChanges};
use ctnetlink::namespace::{NamespaceId, NetworkNamespace};
use ctnetlink::{ConntrackSocket, DecoderPriority, EventGroups, EventSocket, Readiness, Received};
use log::{debug, info, warn};
use pods::PodUid;
use tracker::{Classifier, HostLabels, HostPattern, LabelNames, ProtocolSet, Tracker};

use crate::error::Error;
use crate::event_log::EventLog;
use crate::exposition::{KERNEL_STATS, Status};
use crate::line_queue::LineQueue;
use crate::namespaces::{self, DirectoryWatch, NamespacePattern};
use crate::supervision::SupervisedThread;
use crate::watched::{Counters, NamespaceView, Namespaces};

/// While events stream in, the pause after a read that emptied the queue, so that the next
/// wake-up finds many events instead of one: waking the thread costs the kernel more than
/// handing over a lone event. At most this much delay is added to any event.
const STREAM_PAUSE: Duration = Duration::from_millis(1);
/// How often the loop looks at its timers, address changes and the stop flag.
const TICK: Duration = Duration::from_millis(250);
/// How often the kernel table's size and statistics are read.
const KERNEL_FIGURES_INTERVAL: Duration = Duration::from_secs(1);
/// After this long with no entry and no event, tracking is probably off: say so once.
const TRACKING_HINT_AFTER: Duration = Duration::from_secs(30);
/// Resyncs after lost events are spaced by at least this long...
const MIN_LOSS_RESYNC_GAP: Duration = Duration::from_secs(1);
/// ...and by this many times the last dump's duration, so that an overloaded host spends at
/// most about a tenth of its time dumping.
const LOSS_RESYNC_GAP_FACTOR: u32 = 10;
/// With several namespaces, the most event batches read from one namespace per wake-up, so
/// that a namespace in a burst does not keep the others waiting.
const FAIR_SHARE_BATCHES: usize = 16;
/// File descriptors held per namespace: its file, the event, request and address sockets.
const FILES_PER_NAMESPACE: u64 = 4;

/// What the collector needs from the settings.
#[derive(Debug, Clone)]
pub(crate) struct CollectorSettings {
    /// Remote hosts not counted.
    pub ignore_hosts: Vec<HostPattern>,
    /// Protocols counted.
    pub protocols: ProtocolSet,
    /// Labels of the per-connection families.
    pub labels: LabelNames,
    /// The values of the `host` label (groups, networks).
    pub hosts: Arc<HostLabels>,
    /// Bytes and packets per label set.
    pub accounting: bool,
    /// Periodic resync interval; `None`: none.
    pub resync_interval: Option<Duration>,
    /// Initial receive queue size.
    pub netlink_buffer_bytes: usize,
    /// Largest receive queue size.
    pub netlink_buffer_max_bytes: usize,
    /// Whether the kernel drops the events of protocols not counted.
    pub kernel_event_filter: bool,
    /// Event log, when enabled, and the counter of the lines it drops.
    pub event_log: Option<(EventLog, metrics::Counter)>,
    /// Namespace files to watch; empty: the own namespace alone, unlabelled.
    pub namespaces: Vec<NamespacePattern>,
    /// With `namespaces`, whether the own namespace is watched too.
    pub watch_own_namespace: bool,
    /// With `namespaces`, the most namespaces watched at once.
    pub max_namespaces: usize,
}

/// Why a resync ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Startup,
    Periodic,
    EventsLost,
    /// A config reload changed `ignore_hosts`: every entry is classified again.
    Reload,
}

/// How much lower than the exporter's own the priority of a background resync's decoding is
/// (nice +10: about a tenth of a core's share against one thread of normal priority).
const BACKGROUND_RESYNC_NICE: u8 = 10;

impl Reason {
    /// The priority of the dump's decoding, which also applies the entries. A periodic or
    /// reload resync is background work: the numbers are right before it, and on a busy host
    /// it should mostly wait while scrapes (whose render then keeps a core of its own) or the
    /// host's own work want the cores. The start-up dump and the repair after
    /// lost events run at the exporter's priority, as the numbers are missing or wrong
    /// until they end.
    fn decoder_priority(self) -> DecoderPriority {
        match self {
            Reason::Startup | Reason::EventsLost => DecoderPriority::Caller,
            Reason::Periodic | Reason::Reload => DecoderPriority::Lowered(BACKGROUND_RESYNC_NICE),
        }
    }
}

/// What a config reload (SIGHUP) changes in the running collector.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reconfiguration {
    /// Remote hosts not counted.
    pub ignore_hosts: Vec<HostPattern>,
    /// Periodic resync interval; `None`: none.
    pub resync_interval: Option<Duration>,
}

/// Starts the collector thread. Returns once the sockets are open and the initial dumps are
/// applied, or with the error that prevented it. The thread runs until `stop` is set; it
/// has no error to return after start-up (failures there are logged and retried), but it is
/// supervised all the same, since a bug could still end it.
pub(crate) fn start(
    settings: CollectorSettings,
    namespaces: Arc<Namespaces>,
    status: Arc<Status>,
    reconfigurations: mpsc::Receiver<Reconfiguration>,
    stop: Arc<AtomicBool>,
) -> Result<SupervisedThread, Error> {
    let (started, startup) = mpsc::channel();
    let thread = SupervisedThread::spawn("collector", move || {
        let collector = Collector::open(settings, namespaces, status, reconfigurations);
        let mut collector = match collector {
            Ok(collector) => collector,
            Err(error) => {
                let _ = started.send(Err(error));
                return Ok::<(), Infallible>(());
            }
        };
        collector.status.ready.store(true, Ordering::Relaxed);
        let _ = started.send(Ok(()));
        collector.run(&stop);
        Ok(())
    })
    .map_err(Error::CollectorThread)?;
    match startup.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(error)) => {
            thread.join();
            Err(error)
        }
        Err(_) => Err(Error::CollectorEnded(thread.join())),
    }
}

/// The event log's format and the queue its lines wait in for standard output, shared by
/// every namespace's applier (behind a lock, as a dump applies entries on a thread of its
/// own while the collector thread receives).
type SharedEventLog = Arc<Mutex<(EventLog, LineQueue)>>;

/// Applies kernel entries to the tracker and accounts for them.
struct Applier {
    classifier: Classifier,
    tracker: Arc<Tracker>,
    counters: Counters,
    event_log: Option<SharedEventLog>,
    /// The namespace's `netns` label value, for the event log; `None` without namespaces.
    netns: Option<String>,
    /// Whether any entry or event was ever seen (if not, tracking may be off).
    seen_any: bool,
}

impl Applier {
    fn apply_event(&mut self, event: Result<EntryMessage, ParseError>) {
        let event = match event {
            Ok(event) => event,
            Err(error) => return self.skip_malformed(error),
        };
        self.count_attribute_errors(&event);
        let EntryMessage { kind, entry, .. } = event;
        self.seen_any = true;
        match kind {
            EntryKind::New => self.counters.events_new.increment(1),
            EntryKind::Update => self.counters.events_update.increment(1),
            EntryKind::Destroy => self.counters.events_destroy.increment(1),
            EntryKind::Dumped => {}
        }
        let class = self.classifier.classify(&entry);
        if let (Some(event_log), Some(class)) = (&self.event_log, &class) {
            let (log, queue) = &mut *event_log.lock().unwrap_or_else(PoisonError::into_inner);
            queue.push(log.line(kind, &entry, class, self.netns.as_deref()));
        }
        self.tracker.apply(kind, &entry, class);
    }

    fn skip_malformed(&mut self, error: ParseError) {
        self.counters.parse_errors.increment(1);
        warn!("skipped a malformed conntrack message: {error}");
    }

    /// Counts the malformed optional attributes the entry was applied without.
    fn count_attribute_errors(&self, decoded: &EntryMessage) {
        let errors = &decoded.attribute_errors;
        if let Some(first) = errors.first() {
            self.counters
                .attribute_errors
                .increment(errors.count().into());
            debug!(
                "left {} malformed attribute(s) out of the conntrack entry {:?}, the first: {first}",
                errors.count(),
                decoded.entry.original
            );
        }
    }
}

/// Where a namespace's sockets live.
enum Place {
    /// The exporter's own namespace.
    Own,
    /// Another namespace, entered to open its sockets and to list its addresses.
    Other(NetworkNamespace),
}

/// One namespace's sockets, tracker and timers.
struct Watch {
    id: NamespaceId,
    place: Place,
    /// For log lines: empty for the own namespace without `namespaces`, else ` in network
    /// namespace NAME`.
    context: String,
    view: Arc<NamespaceView>,
    /// The pod the namespace belongs to, once found; for the own namespace, never looked up.
    pod_uid: Option<PodUid>,
    events: EventSocket,
    table: ConntrackSocket,
    address_changes: AddressChanges,
    applier: Applier,
    queue_bytes: usize,
    started: Instant,
    last_resync_end: Instant,
    last_dump_duration: Duration,
    next_periodic: Option<Instant>,
    /// Events were lost and a resync is due.
    loss_pending: bool,
    next_kernel_figures: Instant,
    tracking_hint_given: bool,
}

/// The sockets of a namespace, opened inside it, and its addresses then.
struct Sockets {
    events: EventSocket,
    address_changes: AddressChanges,
    local: HashSet<IpAddr>,
    table: ConntrackSocket,
}

impl Sockets {
    /// Subscribes to events first, so that nothing that happens during the initial dump is
    /// missed, then watches the addresses, lists them, and opens the request socket: all in
    /// the calling thread's namespace.
    fn open() -> Result<Sockets, Error> {
        let events = EventSocket::subscribe(EventGroups::ALL)?;
        let address_changes = AddressChanges::subscribe()?;
        let local = addresses::local_addresses().map_err(Error::LocalAddresses)?;
        let table = ConntrackSocket::open()?;
        Ok(Sockets {
            events,
            address_changes,
            local,
            table,
        })
    }
}

impl Watch {
    /// Opens the namespace's sockets (inside it, for another namespace; `home` is the own
    /// namespace to come back to) and applies its initial dump.
    fn open(
        settings: &CollectorSettings,
        id: NamespaceId,
        place: Place,
        home: Option<&NetworkNamespace>,
        view: Arc<NamespaceView>,
        event_log: Option<SharedEventLog>,
    ) -> Result<Watch, Error> {
        let sockets = match (&place, home) {
            (Place::Other(namespace), Some(home)) => {
                namespace.run_inside(home, Sockets::open)??
            }
            _ => Sockets::open()?,
        };
        let netns = view
            .labels
            .iter()
            .find(|(label, _)| *label == namespaces::LABEL)
            .map(|(_, name)| name.clone());
        let context = match &netns {
            Some(name) => format!(" in network namespace {name}"),
            None => String::new(),
        };
        let queue = sockets
            .events
            .set_receive_queue(settings.netlink_buffer_bytes)?;
        if !queue.forced {
            warn!(
                "could not force the event receive queue{context} to {} bytes (needs \
                 CAP_NET_ADMIN); it is {} bytes, capped by net.core.rmem_max",
                settings.netlink_buffer_bytes, queue.bytes
            );
        }
        let status = &view.status;
        status
            .receive_queue_bytes
            .store(queue.bytes as u64, Ordering::Relaxed);
        status
            .open_files
            .store(FILES_PER_NAMESPACE, Ordering::Relaxed);
        status.buffer_bytes.store(
            (sockets.events.buffer_bytes()
                + sockets.table.buffer_bytes()
                + sockets.address_changes.buffer_bytes()) as u64,
            Ordering::Relaxed,
        );
        sockets.events.set_receive_timeout(TICK)?;
        // Events of protocols not counted are dropped by the kernel, before they take room
        // in the queue; the classifier still checks every event it reads.
        if settings.kernel_event_filter {
            let counted: Vec<Protocol> = (0..=u8::MAX)
                .map(Protocol)
                .filter(|protocol| settings.protocols.contains(*protocol))
                .collect();
            sockets
                .events
                .set_filter(event_filter::protocol_filter(&counted).as_deref())?;
        }
        let mut classifier = Classifier::new(settings.ignore_hosts.clone())
            .with_protocols(settings.protocols)
            .with_labels(settings.labels.clone())
            .with_hosts(Arc::clone(&settings.hosts));
        classifier.set_local_addresses(sockets.local);
        let now = Instant::now();
        let mut watch = Watch {
            id,
            place,
            context,
            events: sockets.events,
            table: sockets.table,
            address_changes: sockets.address_changes,
            applier: Applier {
                classifier,
                tracker: Arc::clone(&view.tracker),
                counters: view.counters.clone(),
                event_log,
                netns,
                seen_any: false,
            },
            view,
            pod_uid: None,
            queue_bytes: settings.netlink_buffer_bytes,
            next_periodic: settings.resync_interval.map(|interval| now + interval),
            started: now,
            last_resync_end: now,
            last_dump_duration: Duration::ZERO,
            loss_pending: false,
            next_kernel_figures: now,
            tracking_hint_given: false,
        };
        watch.resync(settings, Reason::Startup)?;
        Ok(watch)
    }

    /// Applies the events queued now, up to [`FAIR_SHARE_BATCHES`] batches; says whether it
    /// emptied the queue.
    fn read_queued_events(&mut self, settings: &CollectorSettings) -> bool {
        for _ in 0..FAIR_SHARE_BATCHES {
            let applier = &mut self.applier;
            match self
                .events
                .receive_queued(|event| applier.apply_event(event))
            {
                Ok(Received::Messages(count)) if count < EventSocket::BATCH => return true,
                Ok(Received::Messages(_)) => {}
                Ok(Received::WouldBlock) => return true,
                Ok(Received::EventsLost) => self.events_lost(settings),
                Err(error) => {
                    warn!("reading conntrack events{} failed: {error}", self.context);
                    return true;
                }
            }
        }
        false
    }

    fn loss_resync_due(&self) -> Instant {
        let gap = MIN_LOSS_RESYNC_GAP.max(self.last_dump_duration * LOSS_RESYNC_GAP_FACTOR);
        self.last_resync_end + gap
    }

    /// Applies every event queued now, without waiting for more.
    fn drain_queued_events(&mut self, settings: &CollectorSettings) {
        loop {
            let applier = &mut self.applier;
            match self
                .events
                .receive_queued(|event| applier.apply_event(event))
            {
                Ok(Received::Messages(_)) => continue,
                Ok(Received::WouldBlock) => break,
                Ok(Received::EventsLost) => self.events_lost(settings),
                Err(error) => {
                    warn!("reading conntrack events{} failed: {error}", self.context);
                    break;
                }
            }
        }
    }

    /// The kernel dropped events: count it, warn once per episode, grow the queue, and
    /// schedule a resync.
    fn events_lost(&mut self, settings: &CollectorSettings) {
        self.applier.counters.events_lost.increment(1);
        let status = &self.view.status;
        if !self.loss_pending {
            warn!(
                "the kernel dropped conntrack events{} (receive queue of {} bytes full, as the \
                 kernel counts it); the table will be read again to correct the counts",
                self.context,
                status.receive_queue_bytes.load(Ordering::Relaxed)
            );
        }
        self.loss_pending = true;
        let grown = (self.queue_bytes * 2).min(settings.netlink_buffer_max_bytes);
        if grown > self.queue_bytes {
            match self.events.set_receive_queue(grown) {
                Ok(queue) => {
                    self.queue_bytes = grown;
                    info!(
                        "event receive queue{} grown to {} bytes",
                        self.context, queue.bytes
                    );
                    status
                        .receive_queue_bytes
                        .store(queue.bytes as u64, Ordering::Relaxed);
                }
                Err(error) => warn!(
                    "could not grow the event receive queue{}: {error}",
                    self.context
                ),
            }
        }
    }

    /// Runs the resyncs and kernel readings that are due; `hint` says whether this
    /// namespace gets the hint that tracking may be off (the own one, which
    /// `--ensure-tracking` can switch on).
    fn run_timers(&mut self, settings: &CollectorSettings, hint: bool) {
        let now = Instant::now();
        if self.loss_pending && now >= self.loss_resync_due() {
            self.resync_logging_errors(settings, Reason::EventsLost);
        } else if self.next_periodic.is_some_and(|due| now >= due) {
            self.resync_logging_errors(settings, Reason::Periodic);
        }
        if now >= self.next_kernel_figures {
            self.next_kernel_figures = now + KERNEL_FIGURES_INTERVAL;
            self.refresh_kernel_figures();
        }
        if hint
            && !self.tracking_hint_given
            && !self.applier.seen_any
            && now.duration_since(self.started) >= TRACKING_HINT_AFTER
        {
            self.tracking_hint_given = true;
            warn!(
                "no connection has been tracked for {}s: connection tracking is probably off \
                 in this network namespace (since Linux 4.14 it is on only when a firewall \
                 rule needs it). Run with --ensure-tracking (ensure_tracking = true), or add \
                 a rule that uses conntrack, such as `nft add rule inet filter input ct state \
                 established accept`",
                TRACKING_HINT_AFTER.as_secs()
            );
        }
    }

    fn resync_logging_errors(&mut self, settings: &CollectorSettings, reason: Reason) {
        if let Err(error) = self.resync(settings, reason) {
            warn!("resync{} failed, will retry: {error}", self.context);
            self.last_resync_end = Instant::now();
        }
    }

    /// Dumps the table and reconciles the tracker with it. Events that arrive meanwhile wait
    /// in the receive queue and are applied afterwards, in order, so the latest word on
    /// each connection is the one that stays.
    fn resync(
        &mut self,
        settings: &CollectorSettings,
        reason: Reason,
    ) -> Result<(), ctnetlink::Error> {
        // Every event already queued is older than the dump and must be applied before it,
        // not after: after a loss, a queued NEW whose DESTROY was dropped would otherwise
        // bring back a connection the dump rightly left out. Applying them first also keeps
        // them from being counted as drift.
        if reason != Reason::Startup {
            self.drain_queued_events(settings);
        }
        let started = Instant::now();
        let tracker = Arc::clone(&self.applier.tracker);
        let mut resync = tracker.begin_resync();
        let applier = &mut self.applier;
        let summary = self
            .table
            .dump_overlapped(None, reason.decoder_priority(), |decoded| match decoded {
                Ok(decoded) => {
                    applier.count_attribute_errors(&decoded);
                    let entry = &decoded.entry;
                    resync.observe(entry, applier.classifier.classify(entry));
                }
                Err(error) => applier.skip_malformed(error),
            })?;
        let outcome = resync.finish();
        let duration = started.elapsed();
        self.last_dump_duration = duration;
        self.last_resync_end = Instant::now();
        if let Some(interval) = settings.resync_interval {
            self.next_periodic = Some(self.last_resync_end + interval);
        }
        if summary.entries > 0 {
            self.applier.seen_any = true;
        }
        let status = &self.view.status;
        status
            .last_resync_nanos
            .store(duration.as_nanos() as u64, Ordering::Relaxed);
        let counters = &self.applier.counters;
        match reason {
            Reason::Startup => {
                counters.resyncs_startup.increment(1);
                info!(
                    "initial dump{}: {} entries ({} connections counted) in {:.3}s",
                    self.context,
                    summary.entries,
                    tracker.connections(),
                    duration.as_secs_f64()
                );
            }
            Reason::Periodic | Reason::EventsLost | Reason::Reload => {
                match reason {
                    Reason::Periodic => counters.resyncs_periodic.increment(1),
                    Reason::Reload => counters.resyncs_reload.increment(1),
                    _ => {
                        counters.resyncs_events_lost.increment(1);
                        self.loss_pending = false;
                    }
                }
                let corrected = outcome.corrected();
                counters.resync_corrected.increment(corrected);
                status
                    .last_resync_corrected
                    .store(corrected, Ordering::Relaxed);
                let level = if corrected > 0 {
                    log::Level::Info
                } else {
                    log::Level::Debug
                };
                log::log!(
                    level,
                    "resync ({reason:?}){}: {} entries in {:.3}s, corrected {corrected} \
                     ({} added, {} changed, {} removed)",
                    self.context,
                    summary.entries,
                    duration.as_secs_f64(),
                    outcome.inserted,
                    outcome.changed,
                    outcome.removed
                );
            }
        }
        Ok(())
    }

    fn refresh_kernel_figures(&mut self) {
        let status = &self.view.status;
        match self.table.table_size() {
            Ok(size) => {
                status
                    .kernel_entries
                    .store(size.entries.into(), Ordering::Relaxed);
                status
                    .kernel_limit
                    .store(size.max_entries.into(), Ordering::Relaxed);
            }
            Err(error) => debug!(
                "reading the kernel table size{} failed: {error}",
                self.context
            ),
        }
        match self.table.cpu_stats() {
            Ok(cpus) => {
                for ((_, read), total) in KERNEL_STATS.iter().zip(&status.kernel_stats) {
                    let sum = cpus.iter().map(|cpu| u64::from(read(cpu))).sum();
                    total.store(sum, Ordering::Relaxed);
                }
            }
            Err(error) => debug!(
                "reading the kernel statistics{} failed: {error}",
                self.context
            ),
        }
    }

    /// Applies new `ignore_hosts`: every connection is classified again by a resync.
    fn ignore_hosts(&mut self, settings: &CollectorSettings) {
        self.applier
            .classifier
            .set_ignore(settings.ignore_hosts.clone());
        self.resync_logging_errors(settings, Reason::Reload);
    }

    /// Labels the namespace's series with the pod it belongs to: they move to a new view,
    /// published in place of the old one, whose tracker, figures and counters are the same.
    fn label_pod(&mut self, uid: PodUid, namespaces: &Namespaces) {
        let name = self.applier.netns.as_deref().unwrap_or_default();
        let labels = namespaces::labels(name, Some(&uid));
        let view = Arc::new(self.view.relabelled(key_of(self.id, Some(&uid)), labels));
        namespaces.replace(self.view.key, Arc::clone(&view));
        info!(
            "pod {uid} found{}: its series are labelled pod_uid=\"{uid}\" from now on",
            self.context
        );
        self.view = view;
        self.pod_uid = Some(uid);
    }

    /// The namespace's interface addresses now, listed inside it.
    fn local_addresses(&self, home: Option<&NetworkNamespace>) -> Result<HashSet<IpAddr>, String> {
        match (&self.place, home) {
            (Place::Other(namespace), Some(home)) => namespace
                .run_inside(home, addresses::local_addresses)
                .map_err(|error| error.to_string())?
                .map_err(|error| error.to_string()),
            _ => addresses::local_addresses().map_err(|error| error.to_string()),
        }
    }

    fn reload_local_addresses(&mut self, home: Option<&NetworkNamespace>) {
        match self.address_changes.drain() {
            Ok(false) => return,
            Ok(true) => {}
            Err(error) => warn!(
                "watching interface addresses{} failed: {error}",
                self.context
            ),
        }
        match self.local_addresses(home) {
            Ok(local) => {
                debug!("local addresses{} now: {local:?}", self.context);
                let applier = &mut self.applier;
                applier.classifier.set_local_addresses(local);
                // Which end of a connection is remote follows the local addresses: move the
                // connections now rather than at the next resync.
                let classifier = &applier.classifier;
                let outcome = applier
                    .tracker
                    .reclassify(|entry| classifier.classify(entry));
                debug!("reclassified after the address change: {outcome:?}");
            }
            Err(error) => warn!(
                "listing interface addresses{} failed: {error}",
                self.context
            ),
        }
    }
}

/// With `namespaces`: what finds the namespaces to watch.
struct Discovery {
    /// The own namespace, to come back to after entering another.
    home: NetworkNamespace,
    directories: DirectoryWatch,
    next_rescan: Instant,
    /// Paths already reported as not watchable, so that each is logged once while it stays.
    reported: HashSet<PathBuf>,
    /// Whether the bound on namespaces was reported since it was last reached.
    bound_reported: bool,
    /// Whether the log said why pod UIDs may be missing (once per run).
    pod_uid_trouble_reported: bool,
}

struct Collector {
    /// One per namespace watched; without `namespaces`, the own namespace alone.
    watches: Vec<Watch>,
    settings: CollectorSettings,
    status: Arc<Status>,
    namespaces: Arc<Namespaces>,
    event_log: Option<SharedEventLog>,
    /// `Some` with `namespaces`.
    discovery: Option<Discovery>,
    /// Config reloads, applied once per tick.
    reconfigurations: mpsc::Receiver<Reconfiguration>,
    /// The log said that the bound on series was reached.
    series_bound_told: bool,
}

impl Collector {
    /// Opens the own namespace's sockets, or with `namespaces` those of every namespace
    /// watched, and applies their initial dumps.
    fn open(
        settings: CollectorSettings,
        namespaces: Arc<Namespaces>,
        status: Arc<Status>,
        reconfigurations: mpsc::Receiver<Reconfiguration>,
    ) -> Result<Collector, Error> {
        let event_log = settings
            .event_log
            .clone()
            .map(|(log, dropped)| {
                let queue = log.start_writer(dropped)?;
                Ok(Arc::new(Mutex::new((log, queue))))
            })
            .transpose()
            .map_err(Error::EventLogThread)?;
        let mut collector = Collector {
            watches: Vec::new(),
            settings,
            status,
            namespaces,
            event_log,
            discovery: None,
            reconfigurations,
            series_bound_told: false,
        };
        if collector.settings.namespaces.is_empty() {
            let tracker = collector.new_tracker();
            let view = Arc::new(NamespaceView::new(0, Vec::new(), tracker));
            let own = NamespaceId {
                device: 0,
                inode: 0,
            };
            collector.add(own, Place::Own, view)?;
        } else {
            let home = NetworkNamespace::own()?;
            collector.discovery = Some(Discovery {
                home,
                directories: DirectoryWatch::new().map_err(Error::DirectoryWatch)?,
                next_rescan: Instant::now(),
                reported: HashSet::new(),
                bound_reported: false,
                pod_uid_trouble_reported: false,
            });
            if collector.settings.watch_own_namespace {
                collector.add_own()?;
            }
            collector.rescan()?;
        }
        Ok(collector)
    }

    fn new_tracker(&self) -> Arc<Tracker> {
        let tracker = if self.settings.accounting {
            Tracker::with_accounting()
        } else {
            Tracker::new()
        };
        Arc::new(tracker.with_series_bound(Arc::clone(self.namespaces.series_bound())))
    }

    /// Logs once that `max_series` was reached, in whichever namespace.
    fn tell_series_bound(&mut self) {
        let bound = self.namespaces.series_bound();
        if self.series_bound_told || !bound.reached() {
            return;
        }
        self.series_bound_told = true;
        warn!(
            "max_series reached: {} label sets are in the output; the connections of further \
             label sets are counted under labels that all read \"other\" \
             (conntrack_exporter_overflow_connections) until label sets leave the output after \
             host_idle_timeout. Consider host_groups or host_prefix_length_v4/v6",
            bound.limit().map_or(0, std::num::NonZeroUsize::get)
        );
    }

    /// Opens a namespace's watch and publishes it.
    fn add(
        &mut self,
        id: NamespaceId,
        place: Place,
        view: Arc<NamespaceView>,
    ) -> Result<(), Error> {
        let home = self.discovery.as_ref().map(|discovery| &discovery.home);
        let event_log = self.event_log.clone();
        let watch = Watch::open(
            &self.settings,
            id,
            place,
            home,
            Arc::clone(&view),
            event_log,
        )?;
        self.watches.push(watch);
        self.namespaces.add(view);
        Ok(())
    }

    /// Watches the own namespace, labelled [`namespaces::OWN_NAME`].
    fn add_own(&mut self) -> Result<(), Error> {
        let Some(discovery) = &self.discovery else {
            return Ok(());
        };
        let id = discovery.home.id();
        let labels = namespaces::labels(namespaces::OWN_NAME, None);
        let view = Arc::new(NamespaceView::new(
            key_of(id, None),
            labels,
            self.new_tracker(),
        ));
        self.add(id, Place::Own, view)
    }

    /// Matches the patterns again: drops the namespaces whose files are gone, and watches the
    /// new ones, up to `max_namespaces`. Fails only when entering a namespace is refused for
    /// lack of privilege (which no later attempt would change); any other failure is logged
    /// once per path, which is tried again at each rescan.
    fn rescan(&mut self) -> Result<(), Error> {
        let Some(discovery) = &mut self.discovery else {
            return Ok(());
        };
        discovery.next_rescan = Instant::now() + namespaces::RESCAN_INTERVAL;
        for pattern in &self.settings.namespaces {
            discovery.directories.follow(pattern.directory());
        }
        let found = namespaces::scan(&self.settings.namespaces);
        let own = discovery.home.id();
        let keep_own = self.settings.watch_own_namespace;
        let namespaces = &self.namespaces;
        self.watches.retain(|watch| {
            let keep = (watch.id == own && keep_own) || found.iter().any(|f| f.id == watch.id);
            if !keep {
                info!(
                    "stopped watching network namespace{}: its file is gone",
                    watch.context
                );
                namespaces.remove(watch.view.key);
            }
            keep
        });
        let mut skipped = 0;
        for candidate in &found {
            if self.watches.iter().any(|watch| watch.id == candidate.id) {
                continue;
            }
            if self.watches.len() >= self.settings.max_namespaces {
                skipped += 1;
                continue;
            }
            let outcome = if candidate.id == own {
                self.add_own()
            } else {
                self.add_other(&candidate.path)
            };
            match outcome {
                Ok(()) => {}
                Err(Error::Kernel(ctnetlink::Error::NamespacePermission)) => {
                    return Err(Error::Kernel(ctnetlink::Error::NamespacePermission));
                }
                Err(error) => self.report_once(&candidate.path, &error.to_string()),
            }
        }
        let Some(discovery) = &mut self.discovery else {
            return Ok(());
        };
        discovery
            .reported
            .retain(|path| found.iter().any(|f| &f.path == path));
        self.namespaces.set_skipped(skipped);
        if skipped == 0 {
            discovery.bound_reported = false;
        } else if !discovery.bound_reported {
            discovery.bound_reported = true;
            warn!(
                "{skipped} network namespace(s) not watched: max_namespaces ({}) are watched \
                 already",
                self.settings.max_namespaces
            );
        }
        self.find_pod_uids();
        Ok(())
    }

    /// Looks for the pod of every watched namespace that has none yet, in one walk of
    /// `/proc`, and labels those found. The own namespace is left out: it is the node's,
    /// shared by its services and by every `hostNetwork` pod, the exporter's own included.
    /// Processes that may not be inspected (without `CAP_SYS_PTRACE`) or a `/proc` that
    /// cannot be listed leave namespaces without a pod, and are logged once per run.
    fn find_pod_uids(&mut self) {
        let Some(discovery) = &mut self.discovery else {
            return;
        };
        let own = discovery.home.id();
        let pending: Vec<NamespaceId> = self
            .watches
            .iter()
            .filter(|watch| watch.id != own && watch.pod_uid.is_none())
            .map(|watch| watch.id)
            .collect();
        if pending.is_empty() {
            return;
        }
        let mut tell_once = |message: String| {
            if !std::mem::replace(&mut discovery.pod_uid_trouble_reported, true) {
                warn!("{message}");
            }
        };
        let found = match pods::find_pod_uids(&pending) {
            Ok(found) => found,
            Err(error) => {
                tell_once(format!(
                    "looking for pod UIDs: cannot list /proc: {error}; no namespace gets a \
                     pod_uid label"
                ));
                return;
            }
        };
        let mut missing = pending.len();
        for watch in &mut self.watches {
            if let Some(uid) = found.get(&watch.id) {
                watch.label_pod(uid.clone(), &self.namespaces);
                missing -= 1;
            }
        }
        if found.denied > 0 && missing > 0 {
            tell_once(format!(
                "looking for pod UIDs: {} of {} processes could not be inspected (reading \
                 another process's /proc/PID/ns/net needs CAP_SYS_PTRACE); the namespaces of \
                 such processes get no pod_uid label",
                found.denied, found.processes
            ));
        }
    }

    /// Opens the namespace file at `path` and watches it. A file that is no network
    /// namespace is reported (once) and left out.
    fn add_other(&mut self, path: &std::path::Path) -> Result<(), Error> {
        let namespace = match NetworkNamespace::open(path) {
            Ok(namespace) => namespace,
            Err(error) => {
                self.report_once(path, &error.to_string());
                return Ok(());
            }
        };
        let id = namespace.id();
        let mut name = namespaces::name_of(path);
        let taken = |name: &str| {
            self.namespaces.all().iter().any(|view| {
                view.labels
                    .iter()
                    .any(|(label, value)| *label == namespaces::LABEL && value == name)
            })
        };
        if taken(&name) {
            name = format!("{name}-{}", id.inode);
        }
        let labels = namespaces::labels(&name, None);
        let view = Arc::new(NamespaceView::new(
            key_of(id, None),
            labels,
            self.new_tracker(),
        ));
        self.add(id, Place::Other(namespace), view)
    }

    fn report_once(&mut self, path: &std::path::Path, error: &str) {
        if let Some(discovery) = &mut self.discovery
            && discovery.reported.insert(path.to_owned())
        {
            warn!("not watching {}: {error}", path.display());
        }
    }

    fn run(&mut self, stop: &AtomicBool) {
        if self.discovery.is_some() {
            self.run_all(stop);
        } else {
            self.run_own(stop);
        }
    }

    /// Without `namespaces`: waits for events on the socket itself (a blocking read that
    /// gives up after [`TICK`]) rather than polling first: one system call per wake-up,
    /// which returns every event queued by then. Timers and address changes are looked at
    /// once per tick.
    fn run_own(&mut self, stop: &AtomicBool) {
        let mut next_housekeeping = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            self.status.heartbeat.beat();
            let watch = &mut self.watches[0];
            let applier = &mut watch.applier;
            match watch.events.receive(|event| applier.apply_event(event)) {
                Ok(Received::Messages(count)) if count < EventSocket::BATCH => {
                    std::thread::sleep(STREAM_PAUSE)
                }
                Ok(Received::Messages(_)) | Ok(Received::WouldBlock) => {}
                Ok(Received::EventsLost) => watch.events_lost(&self.settings),
                Err(error) => {
                    warn!("reading conntrack events failed: {error}");
                    std::thread::sleep(TICK);
                }
            }
            let now = Instant::now();
            if now >= next_housekeeping {
                next_housekeeping = now + TICK;
                self.reconfigure();
                self.watches[0].reload_local_addresses(None);
                self.watches[0].run_timers(&self.settings, true);
                self.tell_series_bound();
            }
        }
    }

    /// With `namespaces`: one `poll` over every namespace's event and address sockets and
    /// the directory watch, then reads what is ready. As without namespaces, a wake-up that
    /// emptied the queues is followed by a short pause, so that events are read in batches.
    fn run_all(&mut self, stop: &AtomicBool) {
        let mut readiness = Readiness::default();
        let mut next_housekeeping = Instant::now();
        let mut rescan_soon: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            self.status.heartbeat.beat();
            readiness.clear();
            for watch in &self.watches {
                readiness.add(&watch.events);
                readiness.add(&watch.address_changes);
            }
            let Some(discovery) = &mut self.discovery else {
                return;
            };
            let directories = readiness.add(&discovery.directories);
            let wait = next_housekeeping.saturating_duration_since(Instant::now());
            if let Err(error) = readiness.wait(wait.min(TICK)) {
                warn!("waiting for conntrack events failed: {error}");
                std::thread::sleep(TICK);
            }
            if readiness.is_ready(directories) && discovery.directories.drain() {
                rescan_soon.get_or_insert(Instant::now() + namespaces::SETTLE);
            }
            let home = Some(&discovery.home);
            let (mut read_any, mut all_emptied) = (false, true);
            for (index, watch) in self.watches.iter_mut().enumerate() {
                if readiness.is_ready(2 * index) {
                    read_any = true;
                    all_emptied &= watch.read_queued_events(&self.settings);
                }
                if readiness.is_ready(2 * index + 1) {
                    watch.reload_local_addresses(home);
                }
            }
            if read_any && all_emptied {
                std::thread::sleep(STREAM_PAUSE);
            }
            let now = Instant::now();
            if now >= next_housekeeping {
                next_housekeeping = now + TICK;
                self.reconfigure();
                let own = self.discovery.as_ref().map(|discovery| discovery.home.id());
                for watch in &mut self.watches {
                    watch.run_timers(&self.settings, Some(watch.id) == own);
                }
                self.tell_series_bound();
            }
            let rescan_due = self
                .discovery
                .as_ref()
                .is_some_and(|discovery| now >= discovery.next_rescan);
            if rescan_due || rescan_soon.is_some_and(|due| now >= due) {
                rescan_soon = None;
                if let Err(error) = self.rescan() {
                    warn!("looking for network namespaces failed: {error}");
                }
            }
        }
    }

    /// Applies the latest config reload, if one came: a new resync interval counts from now;
    /// new `ignore_hosts` take a resync, which classifies every connection again.
    fn reconfigure(&mut self) {
        let Some(latest) = self.reconfigurations.try_iter().last() else {
            return;
        };
        if latest.resync_interval != self.settings.resync_interval {
            self.settings.resync_interval = latest.resync_interval;
            for watch in &mut self.watches {
                watch.next_periodic = latest.resync_interval.map(|every| Instant::now() + every);
            }
        }
        if latest.ignore_hosts != self.settings.ignore_hosts {
            self.settings.ignore_hosts = latest.ignore_hosts;
            for watch in &mut self.watches {
                watch.ignore_hosts(&self.settings);
            }
        }
    }
}

/// The key of a namespace's series in the exposition: stable for the namespace and its pod,
/// distinct between namespaces in practice (a hash of its identity), and another once its
/// pod is found, since its series' labels change then.
fn key_of(id: NamespaceId, pod_uid: Option<&PodUid>) -> u64 {
    let mut hasher = DefaultHasher::new();
    id.hash(&mut hasher);
    pod_uid.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::Exposition;
    use crate::settings::Naming;
    use conntrack_codec::{Message, NewEntry, TcpState, Tuple, parse_message, request};

    /// A NEW event whose zone attribute claims four bytes instead of two.
    fn event_with_a_bad_zone() -> EntryMessage {
        let original = Tuple::tcp(
            "10.0.0.1".parse().unwrap(),
            40000,
            "10.0.0.9".parse().unwrap(),
            80,
        );
        let mut entry = NewEntry::tcp(original, TcpState::Established, 60);
        entry.zone = Some(3);
        let mut bytes = request::create(1, &entry);
        // The zone is the request's last attribute: a 4-byte header, 2 bytes of value and
        // 2 of padding. Its length field now covers the padding too.
        let zone = bytes.len() - 8;
        bytes[zone..zone + 2].copy_from_slice(&8u16.to_ne_bytes());
        match parse_message(&bytes) {
            Ok(Message::Entry(decoded)) => decoded,
            other => panic!("expected an entry, got {other:?}"),
        }
    }

    #[test]
    fn an_entry_with_a_malformed_attribute_is_applied_and_the_attribute_counted() {
        let tracker = Arc::new(Tracker::new());
        let (namespaces, view) = Namespaces::own(Arc::clone(&tracker));
        let status = Arc::new(Status::default());
        let idle = Duration::from_secs(300);
        let exposition = Exposition::new(
            namespaces,
            status,
            Naming::Plain,
            tracker::LabelNames::default(),
            Arc::default(),
            false,
            idle,
        );
        let mut applier = Applier {
            classifier: Classifier::new(Vec::new()),
            tracker: Arc::clone(&tracker),
            counters: view.counters.clone(),
            event_log: None,
            netns: None,
            seen_any: false,
        };
        let event = event_with_a_bad_zone();
        assert_eq!(event.attribute_errors.count(), 1);
        assert_eq!(event.entry.zone, None);

        applier.apply_event(Ok(event.clone()));
        applier.apply_event(Ok(event));
        assert_eq!(tracker.connections(), 1);
        let text = exposition.render();
        assert!(
            text.contains("conntrack_exporter_attribute_errors_total 2\n"),
            "{text}"
        );
        assert!(
            text.contains("conntrack_exporter_parse_errors_total 0\n"),
            "{text}"
        );
        assert!(text.contains("conntrack_open_connections{host=\"10.0.0.9\"} 1\n"));
    }
}
