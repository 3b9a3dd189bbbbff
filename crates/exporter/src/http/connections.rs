//! The open HTTP connections: a fixed number of slots, each connection's activity (when a
//! byte last moved either way), and the choice of which connection makes room when every slot
//! is taken.
//!
//! A connection that waits for a slot stays in the kernel's accept queue. When the slots are
//! all taken, the connection quiet the longest is closed if it has been quiet for
//! [`QUIET_ENOUGH_TO_CLOSE`] and the exporter is not working on a request of it: half-sent
//! requests, idle keep-alive connections and answers their clients do not read make room for
//! a scrape, while connections that are busy sending, receiving or waiting for their page are
//! left alone.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use log::warn;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::{CloseReason, Throttle};
use crate::exposition::Status;

/// How long the quietest connection must have been quiet before it is closed to make room.
/// A scraper is never quiet that long while its request is served.
pub(crate) const QUIET_ENOUGH_TO_CLOSE: Duration = Duration::from_secs(1);

/// While all slots are taken, how often the quietest connection is looked for again.
const RECHECK: Duration = Duration::from_millis(100);

/// One open connection, as the rest of the endpoint sees it.
#[derive(Debug)]
pub(crate) struct Connection {
    /// The clock origin its times count from.
    origin: Instant,
    /// When the connection was accepted, in milliseconds from `origin`.
    accepted: u64,
    /// When a byte was last read, in milliseconds from `origin`.
    last_read: AtomicU64,
    /// When a byte was last written, in milliseconds from `origin`.
    last_write: AtomicU64,
    /// Requests received so far.
    requests: AtomicU64,
    /// Requests the exporter is working on (until their answer's head is ready).
    serving: AtomicU64,
    /// Why the exporter closes it, once it decided to.
    close_reason: OnceLock<CloseReason>,
    /// Wakes the connection's task when the exporter closes it.
    close: Notify,
}

impl Connection {
    fn new(origin: Instant) -> Connection {
        let now = millis_since(origin);
        Connection {
            origin,
            accepted: now,
            last_read: AtomicU64::new(now),
            last_write: AtomicU64::new(now),
            requests: AtomicU64::new(0),
            serving: AtomicU64::new(0),
            close_reason: OnceLock::new(),
            close: Notify::new(),
        }
    }

    /// Records a request, which is being worked on until the returned guard is dropped.
    #[must_use = "the request counts as worked on until the guard is dropped"]
    pub(crate) fn request_received(self: &Arc<Self>) -> Serving {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.serving.fetch_add(1, Ordering::Relaxed);
        Serving(Arc::clone(self))
    }

    /// Whether any request was received.
    pub(crate) fn had_request(&self) -> bool {
        self.requests.load(Ordering::Relaxed) > 0
    }

    /// When the connection was accepted.
    pub(crate) fn accepted(&self) -> Instant {
        self.origin + Duration::from_millis(self.accepted)
    }

    /// When a byte last moved either way (or the connection was accepted).
    pub(crate) fn last_active(&self) -> Instant {
        let read = self.last_read.load(Ordering::Relaxed);
        let write = self.last_write.load(Ordering::Relaxed);
        self.origin + Duration::from_millis(read.max(write))
    }

    /// How long since a byte moved either way.
    pub(crate) fn quiet_for(&self) -> Duration {
        self.last_active().elapsed()
    }

    /// Whether the client sent nothing since the exporter last wrote: it is between
    /// requests, not in the middle of one.
    pub(crate) fn between_requests(&self) -> bool {
        self.last_read.load(Ordering::Relaxed) <= self.last_write.load(Ordering::Relaxed)
    }

    /// Asks the connection's task to drop the connection. Only the first reason given counts;
    /// returns whether it was this one.
    pub(crate) fn close(&self, reason: CloseReason) -> bool {
        let first = self.close_reason.set(reason).is_ok();
        if first {
            self.close.notify_one();
        }
        first
    }

    /// Whether the exporter decided to close it.
    pub(crate) fn closing(&self) -> bool {
        self.close_reason.get().is_some()
    }

    /// Completes when the exporter decides to close it, with the reason.
    pub(crate) async fn closed(&self) -> CloseReason {
        loop {
            if let Some(reason) = self.close_reason.get() {
                return *reason;
            }
            self.close.notified().await;
        }
    }
}

/// A request the exporter is working on; dropping it ends the work.
#[derive(Debug)]
pub(crate) struct Serving(Arc<Connection>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.serving.fetch_sub(1, Ordering::Relaxed);
    }
}

fn millis_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The connection slots and the connections that hold them.
#[derive(Debug)]
pub(crate) struct Connections {
    origin: Instant,
    limit: usize,
    /// How long the quietest connection must have been quiet before it is closed to make
    /// room ([`QUIET_ENOUGH_TO_CLOSE`]).
    quiet_enough: Duration,
    slots: Arc<Semaphore>,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    status: Arc<Status>,
    /// Warnings about full slots.
    full_warnings: Throttle,
}

