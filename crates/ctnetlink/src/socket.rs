//! Netlink sockets to the conntrack subsystem: one for requests (dump, create, delete,
//! statistics) and one subscribed to events.
//!
//! Both own an [`mnl::Socket`], which is not `Send`: keep each socket on the thread that
//! opened it. The event socket exposes its file descriptor so that a caller can poll it.

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, RawFd};

use conntrack_codec::request::{self, NewEntry};
use conntrack_codec::{
    CpuStats, Entry, EntryKind, Family, Message, ParseError, TableSize, Tuple, messages,
};

use crate::error::SocketError;

/// Receive buffer size for one `recv`. Dump replies are batched by the kernel into messages
/// of up to a page or more each; 64 KiB holds any batch it sends.
const RECEIVE_CHUNK: usize = 64 * 1024;

/// Event datagrams read by one `recvmmsg` at most. The kernel sends every event in its own
/// datagram, so reading them one `recv` at a time would cost a system call per event.
const EVENT_BATCH: usize = EventSocket::BATCH;

/// Room for one event datagram. An event message is a few hundred bytes (about 300 with
/// IPv6 tuples, counters and timestamps); a datagram that does not fit is handed over as a
/// parse error.
const EVENT_DATAGRAM: usize = 8 * 1024;

/// A heap buffer aligned for `nlmsghdr`, as `mnl` requires.
pub(crate) struct AlignedBuffer {
    words: Box<[u64]>,
}

impl AlignedBuffer {
    pub(crate) fn new(bytes: usize) -> Self {
        AlignedBuffer {
            words: vec![0u64; bytes.div_ceil(8)].into_boxed_slice(),
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: u64 has no padding and every byte pattern is a valid u8; the slice covers
        // exactly the allocation and borrows `self`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast(), self.words.len() * 8) }
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and any u8 written leaves the u64s valid.
        unsafe {
            std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.words.len() * 8)
        }
    }
}

/// Opens a netlink socket on `bus`, bound to the multicast `groups` (legacy bitmask; 0 for
/// none) with a port id chosen by the kernel.
pub(crate) fn open_socket(
    bus: mnl::Bus,
    groups: u32,
    operation: &'static str,
) -> Result<mnl::Socket, SocketError> {
    let socket =
        mnl::Socket::open(bus).map_err(|e| SocketError::from_errno(operation, e, false))?;
    socket
        .bind(groups, mnl::mnl_sys::MNL_SOCKET_AUTOPID)
        .map_err(|e| SocketError::from_errno(operation, e, false))?;
    Ok(socket)
}

/// A socket for requests to the conntrack table: dump it, read its counters, and create or
/// delete entries.
pub struct ConntrackSocket {
    socket: mnl::Socket,
    sequence: u32,
    buffer: AlignedBuffer,
}

/// What a dump saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DumpSummary {
    /// Entries decoded and handed to the callback.
    pub entries: u64,
    /// Messages that could not be decoded (each also handed to the callback as an error).
    pub parse_errors: u64,
}

impl ConntrackSocket {
    /// Opens a request socket. Needs no privilege by itself; the requests do.
    pub fn open() -> Result<Self, SocketError> {
        Ok(ConntrackSocket {
            socket: open_socket(mnl::Bus::Netfilter, 0, "opening a ctnetlink socket")?,
            sequence: 0,
            buffer: AlignedBuffer::new(RECEIVE_CHUNK),
        })
    }

    /// Streams every entry of the table (all families when `family` is `None`) to `on_entry`,
    /// one at a time, as the kernel sends them. A message that cannot be decoded is handed
    /// over as an error and the dump goes on.
    pub fn dump(
        &mut self,
        family: Option<Family>,
        mut on_entry: impl FnMut(Result<Entry, ParseError>),
    ) -> Result<DumpSummary, SocketError> {
        let mut summary = DumpSummary::default();
        let sequence = self.next_sequence();
        self.exchange(
            "dumping the conntrack table",
            &request::dump(sequence, family),
            |message| {
                match message {
                    Ok(Message::Entry { entry, .. }) => {
                        summary.entries += 1;
                        on_entry(Ok(entry));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        summary.parse_errors += 1;
                        on_entry(Err(error));
                    }
                }
                ControlFlow::Continue(())
            },
        )?;
        Ok(summary)
    }

