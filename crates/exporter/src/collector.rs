//! The collector thread: it owns the netlink sockets (they are not `Send`), applies events
//! to the tracker as they arrive, and re-dumps the table periodically and after lost events.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use conntrack_codec::{EntryKind, EntryMessage, ParseError, Protocol, event_filter};
use ctnetlink::addresses::{self, AddressChanges};
use ctnetlink::{ConntrackSocket, EventGroups, EventSocket, Received};
use log::{debug, info, warn};
use tracker::{Classifier, HostLabels, HostPattern, LabelNames, ProtocolSet, Tracker};

use crate::error::Error;
use crate::event_log::EventLog;
use crate::exposition::{Counters, KERNEL_STATS, Status};
use crate::line_queue::LineQueue;
use crate::supervision::SupervisedThread;

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
    /// Periodic resync interval; `None`: none.
    pub resync_interval: Option<Duration>,
    /// Initial receive queue size.
    pub netlink_buffer_bytes: usize,
    /// Largest receive queue size.
    pub netlink_buffer_max_bytes: usize,
    /// Whether the kernel drops the events of protocols not counted.
    pub kernel_event_filter: bool,
    /// Event log, when enabled.
    pub event_log: Option<EventLog>,
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

/// What a config reload (SIGHUP) changes in the running collector.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reconfiguration {
    /// Remote hosts not counted.
    pub ignore_hosts: Vec<HostPattern>,
    /// Periodic resync interval; `None`: none.
    pub resync_interval: Option<Duration>,
}

