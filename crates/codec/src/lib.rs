//! Linux connection tracking messages, without I/O.
//!
//! This crate is the pure half of the exporter's kernel boundary: the types of a conntrack
//! entry ([`Entry`], [`Tuple`], [`TcpState`], ...), the decoder of ctnetlink messages
//! ([`messages`], [`parse_message`]) and the builders of the requests the kernel understands
//! ([`request`]). It does no I/O, links no C library and has no `unsafe`; the `ctnetlink`
//! crate moves the bytes, and the tracker, the fuzz targets and the benchmarks use this crate
//! alone.
//!
//! Decoding never panics and never trusts a length. A message that cannot be decoded is a
//! [`ParseError`], and the messages after it in the same buffer are decoded as usual. Within
//! an entry only the original tuple is required: a malformed optional attribute (a zone of
//! the wrong length, an empty counters nest, a bad timestamp...) is left out of the entry and
//! counted in [`EntryMessage::attribute_errors`].
//!
//! Netlink headers are in host byte order, attributes in network byte order; the captured
//! message below comes from an x86_64 machine.
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//!
//! use conntrack_codec::{
//!     EntryKind, Message, NewEntry, ParseError, TcpState, Tuple, messages, parse_message,
//!     request,
//! };
//!
//! # fn hex(text: &str) -> Vec<u8> {
//! #     (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
//! # }
//! // A DESTROY event as Linux 6.18 sent it: the TCP connection 192.0.2.1:40001 ->
//! // 192.0.2.2:443, ESTABLISHED, with mark 42.
//! let captured = hex(concat!(
//!     "ac0000000201000000000000ec19000002000000340001801400018008000100c0000201",
//!     "08000200c00002021c0002800500010006000000060002009c4100000600030001bb0000",
//!     "340002801400018008000100c000020208000200c00002011c0002800500010006000000",
//!     "0600020001bb0000060003009c41000008000c0098c31d6a080003000000020e08000700",
//!     "00000e0b100004800c0001800500010003000000080008000000002a",
//! ));
//! let Ok(Message::Entry(destroyed)) = parse_message(&captured) else {
//!     panic!("a captured event decodes");
//! };
//! let v4 = |last| IpAddr::V4(Ipv4Addr::new(192, 0, 2, last));
//! assert_eq!(destroyed.kind, EntryKind::Destroy);
//! assert_eq!(destroyed.entry.original, Tuple::tcp(v4(1), 40001, v4(2), 443));
//! assert_eq!(destroyed.entry.tcp_state, Some(TcpState::Established));
//! assert_eq!(destroyed.entry.mark, Some(42));
//! assert!(destroyed.attribute_errors.is_empty());
//!
//! // A request to create an entry has the layout of a NEW event, so it decodes as one.
//! let asked = NewEntry::tcp(Tuple::tcp(v4(7), 50000, v4(8), 22), TcpState::SynSent, 120);
//! let bytes = request::create(1, &asked);
//! let Ok(Message::Entry(created)) = parse_message(&bytes) else {
//!     panic!("a request decodes");
//! };
//! assert_eq!(created.kind, EntryKind::New);
//! assert_eq!(created.entry.original, asked.original);
//! assert_eq!(created.entry.timeout, Some(120));
//!
//! // A buffer of several messages decodes one by one; a truncated one is an error, not a
//! // panic.
//! let mut buffer = captured.clone();
//! buffer.extend_from_slice(&bytes[..30]);
//! let decoded: Vec<_> = messages(&buffer).collect();
//! assert!(matches!(decoded[0], Ok(Message::Entry(_))));
//! assert!(matches!(decoded[1], Err(ParseError::MessageFraming { .. })));
//! ```
#![forbid(unsafe_code)]

mod attr;
mod entry;
mod entry_attributes;
mod error;
pub mod event_filter;
mod frame;
mod message;
pub mod request;
mod stats;
mod wire;

pub use entry::{Counters, Entry, Family, Layer4, Protocol, Status, TcpState, Timestamp, Tuple};
pub use entry_attributes::AttributeErrors;
pub use error::ParseError;
pub use frame::{Frames, Header, frames};
pub use message::{EntryKind, EntryMessage, Message, Messages, messages, parse_message};
pub use request::NewEntry;
pub use stats::{CpuStats, TableSize};
