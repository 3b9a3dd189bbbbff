//! `--log-events -f json` against the real kernel: every line on standard output is one JSON
//! object, and synthetic entries created while the exporter runs show up as `new` events
//! with their remote host (address and remote port) and state group, and as `destroy`
//! events when deleted.

mod common;

use common::{Exporter, create_tcp, delete, eventually};
use conntrack_codec::TcpState;
use serde_json::Value;

/// Every line the exporter printed so far, each parsed as a JSON object.
fn json_lines(exporter: &Exporter) -> Vec<Value> {
    exporter
        .stdout
        .lines()
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line:?}"));
            assert!(value.is_object(), "not a JSON object: {line:?}");
            value
        })
        .collect()
}

/// Waits for the event of `kind` whose remote host is `remote`, and returns it.
#[track_caller]
fn wait_for_event(exporter: &Exporter, kind: &str, remote: &str) -> Value {
    eventually(&format!("a {kind} event for {remote}"), || {
        json_lines(exporter)
            .into_iter()
            .find(|event| event["event_type"] == kind && event["remote_host"] == remote)
            .ok_or_else(|| format!("standard output so far:\n{}", exporter.stdout.text()))
    })
}

#[test]
fn json_event_lines_name_remote_host_and_state() {
    let Some(_namespace) = netns::enter("json_event_lines_name_remote_host_and_state") else {
        return;
    };
    let exporter = Exporter::start(&["--log-events", "-f", "json"]);
    let v4 = create_tcp(
        "192.0.2.30",
        40000,
        "198.51.100.30",
        443,
        TcpState::Established,
    );
    create_tcp(
        "2001:db8::30",
        40001,
        "2001:db8::31",
        8443,
        TcpState::SynSent,
    );

    let event = wait_for_event(&exporter, "new", "198.51.100.30:443");
    assert_eq!(event["state"], "Open", "{event}");
    assert_eq!(event["original_source_host"], "192.0.2.30:40000", "{event}");
    assert_eq!(
        event["original_destination_host"], "198.51.100.30:443",
        "{event}"
    );
    assert_eq!(event["reply_source_host"], "198.51.100.30:443", "{event}");
    assert_eq!(
        event["reply_destination_host"], "192.0.2.30:40000",
        "{event}"
    );

    let event = wait_for_event(&exporter, "new", "[2001:db8::31]:8443");
    assert_eq!(event["state"], "Opening", "{event}");
    assert_eq!(
        event["original_source_host"], "[2001:db8::30]:40001",
        "{event}"
    );

    delete(&v4);
    let event = wait_for_event(&exporter, "destroy", "198.51.100.30:443");
    assert_eq!(event["state"], "Open", "{event}");
}
