//! Linux connection tracking messages, without I/O.
#![forbid(unsafe_code)]

mod attr;
mod entry;
mod entry_attributes;
mod error;
mod frame;
mod message;
pub mod request;
mod stats;
mod wire;

pub use entry::{Counters, Entry, Family, Layer4, Protocol, Status, TcpState, Timestamp, Tuple};
pub use error::ParseError;
pub use frame::{Frames, Header, frames};
pub use message::{EntryKind, Message, Messages, messages, parse_message};
pub use request::NewEntry;
pub use stats::{CpuStats, TableSize};
