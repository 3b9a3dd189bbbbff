//! The live connection table and the per-label-set aggregates it keeps current.
//!
//! Every event costs one map operation and one aggregate adjustment, whatever the table's
//! size; reading the aggregates costs one step per label set. Only a resync walks the
//! connections.

use std::collections::HashMap;
use std::collections::hash_map;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use conntrack_codec::{Entry, EntryKind, Layer4, Protocol, Tuple};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;

use crate::bound::SeriesBound;
use crate::classify::Classification;
use crate::labels::LabelSet;
use crate::state::StateGroup;
use crate::traffic::Traffic;

/// The hasher of the live table and the aggregates' index: seeded per process, so remote
/// parties cannot choose tuples that collide, and several times cheaper than the standard
/// library's SipHash, which was the largest single cost of applying an event.
type FastHash = foldhash::fast::RandomState;

/// Identity of a live connection: its original tuple and its zone, which is exactly what the
/// kernel keeps unique. IPv4 and IPv6 connections live in separate maps so that the common
/// IPv4 key stays 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key<const N: usize> {
    src: [u8; N],
    dst: [u8; N],
    /// Ports (source in the high half) or ICMP id, type and code.
    layer4: u32,
    /// Which of those `layer4` holds, to read the tuple back.
    layer4_kind: Layer4Kind,
    protocol: u8,
    zone: u16,
}

/// The variant of [`Layer4`] a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Layer4Kind {
    Ports,
    Icmp,
    None,
}

impl<const N: usize> Key<N> {
    fn new(src: [u8; N], dst: [u8; N], tuple: &Tuple, zone: Option<u16>) -> Self {
        let (layer4, layer4_kind) = match tuple.layer4 {
            Layer4::Ports { src, dst } => {
                ((u32::from(src) << 16) | u32::from(dst), Layer4Kind::Ports)
            }
            Layer4::Icmp { id, kind, code } => (
                (u32::from(id) << 16) | (u32::from(kind) << 8) | u32::from(code),
                Layer4Kind::Icmp,
            ),
            Layer4::None => (0, Layer4Kind::None),
        };
        Key {
            src,
            dst,
            layer4,
            layer4_kind,
            protocol: tuple.protocol.0,
            zone: zone.unwrap_or(0),
        }
    }

    /// The entry this key was made from, as far as the key tells: its original tuple and
    /// zone, and the inverse as its reply tuple.
    fn entry(&self) -> Entry {
        let address = |octets: &[u8; N]| match <[u8; 4]>::try_from(&octets[..]) {
            Ok(v4) => IpAddr::from(v4),
            Err(_) => IpAddr::from(<[u8; 16]>::try_from(&octets[..]).unwrap_or_default()),
        };
        let [high_a, high_b, byte_c, byte_d] = self.layer4.to_be_bytes();
        let high = u16::from_be_bytes([high_a, high_b]);
        let layer4 = match self.layer4_kind {
            Layer4Kind::Ports => Layer4::Ports {
                src: high,
                dst: u16::from_be_bytes([byte_c, byte_d]),
            },
            Layer4Kind::Icmp => Layer4::Icmp {
                id: high,
                kind: byte_c,
                code: byte_d,
            },
            Layer4Kind::None => Layer4::None,
        };
        let original = Tuple {
            src: address(&self.src),
            dst: address(&self.dst),
            protocol: Protocol(self.protocol),
            layer4,
        };
        let mut entry = Entry::new(original);
        entry.reply = Some(original.inverted());
        entry.zone = Some(self.zone);
        entry
    }
}

/// What the table remembers of a connection: only what the metrics need. The maps keep it
/// packed in 4 bytes ([`Packed`]); this is the form the code reads and changes.
#[derive(Debug, Clone, Copy)]
struct Connection {
    aggregate: u32,
    group: StateGroup,
    /// The resync pass that last confirmed this connection, below [`GENERATIONS`].
    generation: u8,
    flags: Flags,
}

impl Connection {
    fn new(aggregate: u32, group: StateGroup, generation: u8) -> Connection {
        Connection {
            aggregate,
            group,
            generation,
            flags: Flags::default(),
        }
    }
}

/// Resync passes are numbered modulo this. A pass sweeps every connection it did not
/// confirm, so after a completed pass all connections carry its number; a connection could
/// escape a sweep only after `GENERATIONS - 1` passes in a row failed before their sweep,
/// and the next completed pass removes it then.
const GENERATIONS: u8 = 1 << Packed::GENERATION_BITS;

/// A [`Connection`] in 4 bytes, so that a map entry with the 16-byte IPv4 key takes 20 bytes
/// instead of 24: the label set's slot (22 bits), the state group (2), the flags (4) and the
/// resync pass (4).
#[derive(Debug, Clone, Copy)]
struct Packed(u32);

impl Packed {
    const AGGREGATE_BITS: u32 = 22;
    const GENERATION_BITS: u32 = 4;
    /// Label sets a table can tell apart.
    const AGGREGATES: u32 = 1 << Self::AGGREGATE_BITS;

    fn pack(connection: &Connection) -> Packed {
        debug_assert!(connection.aggregate < Self::AGGREGATES);
        debug_assert!(connection.generation < GENERATIONS);
        debug_assert!(connection.flags.0 < 16);
        Packed(
            connection.aggregate
                | (connection.group.index() as u32) << Self::AGGREGATE_BITS
                | u32::from(connection.flags.0) << (Self::AGGREGATE_BITS + 2)
                | u32::from(connection.generation) << (Self::AGGREGATE_BITS + 6),
        )
    }

    fn unpack(self) -> Connection {
        let bits = self.0;
        Connection {
            aggregate: bits & (Self::AGGREGATES - 1),
            group: StateGroup::ALL[(bits >> Self::AGGREGATE_BITS) as usize & 3],
            flags: Flags((bits >> (Self::AGGREGATE_BITS + 2)) as u8 & 0xf),
            generation: (bits >> (Self::AGGREGATE_BITS + 6)) as u8,
        }
    }

    fn generation(self) -> u8 {
        (self.0 >> (Self::AGGREGATE_BITS + 6)) as u8
    }
}

/// A connection's one-bit facts, in one byte.
#[derive(Debug, Clone, Copy, Default)]
struct Flags(u8);

impl Flags {
    /// It reached the open group: its end counts as closed, not failed.
    const WAS_OPEN: u8 = 1;
    /// It reached the closed group, and its end is counted already.
    const ENDED: u8 = 2;
    /// Its reply tuple is not the inverse of its original one (NAT), so its ends were read
    /// from a tuple the table does not keep.
    const NAT: u8 = 4;
    /// The remote end opened it: what this host sends travels in the reply direction.
    const REMOTE_IS_SOURCE: u8 = 8;

    fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }

    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.0 |= flag;
        } else {
            self.0 &= !flag;
        }
    }
}

/// What [`Tracker::reclassify`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reclassified {
    /// Connections whose label set changed.
    pub moved: u64,
    /// Connections no longer counted (their remote end is now ignored).
    pub removed: u64,
    /// Connections under NAT, left as they were for the next resync to correct.
    pub left_to_resync: u64,
}

