//! `conntrack_exporter`: a Prometheus exporter for Linux connection tracking. The work is
//! done by the library of the same name; this parses the flags and reports a failure.

use std::process::ExitCode;

use clap::Parser;
use conntrack_exporter::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    match conntrack_exporter::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("conntrack_exporter: error: {error}");
            ExitCode::FAILURE
        }
    }
}
