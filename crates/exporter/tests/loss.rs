//! Lost events: when the kernel drops conntrack events because the exporter's receive queue
//! is full, the exporter counts the overrun, grows the queue up to its limit and reads the
//! whole table again, after which its per-host numbers are exact once more.
//!
//! Each test runs the built exporter in its own network namespace with the periodic resync
//! off (`resync_interval = "0"`), so only the resync that an overrun triggers can repair the
//! numbers. The overruns are provoked three ways: a burst of synthetic entries into a queue
//! too small to hold it and not allowed to grow; the same burst into a queue that may grow;
//! and churn while the exporter is stopped with `SIGSTOP`, so that nothing reads the queue.

mod common;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::start_exporter;
use conntrack_codec::{NewEntry, TcpState, Tuple};
use ctnetlink::ConntrackSocket;
use testkit::{
    Exporter, HostCounts, SEED_FAMILIES, Scrape, TempDir, eventually, extend_budget, show,
    state_group,
};

/// Remote hosts the synthetic entries go to: the first half IPv4, the rest IPv6.
const HOSTS: u32 = 32;
/// Entries the burst tests create.
const BURST: u32 = 4000;
/// Every this many of them is deleted again: coprime to [`HOSTS`] and to the number of
/// states, so that every host keeps entries (a host with none stays on the page with zeros
/// for a while, and the kernel's table knows nothing of it) and loses some in every state.
const DELETE_EVERY: u32 = 5;

const EVENTS_LOST: &str = "conntrack_exporter_events_lost_total";
const RESYNCS: &str = "conntrack_exporter_resyncs_total";
const CORRECTED: &str = "conntrack_exporter_resync_corrected_entries_total";
const QUEUE_BYTES: &str = "conntrack_exporter_netlink_receive_queue_bytes";
const LOSS: [(&str, &str); 1] = [("reason", "events_lost")];
const PERIODIC: [(&str, &str); 1] = [("reason", "periodic")];

/// The remote host of synthetic entry `n`.
fn host(n: u32) -> IpAddr {
    let index = n % HOSTS;
    if index < HOSTS / 2 {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1 + index as u8))
    } else {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, index as u16))
    }
}

/// The original tuple of synthetic entry `n`: from a non-local address of the same family
/// (so the destination counts as the remote host) to [`host`]`(n)`, one source port each.
fn tuple(n: u32) -> Tuple {
    let remote = host(n);
    let local = match remote {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    };
    let port = u16::try_from(1024 + n / HOSTS).expect("fewer synthetic entries than ports");
    Tuple::tcp(local, port, remote, 443)
}

/// The state of synthetic entry `n`: every host gets every state, as 9 and 32 are coprime.
fn state(n: u32) -> TcpState {
    // The counted TCP states: every named one but NONE, in turn.
    let counted = &TcpState::ALL[1..];
    counted[(n % counted.len() as u32) as usize]
}

/// Creates and deletes synthetic entries through one ctnetlink socket, as fast as the
/// kernel answers, and keeps the numbers the live ones should produce.
struct Workload {
    table: ConntrackSocket,
    expected: HostCounts,
}

impl Workload {
    fn new() -> Workload {
        Workload {
            table: ConntrackSocket::open().expect("opening a ctnetlink socket"),
            expected: HostCounts::new(),
        }
    }

    fn group(n: u32) -> usize {
        state_group(state(n).name()).expect("every state used is counted")
    }

    /// Creates entry `n`, which lives ten minutes.
    fn create(&mut self, n: u32) {
        let tuple = tuple(n);
        self.table
            .create(&NewEntry::tcp(tuple, state(n), 600))
            .unwrap_or_else(|error| panic!("creating {tuple:?}: {error}"));
        self.expected.entry(host(n)).or_default()[Self::group(n)] += 1;
    }

    /// Deletes entry `n`.
    fn delete(&mut self, n: u32) {
        let tuple = tuple(n);
        self.table
            .delete(&tuple, None)
            .unwrap_or_else(|error| panic!("deleting {tuple:?}: {error}"));
        let counts = self.expected.get_mut(&host(n)).expect("a created host");
        counts[Self::group(n)] -= 1;
    }

    /// [`BURST`] entries over all hosts and states, then every [`DELETE_EVERY`]th deleted.
    fn burst(&mut self) {
        for n in 0..BURST {
            self.create(n);
        }
        for n in (0..BURST).step_by(DELETE_EVERY as usize) {
            self.delete(n);
        }
    }
}