/// What applying one entry did to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A connection was added.
    Inserted,
    /// A known connection moved to another state group or host.
    Changed,
    /// A known connection was confirmed as it was.
    Unchanged,
    /// A known connection was dropped (it ended, or is no longer counted).
    Removed,
    /// Nothing to do: an unknown connection ended, is not counted, or has no known state.
    Ignored,
}

/// Connection counts of one label set, by state group, and its connections' ends so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelCounts {
    /// The labels.
    pub labels: LabelSet,
    /// Counts indexed by [`StateGroup::index`].
    pub counts: [u32; 4],
    /// How many connections have ended or progressed, since the label set appeared.
    pub totals: Totals,
}

/// Counters of connections that reached the open group, and of those that ended (reached
/// the closed group or left the table, whichever came first) after being open or without
/// ever being open. Each connection counts at most once in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Connections that reached the open group.
    pub opened: u64,
    /// Connections that ended after being open.
    pub closed: u64,
    /// Connections that ended without ever being open.
    pub failed: u64,
    /// Bytes sent to the remote host (with accounting).
    pub sent_bytes: u64,
    /// Bytes received from the remote host (with accounting).
    pub received_bytes: u64,
    /// Packets sent to the remote host (with accounting).
    pub sent_packets: u64,
    /// Packets received from the remote host (with accounting).
    pub received_packets: u64,
}

impl LabelCounts {
    /// The count of one state group.
    pub fn get(&self, group: StateGroup) -> u32 {
        self.counts[group.index()]
    }

    /// Adds the counts and totals of `other` to these (the labels stay): for output that
    /// shows two label sets as one series.
    pub fn add(&mut self, other: &LabelCounts) {
        for (count, more) in self.counts.iter_mut().zip(other.counts) {
            *count += more;
        }
        // Taken apart whole, so that a new total cannot be forgotten here.
        let Totals {
            opened,
            closed,
            failed,
            sent_bytes,
            received_bytes,
            sent_packets,
            received_packets,
        } = other.totals;
        let totals = &mut self.totals;
        totals.opened += opened;
        totals.closed += closed;
        totals.failed += failed;
        totals.sent_bytes += sent_bytes;
        totals.received_bytes += received_bytes;
        totals.sent_packets += sent_packets;
        totals.received_packets += received_packets;
    }
}

/// The outcome of a resync: how far the table had drifted from the kernel's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResyncOutcome {
    /// Entries the dump delivered.
    pub observed: u64,
    /// Connections the dump revealed that the table did not have.
    pub inserted: u64,
    /// Connections whose state group or host the dump corrected.
    pub changed: u64,
    /// Connections the table had that the kernel no longer has.
    pub removed: u64,
}

impl ResyncOutcome {
    /// Entries the resync had to correct.
    pub fn corrected(&self) -> u64 {
        self.inserted + self.changed + self.removed
    }
}

/// The live connection table plus per-label aggregates, shared between the thread that
/// applies kernel messages and the threads that read counts.
///
/// With a series limit, at most that many label sets (besides [`LabelSet::OVERFLOW`]) have
/// an aggregate: a connection whose label set would be one more is counted in the overflow
/// set instead, so that the counts over all sets still add up to the table. Memory then grows
/// with the connections, never with the distinct label sets beyond the limit.
#[derive(Debug, Default)]
pub struct Tracker {
    ipv4: FamilyTable<4>,
    ipv6: FamilyTable<16>,
    aggregates: Mutex<Aggregates>,
    generation: AtomicU8,
    accounting: bool,
}

/// The connections of one address family and, with accounting, the counters last seen of
/// each (kept apart so that a connection costs 4 bytes besides its key when accounting is off).
#[derive(Debug, Default)]
struct FamilyTable<const N: usize> {
    connections: DashMap<Key<N>, Packed, FastHash>,
    traffic: DashMap<Key<N>, Traffic, FastHash>,
}

impl<const N: usize> FamilyTable<N> {
    /// Forgets the counters of connections that left.
    fn forget_traffic(&self, keys: &[Key<N>]) {
        for key in keys {
            self.traffic.remove(key);
        }
    }
}

impl Tracker {
    /// An empty tracker that ignores bytes and packets.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// An empty tracker that adds up the bytes and packets entries carry.
    pub fn with_accounting() -> Tracker {
        Tracker {
            accounting: true,
            ..Tracker::default()
        }
    }

    /// The bound this tracker's label sets take their places from.
    pub fn series_bound(&self) -> Arc<SeriesBound> {
        Arc::clone(&lock(&self.aggregates).bound)
    }

    /// This tracker, taking the places of its label sets (besides the overflow set) from
    /// `bound`, which other trackers may share. A label set frees its place when a snapshot
    /// forgets it, and all of them when the tracker is dropped.
    pub fn with_series_bound(self, bound: Arc<SeriesBound>) -> Tracker {
        lock(&self.aggregates).bound = bound;
        self
    }

    /// Applies one event (or dump reply) whose classification is `class` (`None`: not
    /// counted).
    pub fn apply(&self, kind: EntryKind, entry: &Entry, class: Option<Classification>) -> Change {
        let generation = self.generation.load(Ordering::Relaxed);
        match kind {
            EntryKind::Destroy => self.upsert(entry, None, generation),
            EntryKind::New | EntryKind::Update | EntryKind::Dumped => {
                self.upsert(entry, class, generation)
            }
        }
    }

    /// Starts reconciling the table with a fresh dump: feed every dumped entry to
    /// [`Resync::observe`], then call [`Resync::finish`] to drop what the dump did not show.
    pub fn begin_resync(&self) -> Resync<'_> {
        let next = |generation: u8| (generation + 1) % GENERATIONS;
        let generation = self
            .generation
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |g| Some(next(g)))
            .map_or(0, next);
        Resync {
            tracker: self,
            generation,
            outcome: ResyncOutcome::default(),
        }
    }

    /// Recomputes the label set of every connection with `classify`, after the local
    /// addresses that decide a connection's ends changed, without reading the kernel's table:
    /// each connection is classified by its original tuple and zone. Connections under NAT
    /// may need their reply tuple, which the table does not keep: they are left as they are
    /// for the next resync. Costs one step per connection, with the aggregates locked.
    pub fn reclassify(&self, classify: impl Fn(&Entry) -> Option<Classification>) -> Reclassified {
        let mut aggregates = lock(&self.aggregates);
        let mut outcome = Reclassified::default();
        reclassify_in(&self.ipv4, &mut aggregates, &classify, &mut outcome);
        reclassify_in(&self.ipv6, &mut aggregates, &classify, &mut outcome);
        outcome
    }

    /// Number of connections in the table.
    pub fn connections(&self) -> usize {
        self.ipv4.connections.len() + self.ipv6.connections.len()
    }

    /// Counts per label set, for label sets with connections and for those that have had none
    /// for less than `idle_timeout`. Label sets idle for longer are forgotten. Costs one step
    /// per label set.
    pub fn snapshot(&self, now: Instant, idle_timeout: Duration) -> Vec<LabelCounts> {
        lock(&self.aggregates).snapshot(now, idle_timeout)
    }

    /// Inserts, updates or (with `class` `None`) removes the connection of `entry`.
    fn upsert(&self, entry: &Entry, class: Option<Classification>, generation: u8) -> Change {
        let original = &entry.original;
        let nat = entry
            .reply
            .as_ref()
            .map(|reply| (reply.src, reply.dst) != (original.dst, original.src));
        let change = Upsert {
            class,
            nat,
            traffic: Traffic::of(entry).filter(|_| self.accounting),
            generation,
        };
        match (original.src, original.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let key = Key::new(src.octets(), dst.octets(), original, entry.zone);
                upsert_in(&self.ipv4, key, change, &self.aggregates)
            }
            (src, dst) => {
                let key = Key::new(v6_octets(src), v6_octets(dst), original, entry.zone);
                upsert_in(&self.ipv6, key, change, &self.aggregates)
            }
        }
    }
}