impl Connections {
    /// `limit` slots; the number of open connections goes to `status`.
    pub(crate) fn new(
        limit: usize,
        quiet_enough: Duration,
        status: Arc<Status>,
    ) -> Arc<Connections> {
        Arc::new(Connections {
            origin: Instant::now(),
            limit,
            quiet_enough,
            slots: Arc::new(Semaphore::new(limit)),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            status,
            full_warnings: Throttle::default(),
        })
    }

    /// Waits for a free slot, closing the quietest connection to make one when all are taken
    /// and it has been quiet long enough.
    pub(crate) async fn admit(self: &Arc<Self>) -> ConnectionSlot {
        loop {
            if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
                return self.occupy(permit);
            }
            self.warn_full();
            self.close_quietest();
            tokio::select! {
                permit = Arc::clone(&self.slots).acquire_owned() => {
                    if let Ok(permit) = permit {
                        return self.occupy(permit);
                    }
                }
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    }

    /// Connections open now.
    pub(crate) fn open_count(&self) -> usize {
        self.lock_open().len()
    }

    fn occupy(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> ConnectionSlot {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection::new(self.origin));
        let mut open = self.lock_open();
        open.insert(id, Arc::clone(&connection));
        self.publish_count(open.len());
        ConnectionSlot {
            id,
            connections: Arc::clone(self),
            connection,
            _permit: permit,
        }
    }

    fn close_quietest(&self) {
        let open = self.lock_open();
        let quietest = open
            .values()
            .filter(|connection| {
                !connection.closing() && connection.serving.load(Ordering::Relaxed) == 0
            })
            .min_by_key(|connection| connection.last_active());
        if let Some(connection) = quietest
            && connection.quiet_for() >= self.quiet_enough
        {
            connection.close(CloseReason::Limit);
        }
    }

    fn warn_full(&self) {
        if self.full_warnings.allows() {
            warn!(
                "all {} HTTP connection slots are taken (max_connections); new connections \
                 wait, and connections quiet for {}s or more are closed to make room",
                self.limit,
                self.quiet_enough.as_secs_f32()
            );
        }
    }

    fn publish_count(&self, open: usize) {
        self.status
            .http_connections
            .store(open as u64, Ordering::Relaxed);
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A taken connection slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    id: u64,
    connections: Arc<Connections>,
    /// The connection in the slot.
    pub connection: Arc<Connection>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.connections.lock_open();
        open.remove(&self.id);
        self.connections.publish_count(open.len());
    }
}

/// A byte stream that records on its [`Connection`] when bytes move.
#[derive(Debug)]
pub(crate) struct Tracked<S> {
    inner: S,
    connection: Arc<Connection>,
}

impl<S> Tracked<S> {
    /// Tracks `inner` on `connection`.
    pub(crate) fn new(inner: S, connection: Arc<Connection>) -> Tracked<S> {
        Tracked { inner, connection }
    }

    fn record(&self, stamp: &AtomicU64) {
        stamp.store(millis_since(self.connection.origin), Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.record(&self.connection.last_read);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.record(&self.connection.last_write);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.record(&self.connection.last_write);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn full_house(quiet_enough: Duration) -> (Arc<Connections>, [ConnectionSlot; 2]) {
        let connections = Connections::new(2, quiet_enough, Arc::new(Status::default()));
        let older = connections.admit().await;
        // Activity is kept in milliseconds: let the two differ.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let newer = connections.admit().await;
        assert_eq!(connections.open_count(), 2);
        (connections, [older, newer])
    }

    #[tokio::test]
    async fn a_full_house_closes_the_quietest_connection_to_admit_a_new_one() {
        let (connections, [older, newer]) = full_house(Duration::ZERO).await;
        let waiting = tokio::spawn({
            let connections = Arc::clone(&connections);
            async move { connections.admit().await }
        });
        assert_eq!(older.connection.closed().await, CloseReason::Limit);
        assert!(!newer.connection.closing());
        drop(older);
        let admitted = waiting.await.unwrap();
        assert_eq!(connections.open_count(), 2);
        drop((admitted, newer));
        assert_eq!(connections.open_count(), 0);
    }

    #[tokio::test]
    async fn a_connection_with_a_request_in_the_works_is_not_closed() {
        let (connections, [older, newer]) = full_house(Duration::ZERO).await;
        let serving = older.connection.request_received();
        let waiting = tokio::spawn({
            let connections = Arc::clone(&connections);
            async move { connections.admit().await }
        });
        assert_eq!(newer.connection.closed().await, CloseReason::Limit);
        assert!(!older.connection.closing());
        drop((newer, serving));
        waiting.await.unwrap();
    }

    #[tokio::test]
    async fn busy_connections_are_not_closed_and_the_new_one_waits_for_a_free_slot() {
        let (connections, [older, newer]) = full_house(Duration::from_secs(3600)).await;
        let waiting = tokio::spawn({
            let connections = Arc::clone(&connections);
            async move { connections.admit().await }
        });
        tokio::time::sleep(RECHECK * 3).await;
        assert!(!waiting.is_finished());
        assert!(!older.connection.closing() && !newer.connection.closing());
        drop(newer);
        let admitted = waiting.await.unwrap();
        assert!(!older.connection.closing());
        drop((admitted, older));
        assert_eq!(connections.open_count(), 0);
    }
}
