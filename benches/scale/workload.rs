//! The load: synthetic conntrack entries created through ctnetlink (no packet is sent), and
//! what the kernel's table says about them.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use conntrack_codec::{NewEntry, Protocol, TcpState, Tuple};
use ctnetlink::ConntrackSocket;
use testkit::{HostCounts, TableEntry, host_counts, local_addresses};

/// Entry `index` of round `round`, connecting to one of `hosts` remote hosts. Rounds never
/// share a tuple. No address is local in the harness's namespace, so the exporter counts
/// each entry under its original destination.
pub fn entry(round: u32, index: u32, hosts: u32) -> NewEntry {
    let host = index % hosts;
    let src = Ipv4Addr::new(
        10,
        (64 + round * 4 + (index >> 16)) as u8,
        (index >> 8) as u8,
        index as u8,
    );
    let dst = Ipv4Addr::new(172, 16 + (host >> 16) as u8, (host >> 8) as u8, host as u8);
    let state = match index % 10 {
        0 => TcpState::SynSent,
        1 => TcpState::TimeWait,
        _ => TcpState::Established,
    };
    let tuple = Tuple::tcp(
        IpAddr::V4(src),
        20000 + (index % 40000) as u16,
        IpAddr::V4(dst),
        443,
    );
    NewEntry::tcp(tuple, state, 3600)
}

/// Entry `index` of `round` as [`entry`] makes it when `index` is a multiple of 11; the
/// others are UDP flows between the same addresses: ten UDP entries for each TCP one, as on
/// a DNS server or a NAT gateway.
pub fn mixed_entry(round: u32, index: u32, hosts: u32) -> NewEntry {
    let mut made = entry(round, index, hosts);
    if !index.is_multiple_of(11) {
        made.original.protocol = Protocol::UDP;
        made.tcp_state = None;
    }
    made
}

/// Creates entries `0..count` of `round`, one request at a time as a single client does,
/// and returns how long it took.
pub fn create(socket: &mut ConntrackSocket, round: u32, count: u32, hosts: u32) -> Duration {
    create_made(socket, entry, round, count, hosts)
}

/// Creates entries `0..count` of `round` made by `make`, one request at a time; returns how
/// long it took.
pub fn create_made(
    socket: &mut ConntrackSocket,
    make: fn(u32, u32, u32) -> NewEntry,
    round: u32,
    count: u32,
    hosts: u32,
) -> Duration {
    let started = Instant::now();
    for index in 0..count {
        socket
            .create(&make(round, index, hosts))
            .unwrap_or_else(|error| panic!("creating entry {index} of round {round}: {error}"));
    }
    started.elapsed()
}

/// Deletes entries `0..count` of `round`, one request at a time; returns how long it took.
pub fn delete(socket: &mut ConntrackSocket, round: u32, count: u32, hosts: u32) -> Duration {
    let started = Instant::now();
    for index in 0..count {
        socket
            .delete(&entry(round, index, hosts).original, None)
            .unwrap_or_else(|error| panic!("deleting entry {index} of round {round}: {error}"));
    }
    started.elapsed()
}

/// Deletes every entry; returns how long it took.
pub fn flush(socket: &mut ConntrackSocket) -> Duration {
    let started = Instant::now();
    socket.flush(None).expect("flushing the table");
    started.elapsed()
}

/// What the exporter should show for the kernel's table, read through a dump (at the
/// harness's table sizes much faster than the `conntrack` tool).
pub fn kernel_counts(socket: &mut ConntrackSocket) -> HostCounts {
    let mut entries = Vec::new();
    socket
        .dump(None, |decoded| {
            let entry = decoded.expect("decoding the dump").entry;
            if entry.original.protocol == Protocol::TCP {
                entries.push(TableEntry {
                    state: entry
                        .tcp_state
                        .map(TcpState::name)
                        .unwrap_or_default()
                        .to_owned(),
                    original: (entry.original.src, entry.original.dst),
                    reply: entry.reply.map(|reply| (reply.src, reply.dst)),
                });
            }
        })
        .expect("dumping the table");
    host_counts(&entries, &local_addresses())
}