fn lock(aggregates: &Mutex<Aggregates>) -> MutexGuard<'_, Aggregates> {
    aggregates.lock().unwrap_or_else(PoisonError::into_inner)
}

fn v6_octets(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V6(v6) => v6.octets(),
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
    }
}

/// What one entry says about its connection.
struct Upsert {
    /// Its classification; `None`: not counted.
    class: Option<Classification>,
    /// Whether its addresses are translated; `None`: the entry has no reply tuple.
    nat: Option<bool>,
    /// Its counters, with accounting on and when it carries them.
    traffic: Option<Traffic>,
    /// The resync pass (or the current one, for events).
    generation: u8,
}

fn upsert_in<const N: usize>(
    table: &FamilyTable<N>,
    key: Key<N>,
    Upsert {
        class,
        nat,
        traffic,
        generation,
    }: Upsert,
    aggregates: &Mutex<Aggregates>,
) -> Change {
    // Entries that are not counted (other protocols, ignored hosts) are the bulk of the
    // events on many hosts: they take the aggregates lock only if they were counted before.
    let Some(class) = class else {
        return match table.connections.remove(&key) {
            Some((_, gone)) => {
                let gone = gone.unpack();
                let mut aggregates = lock(aggregates);
                // A DESTROY event carries the connection's final counters (only with
                // accounting: without, the traffic map stays empty and is not touched).
                if let Some(traffic) = traffic {
                    let last = table.traffic.remove(&key).map(|(_, last)| last);
                    aggregates.add_traffic(&gone, traffic.growth_since(last));
                }
                aggregates.remove(&gone);
                Change::Removed
            }
            None => Change::Ignored,
        };
    };
    // Lock order everywhere: aggregates first, then a connection map shard, then a traffic
    // map shard.
    let mut aggregates = lock(aggregates);
    let (change, connection) = match table.connections.entry(key) {
        MapEntry::Occupied(mut occupied) => {
            let stored = occupied.get_mut();
            let mut connection = stored.unpack();
            connection.generation = generation;
            if let Some(nat) = nat {
                connection.flags.set(Flags::NAT, nat);
            }
            connection
                .flags
                .set(Flags::REMOTE_IS_SOURCE, class.remote_is_source);
            let group = class.group.unwrap_or(connection.group);
            let aggregate = aggregates.find_or_add(connection.aggregate, class.labels);
            let change = if aggregate == connection.aggregate && group == connection.group {
                Change::Unchanged
            } else {
                aggregates.decrement(connection.aggregate, connection.group);
                aggregates.increment(aggregate, group);
                connection.aggregate = aggregate;
                connection.group = group;
                aggregates.count_progress(&mut connection);
                Change::Changed
            };
            *stored = Packed::pack(&connection);
            (change, connection)
        }
        MapEntry::Vacant(vacant) => {
            let Some(group) = class.group else {
                return Change::Ignored;
            };
            let aggregate = aggregates.find_or_add(u32::MAX, class.labels);
            aggregates.increment(aggregate, group);
            let mut connection = Connection::new(aggregate, group, generation);
            connection.flags.set(Flags::NAT, nat.unwrap_or(false));
            connection
                .flags
                .set(Flags::REMOTE_IS_SOURCE, class.remote_is_source);
            aggregates.count_progress(&mut connection);
            vacant.insert(Packed::pack(&connection));
            (Change::Inserted, connection)
        }
    };
    if let Some(traffic) = traffic {
        let last = table.traffic.insert(key, traffic);
        aggregates.add_traffic(&connection, traffic.growth_since(last));
    }
    change
}

fn reclassify_in<const N: usize>(
    table: &FamilyTable<N>,
    aggregates: &mut Aggregates,
    classify: &impl Fn(&Entry) -> Option<Classification>,
    outcome: &mut Reclassified,
) {
    let map = &table.connections;
    let mut uncounted = Vec::new();
    for mut item in map.iter_mut() {
        let mut connection = item.value().unpack();
        if connection.flags.has(Flags::NAT) {
            outcome.left_to_resync += 1;
            continue;
        }
        let Some(class) = classify(&item.key().entry()) else {
            uncounted.push(*item.key());
            continue;
        };
        let aggregate = aggregates.find_or_add(connection.aggregate, class.labels);
        if aggregate != connection.aggregate {
            aggregates.decrement(connection.aggregate, connection.group);
            aggregates.increment(aggregate, connection.group);
            connection.aggregate = aggregate;
            *item.value_mut() = Packed::pack(&connection);
            outcome.moved += 1;
        }
    }
    for key in &uncounted {
        if let Some((_, gone)) = map.remove(key) {
            aggregates.remove(&gone.unpack());
            outcome.removed += 1;
        }
    }
    table.forget_traffic(&uncounted);
}

/// A reconciliation in progress; see [`Tracker::begin_resync`].
#[derive(Debug)]
pub struct Resync<'a> {
    tracker: &'a Tracker,
    generation: u8,
    outcome: ResyncOutcome,
}

impl Resync<'_> {
    /// Records one dumped entry whose classification is `class`.
    pub fn observe(&mut self, entry: &Entry, class: Option<Classification>) {
        self.outcome.observed += 1;
        match self.tracker.upsert(entry, class, self.generation) {
            Change::Inserted => self.outcome.inserted += 1,
            Change::Changed | Change::Removed => self.outcome.changed += 1,
            Change::Unchanged | Change::Ignored => {}
        }
    }

    /// Drops every connection the dump did not show and reports the drift corrected.
    pub fn finish(mut self) -> ResyncOutcome {
        // The sweep walks every connection; it collects what to uncount and takes the
        // aggregates lock once at the end, so that reading the counts is never held up
        // for the length of a walk.
        // Connections that left without a DESTROY event took their last counters along: what
        // they exchanged since the previous dump is not known.
        let tracker = self.tracker;
        let generation = self.generation;
        let (gone4, keys4) = sweep(&tracker.ipv4.connections, generation);
        let (gone6, keys6) = sweep(&tracker.ipv6.connections, generation);
        tracker.ipv4.forget_traffic(&keys4);
        tracker.ipv6.forget_traffic(&keys6);
        let mut aggregates = lock(&tracker.aggregates);
        for connection in gone4.iter().chain(&gone6) {
            aggregates.remove(connection);
        }
        self.outcome.removed = (gone4.len() + gone6.len()) as u64;
        self.outcome
    }
}

