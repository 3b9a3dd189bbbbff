//! The HTTP endpoint under hostile and careless clients, with 1,000 hosts and 20,000
//! connections in the table (a page of about 235 kB, 14 kB gzipped). For each attack the
//! exporter's peak resident memory stays within [`MEMORY_MARGIN`] of what it was before, and
//! a scrape as Prometheus sends it still gets its page while the attack goes on.

mod common;

use common::start_exporter;
use loadgen::hostile::{HalfSentRequests, UnreadPipelines, ZeroWindowStreams};
use loadgen::scrape::{concurrent_scrapes, scrape};
use testkit::{Exporter, Scrape, eventually, limit_open_files, peak_rss_bytes};

const HOSTS: u32 = 1_000;
const CONNECTIONS_PER_HOST: u32 = 20;

/// How much the exporter's peak resident memory may grow during an attack. The attacks'
/// targets grew it by 700 MB and more before connections and pages were bounded; bounded,
/// they cost at most a few pages and a few kilobytes per connection.
const MEMORY_MARGIN: u64 = 64 << 20;

/// The connection limit the exporter runs with by default.
const MAX_CONNECTIONS: usize = 512;

/// Fills the table, starts the exporter and scrapes it a few times, so that its memory is
/// what serving costs before the attack. Returns the exporter and its peak memory then.
fn exporter_with_a_full_table(test: &str) -> Option<(testkit::Namespace, Exporter, u64)> {
    let namespace = testkit::enter(test)?;
    loadgen::table::fill(HOSTS, CONNECTIONS_PER_HOST).expect("creating conntrack entries");
    let exporter = start_exporter(&[]);
    for _ in 0..3 {
        let page = exporter.scrape();
        assert_eq!(
            page.value("conntrack_exporter_hosts", &[]),
            Some(f64::from(HOSTS))
        );
    }
    let baseline = peak_rss_bytes(exporter.process.pid()).expect("reading the exporter's memory");
    Some((namespace, exporter, baseline))
}

/// Waits until a scrape as Prometheus sends it gets a complete page.
#[track_caller]
fn scrape_succeeds(exporter: &Exporter, during: &str) -> Scrape {
    eventually(&format!("a scrape succeeds during {during}"), || {
        let answer = scrape(exporter.port, "/metrics").map_err(|error| error.to_string())?;
        if answer.status != 200 {
            return Err(format!("status {}", answer.status));
        }
        eprintln!("{during}: a scrape took {:?}", answer.elapsed);
        let text = decompress(&answer.body);
        Scrape::parse(&text).map_err(|error| error.to_string())
    })
}

fn decompress(gzipped: &[u8]) -> String {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(gzipped)
        .read_to_string(&mut text)
        .expect("a gzip-compressed page");
    text
}

#[track_caller]
fn assert_memory_bounded(exporter: &Exporter, baseline: u64, attack: &str) {
    let peak = peak_rss_bytes(exporter.process.pid()).expect("reading the exporter's memory");
    let grown = peak.saturating_sub(baseline);
    eprintln!(
        "{attack}: peak RSS {:.1} MB, {:.1} MB above {:.1} MB before",
        peak as f64 / 1e6,
        grown as f64 / 1e6,
        baseline as f64 / 1e6
    );
    assert!(
        grown <= MEMORY_MARGIN,
        "{attack}: the exporter's peak memory grew by {grown} bytes (from {baseline}), \
         more than {MEMORY_MARGIN}"
    );
}

#[test]
fn half_sent_requests_beyond_the_file_limit_leave_scrapes_working() {
    let test = "half_sent_requests_beyond_the_file_limit_leave_scrapes_working";
    let Some((_namespace, exporter, baseline)) = exporter_with_a_full_table(test) else {
        return;
    };
    limit_open_files(exporter.process.pid(), 1024).expect("limiting the exporter's open files");
    let attack = HalfSentRequests::open(exporter.port, 1_100).expect("opening connections");
    assert_eq!(attack.len(), 1_100);

    let page = scrape_succeeds(&exporter, "1,100 half-sent requests");
    let open = page
        .value("conntrack_exporter_http_connections", &[])
        .expect("the open connections gauge");
    assert!(open <= MAX_CONNECTIONS as f64, "{open} connections open");
    let closed = page
        .value(
            "conntrack_exporter_http_connections_closed_total",
            &[("reason", "limit")],
        )
        .unwrap_or_default();
    assert!(closed > 0.0, "no connection was closed to make room");
    assert!(
        exporter
            .stderr
            .text()
            .contains("HTTP connection slots are taken"),
        "no warning about the full connection slots:\n{}",
        exporter.stderr.text()
    );
    assert_memory_bounded(&exporter, baseline, "1,100 half-sent requests");
}

#[test]
fn pipelined_requests_never_read_leave_memory_bounded() {
    let test = "pipelined_requests_never_read_leave_memory_bounded";
    let Some((_namespace, exporter, baseline)) = exporter_with_a_full_table(test) else {
        return;
    };
    let attack = UnreadPipelines::open(exporter.port, 1_000, 20).expect("opening connections");
    assert_eq!(attack.len(), 1_000);
    scrape_succeeds(
        &exporter,
        "1,000 connections × 20 pipelined requests never read",
    );
    assert_memory_bounded(&exporter, baseline, "1,000 × 20 unread pipelined requests");
}

#[test]
fn http2_streams_at_a_zero_window_leave_memory_bounded() {
    let test = "http2_streams_at_a_zero_window_leave_memory_bounded";
    let Some((_namespace, exporter, baseline)) = exporter_with_a_full_table(test) else {
        return;
    };
    let attack =
        ZeroWindowStreams::open(exporter.port, "/metrics", 10, 200).expect("opening HTTP/2");
    assert!(attack.answered() > 0, "no stream was answered");
    assert!(
        attack.answered() <= 10 * 8,
        "{} streams answered on 10 connections: the stream limit did not hold",
        attack.answered()
    );
    scrape_succeeds(
        &exporter,
        "10 HTTP/2 connections with streams at a zero window",
    );
    assert_memory_bounded(
        &exporter,
        baseline,
        "10 × 200 HTTP/2 streams at a zero window",
    );
}

#[test]
fn a_thousand_concurrent_scrapes_are_answered_and_share_renders() {
    let test = "a_thousand_concurrent_scrapes_are_answered_and_share_renders";
    let Some((_namespace, exporter, baseline)) = exporter_with_a_full_table(test) else {
        return;
    };
    let renders = |page: &Scrape| {
        page.value("conntrack_exporter_renders_total", &[])
            .expect("the renders counter")
    };
    let before = renders(&exporter.scrape());
    let results = concurrent_scrapes(exporter.port, "/metrics", 1_000).expect("a client runtime");
    let failed: Vec<String> = results
        .iter()
        .filter_map(|result| result.as_ref().err().map(ToString::to_string))
        .collect();
    assert!(
        failed.is_empty(),
        "{} scrapes failed: {failed:?}",
        failed.len()
    );
    let rendered = renders(&exporter.scrape()) - before - 1.0;
    eprintln!("1,000 concurrent scrapes: {rendered} renders");
    assert!(
        rendered <= 100.0,
        "1,000 concurrent scrapes took {rendered} renders: they did not share"
    );
    assert_memory_bounded(&exporter, baseline, "1,000 concurrent scrapes");
}
