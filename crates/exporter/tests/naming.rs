//! Metric naming: `naming = "plain"`, set in a config file, drops `_total` from the per-host
//! gauges and its output passes `promtool check metrics` without a complaint; the default
//! seed naming keeps the original exporter's `_total` names.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{create_tcp, start_exporter};
use conntrack_codec::TcpState;
use testkit::{
    Exporter, PLAIN_FAMILIES, SEED_FAMILIES, Scrape, TempDir, address, eventually, require_tool,
};

/// Creates entries for two hosts and waits until the exporter shows both under `families`.
fn wait_for_hosts(exporter: &Exporter, families: [&str; 4]) -> Scrape {
    let hosts = [address("198.51.100.1"), address("2001:db8::1")];
    eventually("both hosts are on the metrics page", || {
        let scrape = exporter.scrape();
        let counts = scrape.host_counts(families)?;
        if hosts
            .iter()
            .all(|host| counts.get(host) == Some(&[0, 1, 0, 0]))
        {
            Ok(scrape)
        } else {
            Err(format!("{counts:?}"))
        }
    })
}

fn create_entries() {
    create_tcp(
        "192.0.2.1",
        40000,
        "198.51.100.1",
        443,
        TcpState::Established,
    );
    create_tcp(
        "2001:db8::2",
        40000,
        "2001:db8::1",
        443,
        TcpState::Established,
    );
}

#[test]
fn plain_naming_passes_promtool() {
    let test = "plain_naming_passes_promtool";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    if !require_tool(test, "promtool", "prometheus") {
        return;
    }
    let directory = TempDir::new(test);
    let config = directory.write("conntrack_exporter.toml", "naming = \"plain\"\n");
    create_entries();
    let exporter = start_exporter(&["-c", config.to_str().unwrap()]);
    let scrape = wait_for_hosts(&exporter, PLAIN_FAMILIES);
    for family in SEED_FAMILIES {
        assert!(!scrape.has_family(family), "{family} with plain naming");
    }

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting promtool");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && complaints.trim().is_empty(),
        "promtool check metrics: {}: {complaints}\n{}",
        output.status,
        scrape.text
    );
}

#[test]
fn seed_naming_keeps_the_total_names() {
    let Some(_namespace) = testkit::enter("seed_naming_keeps_the_total_names") else {
        return;
    };
    create_entries();
    let exporter = start_exporter(&[]);
    let scrape = wait_for_hosts(&exporter, SEED_FAMILIES);
    for family in SEED_FAMILIES {
        assert!(
            scrape.text.contains(&format!("# TYPE {family} gauge")),
            "{family} is not described as a gauge:\n{}",
            scrape.text
        );
    }
    for family in PLAIN_FAMILIES {
        assert!(!scrape.has_family(family), "{family} with seed naming");
    }
}
