//! The socket subscribed to conntrack events: NEW, UPDATE and DESTROY as they happen, read in
//! batches, with the kernel's notice of lost events passed on.

use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use conntrack_codec::event_filter::Instruction;
use conntrack_codec::{EntryMessage, Message, ParseError, messages};

use crate::error::Error;
use crate::socket::{AlignedBuffer, Datagram, NetlinkSocket, Read};

/// Multicast group bits for `bind` (legacy bitmask form of `NFNLGRP_CONNTRACK_*`).
const NF_NETLINK_CONNTRACK_NEW: u32 = 0x1;
/// See [`NF_NETLINK_CONNTRACK_NEW`].
const NF_NETLINK_CONNTRACK_UPDATE: u32 = 0x2;
/// See [`NF_NETLINK_CONNTRACK_NEW`].
const NF_NETLINK_CONNTRACK_DESTROY: u32 = 0x4;

/// Room for one event datagram. An event message is a few hundred bytes (about 300 with
/// IPv6 tuples, counters and timestamps); a datagram that does not fit is handed over as a
/// parse error.
const EVENT_DATAGRAM: usize = 8 * 1024;

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
    socket: NetlinkSocket,
    /// [`EventSocket::BATCH`] slots of [`EVENT_DATAGRAM`] bytes, one per datagram of a batch.
    buffer: AlignedBuffer,
}

impl EventSocket {
    /// The most events one [`receive`](Self::receive) hands over: fewer means the queue was
    /// emptied.
    pub const BATCH: usize = 64;

    /// Subscribes to `groups`. Needs `CAP_NET_ADMIN`.
    pub fn subscribe(groups: EventGroups) -> Result<Self, Error> {
        Ok(EventSocket {
            socket: NetlinkSocket::open(
                mnl::Bus::Netfilter,
                groups.bits(),
                "subscribing to conntrack events",
            )?,
            buffer: AlignedBuffer::new(Self::BATCH * EVENT_DATAGRAM),
        })
    }

