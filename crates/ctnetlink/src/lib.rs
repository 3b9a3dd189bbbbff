//! Linux connection tracking over netlink.
//!
//! This crate is the exporter's whole kernel boundary: it decodes ctnetlink messages into
//! typed [`Entry`] values, dumps the conntrack table, subscribes to its NEW / UPDATE /
//! DESTROY events, creates and deletes entries (for tests and load generation), reads the
//! kernel's own counters, and can switch connection tracking on in a network namespace.
//! It has no runtime and no metrics; the decoder is a pure function over bytes.
//!
//! ```no_run
//! use ctnetlink::{ConntrackSocket, EventGroups, EventSocket, Received};
//!
//! # fn main() -> Result<(), ctnetlink::SocketError> {
//! // Subscribe first, so that nothing that happens during the dump is missed.
//! let mut events = EventSocket::subscribe(EventGroups::ALL)?;
//! events.set_receive_queue(8 << 20)?;
//!
//! let mut table = ConntrackSocket::open()?;
//! let summary = table.dump(None, |entry| {
//!     if let Ok(entry) = entry {
//!         println!("{:?} {:?}", entry.original, entry.tcp_state);
//!     }
//! })?;
//! println!("{} entries", summary.entries);
//!
//! loop {
//!     match events.receive(|event| println!("{event:?}"))? {
//!         Received::EventsLost => println!("events were lost: dump again"),
//!         Received::Messages(_) | Received::WouldBlock => {}
//!     }
//! }
//! # }
//! ```

pub mod addresses;
mod error;
mod socket;
pub mod tracking;

pub use error::SocketError;
pub use socket::{ConntrackSocket, DumpSummary, EventGroups, EventSocket, ReceiveQueue, Received};
pub use tracking::TrackingError;
