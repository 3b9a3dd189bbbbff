//! Decoding netlink buffers into typed ctnetlink messages.
//!
//! Pure functions over byte slices: no I/O, no `unsafe`, no panics on any input. Integers in
//! netlink headers are host-endian; integers inside ctnetlink attributes are big-endian.

use crate::entry::Entry;
use crate::entry_attributes::{AttributeErrors, parse_entry};
use crate::error::ParseError;
use crate::frame::{Frames, Header, frames};
use crate::stats::{CpuStats, TableSize};
use crate::wire;

/// What a conntrack message says happened to the entry it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A reply to a dump request: the entry exists.
    Dumped,
    /// Event: a new connection was confirmed.
    New,
    /// Event: an existing connection changed (state, status, mark, ...).
    Update,
    /// Event: the connection left the table.
    Destroy,
}

/// A conntrack entry as one message carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMessage {
    /// Dump reply or which event.
    pub kind: EntryKind,
    /// The entry, without the optional attributes that were malformed.
    pub entry: Entry,
    /// The optional attributes that were malformed and left out of `entry`.
    pub attribute_errors: AttributeErrors,
}

/// One decoded netlink message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "entries are nearly every message decoded: boxing them would allocate per event"
)]
pub enum Message {
    /// A conntrack entry from a dump or an event.
    Entry(EntryMessage),
    /// The reply to a table size request.
    TableSize(TableSize),
    /// One CPU's statistics from a per-CPU statistics dump.
    CpuStats(CpuStats),
    /// End of a dump.
    Done,
    /// A positive acknowledgement.
    Ack,
    /// The kernel rejected a request with this errno.
    Error(i32),
    /// Anything else (other message types are skipped by callers).
    Other {
        /// The netlink message type.
        message_type: u16,
    },
}

/// Iterates over the netlink messages in a received buffer.
///
/// A message whose payload is malformed yields an error and iteration continues with the next
/// one. A header whose length cannot be trusted yields an error and ends the iteration, because
/// the following messages cannot be located.
pub fn messages(buffer: &[u8]) -> Messages<'_> {
    Messages {
        frames: frames(buffer),
    }
}

/// Iterator returned by [`messages`].
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    frames: Frames<'a>,
}

impl Iterator for Messages<'_> {
    type Item = Result<Message, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.frames.next()?.and_then(parse_message))
    }
}

/// Decodes exactly one netlink message (header included).
pub fn parse_message(message: &[u8]) -> Result<Message, ParseError> {
    let Header {
        message_type,
        flags,
        ..
    } = Header::parse(message)?;
    let payload = &message[wire::NLMSG_HDRLEN..];
    match message_type {
        wire::NLMSG_DONE => return Ok(Message::Done),
        wire::NLMSG_ERROR => return parse_error(payload),
        wire::NLMSG_OVERRUN => return Ok(Message::Other { message_type }),
        _ => {}
    }
    if message_type >> 8 != wire::NFNL_SUBSYS_CTNETLINK {
        return Ok(Message::Other { message_type });
    }
    let Some((nfgen, attributes)) = payload.split_first_chunk::<{ wire::NFGENMSG_LEN }>() else {
        return Err(ParseError::Truncated {
            what: "nfgenmsg",
            needed: wire::NFGENMSG_LEN,
            available: payload.len(),
        });
    };
    match message_type & 0xff {
        wire::IPCTNL_MSG_CT_NEW | wire::IPCTNL_MSG_CT_DELETE => {
            let kind = entry_kind(message_type & 0xff, flags);
            let (entry, attribute_errors) = parse_entry(nfgen[0], attributes)?;
            Ok(Message::Entry(EntryMessage {
                kind,
                entry,
                attribute_errors,
            }))
        }
        wire::IPCTNL_MSG_CT_GET_STATS => Ok(Message::TableSize(TableSize::parse(attributes)?)),
        wire::IPCTNL_MSG_CT_GET_STATS_CPU => {
            let cpu = u16::from_be_bytes([nfgen[2], nfgen[3]]);
            Ok(Message::CpuStats(CpuStats::parse(cpu, attributes)?))
        }
        _ => Ok(Message::Other { message_type }),
    }
}

