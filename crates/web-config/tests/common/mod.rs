//! What the integration tests share: certificates made for the test, a small HTTPS server on
//! 127.0.0.1 built on the crate's API the way an accept loop uses it, and `curl` as the
//! client.

#![allow(dead_code)] // Each test file uses its own part of this module.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
pub use testkit::{Answer, Authority, Issued, curl};
use web_config::WebConfig;

/// The body every authorized request gets.
pub const BODY: &str = "conntrack metrics\n";

/// A directory of its own for one test, removed at the end.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "web-config-{name}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `name` in the directory and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Writes a server certificate of `authority`, its key and the authority's certificate to
/// `server.crt`, `server.key` and `ca.crt` in `dir`.
pub fn write_server_files(dir: &TempDir, authority: &Authority) {
    let server = authority.server();
    dir.write("server.crt", &server.certificate);
    dir.write("server.key", &server.key);
    dir.write("ca.crt", authority.certificate());
}

/// Writes `yaml` as `web.yml` in `dir` and loads it.
pub fn load(dir: &TempDir, yaml: &str) -> WebConfig {
    let path = dir.write("web.yml", yaml);
    WebConfig::load(&path).unwrap_or_else(|error| panic!("{error}"))
}

/// An HTTP server on 127.0.0.1 that serves [`BODY`] through a [`WebConfig`], on a runtime of
/// its own that stops when the server is dropped.
pub struct Server {
    pub address: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    pub fn start(web: WebConfig) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address = listener.local_addr().unwrap();
        runtime.spawn(accept_loop(listener, Arc::new(web)));
        Server {
            address,
            runtime: Some(runtime),
        }
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}/", self.address.port())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, web: Arc<WebConfig>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let web = web.clone();
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            if !web.http2() {
                builder = builder.http1_only();
            }
            let service_web = web.clone();
            let service = service_fn(move |request| {
                let web = service_web.clone();
                async move { Ok::<_, hyper::Error>(respond(&web, request).await) }
            });
            match web.tls() {
                Some(tls) => {
                    // A refused handshake is the client's problem; curl reports it.
                    let Ok(stream) = tls.acceptor().accept(stream).await else {
                        return;
                    };
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

async fn respond(web: &WebConfig, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut response = match web.authorize(request.headers()).await {
        Ok(()) => Response::new(Full::new(Bytes::from_static(BODY.as_bytes()))),
        Err(unauthorized) => unauthorized.response(),
    };
    for (name, value) in web.headers() {
        response.headers_mut().insert(name, value.clone());
    }
    response
}

/// Panics with how to install `tool` when it is missing.
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|output| output.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is missing: install the Debian package {package} (scripts/install-packages test)"
    );
}

/// Runs curl against `url`, trusting `cacert` and presenting the `client` certificate (whose
/// files it writes to `dir`).
pub fn curl_with_certificate(url: &str, cacert: &str, dir: &TempDir, client: Issued) -> Answer {
    let certificate = dir.write("client.crt", client.certificate);
    let key = dir.write("client.key", client.key);
    curl(
        url,
        &[
            "--cacert",
            cacert,
            "--cert",
            &certificate.display().to_string(),
            "--key",
            &key.display().to_string(),
        ],
    )
}

/// Calls `attempt` until it returns true, for at most `seconds`.
pub fn eventually(seconds: u64, mut attempt: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if attempt() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
