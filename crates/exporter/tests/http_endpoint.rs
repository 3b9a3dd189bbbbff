//! What the endpoint answers, over the wire: every path answers `HEAD` as it answers `GET`
//! (the same headers and length, no body), other methods get 405 with `Allow: GET, HEAD`,
//! unknown paths 404; the metrics come gzip-compressed when the client accepts it; liveness
//! and readiness answer 200 once the initial dump is applied.

mod common;

use std::io::Read;

use common::{create_tcp, start_exporter};
use conntrack_codec::TcpState;
use loadgen::scrape::{Response, request};
use testkit::{Exporter, Scrape};

const PATHS: [&str; 5] = ["/", "/metrics", "/metrics/", "/-/healthy", "/-/ready"];

fn exporter(test: &str) -> Option<(testkit::Namespace, Exporter)> {
    let namespace = testkit::enter(test)?;
    create_tcp(
        "192.0.2.1",
        40000,
        "198.51.100.7",
        443,
        TcpState::Established,
    );
    Some((namespace, start_exporter(&[])))
}

#[track_caller]
fn send(exporter: &Exporter, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    request(exporter.port, method, path, headers)
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
}

#[test]
fn head_answers_like_get_without_the_body() {
    let Some((_namespace, exporter)) = exporter("head_answers_like_get_without_the_body") else {
        return;
    };
    for path in PATHS {
        let get = send(&exporter, "GET", path, &[]);
        let head = send(&exporter, "HEAD", path, &[]);
        assert_eq!((get.status, head.status), (200, 200), "{path}");
        assert!(head.body.is_empty(), "HEAD {path} sent a body");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{path}"
        );
        let length: usize = head
            .header("content-length")
            .and_then(|length| length.parse().ok())
            .unwrap_or_else(|| panic!("HEAD {path} has no length"));
        if path.starts_with("/metrics") {
            // The page changes between two scrapes (the render counter, at least).
            assert!(length > 1000, "HEAD {path}: {length} bytes");
        } else {
            assert_eq!(length, get.body.len(), "{path}");
        }
    }
}

#[test]
fn other_methods_get_405_with_allow_and_unknown_paths_404() {
    let test = "other_methods_get_405_with_allow_and_unknown_paths_404";
    let Some((_namespace, exporter)) = exporter(test) else {
        return;
    };
    for path in PATHS {
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let answer = send(&exporter, method, path, &[]);
            assert_eq!(answer.status, 405, "{method} {path}");
            assert_eq!(answer.header("allow"), Some("GET, HEAD"), "{method} {path}");
        }
    }
    for path in ["/nope", "/metricsx", "/-/", "/-/health", "/metrics/x"] {
        for method in ["GET", "HEAD", "POST"] {
            assert_eq!(
                send(&exporter, method, path, &[]).status,
                404,
                "{method} {path}"
            );
        }
    }
}

#[test]
fn metrics_are_gzipped_when_the_client_accepts_it() {
    let Some((_namespace, exporter)) = exporter("metrics_are_gzipped_when_the_client_accepts_it")
    else {
        return;
    };
    let plain = send(&exporter, "GET", "/metrics", &[]);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("accept-encoding"));

    let gzipped = send(&exporter, "GET", "/metrics", &[("Accept-Encoding", "gzip")]);
    assert_eq!(gzipped.status, 200);
    assert_eq!(gzipped.header("content-encoding"), Some("gzip"));
    assert_eq!(gzipped.header("vary"), Some("accept-encoding"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gzipped.body[..])
        .read_to_string(&mut text)
        .expect("a gzip-compressed body");
    let page = Scrape::parse(&text).expect("a valid exposition");
    let open = ("host", "198.51.100.7");
    assert_eq!(
        page.value("conntrack_open_connections_total", &[open]),
        Some(1.0),
        "{text}"
    );
    assert!(gzipped.body.len() < plain.body.len());

    let refused = send(
        &exporter,
        "GET",
        "/metrics",
        &[("Accept-Encoding", "gzip;q=0")],
    );
    assert_eq!(refused.header("content-encoding"), None);
}

#[test]
fn liveness_and_readiness_answer_200_once_started() {
    let Some((_namespace, exporter)) = exporter("liveness_and_readiness_answer_200_once_started")
    else {
        return;
    };
    let healthy = send(&exporter, "GET", "/-/healthy", &[]);
    assert_eq!(healthy.status, 200);
    assert!(String::from_utf8_lossy(&healthy.body).contains("healthy"));
    let ready = send(&exporter, "GET", "/-/ready", &[]);
    assert_eq!(ready.status, 200);
    assert!(String::from_utf8_lossy(&ready.body).contains("ready"));
}