    /// Sets the kernel receive queue to `bytes`. Tries `SO_RCVBUFFORCE` (needs
    /// `CAP_NET_ADMIN`, ignores `rmem_max`) and falls back to `SO_RCVBUF`.
    pub fn set_receive_queue(&self, bytes: usize) -> Result<ReceiveQueue, Error> {
        const OPERATION: &str = "setting the event receive queue size";
        let requested = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        let set = |name| self.socket.set_option(libc::SOL_SOCKET, name, requested);
        let forced = match set(libc::SO_RCVBUFFORCE) {
            Ok(()) => true,
            Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
                set(libc::SO_RCVBUF).map_err(|e| Error::system_call(OPERATION, e))?;
                false
            }
            Err(error) => return Err(Error::system_call(OPERATION, error)),
        };
        Ok(ReceiveQueue {
            bytes: self.receive_queue()?,
            forced,
        })
    }

    /// The receive queue size now in force (`SO_RCVBUF`).
    pub fn receive_queue(&self) -> Result<usize, Error> {
        let bytes = self
            .socket
            .int_option(libc::SOL_SOCKET, libc::SO_RCVBUF)
            .map_err(|e| Error::system_call("reading the receive queue size", e))?;
        Ok(usize::try_from(bytes).unwrap_or(0))
    }

    /// Bytes of the buffer that batch reads fill, held for the socket's life.
    pub fn buffer_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Makes [`receive`](Self::receive) return [`Received::WouldBlock`] instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), Error> {
        self.socket
            .set_nonblocking(nonblocking)
            .map_err(|e| Error::system_call("setting the event socket non-blocking", e))
    }

    /// Makes a blocking [`receive`](Self::receive) give up after `timeout` with
    /// [`Received::WouldBlock`] (`SO_RCVTIMEO`), so that one thread can both wait for events
    /// and keep its timers without polling the socket first.
    pub fn set_receive_timeout(&self, timeout: Duration) -> Result<(), Error> {
        let value = libc::timeval {
            tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
            tv_usec: timeout.subsec_micros().into(),
        };
        self.socket
            .set_option(libc::SOL_SOCKET, libc::SO_RCVTIMEO, value)
            .map_err(|e| Error::system_call("setting the event receive timeout", e))
    }

    /// Has the kernel drop, before queuing them, the events `program` rejects (a classic BPF
    /// socket filter, such as `conntrack_codec::event_filter::protocol_filter` builds);
    /// `None` removes the filter. The program replaces any set before.
    pub fn set_filter(&self, program: Option<&[Instruction]>) -> Result<(), Error> {
        self.socket
            .attach_filter(program)
            .map_err(|e| Error::system_call("attaching the event filter", e))
    }

    /// Reads the events queued now, up to [`BATCH`](Self::BATCH) datagrams in one system
    /// call, and hands each to `on_event` in arrival order, with the optional attributes that
    /// were malformed and left out. Waits for the first one unless the socket is
    /// non-blocking. An event that cannot be decoded (or a datagram too large for the
    /// buffer) is handed over as an error; the others in the batch still arrive.
    ///
    /// When the kernel reports lost events after some datagrams were read in the same call,
    /// those datagrams are handed over and this call returns [`Received::Messages`]; the
    /// kernel keeps the error pending on the socket and the next call returns
    /// [`Received::EventsLost`].
    pub fn receive(
        &mut self,
        on_event: impl FnMut(Result<EntryMessage, ParseError>),
    ) -> Result<Received, Error> {
        self.receive_with(0, on_event)
    }

    /// Like [`receive`](Self::receive), but never waits, even on a blocking socket:
    /// returns [`Received::WouldBlock`] when nothing is queued.
    pub fn receive_queued(
        &mut self,
        on_event: impl FnMut(Result<EntryMessage, ParseError>),
    ) -> Result<Received, Error> {
        self.receive_with(libc::MSG_DONTWAIT, on_event)
    }

    fn receive_with(
        &mut self,
        flags: libc::c_int,
        mut on_event: impl FnMut(Result<EntryMessage, ParseError>),
    ) -> Result<Received, Error> {
        const OPERATION: &str = "receiving conntrack events";
        let mut datagrams = [Datagram::default(); Self::BATCH];
        let read = self.socket.read_batch(
            OPERATION,
            &mut self.buffer,
            EVENT_DATAGRAM,
            &mut datagrams,
            flags,
        )?;
        let received = match read {
            Read::Data(received) => received,
            Read::Overrun => return Ok(Received::EventsLost),
            Read::Empty => return Ok(Received::WouldBlock),
        };
        let slots = self.buffer.bytes().chunks_exact(EVENT_DATAGRAM);
        let count = slots
            .zip(&datagrams[..received])
            .map(|(slot, datagram)| hand_over(slot, *datagram, &mut on_event))
            .sum();
        Ok(Received::Messages(count))
    }
}

impl AsRawFd for EventSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// Decodes the messages of one received datagram, whose slot is `slot`, and hands each
/// event to `on_event`; returns how many messages it held. A truncated datagram is handed
/// over as one error.
fn hand_over(
    slot: &[u8],
    datagram: Datagram,
    on_event: &mut impl FnMut(Result<EntryMessage, ParseError>),
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
            Ok(Message::Entry(decoded)) => on_event(Ok(decoded)),
            Ok(_) => {}
            Err(error) => on_event(Err(error)),
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use conntrack_codec::request;
    use conntrack_codec::{EntryKind, NewEntry, TcpState, Tuple};
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
            .inspect(|event| assert_eq!(event.kind, EntryKind::New))
            .map(|event| event.entry.original.src_port())
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
        let buffer = AlignedBuffer::new(EventSocket::BATCH * EVENT_DATAGRAM);
        let slots = buffer.bytes().chunks_exact(EVENT_DATAGRAM);
        assert_eq!(slots.len(), EventSocket::BATCH);
        for slot in slots {
            assert_eq!(slot.as_ptr() as usize % std::mem::align_of::<u64>(), 0);
        }
    }
}
