//! What TLS adds to a scrape: the same request on a kept-alive connection over plain HTTP and
//! over TLS (the exporter's web configuration, rustls with `ring`), both served on 127.0.0.1
//! in the same run so that their ratio is meaningful.
//!
//! - `scrape/*`: the exporter's page for 1,000 hosts rendered for each request, as a scrape
//!   does (about 235 kB);
//! - `transfer_235kB/*`: the same page rendered once and sent again and again: the transport
//!   alone, where TLS weighs most.
//!
//! ```text
//! cargo bench -p benches --bench tls
//! ```

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conntrack_exporter::exposition::{Exposition, Status};
use conntrack_exporter::settings::Naming;
use conntrack_exporter::watched::Namespaces;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_rustls::TlsConnector;
use web_config::{ReloadingAcceptor, WebConfig};

/// What the server answers.
#[derive(Clone)]
enum Page {
    /// Rendered for each request.
    Rendered(Arc<Exposition>),
    /// Rendered once.
    Fixed(Bytes),
}

impl Page {
    fn body(&self) -> Bytes {
        match self {
            Page::Rendered(exposition) => Bytes::from(exposition.render()),
            Page::Fixed(bytes) => bytes.clone(),
        }
    }
}

/// Serves `page` on 127.0.0.1, over TLS when `tls` is given.
async fn serve(page: Page, tls: Option<ReloadingAcceptor>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let page = page.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_request| {
                    let body = page.body();
                    async move { Ok::<_, hyper::Error>(Response::new(Full::new(body))) }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(tls) => {
                        let stream = tls.acceptor().accept(stream).await.unwrap();
                        http.serve_connection(TokioIo::new(stream), service).await
                    }
                    None => http.serve_connection(TokioIo::new(stream), service).await,
                }
                .unwrap();
            });
        }
    });
    address
}

/// One kept-alive connection to `address`, over TLS when `tls` is given.
async fn connect(address: SocketAddr, tls: Option<TlsConnector>) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    match tls {
        Some(connector) => {
            let name = ServerName::try_from("localhost").unwrap();
            let stream = connector.connect(name, stream).await.unwrap();
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(connection);
            sender
        }
        None => {
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(connection);
            sender
        }
    }
}

/// One scrape: the request, and the whole body read.
async fn scrape(sender: &mut SendRequest<Empty<Bytes>>) -> usize {
    let request = Request::get("/metrics")
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    // The previous response is read, but the connection may still be finishing it.
    sender.ready().await.unwrap();
    let response = sender.send_request(request).await.unwrap();
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .len()
}

/// A web configuration with a certificate for localhost, and a client that trusts it.
fn tls_setup(dir: &std::path::Path) -> (ReloadingAcceptor, TlsConnector) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let certificate = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("server.crt"), certificate.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    let path = dir.join("web.yml");
    std::fs::write(
        &path,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .unwrap();
    let web = WebConfig::load(&path).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            rustls::pki_types::CertificateDer::from_pem_slice(certificate.pem().as_bytes())
                .unwrap(),
        )
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    (
        web.tls().unwrap().clone(),
        TlsConnector::from(Arc::new(client)),
    )
}

fn over_tls(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let dir = std::env::temp_dir().join(format!("tls-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (acceptor, connector) = tls_setup(&dir);
    let tracker = benches::table(1_000, 1_000, &tracker::LabelNames::default());
    let exposition = Exposition::new(
        Namespaces::own(tracker).0,
        Arc::new(Status::default()),
        Naming::Seed,
        tracker::LabelNames::default(),
        Arc::default(),
        false,
        Duration::from_secs(300),
    );
    let exposition = Arc::new(exposition);
    let fixed = Bytes::from(exposition.render());

    for (group_name, page) in [
        ("scrape", Page::Rendered(exposition.clone())),
        ("transfer_235kB", Page::Fixed(fixed.clone())),
    ] {
        let mut group = c.benchmark_group(group_name);
        group.sample_size(50);
        for (name, tls) in [("plain_1000_hosts", false), ("tls_1000_hosts", true)] {
            let mut sender = runtime.block_on(async {
                let address = serve(page.clone(), tls.then(|| acceptor.clone())).await;
                connect(address, tls.then(|| connector.clone())).await
            });
            let bytes = runtime.block_on(scrape(&mut sender));
            assert!(
                bytes > 200_000,
                "the page for 1,000 hosts has {bytes} bytes"
            );
            group.bench_function(name, |b| {
                b.iter(|| black_box(runtime.block_on(scrape(&mut sender))))
            });
        }
        group.finish();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, over_tls);
criterion_main!(benches);
