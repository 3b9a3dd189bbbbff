//! Signals: SIGTERM during the start-up dump of a large table stops the exporter cleanly;
//! SIGUSR1 and SIGUSR2 are ignored; SIGHUP reloads the config file, applying what can change
//! at run time, naming what needs a restart, and keeping the running settings when the file
//! is invalid.

mod common;

use std::process::{Command, Stdio};

use common::{binary, create_tcp, start_exporter};
use conntrack_codec::TcpState;
use testkit::{Process, TempDir, eventually, free_port, http_get, nft, test_deadline};

const OPEN: &str = "conntrack_open_connections_total";

/// Waits until the exporter's log holds a line containing `text`.
fn wait_for_log(exporter: &testkit::Exporter, text: &str) {
    wait_for_logged(exporter, text, 1);
}

/// Waits until the exporter's log holds `times` lines containing `text`.
fn wait_for_logged(exporter: &testkit::Exporter, text: &str, times: usize) {
    eventually(&format!("the log says {text:?} {times} times"), || {
        let log = exporter.stderr.text();
        if log.lines().filter(|line| line.contains(text)).count() >= times {
            Ok(())
        } else {
            Err(log)
        }
    });
}

/// Waits until the open connections shown for each host are as `expected` (`None`: the host
/// is absent or at zero).
fn wait_for_open(exporter: &testkit::Exporter, expected: &[(&str, Option<f64>)]) {
    eventually("the open connections per host", || {
        let scrape = exporter.scrape();
        for (host, count) in expected {
            let shown = scrape
                .value(OPEN, &[("host", host)])
                .filter(|value| *value > 0.0);
            if shown != *count {
                return Err(format!("{host}: {shown:?}, expected {count:?}"));
            }
        }
        Ok(())
    });
}

