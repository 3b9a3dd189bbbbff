//! Start-up failures: each ends the process with exit code 1 and one line on standard error
//! that says what is wrong. A bad value in the config file names the file, line and key; an
//! unknown key names the key; a port in use says it cannot listen; a missing CAP_NET_ADMIN
//! names the capability.

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::Command;

use common::{binary, single_error_line};
use testkit::{TempDir, installed};

#[test]
fn a_bad_value_names_file_line_and_key() {
    let test = "a_bad_value_names_file_line_and_key";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let directory = TempDir::new(test);
    let config = directory.write("bad.toml", "# ports\n\nlisten_port = \"abc\"\n");
    let line = single_error_line(Command::new(binary()).arg("-c").arg(&config));
    let location = format!("{}:3: listen_port: ", config.display());
    let message = line
        .strip_prefix(&location)
        .unwrap_or_else(|| panic!("{line:?} should start with {location:?}"));
    assert!(
        message.contains("u16"),
        "{line:?} should say what is allowed"
    );
}

#[test]
fn an_unknown_key_is_named() {
    let test = "an_unknown_key_is_named";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let directory = TempDir::new(test);
    let config = directory.write("unknown.toml", "debug = false\nlisten_prot = 9100\n");
    let line = single_error_line(Command::new(binary()).arg("-c").arg(&config));
    let location = format!("{}:2: ", config.display());
    assert!(
        line.starts_with(&location),
        "{line:?} should start with {location:?}"
    );
    assert!(line.contains("listen_prot"), "{line:?} should name the key");
}

#[test]
fn a_port_in_use_cannot_be_listened_on() {
    let Some(_namespace) = testkit::enter("a_port_in_use_cannot_be_listened_on") else {
        return;
    };
    let taken = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let line = single_error_line(Command::new(binary()).args(["-l", &port]));
    assert!(line.contains("cannot listen"), "{line:?}");
    assert!(line.contains(&port), "{line:?} should name the port");
}

#[test]
fn without_cap_net_admin_it_says_so() {
    let test = "without_cap_net_admin_it_says_so";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let dropping_cap_net_admin = if installed("setpriv") {
        [
            "setpriv",
            "--inh-caps=-all",
            "--bounding-set=-net_admin",
            "--",
        ]
    } else if installed("capsh") {
        ["capsh", "--drop=cap_net_admin", "--", "-c"]
    } else if std::env::var_os("CI").is_some() {
        panic!("{test}: needs setpriv (util-linux) or capsh (libcap2-bin), and CI is set");
    } else {
        eprintln!("\n*** SKIPPED {test}: neither setpriv nor capsh is installed ***\n");
        return;
    };
    let port = testkit::free_port().to_string();
    // Reading the table fails first; with --ensure-tracking, changing the ruleset does.
    for extra in [None, Some("--ensure-tracking")] {
        let exporter: Vec<&str> = [binary(), "-l", &port].into_iter().chain(extra).collect();
        let (program, wrapper_args) = dropping_cap_net_admin.split_first().unwrap();
        let mut command = Command::new(program);
        command.args(wrapper_args);
        if *program == "capsh" {
            command.arg(format!("exec {}", exporter.join(" ")));
        } else {
            command.args(&exporter);
        }
        let line = single_error_line(&mut command);
        assert!(line.contains("CAP_NET_ADMIN"), "{extra:?}: {line:?}");
    }
}

#[test]
fn a_config_path_that_is_not_a_regular_file_is_refused_at_once() {
    let test = "a_config_path_that_is_not_a_regular_file_is_refused_at_once";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let directory = TempDir::new(test);
    let fifo = directory.path().join("fifo.toml");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success(), "mkfifo: {status}");
    let large = directory.write("large.toml", &"#".repeat((1 << 20) + 1));
    // Nobody ever writes to the FIFO or stops reading /dev/zero: reading either would hang
    // or fill memory, and the bounded wait would fail the test.
    for (path, rule) in [
        (fifo.as_path(), "is a FIFO, not a regular file"),
        (Path::new("/dev/zero"), "is a device, not a regular file"),
        (directory.path(), "is a directory, not a regular file"),
        (large.as_path(), "larger than 1048576 bytes"),
    ] {
        let line = single_error_line(Command::new(binary()).arg("-c").arg(path));
        let expected = format!("config file {}: {rule}", path.display());
        assert!(
            line.starts_with(&expected),
            "{line:?} should start with {expected:?}"
        );
    }
}

#[test]
fn settings_that_make_no_sense_are_refused_with_the_rule() {
    let test = "settings_that_make_no_sense_are_refused_with_the_rule";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let directory = TempDir::new(test);
    for (text, rule) in [
        (
            "netlink_buffer_bytes = 0\n",
            "netlink_buffer_bytes: 0 is not a queue size",
        ),
        (
            "listen_path = \"//\"\n",
            "listen_path: \"//\" is not a metrics path",
        ),
        (
            "listen_path = \"/metrics?x=1\"\n",
            "listen_path: \"/metrics?x=1\" is not a metrics path",
        ),
        (
            "resync_interval = \"1ms\"\n",
            "resync_interval: \"1ms\" is too short",
        ),
        (
            "ignore_hosts = [\"fd00::5:3306\"]\n",
            "ignore_hosts: \"fd00::5:3306\" is ambiguous",
        ),
    ] {
        let config = directory.write("absurd.toml", text);
        let line = single_error_line(Command::new(binary()).arg("-c").arg(&config));
        let expected = format!("{}:1: {rule}", config.display());
        assert!(
            line.starts_with(&expected),
            "{line:?} should start with {expected:?}"
        );
    }
}
