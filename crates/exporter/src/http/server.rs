//! The accept loop and the task that serves each connection.
//!
//! Each accepted connection waits for a connection slot, goes through the [`Acceptor`] (the
//! place for a TLS handshake) and is then served by hyper's automatic HTTP/1.1 or cleartext
//! HTTP/2 connection, with a timer so that its header timeout applies. A watchdog next to it
//! closes the connection when its first request's headers are late, when nothing has moved
//! for [`IDLE_TIMEOUT`], or when the slots need it. Each request passes the [`Authorize`]
//! hook, then goes to the [`Site`]'s warp filter.
//!
//! On shutdown the loop stops accepting, asks every connection to finish its response and
//! close, and returns after [`SHUTDOWN_GRACE`] at the latest.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, service::Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use log::{debug, warn};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tower_service::Service as _;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::connections::{Connection, ConnectionSlot, Connections, QUIET_ENOUGH_TO_CLOSE, Tracked};
use super::{
    CloseReason, Counters, H2_CONNECTION_WINDOW, H2_MAX_STREAMS, H2_STREAM_WINDOW,
    HEADER_READ_TIMEOUT, IDLE_TIMEOUT, LISTEN_BACKLOG, MAX_HEADER_BYTES, SHUTDOWN_GRACE,
    SOCKET_BUFFER_BYTES, Site, Throttle,
};
use crate::exposition::Status;

/// After a failed accept (such as running out of file descriptors), the pause before the
/// next one, so that the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// How often shutdown looks whether every connection has closed.
const SHUTDOWN_POLL: Duration = Duration::from_millis(20);

/// A TCP connection whose activity is tracked, as the [`Acceptor`] receives it.
pub(crate) type Accepted = Tracked<TcpStream>;

/// Turns an accepted connection into the byte stream HTTP is spoken over: the connection
/// itself for plain HTTP, the result of a TLS handshake for HTTPS. It runs within the
/// connection's header deadline, so a slow handshake is cut off like slow headers.
pub(crate) trait Acceptor: Send + Sync + 'static {
    /// The stream HTTP is spoken over.
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;

    /// Prepares `connection` for HTTP; an error drops it.
    fn accept(&self, connection: Accepted)
    -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// Plain HTTP: the connection as it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlainTcp;

impl Acceptor for PlainTcp {
    type Stream = Accepted;

    async fn accept(&self, connection: Accepted) -> io::Result<Accepted> {
        Ok(connection)
    }
}

/// Decides whether a request is served.
pub(crate) trait Authorize: Send + Sync + 'static {
    /// `None` lets `request` through; a refusal is the answer to send instead, such as 401
    /// with a `WWW-Authenticate` challenge.
    fn refusal(&self, request: &Request<Incoming>) -> Option<Response>;
}

/// Every request is served.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AllowAll;

impl Authorize for AllowAll {
    fn refusal(&self, _request: &Request<Incoming>) -> Option<Response> {
        None
    }
}

/// Binds the endpoint's listening socket, with a backlog of [`LISTEN_BACKLOG`] connections
/// and kernel buffers of [`SOCKET_BUFFER_BYTES`].
/// Must run within a Tokio runtime.
pub(crate) fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    // Accepted connections inherit the buffer sizes.
    socket.set_send_buffer_size(SOCKET_BUFFER_BYTES)?;
    socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// What every connection's task shares.
struct Shared<A, G> {
    acceptor: A,
    authorize: G,
    builder: auto::Builder<TokioExecutor>,
    routes: BoxedFilter<(Response,)>,
    counters: Counters,
}

/// Serves `site` on `listener` until `shutdown` completes, then lets responses in flight
/// finish for up to [`SHUTDOWN_GRACE`] and returns; connections still open are dropped when
/// the runtime ends.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve<A: Acceptor, G: Authorize>(
    listener: TcpListener,
    acceptor: A,
    authorize: G,
    site: Arc<Site>,
    max_connections: usize,
    status: Arc<Status>,
    counters: Counters,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Connections::new(max_connections, QUIET_ENOUGH_TO_CLOSE, status);
    let shared = Arc::new(Shared {
        acceptor,
        authorize,
        builder: http_builder(),
        routes: site.filter().boxed(),
        counters,
    });
    let (stop, stopped) = watch::channel(false);
    let accept_warnings = Throttle::default();
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    accept_failed(&error, &accept_warnings);
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = connections.admit() => slot,
        };
        tokio::spawn(serve_connection(
            Arc::clone(&shared),
            tcp,
            slot,
            stopped.clone(),
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while connections.open_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(SHUTDOWN_POLL).await;
    }
    let left = connections.open_count();
    if left > 0 {
        debug!("dropping {left} HTTP connections still open after the shutdown grace period");
    }
}