/// Tells dump replies and the three event kinds apart, the way the kernel marks them:
/// DESTROY is a DELETE message, NEW carries `NLM_F_CREATE|NLM_F_EXCL`, a dump reply carries
/// `NLM_F_MULTI`, and UPDATE is a NEW message with none of these.
fn entry_kind(message: u16, flags: u16) -> EntryKind {
    if message == wire::IPCTNL_MSG_CT_DELETE {
        EntryKind::Destroy
    } else if flags & wire::NLM_F_MULTI != 0 {
        EntryKind::Dumped
    } else if flags & (wire::NLM_F_CREATE | wire::NLM_F_EXCL) != 0 {
        EntryKind::New
    } else {
        EntryKind::Update
    }
}

/// `NLMSG_ERROR` carries a negative errno followed by the offending request's header.
fn parse_error(payload: &[u8]) -> Result<Message, ParseError> {
    let Some(errno) = payload.first_chunk::<4>() else {
        return Err(ParseError::Truncated {
            what: "netlink error code",
            needed: 4,
            available: payload.len(),
        });
    };
    match i32::from_ne_bytes(*errno) {
        0 => Ok(Message::Ack),
        code => Ok(Message::Error(code.saturating_neg())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_kind_follows_the_kernel_flags() {
        use wire::{IPCTNL_MSG_CT_DELETE as DELETE, IPCTNL_MSG_CT_NEW as NEW};
        assert_eq!(entry_kind(DELETE, 0), EntryKind::Destroy);
        assert_eq!(entry_kind(DELETE, wire::NLM_F_MULTI), EntryKind::Destroy);
        assert_eq!(entry_kind(NEW, wire::NLM_F_MULTI), EntryKind::Dumped);
        let create_excl = wire::NLM_F_CREATE | wire::NLM_F_EXCL;
        assert_eq!(entry_kind(NEW, create_excl), EntryKind::New);
        assert_eq!(entry_kind(NEW, wire::NLM_F_CREATE), EntryKind::New);
        assert_eq!(entry_kind(NEW, 0), EntryKind::Update);
        assert_eq!(entry_kind(NEW, wire::NLM_F_ACK), EntryKind::Update);
    }

    #[test]
    fn error_codes() {
        assert_eq!(parse_error(&0i32.to_ne_bytes()), Ok(Message::Ack));
        assert_eq!(parse_error(&(-17i32).to_ne_bytes()), Ok(Message::Error(17)));
        assert_eq!(parse_error(&(-1i32).to_ne_bytes()), Ok(Message::Error(1)));
        // Not a valid errno, but representable without overflow.
        assert_eq!(
            parse_error(&i32::MIN.to_ne_bytes()),
            Ok(Message::Error(i32::MAX))
        );
        assert_eq!(
            parse_error(&[0, 0, 0]),
            Err(ParseError::Truncated {
                what: "netlink error code",
                needed: 4,
                available: 3
            })
        );
    }

    #[test]
    fn messages_skip_padding_between_messages() {
        // A 20-byte DONE, then a 17-byte message padded to 20, then an ACK.
        let mut buffer = Vec::new();
        let header = |length: u32, kind: u16| {
            let mut h = Vec::new();
            h.extend_from_slice(&length.to_ne_bytes());
            h.extend_from_slice(&kind.to_ne_bytes());
            h.extend_from_slice(&[0; 10]);
            h
        };
        buffer.extend(header(20, wire::NLMSG_DONE));
        buffer.extend_from_slice(&[0; 4]);
        buffer.extend(header(17, 0x10));
        buffer.extend_from_slice(&[0; 4]);
        buffer.extend(header(20, wire::NLMSG_ERROR));
        buffer.extend_from_slice(&[0; 4]);
        let decoded: Vec<_> = messages(&buffer).collect();
        assert_eq!(
            decoded,
            [
                Ok(Message::Done),
                Ok(Message::Other { message_type: 0x10 }),
                Ok(Message::Ack)
            ]
        );
    }
}
