//! Measures what reading a burst of conntrack events costs the reader.
//!
//! ```text
//! sudo cargo run --release -p ctnetlink --example event_burst -- [ENTRIES] [ROUNDS]
//! ```
//!
//! In a private network namespace (so it needs root, and touches nothing on the host), each
//! round creates `ENTRIES` entries (default 100,000) over netlink while nobody reads the event
//! socket, then drains the queued NEW events through [`EventSocket::receive`]; then it flushes
//! the table and drains the DESTROY events the same way. For each drain it prints the events
//! decoded, the `receive` calls it took, and the reading thread's CPU time per event
//! (`CLOCK_THREAD_CPUTIME_ID`), with its split into user and system time (`getrusage`, which
//! samples at the scheduler tick: only meaningful over bursts of many milliseconds). The
//! events are decoded but not otherwise used.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use conntrack_codec::{NewEntry, TcpState, Tuple};
use ctnetlink::{ConntrackSocket, EventGroups, EventSocket, Received};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let entries: u32 = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let rounds: u32 = args.next().map_or(Ok(3), |a| a.parse())?;
    let Some(_namespace) = testkit::enter("event_burst") else {
        return Err("the measurement needs root for its private network namespace".into());
    };
    let mut events = EventSocket::subscribe(EventGroups::ALL)?;
    let queue = events.set_receive_queue(1 << 30)?;
    events.set_nonblocking(true)?;
    println!(
        "receive queue: {} bytes{}",
        queue.bytes,
        if queue.forced { "" } else { " (not forced)" }
    );
    let mut table = ConntrackSocket::open()?;

    for round in 1..=rounds {
        let started = Instant::now();
        for index in 0..entries {
            let source = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + index));
            let tuple = Tuple::tcp(source, 40_000, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 443);
            table.create(&NewEntry::tcp(tuple, TcpState::Established, 600))?;
        }
        let created = started.elapsed();
        println!(
            "round {round}: created {entries} entries in {:.2}s",
            created.as_secs_f64()
        );
        drain(&mut events, "NEW", entries)?;
        table.flush(None)?;
        drain(&mut events, "DESTROY", entries)?;
    }
    Ok(())
}

/// Reads queued events until none is left and reports the cost.
fn drain(events: &mut EventSocket, what: &str, expected: u32) -> Result<(), ctnetlink::Error> {
    let mut decoded = 0u64;
    let mut errors = 0u64;
    let mut calls = 0u64;
    let mut lost = 0u64;
    // The flush's DESTROY events may still be on their way: wait for them a little.
    let deadline = Instant::now() + Duration::from_secs(5);
    let before = cpu_split();
    let cpu = thread_cpu_time();
    let wall = Instant::now();
    loop {
        calls += 1;
        let outcome = events.receive(|event| match event {
            Ok(_) => decoded += 1,
            Err(_) => errors += 1,
        })?;
        match outcome {
            Received::Messages(_) => {}
            Received::EventsLost => lost += 1,
            Received::WouldBlock if decoded + errors < u64::from(expected) => {
                if Instant::now() > deadline {
                    break;
                }
                std::thread::yield_now();
            }
            Received::WouldBlock => break,
        }
    }
    let wall = wall.elapsed();
    let cpu = thread_cpu_time() - cpu;
    let (user, system) = cpu_split();
    let (user, system) = (user - before.0, system - before.1);
    let per_event = |time: Duration| time.as_nanos() as f64 / decoded.max(1) as f64;
    println!(
        "  {what}: {decoded} events ({errors} errors, {lost} losses) in {calls} receive calls; \
         CPU per event {:.0} ns (about {:.0}% system); wall {:.3}s",
        per_event(cpu),
        100.0 * system.as_secs_f64() / (user + system).as_secs_f64().max(1e-9),
        wall.as_secs_f64()
    );
    Ok(())
}

/// The calling thread's CPU time, to the nanosecond.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is valid for writes for the duration of the call.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(result, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The calling thread's user and system CPU time, as sampled at the scheduler tick.
fn cpu_split() -> (Duration, Duration) {
    // SAFETY: all-zero bytes are a valid `rusage` (integers and timevals).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid for writes for the duration of the call.
    let result = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(result, 0, "getrusage(RUSAGE_THREAD)");
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (time(usage.ru_utime), time(usage.ru_stime))
}