/// A config file with the given queue sizes and the periodic resync off.
fn config(directory: &TempDir, queue_bytes: usize, queue_max_bytes: usize) -> PathBuf {
    config_with(directory, queue_bytes, queue_max_bytes, "")
}

/// The same with `more` settings appended.
fn config_with(directory: &TempDir, queue_bytes: usize, max_bytes: usize, more: &str) -> PathBuf {
    directory.write(
        "conntrack_exporter.toml",
        &format!(
            "netlink_buffer_bytes = {queue_bytes}\n\
             netlink_buffer_max_bytes = {max_bytes}\n\
             resync_interval = \"0\"\n{more}"
        ),
    )
}

fn start(config: &Path) -> Exporter {
    start_exporter(&["--config", config.to_str().expect("a UTF-8 path")])
}

/// A sample's value; 0 when absent (a counter not yet incremented may be absent).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape.value(name, labels).unwrap_or(0.0)
}

/// The loss counters at one moment: overruns, loss resyncs, entries corrected.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LossCounters {
    lost: f64,
    resyncs: f64,
    corrected: f64,
}

impl LossCounters {
    fn of(scrape: &Scrape) -> LossCounters {
        LossCounters {
            lost: value(scrape, EVENTS_LOST, &[]),
            resyncs: value(scrape, RESYNCS, &LOSS),
            corrected: value(scrape, CORRECTED, &[]),
        }
    }
}

/// Waits until an overrun was counted since `before` and a resync for it ran.
fn wait_for_loss_resync(exporter: &Exporter, before: LossCounters) {
    eventually("events were lost and a resync followed", || {
        let now = LossCounters::of(&exporter.scrape());
        if now.lost > before.lost && now.resyncs > before.resyncs {
            Ok(())
        } else {
            Err(format!(
                "{EVENTS_LOST} and {RESYNCS}{{reason=\"events_lost\"}}: {} and {} before the \
                 workload, {} and {} now; the exporter's log:\n{}",
                before.lost,
                before.resyncs,
                now.lost,
                now.resyncs,
                exporter.stderr.text()
            ))
        }
    });
}

/// Checks what every loss test ends with, against the counters `before` the workload: the
/// numbers equal the kernel's table (and the table holds what the workload made), an overrun
/// was counted, a loss resync ran and had something to correct, and no periodic resync
/// could have done it instead.
fn assert_repaired_by_loss_resync(exporter: &Exporter, workload: &Workload, before: LossCounters) {
    wait_for_loss_resync(exporter, before);
    let counts = exporter.wait_until_kernel_table_matches(SEED_FAMILIES);
    assert_eq!(
        counts,
        workload.expected,
        "the kernel's table is not what the test made:\n  kernel:   {}\n  expected: {}",
        show(&counts),
        show(&workload.expected)
    );
    assert_eq!(counts.len(), HOSTS as usize, "{}", show(&counts));
    let scrape = exporter.scrape();
    let after = LossCounters::of(&scrape);
    assert!(after.lost > before.lost, "{before:?} -> {after:?}");
    assert!(after.resyncs > before.resyncs, "{before:?} -> {after:?}");
    assert!(
        after.corrected > before.corrected,
        "events were lost, yet no resync corrected anything: {before:?} -> {after:?}"
    );
    assert_eq!(
        value(&scrape, RESYNCS, &PERIODIC),
        0.0,
        "a periodic resync ran although resync_interval is 0"
    );
}

#[test]
fn a_burst_into_a_queue_that_cannot_grow_is_repaired_by_the_loss_resync() {
    let test = "a_burst_into_a_queue_that_cannot_grow_is_repaired_by_the_loss_resync";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let directory = TempDir::new(test);
    let exporter = start(&config(&directory, 4096, 4096));
    let scrape = exporter.scrape();
    let before = LossCounters::of(&scrape);
    let queue_before = value(&scrape, QUEUE_BYTES, &[]);
    assert!(queue_before > 0.0, "{QUEUE_BYTES} = {queue_before}");

    let mut workload = Workload::new();
    workload.burst();

    assert_repaired_by_loss_resync(&exporter, &workload, before);
    let queue_after = value(&exporter.scrape(), QUEUE_BYTES, &[]);
    assert_eq!(
        queue_after, queue_before,
        "the queue changed size although netlink_buffer_max_bytes = netlink_buffer_bytes"
    );
}