/// Drops the connections not confirmed by the resync pass `generation`; returns them and
/// their keys.
fn sweep<const N: usize>(
    connections: &DashMap<Key<N>, Packed, FastHash>,
    generation: u8,
) -> (Vec<Connection>, Vec<Key<N>>) {
    let (mut gone, mut keys) = (Vec::new(), Vec::new());
    connections.retain(|key, connection| {
        let current = connection.generation() == generation;
        if !current {
            gone.push(connection.unpack());
            keys.push(*key);
        }
        current
    });
    (gone, keys)
}

/// Counts per label set, in slots addressed by a small id so that a connection stores four
/// bytes instead of its labels.
#[derive(Debug, Default)]
struct Aggregates {
    index: HashMap<LabelSet, u32, FastHash>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Where the label sets in `index` besides the overflow set take their places.
    bound: Arc<SeriesBound>,
}

#[derive(Debug)]
struct Slot {
    labels: LabelSet,
    counts: [u32; 4],
    totals: Totals,
    /// When the slot was first seen empty by a snapshot.
    idle_since: Option<Instant>,
}

impl Aggregates {
    /// The slot of `labels`, or of the overflow set when `labels` has none and the limit
    /// leaves no room for it; `hint` is the slot the connection had, checked first because
    /// most updates do not change the labels.
    fn find_or_add(&mut self, hint: u32, labels: LabelSet) -> u32 {
        if let Some(slot) = self.slots.get(hint as usize)
            && slot.labels == labels
        {
            return hint;
        }
        if let Some(&id) = self.index.get(&labels) {
            return id;
        }
        let labels = if labels == LabelSet::OVERFLOW || self.bound.take() {
            labels
        } else {
            LabelSet::OVERFLOW
        };
        match self.index.entry(labels) {
            hash_map::Entry::Occupied(found) => *found.get(),
            hash_map::Entry::Vacant(vacant) => {
                let slot = Slot {
                    labels,
                    counts: [0; 4],
                    totals: Totals::default(),
                    idle_since: None,
                };
                let id = match self.free.pop() {
                    Some(id) => {
                        self.slots[id as usize] = slot;
                        id
                    }
                    None => {
                        self.slots.push(slot);
                        let id = self.slots.len() - 1;
                        // A connection holds its slot in 22 bits: past 4 million label sets
                        // (a page of tens of millions of series) the numbers would be wrong.
                        assert!(
                            id < Packed::AGGREGATES as usize,
                            "over {} label sets",
                            Packed::AGGREGATES
                        );
                        id as u32
                    }
                };
                *vacant.insert(id)
            }
        }
    }

    /// Label sets that hold a place of the bound: all but the overflow set.
    fn bounded_sets(&self) -> usize {
        self.index.len() - usize::from(self.index.contains_key(&LabelSet::OVERFLOW))
    }

    fn increment(&mut self, id: u32, group: StateGroup) {
        let slot = &mut self.slots[id as usize];
        slot.counts[group.index()] += 1;
        slot.idle_since = None;
    }

    fn decrement(&mut self, id: u32, group: StateGroup) {
        let count = &mut self.slots[id as usize].counts[group.index()];
        *count = count.saturating_sub(1);
    }

    /// Counts what `connection`'s move to its current group means: reaching the open group
    /// opens it, reaching the closed group ends it. A connection that leaves the closed
    /// group again is a new one on the same tuple (the kernel reuses a closed entry for a
    /// new handshake).
    fn count_progress(&mut self, connection: &mut Connection) {
        let flags = &mut connection.flags;
        if flags.has(Flags::ENDED) && connection.group != StateGroup::Closed {
            flags.set(Flags::ENDED, false);
            flags.set(Flags::WAS_OPEN, false);
        }
        if connection.group == StateGroup::Open && !flags.has(Flags::WAS_OPEN) {
            flags.set(Flags::WAS_OPEN, true);
            self.slots[connection.aggregate as usize].totals.opened += 1;
        }
        if connection.group == StateGroup::Closed {
            self.count_end(connection);
        }
    }

    /// Adds `growth`, the traffic `connection` exchanged since last seen, to its label set.
    fn add_traffic(&mut self, connection: &Connection, growth: Traffic) {
        let remote_is_source = connection.flags.has(Flags::REMOTE_IS_SOURCE);
        let (sent, received) = growth.sent_and_received(remote_is_source);
        let totals = &mut self.slots[connection.aggregate as usize].totals;
        totals.sent_bytes += sent.bytes;
        totals.sent_packets += sent.packets;
        totals.received_bytes += received.bytes;
        totals.received_packets += received.packets;
    }

    /// Uncounts a connection that left the table, and counts its end.
    fn remove(&mut self, connection: &Connection) {
        self.decrement(connection.aggregate, connection.group);
        let mut leaving = *connection;
        self.count_end(&mut leaving);
    }

    /// Counts the end of `connection` unless it was counted already.
    fn count_end(&mut self, connection: &mut Connection) {
        if connection.flags.has(Flags::ENDED) {
            return;
        }
        connection.flags.set(Flags::ENDED, true);
        let totals = &mut self.slots[connection.aggregate as usize].totals;
        if connection.flags.has(Flags::WAS_OPEN) {
            totals.closed += 1;
        } else {
            totals.failed += 1;
        }
    }

    fn snapshot(&mut self, now: Instant, idle_timeout: Duration) -> Vec<LabelCounts> {
        let mut hosts = Vec::with_capacity(self.index.len());
        let (slots, free, bound) = (&mut self.slots, &mut self.free, &self.bound);
        self.index.retain(|&labels, &mut id| {
            let slot = &mut slots[id as usize];
            if slot.counts == [0; 4] {
                let since = *slot.idle_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= idle_timeout {
                    free.push(id);
                    if labels != LabelSet::OVERFLOW {
                        bound.release(1);
                    }
                    return false;
                }
            }
            hosts.push(LabelCounts {
                labels,
                counts: slot.counts,
                totals: slot.totals,
            });
            true
        });
        hosts
    }
}