#[test]
fn sigterm_during_the_startup_dump_stops_it_cleanly() {
    let Some(_namespace) = testkit::enter("sigterm_during_the_startup_dump_stops_it_cleanly")
    else {
        return;
    };
    // A table whose dump takes a while, to land the signal in it.
    loadgen::table::fill(100, 300).unwrap();
    let port = free_port().to_string();
    let mut process = Process::spawn(
        Command::new(binary())
            .args(["--listen-port", &port, "--ensure-tracking"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let stderr = process.capture_stderr();
    // The line comes right before the collector starts and dumps the table.
    eventually("the tracking table is made", || {
        let log = stderr.text();
        if log.contains("connection tracking switched on") {
            Ok(())
        } else {
            Err(log)
        }
    });
    process.signal(libc::SIGTERM);
    let status = process.wait_for_exit(test_deadline());
    assert_eq!(
        status.code(),
        Some(0),
        "{status}; its log:\n{}",
        stderr.text()
    );
    let tables = nft(&["list", "tables"]);
    assert!(!tables.contains("conntrack_exporter"), "{tables}");
}

#[test]
fn sigusr1_and_sigusr2_leave_it_running() {
    let Some(_namespace) = testkit::enter("sigusr1_and_sigusr2_leave_it_running") else {
        return;
    };
    let mut exporter = start_exporter(&["--debug"]);
    exporter.signal(libc::SIGUSR1);
    wait_for_log(&exporter, "SIGUSR1 ignored");
    exporter.signal(libc::SIGUSR2);
    wait_for_log(&exporter, "SIGUSR2 ignored");
    assert_eq!(http_get(exporter.port, "/metrics").unwrap().0, 200);
    assert!(exporter.process.exit_status().is_none());
    exporter.stop_cleanly();
}

#[test]
fn sighup_reloads_the_config_file() {
    let test = "sighup_reloads_the_config_file";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let directory = TempDir::new(test);
    let config = directory.write("config.toml", "debug = false\n");
    let config = config.to_str().unwrap();
    let mut exporter = start_exporter(&["--config", config]);

    // debug applies at once; naming needs a restart and is named.
    directory.write("config.toml", "debug = true\nnaming = \"plain\"\n");
    exporter.signal(libc::SIGHUP);
    wait_for_log(&exporter, "config reloaded; applied: debug");
    wait_for_log(&exporter, "taking effect only at restart: naming");
    exporter.signal(libc::SIGUSR1);
    wait_for_log(&exporter, "DEBUG SIGUSR1 ignored");
    let metrics = exporter.metrics_text();
    assert!(
        metrics.contains("conntrack_open_connections_total"),
        "{metrics}"
    );

    // An invalid file: one error line, the running settings stay.
    directory.write("config.toml", "debug = maybe\n");
    exporter.signal(libc::SIGHUP);
    wait_for_log(
        &exporter,
        "config not reloaded, the running settings stay: ",
    );
    let log = exporter.stderr.text();
    let line = log
        .lines()
        .find(|line| line.contains("config not reloaded"))
        .unwrap();
    assert!(line.contains("config.toml:1"), "{line}");
    assert_eq!(http_get(exporter.port, "/metrics").unwrap().0, 200);

    // debug off again; naming is still named, as it has not taken effect.
    directory.write("config.toml", "debug = false\nnaming = \"plain\"\n");
    exporter.signal(libc::SIGHUP);
    wait_for_logged(&exporter, "applied: debug", 2);
    wait_for_logged(&exporter, "taking effect only at restart: naming", 2);
    exporter.stop_cleanly();
}

#[test]
fn sighup_applies_new_ignore_hosts() {
    let test = "sighup_applies_new_ignore_hosts";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    create_tcp("10.0.0.1", 40001, "198.51.100.7", 80, TcpState::Established);
    create_tcp("10.0.0.1", 40002, "198.51.100.8", 80, TcpState::Established);
    let directory = TempDir::new(test);
    let config = directory.write("config.toml", "ignore_hosts = [\"198.51.100.7\"]\n");
    let exporter = start_exporter(&["--config", config.to_str().unwrap()]);
    wait_for_open(
        &exporter,
        &[("198.51.100.7", None), ("198.51.100.8", Some(1.0))],
    );

    directory.write("config.toml", "ignore_hosts = [\"198.51.100.8/32\"]\n");
    exporter.signal(libc::SIGHUP);
    wait_for_log(&exporter, "config reloaded; applied: ignore_hosts");
    wait_for_open(
        &exporter,
        &[("198.51.100.7", Some(1.0)), ("198.51.100.8", None)],
    );
    let scrape = exporter.scrape();
    let reloads = scrape.value("conntrack_exporter_resyncs_total", &[("reason", "reload")]);
    assert_eq!(reloads, Some(1.0));

    // New connections follow the new patterns too.
    create_tcp("10.0.0.1", 40003, "198.51.100.8", 80, TcpState::Established);
    create_tcp("10.0.0.1", 40004, "198.51.100.7", 80, TcpState::Established);
    wait_for_open(
        &exporter,
        &[("198.51.100.7", Some(2.0)), ("198.51.100.8", None)],
    );
}

#[test]
fn sighup_keeps_host_groups_and_names_them_as_needing_a_restart() {
    let test = "sighup_keeps_host_groups_and_names_them_as_needing_a_restart";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    create_tcp("10.0.0.1", 40001, "198.51.100.7", 80, TcpState::Established);
    create_tcp("10.0.0.1", 40002, "203.0.113.8", 80, TcpState::Established);
    let groups = |name: &str| {
        format!(
            "host_prefix_length_v4 = 24\n\n[[host_groups]]\nname = \"{name}\"\n\
             networks = [\"198.51.100.0/24\"]\n"
        )
    };
    let directory = TempDir::new(test);
    let config = directory.write("config.toml", &groups("web"));
    let exporter = start_exporter(&["--config", config.to_str().unwrap()]);
    wait_for_open(
        &exporter,
        &[("web", Some(1.0)), ("203.0.113.0/24", Some(1.0))],
    );

    // New ignore_hosts apply at once, and the resync that follows classifies every
    // connection again with the same groups and networks.
    let ignoring = "ignore_hosts = [\"203.0.113.8\"]\n";
    directory.write("config.toml", &format!("{ignoring}{}", groups("web")));
    exporter.signal(libc::SIGHUP);
    wait_for_log(&exporter, "config reloaded; applied: ignore_hosts");
    create_tcp("10.0.0.1", 40003, "198.51.100.9", 80, TcpState::Established);
    wait_for_open(&exporter, &[("web", Some(2.0)), ("203.0.113.0/24", None)]);

    // Groups decide every aggregate's key: a change waits for a restart.
    directory.write("config.toml", &format!("{ignoring}{}", groups("www")));
    exporter.signal(libc::SIGHUP);
    wait_for_log(&exporter, "taking effect only at restart: host_groups");
    create_tcp(
        "10.0.0.1",
        40004,
        "198.51.100.10",
        80,
        TcpState::Established,
    );
    wait_for_open(&exporter, &[("web", Some(3.0)), ("www", None)]);
}
