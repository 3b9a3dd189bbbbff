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

/// Where the kernel says whether it counts bytes and packets per connection.
const KERNEL_ACCOUNTING: &str = "/proc/sys/net/netfilter/nf_conntrack_acct";

/// Logs one line when the kernel's accounting is off: the byte and packet counters would
/// then stay at zero. The exporter leaves the setting to the operator.
fn say_if_kernel_accounting_is_off() {
    if std::fs::read_to_string(KERNEL_ACCOUNTING).is_ok_and(|value| value.trim() == "0") {
        warn!(
            "accounting is on but the kernel's is off ({KERNEL_ACCOUNTING} is 0): bytes and \
             packets stay 0 until it is set to 1 (sysctl net.netfilter.nf_conntrack_acct=1)"
        );
    }
}

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
        .then(TrackingSwitch::on)
        .transpose()?;

    let tracker = Arc::new(if settings.accounting {
        say_if_kernel_accounting_is_off();
        Tracker::with_accounting()
    } else {
        Tracker::new()
    });
    let status = Arc::new(Status::default());
    let (exposition, counters) = Exposition::new(
        Arc::clone(&tracker),
        Arc::clone(&status),
        settings.naming,
        settings.labels.0.clone(),
        settings.accounting,
        settings.host_idle_timeout.0,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut collector = collector::start(
        CollectorSettings {
            ignore_hosts: settings.ignore_hosts.0.clone(),
            protocols: settings.protocols.0,
            labels: settings.labels.0.clone(),
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

/// Connection tracking switched on for the exporter's lifetime; dropping it switches the
/// exporter's own nftables table off again.
struct TrackingSwitch;

impl TrackingSwitch {
    fn on() -> Result<TrackingSwitch, ctnetlink::TrackingError> {
        ctnetlink::tracking::enable()?;
        info!(
            "connection tracking switched on (nftables table inet {})",
            ctnetlink::tracking::TABLE_NAME
        );
        Ok(TrackingSwitch)
    }
}

impl Drop for TrackingSwitch {
    fn drop(&mut self) {
        match ctnetlink::tracking::disable() {
            Ok(()) => info!("connection tracking switch removed"),
            Err(error) => warn!("could not remove the connection tracking switch: {error}"),
        }
    }
}