/// Starts the collector thread. Returns once the sockets are open and the initial dump is
/// applied, or with the error that prevented it. The thread runs until `stop` is set; it
/// has no error to return after start-up (failures there are logged and retried), but it is
/// supervised all the same, since a bug could still end it.
pub(crate) fn start(
    settings: CollectorSettings,
    tracker: Arc<Tracker>,
    status: Arc<Status>,
    counters: Counters,
    reconfigurations: mpsc::Receiver<Reconfiguration>,
    stop: Arc<AtomicBool>,
) -> Result<SupervisedThread, Error> {
    let (started, startup) = mpsc::channel();
    let thread = SupervisedThread::spawn("collector", move || {
        let collector = Collector::open(settings, tracker, status, counters, reconfigurations);
        let mut collector = match collector {
            Ok(collector) => collector,
            Err(error) => {
                let _ = started.send(Err(error));
                return Ok::<(), Infallible>(());
            }
        };
        if let Err(error) = collector.resync(Reason::Startup) {
            let _ = started.send(Err(error.into()));
            return Ok(());
        }
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

/// Applies kernel entries to the tracker and accounts for them.
struct Applier {
    classifier: Classifier,
    tracker: Arc<Tracker>,
    counters: Counters,
    /// The event log's format and the queue its lines wait in for standard output.
    event_log: Option<(EventLog, LineQueue)>,
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
        if let (Some((log, queue)), Some(class)) = (&mut self.event_log, &class) {
            queue.push(log.line(kind, &entry, class));
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

struct Collector {
    events: EventSocket,
    table: ConntrackSocket,
    address_changes: AddressChanges,
    applier: Applier,
    status: Arc<Status>,
    settings: CollectorSettings,
    /// Config reloads, applied once per tick.
    reconfigurations: mpsc::Receiver<Reconfiguration>,
    queue_bytes: usize,
    started: Instant,
    last_resync_end: Instant,
    last_dump_duration: Duration,
    next_periodic: Option<Instant>,
    /// Events were lost and a resync is due.
    loss_pending: bool,
    next_kernel_figures: Instant,
    tracking_hint_given: bool,
    /// The log said that the series limit was reached.
    series_limit_told: bool,
}

impl Collector {
    /// Subscribes to events first, so that nothing that happens during the initial dump
    /// is missed, then opens the request socket.
    fn open(
        settings: CollectorSettings,
        tracker: Arc<Tracker>,
        status: Arc<Status>,
        counters: Counters,
        reconfigurations: mpsc::Receiver<Reconfiguration>,
    ) -> Result<Collector, Error> {
        let events = EventSocket::subscribe(EventGroups::ALL)?;
        let queue = events.set_receive_queue(settings.netlink_buffer_bytes)?;
        if !queue.forced {
            warn!(
                "could not force the event receive queue to {} bytes (needs CAP_NET_ADMIN); \
                 it is {} bytes, capped by net.core.rmem_max",
                settings.netlink_buffer_bytes, queue.bytes
            );
        }
        status
            .receive_queue_bytes
            .store(queue.bytes as u64, Ordering::Relaxed);
        events.set_receive_timeout(TICK)?;
        // Events of protocols not counted are dropped by the kernel, before they take room
        // in the queue; the classifier still checks every event it reads.
        if settings.kernel_event_filter {
            let counted: Vec<Protocol> = (0..=u8::MAX)
                .map(Protocol)
                .filter(|protocol| settings.protocols.contains(*protocol))
                .collect();
            events.set_filter(event_filter::protocol_filter(&counted).as_deref())?;
        }
        let address_changes = AddressChanges::subscribe()?;
        let mut classifier = Classifier::new(settings.ignore_hosts.clone())
            .with_protocols(settings.protocols)
            .with_labels(settings.labels.clone())
            .with_hosts(Arc::clone(&settings.hosts));
        classifier
            .set_local_addresses(addresses::local_addresses().map_err(Error::LocalAddresses)?);
        let table = ConntrackSocket::open()?;
        let now = Instant::now();
        let event_log = settings
            .event_log
            .clone()
            .map(|log| {
                let queue = log.start_writer(counters.event_log_dropped.clone())?;
                Ok((log, queue))
            })
            .transpose()
            .map_err(Error::EventLogThread)?;
        Ok(Collector {
            events,
            table,
            address_changes,
            applier: Applier {
                classifier,
                tracker,
                counters,
                event_log,
                seen_any: false,
            },
            status,
            queue_bytes: settings.netlink_buffer_bytes,
            next_periodic: settings.resync_interval.map(|interval| now + interval),
            settings,
            reconfigurations,
            started: now,
            last_resync_end: now,
            last_dump_duration: Duration::ZERO,
            loss_pending: false,
            next_kernel_figures: now,
            tracking_hint_given: false,
            series_limit_told: false,
        })
    }

    /// Waits for events on the socket itself (a blocking read that gives up after [`TICK`])
    /// rather than polling first: one system call per wake-up, which returns every event
    /// queued by then. Timers and address changes are looked at once per tick.
    fn run(&mut self, stop: &AtomicBool) {
        let mut next_housekeeping = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            self.status.heartbeat.beat();
            let applier = &mut self.applier;
            match self.events.receive(|event| applier.apply_event(event)) {
                Ok(Received::Messages(count)) if count < EventSocket::BATCH => {
                    std::thread::sleep(STREAM_PAUSE)
                }
                Ok(Received::Messages(_)) | Ok(Received::WouldBlock) => {}
                Ok(Received::EventsLost) => self.events_lost(),
                Err(error) => {
                    warn!("reading conntrack events failed: {error}");
                    std::thread::sleep(TICK);
                }
            }
            let now = Instant::now();
            if now >= next_housekeeping {
                next_housekeeping = now + TICK;
                self.reconfigure();
                self.reload_local_addresses();
                self.run_timers();
            }
        }
    }

    fn loss_resync_due(&self) -> Instant {
        let gap = MIN_LOSS_RESYNC_GAP.max(self.last_dump_duration * LOSS_RESYNC_GAP_FACTOR);
        self.last_resync_end + gap
    }

    /// Applies every event queued now, without waiting for more.
    fn drain_queued_events(&mut self) {
        loop {
            let applier = &mut self.applier;
            match self
                .events
                .receive_queued(|event| applier.apply_event(event))
            {
                Ok(Received::Messages(_)) => continue,
                Ok(Received::WouldBlock) => break,
                Ok(Received::EventsLost) => self.events_lost(),
                Err(error) => {
                    warn!("reading conntrack events failed: {error}");
                    break;
                }
            }
        }
    }

    /// The kernel dropped events: count it, warn once per episode, grow the queue, and
    /// schedule a resync.
    fn events_lost(&mut self) {
        self.applier.counters.events_lost.increment(1);
        if !self.loss_pending {
            warn!(
                "the kernel dropped conntrack events (receive queue of {} bytes full, as the \
                 kernel counts it); the table will be read again to correct the counts",
                self.status.receive_queue_bytes.load(Ordering::Relaxed)
            );
        }
        self.loss_pending = true;
        let grown = (self.queue_bytes * 2).min(self.settings.netlink_buffer_max_bytes);
        if grown > self.queue_bytes {
            match self.events.set_receive_queue(grown) {
                Ok(queue) => {
                    self.queue_bytes = grown;
                    info!("event receive queue grown to {} bytes", queue.bytes);
                    let bytes = queue.bytes as u64;
                    self.status
                        .receive_queue_bytes
                        .store(bytes, Ordering::Relaxed);
                }
                Err(error) => warn!("could not grow the event receive queue: {error}"),
            }
        }
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        if self.loss_pending && now >= self.loss_resync_due() {
            self.resync_logging_errors(Reason::EventsLost);
        } else if self.next_periodic.is_some_and(|due| now >= due) {
            self.resync_logging_errors(Reason::Periodic);
        }
        if now >= self.next_kernel_figures {
            self.next_kernel_figures = now + KERNEL_FIGURES_INTERVAL;
            self.refresh_kernel_figures();
        }
        let tracker = &self.applier.tracker;
        if !self.series_limit_told && tracker.series_limit_reached() {
            self.series_limit_told = true;
            warn!(
                "max_series reached: {} label sets are in the output; the connections of \
                 further label sets are counted under labels that all read \"other\" \
                 (conntrack_exporter_overflow_connections) until label sets leave the output \
                 after host_idle_timeout. Consider host_groups or host_prefix_length_v4/v6",
                tracker
                    .series_limit()
                    .map_or(0, std::num::NonZeroUsize::get)
            );
        }
        if !self.tracking_hint_given
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

    fn resync_logging_errors(&mut self, reason: Reason) {
        if let Err(error) = self.resync(reason) {
            warn!("resync failed, will retry: {error}");
            self.last_resync_end = Instant::now();
        }
    }

    /// Dumps the table and reconciles the tracker with it. Events that arrive meanwhile wait
    /// in the receive queue and are applied afterwards, in order, so the latest word on
    /// each connection is the one that stays.
    fn resync(&mut self, reason: Reason) -> Result<(), ctnetlink::Error> {
        // Every event already queued is older than the dump and must be applied before it,
        // not after: after a loss, a queued NEW whose DESTROY was dropped would otherwise
        // bring back a connection the dump rightly left out. Applying them first also keeps
        // them from being counted as drift.
        if reason != Reason::Startup {
            self.drain_queued_events();
        }
        let started = Instant::now();
        let tracker = Arc::clone(&self.applier.tracker);
        let mut resync = tracker.begin_resync();
        let applier = &mut self.applier;
        let summary = self.table.dump_overlapped(None, |decoded| match decoded {
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
        if let Some(interval) = self.settings.resync_interval {
            self.next_periodic = Some(self.last_resync_end + interval);
        }
        if summary.entries > 0 {
            self.applier.seen_any = true;
        }
        let status = &self.status;
        status
            .last_resync_nanos
            .store(duration.as_nanos() as u64, Ordering::Relaxed);
        let counters = &self.applier.counters;
        match reason {
            Reason::Startup => {
                counters.resyncs_startup.increment(1);
                info!(
                    "initial dump: {} entries ({} connections counted) in {:.3}s",
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
                    "resync ({reason:?}): {} entries in {:.3}s, corrected {corrected} \
                     ({} added, {} changed, {} removed)",
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
        match self.table.table_size() {
            Ok(size) => {
                let status = &self.status;
                status
                    .kernel_entries
                    .store(size.entries.into(), Ordering::Relaxed);
                status
                    .kernel_limit
                    .store(size.max_entries.into(), Ordering::Relaxed);
            }
            Err(error) => debug!("reading the kernel table size failed: {error}"),
        }
        match self.table.cpu_stats() {
            Ok(cpus) => {
                for ((_, read), total) in KERNEL_STATS.iter().zip(&self.status.kernel_stats) {
                    let sum = cpus.iter().map(|cpu| u64::from(read(cpu))).sum();
                    total.store(sum, Ordering::Relaxed);
                }
            }
            Err(error) => debug!("reading the kernel statistics failed: {error}"),
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
            self.next_periodic = latest.resync_interval.map(|every| Instant::now() + every);
        }
        if latest.ignore_hosts != self.settings.ignore_hosts {
            self.applier
                .classifier
                .set_ignore(latest.ignore_hosts.clone());
            self.settings.ignore_hosts = latest.ignore_hosts;
            self.resync_logging_errors(Reason::Reload);
        }
    }

    fn reload_local_addresses(&mut self) {
        match self.address_changes.drain() {
            Ok(false) => return,
            Ok(true) => {}
            Err(error) => warn!("watching interface addresses failed: {error}"),
        }
        match addresses::local_addresses() {
            Ok(local) => {
                debug!("local addresses now: {local:?}");
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
            Err(error) => warn!("listing interface addresses failed: {error}"),
        }
    }
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
        let status = Arc::new(Status::default());
        let idle = Duration::from_secs(300);
        let (exposition, counters) = Exposition::new(
            Arc::clone(&tracker),
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
            counters,
            event_log: None,
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
