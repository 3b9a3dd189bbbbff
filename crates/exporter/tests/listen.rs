//! `--listen-port 0`: the kernel picks a free port, and the start-up line names that port
//! rather than 0, so that the operator can find the endpoint.

mod common;

use common::exporter_command;
use testkit::http_get;

#[test]
fn port_zero_serves_on_the_port_the_log_names() {
    let Some(_namespace) = testkit::enter("port_zero_serves_on_the_port_the_log_names") else {
        return;
    };
    let exporter = exporter_command()
        .port(0)
        .args(["--bind-address", "127.0.0.1"])
        .start();
    assert_ne!(exporter.port, 0);
    let line = exporter
        .stderr
        .lines()
        .into_iter()
        .find(|line| line.contains("serving metrics at"))
        .expect("a start-up line");
    let url = format!("http://127.0.0.1:{}/metrics", exporter.port);
    assert!(line.ends_with(&url), "{line:?} should end with {url:?}");
    let (status, body) = http_get(exporter.port, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("conntrack_exporter_build_info"), "{body}");
}
