//! What the daemon's integration tests add to the shared test kit (`testkit`): the exporter
//! binary Cargo built for them, and synthetic conntrack entries created and deleted through
//! ctnetlink.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;

use conntrack_codec::{NewEntry, TcpState, Tuple};
use ctnetlink::ConntrackSocket;

use testkit::{Exporter, ExporterCommand, TempDir, address, run_to_exit};

/// The exporter binary built by Cargo for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_conntrack_exporter")
}

/// How to start the built exporter (see [`ExporterCommand`]).
pub fn exporter_command() -> ExporterCommand {
    ExporterCommand::new(binary())
}

/// Starts the built exporter on a free port with `args`, exempts that port from tracking,
/// and waits until its landing page answers, which it does only once the initial dump is
/// applied.
#[track_caller]
pub fn start_exporter(args: &[&str]) -> Exporter {
    Exporter::start(binary(), args)
}

/// Creates a synthetic TCP entry `src:sport -> dst:dport` in `state` that lives ten minutes.
pub fn create_tcp(src: &str, sport: u16, dst: &str, dport: u16, state: TcpState) -> Tuple {
    let tuple = Tuple::tcp(address(src), sport, address(dst), dport);
    ConntrackSocket::open()
        .and_then(|mut table| table.create(&NewEntry::tcp(tuple, state, 600)))
        .unwrap_or_else(|error| panic!("creating {tuple:?} in {state:?}: {error}"));
    tuple
}

/// Deletes the entry whose original tuple is `tuple`.
pub fn delete(tuple: &Tuple) {
    ConntrackSocket::open()
        .and_then(|mut table| table.delete(tuple, None))
        .unwrap_or_else(|error| panic!("deleting {tuple:?}: {error}"));
}

/// A connected pair that has exchanged a byte each way, so that closing either end sends a
/// FIN (not a reset).
pub fn connect(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let address = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(address).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let mut byte = [0u8];
    client.write_all(b"?").unwrap();
    server.read_exact(&mut byte).unwrap();
    server.write_all(b"!").unwrap();
    client.read_exact(&mut byte).unwrap();
    (client, server)
}

/// The prefix of the exporter's error line.
pub const ERROR_PREFIX: &str = "conntrack_exporter: error: ";

/// Runs `command` to its end, checks exit code 1 and a single line on standard error, and
/// returns that line without the program's prefix.
#[track_caller]
pub fn single_error_line(command: &mut Command) -> String {
    let (status, stderr) = run_to_exit(command);
    assert_eq!(
        status.code(),
        Some(1),
        "{status}; standard error:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|line| !line.is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line expected:\n{stderr}");
    lines[0]
        .strip_prefix(ERROR_PREFIX)
        .unwrap_or_else(|| panic!("{:?} lacks {ERROR_PREFIX:?}", lines[0]))
        .to_owned()
}

/// The directory of the test's namespace files, and the pattern that matches them.
pub fn namespace_directory(directory: &TempDir) -> (std::path::PathBuf, String) {
    let netns = directory.path().join("netns");
    std::fs::create_dir(&netns).unwrap();
    let pattern = format!("{}/*", netns.display());
    (netns, pattern)
}