    /// Creates an entry. Fails with a kernel error (see [`SocketError::is_already_present`])
    /// when an entry with the same tuple exists.
    pub fn create(&mut self, entry: &NewEntry) -> Result<(), SocketError> {
        let sequence = self.next_sequence();
        self.acknowledged(
            "creating a conntrack entry",
            &request::create(sequence, entry),
        )
    }

    /// Deletes the entry whose original tuple is `original` in `zone` (the default zone when
    /// `None`). Fails with a kernel error (see [`SocketError::is_not_found`]) when absent.
    pub fn delete(&mut self, original: &Tuple, zone: Option<u16>) -> Result<(), SocketError> {
        let sequence = self.next_sequence();
        let request = request::delete(sequence, original, zone);
        self.acknowledged("deleting a conntrack entry", &request)
    }

    /// Deletes every entry of `family` (all families when `None`).
    pub fn flush(&mut self, family: Option<Family>) -> Result<(), SocketError> {
        let sequence = self.next_sequence();
        self.acknowledged(
            "flushing the conntrack table",
            &request::flush(sequence, family),
        )
    }

    /// The table's current number of entries and its limit.
    pub fn table_size(&mut self) -> Result<TableSize, SocketError> {
        const OPERATION: &str = "reading the conntrack table size";
        let sequence = self.next_sequence();
        let mut size = None;
        self.exchange(
            OPERATION,
            &request::table_size(sequence),
            |message| match message {
                Ok(Message::TableSize(found)) => {
                    size = Some(found);
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            },
        )?;
        size.ok_or(SocketError::Parse {
            operation: OPERATION,
            source: ParseError::MissingAttribute("CTA_STATS_GLOBAL_ENTRIES"),
        })
    }

    /// Statistics of every CPU, as `conntrack -S` shows them.
    pub fn cpu_stats(&mut self) -> Result<Vec<CpuStats>, SocketError> {
        const OPERATION: &str = "reading conntrack statistics";
        let sequence = self.next_sequence();
        let mut all = Vec::new();
        let mut failure = None;
        self.exchange(OPERATION, &request::cpu_stats(sequence), |message| {
            match message {
                Ok(Message::CpuStats(stats)) => all.push(stats),
                Ok(_) => {}
                Err(error) => failure = Some(error),
            }
            ControlFlow::Continue(())
        })?;
        match failure {
            Some(source) => Err(SocketError::Parse {
                operation: OPERATION,
                source,
            }),
            None => Ok(all),
        }
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }

    fn acknowledged(&mut self, operation: &'static str, request: &[u8]) -> Result<(), SocketError> {
        self.exchange(operation, request, |_| ControlFlow::Continue(()))
    }

    /// Sends `request`, then hands every reply message to `on_message` until the kernel ends
    /// the exchange (done, acknowledgement or error) or `on_message` breaks.
    fn exchange(
        &mut self,
        operation: &'static str,
        request: &[u8],
        mut on_message: impl FnMut(Result<Message, ParseError>) -> ControlFlow<()>,
    ) -> Result<(), SocketError> {
        self.socket
            .send(request)
            .map_err(|e| SocketError::from_errno(operation, e, false))?;
        loop {
            let received = match self.socket.recv_raw(self.buffer.bytes_mut()) {
                Ok(received) => received,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(SocketError::from_errno(operation, error, false)),
            };
            for message in messages(&self.buffer.bytes()[..received]) {
                match message {
                    Ok(Message::Done) | Ok(Message::Ack) => return Ok(()),
                    Ok(Message::Error(errno)) => {
                        let error = io::Error::from_raw_os_error(errno);
                        return Err(SocketError::from_errno(operation, error, true));
                    }
                    other => {
                        if on_message(other).is_break() {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// Multicast group bits for `bind` (legacy bitmask form of `NFNLGRP_CONNTRACK_*`).
const NF_NETLINK_CONNTRACK_NEW: u32 = 0x1;
/// See [`NF_NETLINK_CONNTRACK_NEW`].
const NF_NETLINK_CONNTRACK_UPDATE: u32 = 0x2;
/// See [`NF_NETLINK_CONNTRACK_NEW`].
const NF_NETLINK_CONNTRACK_DESTROY: u32 = 0x4;

/// Which event groups to subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventGroups {
    /// New connections.
    pub new: bool,
    /// Changes to existing connections.
    pub update: bool,
    /// Connections leaving the table.
    pub destroy: bool,
}

impl EventGroups {
    /// All three groups.
    pub const ALL: EventGroups = EventGroups {
        new: true,
        update: true,
        destroy: true,
    };

    fn bits(self) -> u32 {
        let mut bits = 0;
        if self.new {
            bits |= NF_NETLINK_CONNTRACK_NEW;
        }
        if self.update {
            bits |= NF_NETLINK_CONNTRACK_UPDATE;
        }
        if self.destroy {
            bits |= NF_NETLINK_CONNTRACK_DESTROY;
        }
        bits
    }
}

/// The outcome of one [`EventSocket::receive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// This many messages were read and handed over.
    Messages(usize),
    /// The receive queue overflowed and the kernel dropped events: the caller's view of the
    /// table is incomplete until it dumps the table again.
    EventsLost,
    /// Non-blocking socket with nothing queued.
    WouldBlock,
}

/// The receive queue size the kernel granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveQueue {
    /// Bytes the kernel reports for `SO_RCVBUF` (it doubles the request for bookkeeping).
    pub bytes: usize,
    /// False when `SO_RCVBUFFORCE` was refused and the size is capped by
    /// `net.core.rmem_max`.
    pub forced: bool,
}

/// A socket subscribed to conntrack events.
pub struct EventSocket {
    socket: mnl::Socket,
    /// [`EVENT_BATCH`] slots of [`EVENT_DATAGRAM`] bytes, one per datagram of a batch.
    buffer: AlignedBuffer,
}

impl EventSocket {
    /// The most events one [`receive`](Self::receive) hands over: fewer means the queue was
    /// emptied.
    pub const BATCH: usize = 64;

    /// Subscribes to `groups`. Needs `CAP_NET_ADMIN`.
    pub fn subscribe(groups: EventGroups) -> Result<Self, SocketError> {
        Ok(EventSocket {
            socket: open_socket(
                mnl::Bus::Netfilter,
                groups.bits(),
                "subscribing to conntrack events",
            )?,
            buffer: AlignedBuffer::new(EVENT_BATCH * EVENT_DATAGRAM),
        })
    }

    /// Sets the kernel receive queue to `bytes`. Tries `SO_RCVBUFFORCE` (needs
    /// `CAP_NET_ADMIN`, ignores `rmem_max`) and falls back to `SO_RCVBUF`.
    pub fn set_receive_queue(&self, bytes: usize) -> Result<ReceiveQueue, SocketError> {
        const OPERATION: &str = "setting the event receive queue size";
        let requested = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        let forced = match self.set_option(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, requested) {
            Ok(()) => true,
            Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
                self.set_option(libc::SOL_SOCKET, libc::SO_RCVBUF, requested)
                    .map_err(|e| SocketError::from_errno(OPERATION, e, false))?;
                false
            }
            Err(error) => return Err(SocketError::from_errno(OPERATION, error, false)),
        };
        Ok(ReceiveQueue {
            bytes: self.receive_queue()?,
            forced,
        })
    }

    /// The receive queue size now in force (`SO_RCVBUF`).
    pub fn receive_queue(&self) -> Result<usize, SocketError> {
        let mut value: libc::c_int = 0;
        let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `length` are valid for writes of the sizes passed.
        let result = unsafe {
            libc::getsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw mut value).cast(),
                &mut length,
            )
        };
        if result != 0 {
            let error = io::Error::last_os_error();
            return Err(SocketError::from_errno(
                "reading the receive queue size",
                error,
                false,
            ));
        }
        Ok(usize::try_from(value).unwrap_or(0))
    }

    /// Makes [`receive`](Self::receive) return [`Received::WouldBlock`] instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), SocketError> {
        set_nonblocking(self.as_raw_fd(), nonblocking).map_err(|error| {
            SocketError::from_errno("setting the event socket non-blocking", error, false)
        })
    }

    /// Reads the events queued now, up to 64 datagrams in one system call, and hands each to
    /// `on_event` in arrival order. Waits for the first one unless the socket is non-blocking.
    /// An event that cannot be decoded (or a datagram too large for the buffer) is handed
    /// over as an error; the others in the batch still arrive.
    ///
    /// When the kernel reports lost events after some datagrams were read in the same call,
    /// those datagrams are handed over and this call returns [`Received::Messages`]; the
    /// kernel keeps the error pending on the socket and the next call returns
    /// [`Received::EventsLost`].
    pub fn receive(
        &mut self,
        on_event: impl FnMut(Result<(EntryKind, Entry), ParseError>),
    ) -> Result<Received, SocketError> {
        self.receive_with(0, on_event)
    }

    /// Like [`receive`](Self::receive), but never waits, even on a blocking socket:
    /// returns [`Received::WouldBlock`] when nothing is queued.
    pub fn receive_queued(
        &mut self,
        on_event: impl FnMut(Result<(EntryKind, Entry), ParseError>),
    ) -> Result<Received, SocketError> {
        self.receive_with(libc::MSG_DONTWAIT, on_event)
    }

    /// Makes a blocking [`receive`](Self::receive) give up after `timeout` with
    /// [`Received::WouldBlock`] (`SO_RCVTIMEO`), so that one thread can both wait for events
    /// and keep its timers without polling the socket first.
    pub fn set_receive_timeout(&self, timeout: std::time::Duration) -> Result<(), SocketError> {
        let value = libc::timeval {
            tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
            tv_usec: timeout.subsec_micros().into(),
        };
        // SAFETY: `value` lives for the call and its size is passed.
        let result = unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const value).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if result != 0 {
            let error = io::Error::last_os_error();
            return Err(SocketError::from_errno(
                "setting the event receive timeout",
                error,
                false,
            ));
        }
        Ok(())
    }

