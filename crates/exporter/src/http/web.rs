//! What a web configuration file (`--web.config.file`) puts in front of the site: TLS on
//! each connection, with HTTP/2 when ALPN chose it, and basic auth on each request, from
//! which the health endpoints may be exempted for probes.

use std::future::Future;
use std::io;
use std::sync::Arc;

use hyper::Request;
use hyper::body::Incoming;
use tokio_rustls::server::TlsStream;
use warp::reply::Response;
use web_config::{ReloadingAcceptor, WebConfig};

use super::routes::{HEALTHY_PATH, READY_PATH};
use super::server::{
    Accepted, Acceptor, AllowAll, Authorize, Endpoint, PlainTcp, Protection, Versions, serve,
};

/// Serves `endpoint` on `listener` as [`serve`] does, protected as `web` asks: without a
/// file, plain HTTP open to all, exactly as without this module; with one, TLS if it has a
/// certificate, HTTP/2 only over TLS, basic auth if it has users, and its headers on every
/// response.
pub(crate) fn serve_with(
    listener: tokio::net::TcpListener,
    web: Option<Arc<WebConfig>>,
    public_health_endpoints: bool,
    endpoint: Endpoint,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let Some(web) = web else {
        let open = Protection {
            acceptor: PlainTcp {
                versions: Versions::Both,
            },
            authorize: AllowAll,
            headers: hyper::HeaderMap::new(),
        };
        return tokio::spawn(serve(listener, open, endpoint, shutdown));
    };
    let headers = web.headers().clone();
    let tls = web.tls().cloned();
    let authorize = Credentials {
        web,
        public_health_endpoints,
    };
    match tls {
        Some(tls) => {
            let protection = Protection {
                acceptor: Tls(tls),
                authorize,
                headers,
            };
            tokio::spawn(serve(listener, protection, endpoint, shutdown))
        }
        None => {
            let protection = Protection {
                acceptor: PlainTcp {
                    versions: Versions::Http1,
                },
                authorize,
                headers,
            };
            tokio::spawn(serve(listener, protection, endpoint, shutdown))
        }
    }
}

/// HTTPS: a TLS handshake with the certificate current when the connection arrives.
#[derive(Debug, Clone)]
pub(crate) struct Tls(pub(crate) ReloadingAcceptor);

impl Acceptor for Tls {
    type Stream = TlsStream<Accepted>;

    async fn accept(&self, connection: Accepted) -> io::Result<Self::Stream> {
        self.0.acceptor().accept(connection).await
    }

    /// HTTP/2 when the client asked for it through ALPN and the file offers it (only then is
    /// `h2` among the server's ALPN protocols), HTTP/1.1 otherwise.
    fn versions(&self, stream: &Self::Stream) -> Versions {
        match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Versions::Http2,
            _ => Versions::Http1,
        }
    }
}

/// Basic auth against the file's users (every request passes when it has none).
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    /// The loaded web configuration.
    pub(crate) web: Arc<WebConfig>,
    /// Whether `/-/healthy` and `/-/ready` are served without credentials.
    pub(crate) public_health_endpoints: bool,
}

impl Authorize for Credentials {
    async fn refusal(&self, request: &Request<Incoming>) -> Option<Response> {
        let path = request.uri().path();
        if self.public_health_endpoints && (path == HEALTHY_PATH || path == READY_PATH) {
            return None;
        }
        let refused = self.web.authorize(request.headers()).await.err()?;
        Some(refused.response())
    }
}
