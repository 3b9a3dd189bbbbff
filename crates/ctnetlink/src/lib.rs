//! Linux connection tracking over netlink sockets.
//!
//! This crate is the exporter's kernel boundary, the part that does I/O: it dumps the
//! conntrack table, subscribes to its NEW / UPDATE / DESTROY events, creates and deletes
//! entries (for tests and load generation), reads the kernel's own counters, watches the
//! interface addresses, opens its sockets inside other network namespaces, and can switch
//! connection tracking on in a network namespace. The messages it sends and receives are built and decoded by the pure `conntrack_codec` crate,
//! whose types (entries, tuples, decoding errors) its callbacks hand over. It has no runtime
//! and no metrics.
//!
//! ```no_run
//! use ctnetlink::{ConntrackSocket, EventGroups, EventSocket, Received};
//!
//! # fn main() -> Result<(), ctnetlink::Error> {
//! // Subscribe first, so that nothing that happens during the dump is missed.
//! let mut events = EventSocket::subscribe(EventGroups::ALL)?;
//! events.set_receive_queue(8 << 20)?;
//!
//! let mut table = ConntrackSocket::open()?;
//! let summary = table.dump(None, |decoded| {
//!     if let Ok(decoded) = decoded {
//!         println!("{:?} {:?}", decoded.entry.original, decoded.entry.tcp_state);
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
//!
//! The rooms: `socket` (the netlink socket every other module talks through, with the one
//! receive loop and the socket options), `conntrack` ([`ConntrackSocket`]), `events`
//! ([`EventSocket`]), [`addresses`] (the address watch), [`namespace`] (entering another
//! network namespace to open sockets there), [`Readiness`] (waiting for many sockets at once) and [`tracking_switch`] (the nftables
//! table that switches tracking on, the only user of libnftnl). Every failure is an
//! [`Error`]. The sockets are not `Send` (libmnl's socket is not): keep each on the thread
//! that opened it.

pub mod addresses;
mod conntrack;
mod error;
mod events;
pub mod namespace;
mod readiness;
mod socket;
pub mod tracking_switch;

pub use conntrack::{ConntrackSocket, DecoderPriority, DumpSummary};
pub use error::Error;
pub use events::{EventGroups, EventSocket, ReceiveQueue, Received};
pub use readiness::Readiness;
