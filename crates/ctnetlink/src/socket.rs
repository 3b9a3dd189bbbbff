//! Netlink sockets to the conntrack subsystem: one for requests (dump, create, delete,
//! statistics) and one subscribed to events.
//!
//! Both own an [`mnl::Socket`], which is not `Send`: keep each socket on the thread that
//! opened it. The event socket exposes its file descriptor so that a caller can poll it.

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, RawFd};

use crate::entry::{Entry, Family, Tuple};
use crate::error::{ParseError, SocketError};
use crate::message::{EntryKind, Message, messages};
use crate::request::{self, NewEntry};
use crate::stats::{CpuStats, TableSize};
use crate::wire;

/// Receive buffer size for one `recv`. Dump replies are batched by the kernel into messages
/// of up to a page or more each; 64 KiB holds any batch it sends.
const RECEIVE_CHUNK: usize = 64 * 1024;

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
            bits |= wire::NF_NETLINK_CONNTRACK_NEW;
        }
        if self.update {
            bits |= wire::NF_NETLINK_CONNTRACK_UPDATE;
        }
        if self.destroy {
            bits |= wire::NF_NETLINK_CONNTRACK_DESTROY;
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
    buffer: AlignedBuffer,
}

impl EventSocket {
    /// Subscribes to `groups`. Needs `CAP_NET_ADMIN`.
    pub fn subscribe(groups: EventGroups) -> Result<Self, SocketError> {
        Ok(EventSocket {
            socket: open_socket(
                mnl::Bus::Netfilter,
                groups.bits(),
                "subscribing to conntrack events",
            )?,
            buffer: AlignedBuffer::new(RECEIVE_CHUNK),
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

    /// Reads one batch of events and hands each to `on_event`. An event that cannot be
    /// decoded is handed over as an error; the others in the batch still arrive.
    pub fn receive(
        &mut self,
        mut on_event: impl FnMut(Result<(EntryKind, Entry), ParseError>),
    ) -> Result<Received, SocketError> {
        let received = loop {
            match self.socket.recv_raw(self.buffer.bytes_mut()) {
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
        let mut count = 0;
        for message in messages(&self.buffer.bytes()[..received]) {
            count += 1;
            match message {
                Ok(Message::Entry { kind, entry }) => on_event(Ok((kind, entry))),
                Ok(_) => {}
                Err(error) => on_event(Err(error)),
            }
        }
        Ok(Received::Messages(count))
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