#[test]
fn an_overrun_grows_the_receive_queue_within_its_limit() {
    let test = "an_overrun_grows_the_receive_queue_within_its_limit";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    const INITIAL: usize = 4096;
    const MAX: usize = 64 * 1024;
    // The kernel reports double the size asked for (it counts its own bookkeeping).
    let ceiling = (2 * MAX) as f64;
    let queue = |scrape: &Scrape| {
        let bytes = value(scrape, QUEUE_BYTES, &[]);
        assert!(
            bytes <= ceiling,
            "{QUEUE_BYTES} = {bytes}, more than twice netlink_buffer_max_bytes = {MAX}"
        );
        bytes
    };
    let directory = TempDir::new(test);
    let exporter = start(&config(&directory, INITIAL, MAX));
    let scrape = exporter.scrape();
    let before = LossCounters::of(&scrape);
    let queue_before = queue(&scrape);
    assert!(queue_before > 0.0, "{QUEUE_BYTES} = {queue_before}");

    let mut workload = Workload::new();
    workload.burst();

    let grown = eventually("the receive queue grew after an overrun", || {
        let scrape = exporter.scrape();
        let bytes = queue(&scrape);
        let lost = value(&scrape, EVENTS_LOST, &[]);
        if lost > 0.0 && bytes > queue_before {
            Ok(bytes)
        } else {
            Err(format!(
                "{EVENTS_LOST} = {lost}, {QUEUE_BYTES} = {bytes} (at start {queue_before})"
            ))
        }
    });
    assert_repaired_by_loss_resync(&exporter, &workload, before);
    let queue_after = queue(&exporter.scrape());
    assert!(
        queue_after >= grown,
        "the queue shrank from {grown} to {queue_after} bytes"
    );
}

#[test]
fn a_stopped_exporter_is_exact_again_after_it_resumes() {
    let test = "a_stopped_exporter_is_exact_again_after_it_resumes";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    /// How long the exporter stays stopped.
    const STALL: Duration = Duration::from_secs(10);
    /// Entries created during the stall, spread evenly over it.
    const CHURN: u32 = 20_000;
    /// Entries that exist before the exporter starts.
    const BASELINE: u32 = 500;
    /// Live entries kept during the churn: beyond that the oldest is deleted.
    const LIVE: usize = 2000;

    // The baseline comes from the initial dump, not from events, so that no overrun
    // happens before the stall.
    let mut workload = Workload::new();
    let mut live: VecDeque<u32> = (0..BASELINE).collect();
    for &n in &live {
        workload.create(n);
    }
    let directory = TempDir::new(test);
    // 64 KiB holds a few hundred events at most; the queue may grow, but only once it is
    // read again, which a stopped exporter does not do.
    // With every label on: the numbers summed over the other labels must still be exact.
    let every_label = "labels = [\"host\", \"direction\", \"service_port\", \"local_host\", \
                       \"protocol\", \"zone\"]\n";
    let config = config_with(&directory, 64 * 1024, 4 * 1024 * 1024, every_label);
    let exporter = start(&config);
    let counts = exporter.wait_until_kernel_table_matches(SEED_FAMILIES);
    assert_eq!(counts, workload.expected, "{}", show(&counts));
    let before = LossCounters::of(&exporter.scrape());

    exporter.signal(libc::SIGSTOP);
    let stalled = Instant::now();
    let mut created = 0;
    while stalled.elapsed() < STALL {
        let due = f64::from(CHURN) * stalled.elapsed().as_secs_f64() / STALL.as_secs_f64();
        if created >= CHURN || f64::from(created) > due {
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        let n = BASELINE + created;
        workload.create(n);
        live.push_back(n);
        created += 1;
        while live.len() > LIVE {
            let oldest = live.pop_front().expect("a live entry");
            workload.delete(oldest);
        }
    }
    exporter.signal(libc::SIGCONT);
    // The stall is deliberate: the waits after it get their full time.
    extend_budget(stalled.elapsed());
    assert!(
        created >= CHURN / 2,
        "only {created} entries were created during the stall"
    );

    assert_repaired_by_loss_resync(&exporter, &workload, before);
}