    fn receive_with(
        &mut self,
        extra_flags: libc::c_int,
        mut on_event: impl FnMut(Result<(EntryKind, Entry), ParseError>),
    ) -> Result<Received, SocketError> {
        let mut datagrams = [Datagram::default(); EVENT_BATCH];
        let received = loop {
            match self.receive_batch(&mut datagrams, extra_flags) {
                Ok(received) => break received,
                Err(error) => match error.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => return Ok(Received::EventsLost),
                    Some(libc::EAGAIN) => return Ok(Received::WouldBlock),
                    _ => {
                        let operation = "receiving conntrack events";
                        return Err(SocketError::from_errno(operation, error, false));
                    }
                },
            }
        };
        let slots = self.buffer.bytes().chunks_exact(EVENT_DATAGRAM);
        let count = slots
            .zip(&datagrams[..received])
            .map(|(slot, datagram)| hand_over(slot, *datagram, &mut on_event))
            .sum();
        Ok(Received::Messages(count))
    }

    /// One `recvmmsg` into the buffer's slots: how many datagrams arrived, and each one's
    /// size in `datagrams`.
    fn receive_batch(
        &mut self,
        datagrams: &mut [Datagram; EVENT_BATCH],
        extra_flags: libc::c_int,
    ) -> io::Result<usize> {
        let fd = self.as_raw_fd();
        let mut vectors: [libc::iovec; EVENT_BATCH] = std::array::from_fn(|_| libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        });
        for (vector, slot) in vectors
            .iter_mut()
            .zip(self.buffer.bytes_mut().chunks_exact_mut(EVENT_DATAGRAM))
        {
            vector.iov_base = slot.as_mut_ptr().cast();
            vector.iov_len = slot.len();
        }
        // SAFETY: `mmsghdr` is plain integers and pointers, for which all-zero bytes are
        // valid (null pointers, zero lengths).
        let mut headers: [libc::mmsghdr; EVENT_BATCH] = unsafe { std::mem::zeroed() };
        for (header, vector) in headers.iter_mut().zip(vectors.iter_mut()) {
            header.msg_hdr.msg_iov = vector;
            header.msg_hdr.msg_iovlen = 1;
        }
        // MSG_WAITFORONE: wait for the first datagram only (when blocking), then take what
        // is queued. MSG_TRUNC: netlink reports a datagram's full size even when it did not
        // fit, so that a truncated one can be told apart and named.
        let flags = libc::MSG_WAITFORONE | libc::MSG_TRUNC | extra_flags;
        // SAFETY: `headers` holds EVENT_BATCH headers, each with no address, no control data
        // and one iovec from `vectors`, which outlives the call; each iovec covers its own
        // EVENT_DATAGRAM-byte slot of `self.buffer`, disjoint from the others and exclusively
        // borrowed through `&mut self` for the call. The timeout pointer may be null.
        let received = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                EVENT_BATCH as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        let Ok(received) = usize::try_from(received) else {
            return Err(io::Error::last_os_error());
        };
        for (datagram, header) in datagrams.iter_mut().zip(&headers[..received]) {
            *datagram = Datagram {
                length: header.msg_len as usize,
                truncated: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            };
        }
        Ok(received)
    }

    fn set_option(&self, level: i32, name: i32, value: libc::c_int) -> io::Result<()> {
        // SAFETY: `value` lives for the call and its size is passed.
        let result = unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                level,
                name,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Size of one datagram read by `recvmmsg`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Datagram {
    /// Its full size (with `MSG_TRUNC`, also when it did not fit).
    length: usize,
    /// It did not fit in its slot.
    truncated: bool,
}

/// Decodes the messages of one received datagram, whose slot is `slot`, and hands each
/// event to `on_event`; returns how many messages it held. A truncated datagram is handed
/// over as one error.
fn hand_over(
    slot: &[u8],
    datagram: Datagram,
    on_event: &mut impl FnMut(Result<(EntryKind, Entry), ParseError>),
) -> usize {
    if datagram.truncated || datagram.length > slot.len() {
        on_event(Err(ParseError::Truncated {
            what: "event datagram",
            needed: datagram.length.max(slot.len() + 1),
            available: slot.len(),
        }));
        return 1;
    }
    let mut count = 0;
    for message in messages(&slot[..datagram.length]) {
        count += 1;
        match message {
            Ok(Message::Entry { kind, entry }) => on_event(Ok((kind, entry))),
            Ok(_) => {}
            Err(error) => on_event(Err(error)),
        }
    }
    count
}

/// Sets or clears `O_NONBLOCK` on a descriptor.
pub(crate) fn set_nonblocking(fd: RawFd, nonblocking: bool) -> io::Result<()> {
    // SAFETY: fcntl with integer arguments on a descriptor the caller owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if nonblocking {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl AsRawFd for EventSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conntrack_codec::TcpState;
    use std::net::{IpAddr, Ipv4Addr};

    /// A datagram of two NEW messages in a slot of `EVENT_DATAGRAM` bytes, and its length.
    fn slot_with_two_events() -> (Vec<u8>, usize) {
        let tuple = |port| {
            let local = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
            Tuple::tcp(local, port, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 443)
        };
        let mut slot = request::create(1, &NewEntry::tcp(tuple(1000), TcpState::SynSent, 60));
        slot.extend(request::create(
            2,
            &NewEntry::tcp(tuple(1001), TcpState::SynSent, 60),
        ));
        let length = slot.len();
        slot.resize(EVENT_DATAGRAM, 0);
        (slot, length)
    }

    #[test]
    fn every_message_of_a_datagram_is_handed_over() {
        let (slot, length) = slot_with_two_events();
        let mut events = Vec::new();
        let datagram = Datagram {
            length,
            truncated: false,
        };
        let count = hand_over(&slot, datagram, &mut |event| events.push(event));
        assert_eq!(count, 2);
        let ports: Vec<Option<u16>> = events
            .into_iter()
            .map(|event| event.unwrap())
            .inspect(|(kind, _)| assert_eq!(*kind, EntryKind::New))
            .map(|(_, entry)| entry.original.src_port())
            .collect();
        assert_eq!(ports, [Some(1000), Some(1001)]);
    }

    #[test]
    fn a_truncated_datagram_is_one_parse_error() {
        let (slot, _) = slot_with_two_events();
        let mut events = Vec::new();
        let truncated = Datagram {
            length: EVENT_DATAGRAM + 100,
            truncated: true,
        };
        assert_eq!(hand_over(&slot, truncated, &mut |e| events.push(e)), 1);
        let expected = ParseError::Truncated {
            what: "event datagram",
            needed: EVENT_DATAGRAM + 100,
            available: EVENT_DATAGRAM,
        };
        assert_eq!(events, [Err(expected)]);

        // A kernel that does not report the full size still gets the datagram refused.
        events.clear();
        let size_unknown = Datagram {
            length: EVENT_DATAGRAM,
            truncated: true,
        };
        assert_eq!(hand_over(&slot, size_unknown, &mut |e| events.push(e)), 1);
        assert!(matches!(
            events[..],
            [Err(ParseError::Truncated { needed, .. })] if needed > EVENT_DATAGRAM
        ));
    }

    #[test]
    fn slots_are_aligned_for_netlink_headers() {
        let buffer = AlignedBuffer::new(EVENT_BATCH * EVENT_DATAGRAM);
        let slots = buffer.bytes().chunks_exact(EVENT_DATAGRAM);
        assert_eq!(slots.len(), EVENT_BATCH);
        for slot in slots {
            assert_eq!(slot.as_ptr() as usize % std::mem::align_of::<u64>(), 0);
        }
    }
}