impl Drop for Aggregates {
    /// Gives the places of this tracker's label sets back to a bound that others share.
    fn drop(&mut self) {
        self.bound.release(self.bounded_sets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Classifier;
    use crate::hosts::{Host, HostLabels};
    use crate::labels::LabelName;
    use conntrack_codec::TcpState;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    const IDLE: Duration = Duration::from_secs(300);

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn classifier() -> Classifier {
        let mut classifier = Classifier::new(Vec::new());
        classifier.set_local_addresses([ip("10.0.0.1"), ip("fd00::1")].into());
        classifier
    }

    /// An outbound TCP connection from a local address.
    fn conn(remote: &str, local_port: u16, state: Option<TcpState>) -> Entry {
        let local = if remote.contains(':') {
            "fd00::1"
        } else {
            "10.0.0.1"
        };
        let mut entry = Entry::new(Tuple::tcp(ip(local), local_port, ip(remote), 80));
        entry.reply = Some(entry.original.inverted());
        entry.tcp_state = state;
        entry
    }

    fn apply(tracker: &Tracker, kind: EntryKind, entry: &Entry) -> Change {
        tracker.apply(kind, entry, classifier().classify(entry))
    }

    fn counts(tracker: &Tracker) -> BTreeMap<String, [u32; 4]> {
        tracker
            .snapshot(Instant::now(), IDLE)
            .into_iter()
            .map(|host| {
                let name = host.labels.value(LabelName::Host, &HostLabels::default());
                (name, host.counts)
            })
            .collect()
    }

    #[test]
    fn a_connection_moves_through_the_groups_and_leaves() {
        let tracker = Tracker::new();
        let mut entry = conn("10.0.0.9", 1000, Some(TcpState::SynSent));
        assert_eq!(apply(&tracker, EntryKind::New, &entry), Change::Inserted);
        assert_eq!(counts(&tracker)["10.0.0.9"], [1, 0, 0, 0]);
        entry.tcp_state = Some(TcpState::Established);
        assert_eq!(apply(&tracker, EntryKind::Update, &entry), Change::Changed);
        assert_eq!(counts(&tracker)["10.0.0.9"], [0, 1, 0, 0]);
        entry.tcp_state = Some(TcpState::FinWait);
        apply(&tracker, EntryKind::Update, &entry);
        entry.tcp_state = Some(TcpState::TimeWait);
        assert_eq!(
            apply(&tracker, EntryKind::Update, &entry),
            Change::Unchanged
        );
        assert_eq!(counts(&tracker)["10.0.0.9"], [0, 0, 1, 0]);
        entry.tcp_state = Some(TcpState::Close);
        apply(&tracker, EntryKind::Update, &entry);
        assert_eq!(counts(&tracker)["10.0.0.9"], [0, 0, 0, 1]);
        assert_eq!(apply(&tracker, EntryKind::Destroy, &entry), Change::Removed);
        assert_eq!(
            counts(&tracker)["10.0.0.9"],
            [0, 0, 0, 0],
            "zeros stay while not idle"
        );
        assert_eq!(tracker.connections(), 0);
        assert_eq!(apply(&tracker, EntryKind::Destroy, &entry), Change::Ignored);
    }

    fn totals(tracker: &Tracker, host: &str) -> [u64; 3] {
        let snapshot = tracker.snapshot(Instant::now(), IDLE);
        let found = snapshot
            .iter()
            .find(|counts| counts.labels.host == Some(Host::Address(ip(host))))
            .expect("the host is in the snapshot");
        let Totals {
            opened,
            closed,
            failed,
            ..
        } = found.totals;
        [opened, closed, failed]
    }

    /// Applies `states` to one connection in turn (`None`: it is destroyed).
    fn live_through(tracker: &Tracker, remote: &str, port: u16, states: &[Option<TcpState>]) {
        let mut entry = conn(remote, port, None);
        for (step, state) in states.iter().enumerate() {
            entry.tcp_state = *state;
            let kind = match (step, state) {
                (_, None) => EntryKind::Destroy,
                (0, _) => EntryKind::New,
                _ => EntryKind::Update,
            };
            apply(tracker, kind, &entry);
        }
    }

    #[test]
    fn connections_are_counted_once_as_opened_and_once_as_closed_or_failed() {
        use TcpState::{Close, Established, FinWait, SynSent, TimeWait};
        let tracker = Tracker::new();
        let completed = [
            Some(SynSent),
            Some(Established),
            Some(FinWait),
            Some(TimeWait),
            None,
        ];
        live_through(&tracker, "10.0.0.9", 1, &completed);
        assert_eq!(totals(&tracker, "10.0.0.9"), [1, 1, 0]);
        // Refused: reset before it was open, then gone; the end is counted once.
        live_through(&tracker, "10.0.0.9", 2, &[Some(SynSent), Some(Close), None]);
        // Timed out: gone while opening.
        live_through(&tracker, "10.0.0.9", 3, &[Some(SynSent), None]);
        assert_eq!(totals(&tracker, "10.0.0.9"), [1, 1, 2]);
        // Reset while open: closed at the reset, not again when it leaves.
        live_through(&tracker, "10.0.0.9", 4, &[Some(Established), Some(Close)]);
        assert_eq!(totals(&tracker, "10.0.0.9"), [2, 2, 2]);
        live_through(&tracker, "10.0.0.9", 4, &[None]);
        assert_eq!(totals(&tracker, "10.0.0.9"), [2, 2, 2]);
        // A closed entry reused by a new handshake is a new connection.
        let reused = [Some(Close), Some(SynSent), Some(Established), Some(Close)];
        live_through(&tracker, "10.0.0.9", 5, &reused);
        assert_eq!(totals(&tracker, "10.0.0.9"), [3, 3, 3]);
    }

    #[test]
    fn bytes_add_up_from_dumps_and_destroy_events_and_never_go_back() {
        use conntrack_codec::Counters;
        let tracker = Tracker::with_accounting();
        let class = classifier();
        let mut out = conn("10.0.0.9", 1, Some(TcpState::Established));
        let mut inbound = out.clone();
        inbound.original = out.original.inverted();
        inbound.reply = Some(out.original);
        let with = |entry: &mut Entry, original: (u64, u64), reply: (u64, u64)| {
            entry.counters_original = Some(Counters {
                packets: original.0,
                bytes: original.1,
            });
            entry.counters_reply = Some(Counters {
                packets: reply.0,
                bytes: reply.1,
            });
        };
        let exchanged = |tracker: &Tracker| {
            let snapshot = tracker.snapshot(Instant::now(), IDLE);
            let totals = snapshot[0].totals;
            [
                totals.sent_packets,
                totals.sent_bytes,
                totals.received_packets,
                totals.received_bytes,
            ]
        };
        // Seen by a dump, then grown by the next one.
        with(&mut out, (2, 100), (1, 60));
        let mut resync = tracker.begin_resync();
        resync.observe(&out, class.classify(&out));
        resync.finish();
        assert_eq!(exchanged(&tracker), [2, 100, 1, 60]);
        with(&mut out, (3, 1100), (2, 120));
        let mut resync = tracker.begin_resync();
        resync.observe(&out, class.classify(&out));
        resync.finish();
        assert_eq!(exchanged(&tracker), [3, 1100, 2, 120]);
        // UPDATE events carry none; the DESTROY event carries the final counters.
        out.counters_original = None;
        out.counters_reply = None;
        apply(&tracker, EntryKind::Update, &out);
        with(&mut out, (4, 1200), (3, 180));
        apply(&tracker, EntryKind::Destroy, &out);
        assert_eq!(exchanged(&tracker), [4, 1200, 3, 180]);
        // Another connection with the same host, which the host opened: the reply direction
        // is what this host sent.
        with(&mut inbound, (1, 40), (2, 500));
        apply(&tracker, EntryKind::New, &inbound);
        assert_eq!(exchanged(&tracker), [6, 1700, 4, 220]);
    }

    #[test]
    fn a_resync_counts_what_the_events_missed() {
        let tracker = Tracker::new();
        let missed_open = conn("10.0.0.5", 1, Some(TcpState::Established));
        let missed_end = conn("10.0.0.5", 2, Some(TcpState::Established));
        let missed_failure = conn("10.0.0.5", 3, Some(TcpState::SynSent));
        apply(&tracker, EntryKind::New, &missed_end);
        apply(&tracker, EntryKind::New, &missed_failure);
        assert_eq!(totals(&tracker, "10.0.0.5"), [1, 0, 0]);
        let mut resync = tracker.begin_resync();
        resync.observe(&missed_open, classifier().classify(&missed_open));
        resync.finish();
        assert_eq!(totals(&tracker, "10.0.0.5"), [2, 1, 1]);
    }

    #[test]
    fn an_update_without_state_keeps_the_previous_state() {
        let tracker = Tracker::new();
        let mut entry = conn("10.0.0.9", 1000, Some(TcpState::Established));
        apply(&tracker, EntryKind::New, &entry);
        entry.tcp_state = None;
        assert_eq!(
            apply(&tracker, EntryKind::Update, &entry),
            Change::Unchanged
        );
        assert_eq!(counts(&tracker)["10.0.0.9"], [0, 1, 0, 0]);
        let unknown = conn("10.0.0.8", 1000, None);
        assert_eq!(
            apply(&tracker, EntryKind::Update, &unknown),
            Change::Ignored
        );
        assert_eq!(tracker.connections(), 1);
    }

    #[test]
    fn a_connection_can_move_between_hosts() {
        // The local address set changed, so the same connection now has another far end.
        let tracker = Tracker::new();
        let entry = conn("10.0.0.9", 1000, Some(TcpState::Established));
        apply(&tracker, EntryKind::New, &entry);
        let mut other = Classifier::new(Vec::new());
        other.set_local_addresses([ip("10.0.0.9")].into());
        let change = tracker.apply(EntryKind::Update, &entry, other.classify(&entry));
        assert_eq!(change, Change::Changed);
        let now = counts(&tracker);
        assert_eq!(now["10.0.0.1"], [0, 1, 0, 0]);
        assert_eq!(now["10.0.0.9"], [0, 0, 0, 0]);
    }

    #[test]
    fn reclassifying_moves_connections_without_their_entries() {
        let tracker = Tracker::new();
        for (remote, port) in [("10.0.0.9", 1), ("10.0.0.9", 2), ("fd00::9", 3)] {
            apply(
                &tracker,
                EntryKind::New,
                &conn(remote, port, Some(TcpState::Established)),
            );
        }
        // 10.0.0.9 becomes the local address instead of 10.0.0.1: the connections now count
        // under their source, 10.0.0.1; the IPv6 one is now ignored. One under NAT is left.
        let mut natted = conn("10.0.0.7", 4, Some(TcpState::Established));
        natted.reply = Some(Tuple::tcp(ip("10.0.0.8"), 80, ip("10.0.0.1"), 4));
        apply(&tracker, EntryKind::New, &natted);
        let mut moved = Classifier::new(vec!["fd00::/16".parse().unwrap()]);
        moved.set_local_addresses([ip("10.0.0.9")].into());
        let outcome = tracker.reclassify(|entry| moved.classify(entry));
        assert_eq!(
            outcome,
            Reclassified {
                moved: 2,
                removed: 1,
                left_to_resync: 1
            }
        );
        let now = counts(&tracker);
        assert_eq!(now["10.0.0.1"], [0, 2, 0, 0]);
        assert_eq!(now["10.0.0.9"], [0, 0, 0, 0]);
        assert_eq!(now["10.0.0.7"], [0, 1, 0, 0]);
        assert_eq!(tracker.connections(), 3);
        // The same classification again moves nothing.
        let again = tracker.reclassify(|entry| moved.classify(entry));
        assert_eq!(again.moved + again.removed, 0);
    }

    #[test]
    fn keys_give_back_the_tuple_they_were_made_of() {
        let icmp = Tuple {
            src: ip("fd00::1"),
            dst: ip("fd00::2"),
            protocol: Protocol::ICMPV6,
            layer4: Layer4::Icmp {
                id: 7,
                kind: 128,
                code: 0,
            },
        };
        let key = Key::new(v6_octets(icmp.src), v6_octets(icmp.dst), &icmp, Some(3));
        let entry = key.entry();
        assert_eq!((entry.original, entry.zone), (icmp, Some(3)));
        let tcp = Tuple::tcp(ip("10.0.0.1"), 40000, ip("10.0.0.2"), 443);
        let key = Key::new([10, 0, 0, 1], [10, 0, 0, 2], &tcp, None);
        assert_eq!(key.entry().original, tcp);
        assert_eq!(key.entry().reply, Some(tcp.inverted()));
        let gre = Tuple {
            layer4: Layer4::None,
            protocol: Protocol(47),
            ..tcp
        };
        assert_eq!(
            Key::new([10, 0, 0, 1], [10, 0, 0, 2], &gre, None)
                .entry()
                .original,
            gre
        );
        assert_eq!(std::mem::size_of::<Key<4>>(), 16);
        assert_eq!(std::mem::size_of::<(Key<4>, Packed)>(), 20);
    }

    #[test]
    fn a_packed_connection_gives_back_every_field() {
        for group in StateGroup::ALL {
            for (aggregate, generation, flags) in [
                (0, 0, 0),
                (Packed::AGGREGATES - 1, GENERATIONS - 1, 0xf),
                (12345, 7, Flags::NAT | Flags::ENDED),
            ] {
                let connection = Connection {
                    aggregate,
                    group,
                    generation,
                    flags: Flags(flags),
                };
                let packed = Packed::pack(&connection);
                let back = packed.unpack();
                assert_eq!(
                    (back.aggregate, back.group, back.generation, back.flags.0),
                    (aggregate, group, generation, flags)
                );
                assert_eq!(packed.generation(), generation);
            }
        }
    }

    #[test]
    fn resync_passes_numbered_past_the_wrap_still_sweep() {
        let tracker = Tracker::new();
        let class = classifier();
        let kept = conn("192.0.2.1", 1, Some(TcpState::Established));
        let gone = conn("192.0.2.2", 2, Some(TcpState::Established));
        for _ in 0..u32::from(GENERATIONS) * 2 + 1 {
            let mut resync = tracker.begin_resync();
            for entry in [&kept, &gone] {
                resync.observe(entry, class.classify(entry));
            }
            resync.finish();
        }
        let mut resync = tracker.begin_resync();
        resync.observe(&kept, class.classify(&kept));
        assert_eq!(resync.finish().removed, 1);
        let now = counts(&tracker);
        assert_eq!(now["192.0.2.1"], [0, 1, 0, 0]);
        assert_eq!(now["192.0.2.2"], [0, 0, 0, 0]);
    }

    fn bound(limit: usize) -> Arc<SeriesBound> {
        Arc::new(SeriesBound::new(std::num::NonZeroUsize::new(limit)))
    }

    fn limited(limit: usize) -> Tracker {
        Tracker::new().with_series_bound(bound(limit))
    }

    #[test]
    fn trackers_sharing_a_bound_share_its_places_and_give_them_back_when_dropped() {
        let shared = bound(2);
        let first = Tracker::new().with_series_bound(Arc::clone(&shared));
        let second = Tracker::new().with_series_bound(Arc::clone(&shared));
        apply(
            &first,
            EntryKind::New,
            &conn("10.0.0.2", 1, Some(TcpState::Established)),
        );
        apply(
            &second,
            EntryKind::New,
            &conn("10.0.0.3", 1, Some(TcpState::Established)),
        );
        apply(
            &second,
            EntryKind::New,
            &conn("10.0.0.4", 1, Some(TcpState::Established)),
        );
        assert_eq!(counts(&second)["other"], [0, 1, 0, 0]);
        assert!(shared.reached());
        drop(first);
        assert_eq!(shared.used(), 1);
        apply(
            &second,
            EntryKind::New,
            &conn("10.0.0.5", 1, Some(TcpState::Established)),
        );
        assert_eq!(counts(&second)["10.0.0.5"], [0, 1, 0, 0]);
        assert_eq!(shared.used(), 2);
    }

    #[test]
    fn label_sets_beyond_the_limit_are_counted_as_other() {
        use TcpState::{Established, SynSent};
        let shared = bound(2);
        let tracker = Tracker::new().with_series_bound(Arc::clone(&shared));
        for (index, remote) in ["10.0.0.2", "10.0.0.3", "10.0.0.4", "fd00::5", "10.0.0.6"]
            .into_iter()
            .enumerate()
        {
            apply(
                &tracker,
                EntryKind::New,
                &conn(remote, 1, Some(Established)),
            );
            assert_eq!(shared.reached(), index >= 2);
        }
        // A second connection of a host that has a place joins it.
        apply(
            &tracker,
            EntryKind::New,
            &conn("10.0.0.3", 2, Some(SynSent)),
        );
        let now = counts(&tracker);
        assert_eq!(now.len(), 3, "{now:?}");
        assert_eq!(now["10.0.0.2"], [0, 1, 0, 0]);
        assert_eq!(now["10.0.0.3"], [1, 1, 0, 0]);
        assert_eq!(now["other"], [0, 3, 0, 0]);
        let total: u32 = now.values().flatten().sum();
        assert_eq!(total as usize, tracker.connections());
        // The ends of overflowed connections are counted in the overflow set too.
        apply(&tracker, EntryKind::Destroy, &conn("fd00::5", 1, None));
        let snapshot = tracker.snapshot(Instant::now(), IDLE);
        let other = snapshot.iter().find(|set| set.labels.overflow).unwrap();
        assert_eq!((other.totals.opened, other.totals.closed), (3, 1));
        assert_eq!(other.labels, LabelSet::OVERFLOW);
    }

    #[test]
    fn a_label_set_frees_its_place_when_it_leaves_the_output() {
        let tracker = limited(1);
        let first = conn("10.0.0.2", 1, Some(TcpState::Established));
        apply(&tracker, EntryKind::New, &first);
        apply(
            &tracker,
            EntryKind::New,
            &conn("10.0.0.3", 1, Some(TcpState::Established)),
        );
        apply(&tracker, EntryKind::Destroy, &first);
        let start = Instant::now();
        assert_eq!(tracker.snapshot(start, IDLE).len(), 2, "idle, not yet gone");
        apply(
            &tracker,
            EntryKind::New,
            &conn("10.0.0.4", 1, Some(TcpState::Established)),
        );
        let sets = tracker.snapshot(start + IDLE, IDLE);
        assert_eq!(sets.len(), 1, "only the overflow set is left: {sets:?}");
        assert!(sets[0].labels.overflow);
        // The place is free: the next new host takes it, and an update moves an overflowed
        // connection to its own set when that set exists.
        apply(
            &tracker,
            EntryKind::New,
            &conn("10.0.0.3", 2, Some(TcpState::SynSent)),
        );
        apply(
            &tracker,
            EntryKind::Update,
            &conn("10.0.0.3", 1, Some(TcpState::Established)),
        );
        let now = counts(&tracker);
        assert_eq!(now["10.0.0.3"], [1, 1, 0, 0]);
        assert_eq!(now["other"], [0, 1, 0, 0]);
        assert_eq!(tracker.connections(), 3);
    }

    #[test]
    fn groups_and_networks_are_one_label_set_each() {
        use crate::hosts::HostGroup;
        let groups = [HostGroup::parse("db", ["10.1.0.0/16", "fd00:1::/32"]).unwrap()];
        let hosts = Arc::new(HostLabels::new(&groups, 24, 64).unwrap());
        let classifier = classifier().with_hosts(Arc::clone(&hosts));
        let tracker = Tracker::new();
        let remotes = [
            "10.1.2.3",
            "10.1.9.9",
            "fd00:1:2::1",
            "192.0.2.1",
            "192.0.2.77",
        ];
        for (port, remote) in (1..).zip(remotes.into_iter().chain(["2001:db8::1", "2001:db8::2"])) {
            let entry = conn(remote, port, Some(TcpState::Established));
            tracker.apply(EntryKind::New, &entry, classifier.classify(&entry));
        }
        let by_text: BTreeMap<String, u32> = tracker
            .snapshot(Instant::now(), IDLE)
            .into_iter()
            .map(|set| {
                (
                    set.labels.value(LabelName::Host, &hosts),
                    set.get(StateGroup::Open),
                )
            })
            .collect();
        let expected = [("db", 3), ("192.0.2.0/24", 2), ("2001:db8::/64", 2)];
        assert_eq!(by_text, expected.map(|(h, n)| (h.to_owned(), n)).into());
    }

    #[test]
    fn hosts_with_no_connections_expire_after_the_idle_timeout() {
        let tracker = Tracker::new();
        let entry = conn("fd00::9", 1000, Some(TcpState::Established));
        apply(&tracker, EntryKind::New, &entry);
        apply(&tracker, EntryKind::Destroy, &entry);
        let start = Instant::now();
        assert_eq!(tracker.snapshot(start, IDLE).len(), 1);
        assert_eq!(tracker.snapshot(start + IDLE / 2, IDLE).len(), 1);
        assert_eq!(tracker.snapshot(start + IDLE, IDLE).len(), 0);
        // The slot is reused by the next host.
        apply(
            &tracker,
            EntryKind::New,
            &conn("10.0.0.7", 1, Some(TcpState::SynRecv)),
        );
        assert_eq!(counts(&tracker)["10.0.0.7"], [1, 0, 0, 0]);
    }

    #[test]
    fn a_host_that_comes_back_is_no_longer_idle() {
        let tracker = Tracker::new();
        let entry = conn("10.0.0.9", 1000, Some(TcpState::Established));
        apply(&tracker, EntryKind::New, &entry);
        apply(&tracker, EntryKind::Destroy, &entry);
        let start = Instant::now();
        tracker.snapshot(start, IDLE);
        apply(&tracker, EntryKind::New, &entry);
        assert_eq!(tracker.snapshot(start + IDLE * 2, IDLE).len(), 1);
    }

    #[test]
    fn same_tuple_in_two_zones_is_two_connections() {
        let tracker = Tracker::new();
        let mut entry = conn("10.0.0.9", 1000, Some(TcpState::Established));
        apply(&tracker, EntryKind::New, &entry);
        entry.zone = Some(7);
        assert_eq!(apply(&tracker, EntryKind::New, &entry), Change::Inserted);
        assert_eq!(counts(&tracker)["10.0.0.9"], [0, 2, 0, 0]);
    }

    #[test]
    fn resync_inserts_corrects_and_removes() {
        let tracker = Tracker::new();
        let stale = conn("10.0.0.5", 1, Some(TcpState::Established));
        let moved = conn("10.0.0.6", 2, Some(TcpState::Established));
        let kept = conn("10.0.0.6", 3, Some(TcpState::Established));
        for entry in [&stale, &moved, &kept] {
            apply(&tracker, EntryKind::New, entry);
        }
        let mut closed = moved.clone();
        closed.tcp_state = Some(TcpState::TimeWait);
        let fresh = conn("fd00::6", 4, Some(TcpState::SynSent));

        let class = classifier();
        let mut resync = tracker.begin_resync();
        for entry in [&closed, &kept, &fresh] {
            resync.observe(entry, class.classify(entry));
        }
        let outcome = resync.finish();
        assert_eq!(
            outcome,
            ResyncOutcome {
                observed: 3,
                inserted: 1,
                changed: 1,
                removed: 1
            }
        );
        assert_eq!(outcome.corrected(), 3);
        let now = counts(&tracker);
        assert_eq!(now["10.0.0.5"], [0, 0, 0, 0]);
        assert_eq!(now["10.0.0.6"], [0, 1, 1, 0]);
        assert_eq!(now["fd00::6"], [1, 0, 0, 0]);
        assert_eq!(tracker.connections(), 3);

        // A second resync with the same view corrects nothing.
        let mut again = tracker.begin_resync();
        for entry in [&closed, &kept, &fresh] {
            again.observe(entry, class.classify(entry));
        }
        assert_eq!(again.finish().corrected(), 0);
    }

    mod model {
        //! The tracker against a plain map of every live connection, over random event
        //! sequences: after any sequence, and after a resync, the counts agree.
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Event(EntryKind, u8, u8, Option<u8>),
            Resync(Vec<(u8, u8, u8)>),
            /// A scrape with no idle timeout: every empty label set leaves at once.
            Expire,
        }

        fn entry(host: u8, port: u8, state: Option<u8>) -> Entry {
            let remote = if host.is_multiple_of(2) {
                format!("10.0.1.{host}")
            } else {
                format!("fd00::1:{host}")
            };
            conn(&remote, u16::from(port), state.map(TcpState::from_raw))
        }

        fn op() -> impl Strategy<Value = Op> {
            let kind = prop_oneof![
                Just(EntryKind::New),
                Just(EntryKind::Update),
                Just(EntryKind::Destroy)
            ];
            let state = proptest::option::weighted(0.9, 0u8..10);
            prop_oneof![
                8 => (kind, 0u8..6, 0u8..8, state).prop_map(|(k, h, p, s)| Op::Event(k, h, p, s)),
                1 => proptest::collection::vec((0u8..6, 0u8..8, 0u8..10), 0..12).prop_map(Op::Resync),
                1 => Just(Op::Expire),
            ]
        }

        fn expected(model: &HashMap<(u8, u8), (u8, StateGroup)>) -> BTreeMap<String, [u32; 4]> {
            let mut by_host: BTreeMap<String, [u32; 4]> = BTreeMap::new();
            for ((host, port), (_, group)) in model {
                let host = entry(*host, *port, None).original.dst.to_string();
                by_host.entry(host).or_default()[group.index()] += 1;
            }
            by_host
        }

        proptest! {
            #[test]
            fn counts_equal_a_plain_model(
                ops in proptest::collection::vec(op(), 1..80),
                limit in proptest::option::of(1usize..4),
            ) {
                let tracker = Tracker::new().with_series_bound(Arc::new(SeriesBound::new(
                    limit.and_then(std::num::NonZeroUsize::new),
                )));
                let class = classifier();
                let mut model: HashMap<(u8, u8), (u8, StateGroup)> = HashMap::new();
                for op in ops {
                    match op {
                        Op::Event(kind, host, port, state) => {
                            let e = entry(host, port, state);
                            tracker.apply(kind, &e, class.classify(&e));
                            let group = state.map(|s| StateGroup::of_tcp(TcpState::from_raw(s)));
                            match (kind, group) {
                                (EntryKind::Destroy, _) | (_, Some(None)) => {
                                    model.remove(&(host, port));
                                }
                                (_, Some(Some(group))) => {
                                    model.insert((host, port), (host, group));
                                }
                                (_, None) => {}
                            }
                        }
                        Op::Resync(table) => {
                            let mut resync = tracker.begin_resync();
                            model.clear();
                            for (host, port, state) in table {
                                let e = entry(host, port, Some(state));
                                resync.observe(&e, class.classify(&e));
                                match StateGroup::of_tcp(TcpState::from_raw(state)) {
                                    Some(group) => {
                                        model.insert((host, port), (host, group));
                                    }
                                    None => {
                                        model.remove(&(host, port));
                                    }
                                }
                            }
                            resync.finish();
                        }
                        Op::Expire => {
                            tracker.snapshot(Instant::now(), Duration::ZERO);
                        }
                    }
                    prop_assert_eq!(tracker.connections(), model.len());
                    let mut actual = counts(&tracker);
                    actual.retain(|_, c| *c != [0; 4]);
                    let expected = expected(&model);
                    let Some(limit) = limit else {
                        prop_assert_eq!(actual, expected);
                        continue;
                    };
                    // With a limit: at most `limit` sets besides `other`, each holding some of
                    // its host's connections, and every connection counted once.
                    let overflow = actual.remove("other").unwrap_or_default();
                    prop_assert!(actual.len() <= limit, "{:?}", actual);
                    let mut sums = overflow;
                    for (host, counts) in &actual {
                        let model_counts = expected.get(host).copied().unwrap_or_default();
                        for group in 0..4 {
                            prop_assert!(counts[group] <= model_counts[group]);
                            sums[group] += counts[group];
                        }
                    }
                    let mut model_sums = [0; 4];
                    for counts in expected.values() {
                        for group in 0..4 {
                            model_sums[group] += counts[group];
                        }
                    }
                    prop_assert_eq!(sums, model_sums);
                }
            }
        }
    }
}
