//! `conntrack_exporter`: a Prometheus exporter for Linux connection tracking.
//!
//! For every remote host, it publishes how many TCP connections are opening, open, closing
//! and recently closed. The collector thread keeps a live [`tracker::Tracker`] current from
//! one dump of the kernel's table and its NEW / UPDATE / DESTROY events; a scrape renders
//! per-host counts through [`exposition::Exposition`] at a cost of one step per host.
//!
//! Start-up ([`run`]): settings, logging, the HTTP listener (so that a port in use fails at
//! once), tracking switched on if asked, then the collector thread (event subscription and
//! initial dump). Then it serves until SIGTERM or SIGINT, and undoes what it set up; or until
//! the collector thread ends, which is an error ([`supervision`]).
//!
//! The binary `conntrack_exporter` is a thin wrapper around [`run`]; the library exists so
//! that the benchmarks can drive the exposition directly, and the tests the supervision.

mod cli;
mod collector;
mod error;
mod event_log;
pub mod exposition;
mod http;
mod line_queue;
mod logging;
pub mod settings;
pub mod supervision;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{info, warn};
use tracker::Tracker;

pub use crate::cli::Args;
use crate::collector::CollectorSettings;
pub use crate::error::Error;
use crate::event_log::EventLog;
use crate::exposition::{Exposition, Status};
use crate::settings::Settings;
use crate::supervision::Ending;

/// Runs the exporter with the command-line `args` until SIGTERM or SIGINT. An error is one
/// a user can meet (no `CAP_NET_ADMIN`, port in use, invalid config); its text is meant to be
/// printed as one line.
pub fn run(args: Args) -> Result<(), Error> {
    let settings = Settings::load(args.config.as_deref(), args.flags)?;
    logging::init(settings.debug);

    let requested = SocketAddr::new(settings.bind_address, settings.listen_port);
    let listen_error = |source| Error::Listen {
        address: requested,
        source,
    };
    let listener = TcpListener::bind(requested).map_err(listen_error)?;
    // With port 0 the kernel picks the port: name the one it picked.
    let address = listener.local_addr().map_err(listen_error)?;

    let _tracking = settings
        .ensure_tracking
        .then(switch_tracking_on)
        .transpose()?;

    let tracker = Arc::new(Tracker::new());
    let status = Arc::new(Status::default());
    let (exposition, counters) = Exposition::new(
        Arc::clone(&tracker),
        Arc::clone(&status),
        settings.naming,
        settings.host_idle_timeout.0,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut collector = collector::start(
        CollectorSettings {
            ignore_hosts: settings.ignore_hosts.0.clone(),
            resync_interval: settings.resync_interval.get(),
            netlink_buffer_bytes: settings.netlink_buffer_bytes.0,
            netlink_buffer_max_bytes: settings.netlink_buffer_max_bytes.0,
            event_log: settings
                .log_events
                .then(|| EventLog::new(settings.log_events_format)),
        },
        tracker,
        status,
        counters,
        Arc::clone(&stop),
    )?;

    info!(
        "conntrack_exporter {} serving metrics at http://{address}{}",
        env!("CARGO_PKG_VERSION"),
        settings.listen_path.as_str()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let served = runtime.block_on(collector.serve_while_alive(shutdown_signal(), |shutdown| {
        http::serve(
            listener,
            settings.listen_path.as_str().to_owned(),
            Arc::new(exposition),
            shutdown,
        )
    }));
    served
        .map_err(Error::CollectorStopped)?
        .map_err(Error::Http)?;

    info!("stopping");
    stop.store(true, Ordering::Relaxed);
    match collector.join() {
        Ending::Returned => {}
        ending => warn!("the collector thread {ending} while stopping"),
    }
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers; stop the exporter with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}

/// Switches connection tracking on for the exporter's lifetime through a table of its own,
/// which the kernel deletes when the exporter ends, however it ends. Then a leftover of the
/// shared table that older exporters used (killed before they could remove it) is removed:
/// after, so that tracking has no gap, and a missing privilege is reported once.
fn switch_tracking_on() -> Result<ctnetlink::tracking_switch::OwnedSwitch, ctnetlink::Error> {
    use ctnetlink::tracking_switch::{self, OwnedSwitch, TABLE_NAME};
    let switch = OwnedSwitch::on()?;
    info!(
        "connection tracking switched on (nftables table inet {}, removed at exit)",
        switch.table_name()
    );
    match tracking_switch::disable() {
        Ok(true) => {
            info!("removed the leftover nftables table inet {TABLE_NAME} of an earlier run")
        }
        Ok(false) => {}
        Err(error) => warn!("could not remove the nftables table inet {TABLE_NAME}: {error}"),
    }
    Ok(switch)
}
