//! The HTTP endpoint: the metrics, a landing page and the health endpoints, served so that
//! careless or hostile clients cannot exhaust the exporter.
//!
//! - [`server`]: the accept loop and one task per connection (HTTP/1.1 and cleartext
//!   HTTP/2), with the timeouts below, and the seams where TLS and authorization plug in.
//! - [`connections`]: the open connections and their activity, bounded in number; when all
//!   are taken, the one quiet the longest makes room.
//! - [`pages`]: the rendered pages that responses in flight hold, bounded in number; when a
//!   newer one is needed, the connections still sending an old one are closed.
//! - [`routes`]: what each path and method answers.
//! - [`health`]: liveness and readiness.
//!
//! Memory is bounded by design: at most `max_connections` connections, each with buffers of
//! fixed size (request heads of [`MAX_HEADER_BYTES`], HTTP/2 windows of
//! [`H2_CONNECTION_WINDOW`], [`H2_MAX_STREAMS`] streams), and at most [`pages::MAX_PAGES`]
//! rendered pages, which responses reference rather than copy.

mod connections;
mod health;
mod pages;
mod routes;
mod server;

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use metrics::{Counter, counter, describe_counter};

pub(crate) use routes::Site;
pub(crate) use server::{AllowAll, PlainTcp, bind, serve};

/// The time a client has to send a request's headers: from the connection's start (TLS
/// handshake included) for the first request, from the end of the previous response for
/// the next. A scraper sends its request at once; 10 s is what Prometheus waits for a whole
/// scrape by default. An HTTP/1.1 connection idle between requests is closed after this long
/// too, which costs a scraper one new connection per scrape at most.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection on which no byte moves either way for this long is closed: an idle HTTP/2
/// connection, or a response its client does not read. Longer than the usual scrape
/// intervals (up to a minute), so that a scraper's HTTP/2 connection lives from one scrape to
/// the next.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// On SIGTERM or SIGINT, how long responses in flight may take to finish before their
/// connections are dropped.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The largest request head (HTTP/1.1 request line and headers, HTTP/2 header list) accepted;
/// a scrape's is a few hundred bytes.
pub(crate) const MAX_HEADER_BYTES: usize = 16 << 10;

/// Concurrent streams per HTTP/2 connection: a scraper needs one.
pub(crate) const H2_MAX_STREAMS: u32 = 8;

/// HTTP/2 flow-control windows the exporter grants clients: how much request body it buffers
/// per stream and per connection. Scrapes have no body.
pub(crate) const H2_STREAM_WINDOW: u32 = 16 << 10;
/// See [`H2_STREAM_WINDOW`].
pub(crate) const H2_CONNECTION_WINDOW: u32 = 64 << 10;

/// The kernel's send and receive buffers of each connection (the kernel doubles the figure).
/// Fixed rather than grown by the kernel, they bound the kernel memory a client that does
/// not read can hold (up to 4 MiB a connection otherwise), and let a response that stalls
/// stop moving at once instead of trickling into a growing buffer. A gzipped page of 10,000
/// hosts still leaves in one round trip.
pub(crate) const SOCKET_BUFFER_BYTES: u32 = 64 << 10;

/// Connections the kernel keeps waiting to be accepted while all slots are taken.
pub(crate) const LISTEN_BACKLOG: u32 = 1024;

/// Why the exporter closed a connection before its client did, for the counter
/// `conntrack_exporter_http_connections_closed_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// All connection slots were taken and it was the one quiet the longest.
    Limit,
    /// Its response was still sending a page [`pages::OLD_PAGE`] old while a newer page was
    /// needed and [`pages::MAX_PAGES`] were held.
    Stalled,
    /// No byte moved for [`IDLE_TIMEOUT`], or an HTTP/1.1 connection waited for its next
    /// request for [`HEADER_READ_TIMEOUT`].
    Idle,
    /// A request's headers did not arrive within [`HEADER_READ_TIMEOUT`].
    HeaderTimeout,
}

/// How often a warning about a limit reached may be repeated.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Lets a warning through at most once per [`WARNING_INTERVAL`]: a limit reached under
/// attack is reported, not repeated for every connection.
#[derive(Debug, Default)]
struct Throttle {
    last: Mutex<Option<Instant>>,
}

impl Throttle {
    /// Whether the warning may be logged now.
    fn allows(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let allows = last.is_none_or(|last| last.elapsed() >= WARNING_INTERVAL);
        if allows {
            *last = Some(Instant::now());
        }
        allows
    }
}

/// The HTTP endpoint's counters.
#[derive(Debug, Clone)]
pub(crate) struct Counters {
    closed_limit: Counter,
    closed_stalled: Counter,
    closed_idle: Counter,
    closed_header_timeout: Counter,
}

impl Counters {
    /// Creates and describes the counters in the recorder current while it runs.
    pub(crate) fn register() -> Counters {
        describe_counter!(
            "conntrack_exporter_http_connections_closed_total",
            "HTTP connections the exporter closed, by reason: limit (all connection slots \
             taken, it was the quietest), stalled (its client was still reading an old page \
             when newer pages were needed), idle (nothing moved), header_timeout (a \
             request's headers came too slowly)."
        );
        let closed = |reason: &'static str| counter!("conntrack_exporter_http_connections_closed_total", "reason" => reason);
        Counters {
            closed_limit: closed("limit"),
            closed_stalled: closed("stalled"),
            closed_idle: closed("idle"),
            closed_header_timeout: closed("header_timeout"),
        }
    }

    /// Counts a connection closed for `reason`.
    fn closed(&self, reason: CloseReason) {
        match reason {
            CloseReason::Limit => &self.closed_limit,
            CloseReason::Stalled => &self.closed_stalled,
            CloseReason::Idle => &self.closed_idle,
            CloseReason::HeaderTimeout => &self.closed_header_timeout,
        }
        .increment(1);
    }
}
