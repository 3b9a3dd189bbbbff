//! Log lines to standard error: `LEVEL message`. Timestamps are left to the supervisor
//! (systemd, the container runtime), which adds its own.

use std::io::Write as _;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Crates whose records are shown; others (such as the netlink library's per-message debug
/// lines) are not.
const OWN_TARGETS: [&str; 4] = ["conntrack_exporter", "ctnetlink", "tracker", "web_config"];

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
            && OWN_TARGETS
                .iter()
                .any(|target| metadata.target().starts_with(target))
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let level = match record.level() {
                Level::Error => "ERROR",
                Level::Warn => "WARN ",
                Level::Info => "INFO ",
                Level::Debug => "DEBUG",
                Level::Trace => "TRACE",
            };
            // Not `eprintln!`, which panics when the write fails (a closed pipe, say): that
            // would end whichever thread logged, the collector included. The line is lost.
            let _ = writeln!(std::io::stderr(), "{level} {}", record.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger: info and above, or debug and above with `debug`.
pub(crate) fn init(debug: bool) {
    let _ = log::set_logger(&StderrLogger);
    set_debug(debug);
}

/// Shows debug lines from now on, or stops showing them (a reload of `debug`).
pub(crate) fn set_debug(debug: bool) {
    log::set_max_level(if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    });
}
