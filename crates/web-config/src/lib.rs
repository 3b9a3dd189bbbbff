//! TLS, client certificates, basic authentication and security headers for an HTTP endpoint,
//! configured by a web configuration file in the format of Prometheus' `exporter-toolkit`
//! (`--web.config.file`), so that the file an operator keeps for node_exporter works here
//! unchanged.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: clients-ca.crt
//! http_server_config:
//!   headers:
//!     X-Frame-Options: deny
//! basic_auth_users:
//!   prometheus: $2y$10$fz8GAQfOxsz7waKUIJYsxO0j6b/XkrfKo.uR5B8a7Wak.GKYnEOBK
//! ```
//!
//! The crate serves nothing itself; an accept loop asks it what to do:
//!
//! ```no_run
//! # async fn serve(listener: tokio::net::TcpListener) -> Result<(), Box<dyn std::error::Error>> {
//! let web = web_config::WebConfig::load(std::path::Path::new("/etc/web-config.yml"))?;
//! loop {
//!     let (stream, _peer) = listener.accept().await?;
//!     match web.tls() {
//!         // A new acceptor per connection: a rotated certificate is used from then on.
//!         Some(tls) => {
//!             let stream = tls.acceptor().accept(stream).await?;
//!             // serve HTTP/1.1, or HTTP/2 when web.http2() and ALPN chose "h2" ...
//!         }
//!         None => { /* serve plain HTTP on stream ... */ }
//!     }
//!     // For each request: `web.authorize(request.headers()).await` is Ok, or answer
//!     // `Unauthorized::response()`; add `web.headers()` to every response.
//! }
//! # }
//! ```
//!
//! Relative paths in the file are relative to the file's directory. Certificate, key and
//! client CA files are read again when they change; the YAML file itself is read once.

mod basic_auth;
mod client_cert;
mod error;
mod file;
mod headers;
mod reload;
mod tls;

use std::fmt;
use std::path::Path;

use http::HeaderMap;

pub use basic_auth::{CACHE_CAPACITY, Unauthorized};
pub use error::Error;
pub use reload::ReloadingAcceptor;
pub use tls::ClientAuthType;

use basic_auth::BasicAuth;
use tls::TlsSettings;

/// What a web configuration file asks of the HTTP endpoint.
pub struct WebConfig {
    tls: Option<ReloadingAcceptor>,
    client_auth: ClientAuthType,
    basic_auth: Option<BasicAuth>,
    headers: HeaderMap,
    http2: bool,
}

impl WebConfig {
    /// Reads and checks the file at `path`, and the certificate and key files it names. Every
    /// error is one line naming the file, and the line and key where they are known.
    pub fn load(path: &Path) -> Result<WebConfig, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let file = file::parse(path, &text)?;
        let http = file.http_server_config.unwrap_or_default();
        let http2 = http.http2.unwrap_or(true);
        let settings =
            TlsSettings::resolve(path, file.tls_server_config.unwrap_or_default(), http2)?;
        let client_auth = settings
            .as_ref()
            .map(TlsSettings::client_auth)
            .unwrap_or_default();
        Ok(WebConfig {
            tls: settings.map(ReloadingAcceptor::new).transpose()?,
            client_auth,
            basic_auth: BasicAuth::new(file.basic_auth_users.unwrap_or_default()),
            headers: http.headers.unwrap_or_default().0,
            http2,
        })
    }

    /// The TLS acceptor, or `None` to serve plain HTTP.
    pub fn tls(&self) -> Option<&ReloadingAcceptor> {
        self.tls.as_ref()
    }

    /// How TLS clients authenticate with a certificate (`NoClientCert` without TLS). Tools
    /// that probe the endpoint without a certificate (such as a kubelet) cannot get through
    /// `RequireAnyClientCert` and `RequireAndVerifyClientCert`.
    pub fn client_auth(&self) -> ClientAuthType {
        self.client_auth
    }

    /// Whether requests need basic authentication credentials.
    pub fn requires_credentials(&self) -> bool {
        self.basic_auth.is_some()
    }

    /// Whether the request with `headers` may be answered: always when no users are
    /// configured; otherwise when it carries the credentials of one. Must run inside a tokio
    /// runtime (the bcrypt check runs on its blocking pool).
    pub async fn authorize(&self, headers: &HeaderMap) -> Result<(), Unauthorized> {
        match &self.basic_auth {
            Some(auth) => auth.check(headers).await,
            None => Ok(()),
        }
    }

    /// The security headers to add to every response, the 401 answers included.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Whether HTTP/2 is offered (`http_server_config.http2`, default true). It is offered
    /// only over TLS, through ALPN, as exporter-toolkit does: plain HTTP stays HTTP/1.1.
    pub fn http2(&self) -> bool {
        self.http2 && self.tls.is_some()
    }
}

/// One line for the start-up log, e.g. `TLS (client certificates: NoClientCert), HTTP/2,
/// basic auth (2 users), 1 security header`.
impl fmt::Display for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tls {
            Some(_) => write!(f, "TLS (client certificates: {})", self.client_auth)?,
            None => f.write_str("plain HTTP")?,
        }
        if self.http2() {
            f.write_str(", HTTP/2")?;
        }
        let plural = |count: usize| if count == 1 { "" } else { "s" };
        match &self.basic_auth {
            Some(auth) => write!(
                f,
                ", basic auth ({} user{})",
                auth.users(),
                plural(auth.users())
            )?,
            None => f.write_str(", no basic auth")?,
        }
        let headers = self.headers.len();
        write!(f, ", {headers} security header{}", plural(headers))
    }
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebConfig({self})")
    }
}