fn accept_failed(error: &io::Error, warnings: &Throttle) {
    if warnings.allows() {
        warn!("accepting an HTTP connection failed: {error}");
    } else {
        debug!("accepting an HTTP connection failed: {error}");
    }
}

/// hyper's HTTP/1.1 and HTTP/2 settings: the timer that makes the header timeout apply, and
/// every buffer bounded.
fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    builder
}

/// Serves one connection until it ends, is closed by the watchdog or the slots, or shutdown
/// ends it.
async fn serve_connection<A: Acceptor, G: Authorize>(
    shared: Arc<Shared<A, G>>,
    tcp: TcpStream,
    slot: ConnectionSlot,
    mut stop: watch::Receiver<bool>,
) {
    let connection = Arc::clone(&slot.connection);
    let header_deadline = connection.accepted() + HEADER_READ_TIMEOUT;
    let accepted = Tracked::new(tcp, Arc::clone(&connection));
    let stream =
        match tokio::time::timeout_at(header_deadline.into(), shared.acceptor.accept(accepted))
            .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return debug!("HTTP connection refused: {error}"),
            Err(_) => return shared.counters.closed(CloseReason::HeaderTimeout),
        };
    let service = PerConnection {
        shared: Arc::clone(&shared),
        connection: Arc::clone(&connection),
    };
    let http = shared
        .builder
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(http);
    let mut stopping = false;
    let closed_by_exporter = loop {
        let watchdog = if connection.had_request() {
            connection.last_active() + IDLE_TIMEOUT
        } else {
            (connection.last_active() + IDLE_TIMEOUT).min(header_deadline)
        };
        tokio::select! {
            ended = http.as_mut() => match ended {
                Ok(()) => break None,
                Err(error) => break ended_with(&*error, &connection),
            },
            () = tokio::time::sleep_until(watchdog.into()) => {
                if !connection.had_request() && Instant::now() >= header_deadline {
                    break Some(CloseReason::HeaderTimeout);
                }
                if connection.quiet_for() >= IDLE_TIMEOUT {
                    break Some(CloseReason::Idle);
                }
            }
            reason = connection.closed() => break Some(reason),
            _ = stop.changed(), if !stopping => {
                stopping = true;
                http.as_mut().graceful_shutdown();
            }
        }
    };
    if let Some(reason) = closed_by_exporter {
        debug!("closing an HTTP connection: {reason:?}");
        shared.counters.closed(reason);
    }
    drop(slot);
}

/// Why a connection that ended with `error` was closed, if the exporter closed it: hyper's
/// header timeout, which also ends HTTP/1.1 connections idle between requests.
fn ended_with(
    error: &(dyn std::error::Error + Send + Sync + 'static),
    connection: &Connection,
) -> Option<CloseReason> {
    let timed_out = error
        .downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_timeout);
    if !timed_out {
        debug!("HTTP connection ended: {error}");
        return None;
    }
    Some(if connection.between_requests() {
        CloseReason::Idle
    } else {
        CloseReason::HeaderTimeout
    })
}

/// The service of one connection: it records each request and the time the exporter works
/// on it, asks [`Authorize`], and hands the request to the site with the connection in its
/// extensions.
struct PerConnection<A, G> {
    shared: Arc<Shared<A, G>>,
    connection: Arc<Connection>,
}

impl<A: Acceptor, G: Authorize> Service<Request<Incoming>> for PerConnection<A, G> {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let serving = self.connection.request_received();
        if let Some(refusal) = self.shared.authorize.refusal(&request) {
            return Box::pin(std::future::ready(Ok(refusal)));
        }
        request
            .extensions_mut()
            .insert(Arc::clone(&self.connection));
        let mut routes = warp::service(self.shared.routes.clone());
        Box::pin(async move {
            let response = routes.call(request).await;
            drop(serving);
            response
        })
    }
}
