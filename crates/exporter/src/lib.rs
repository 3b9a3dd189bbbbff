//! `conntrack_exporter`: a Prometheus exporter for Linux connection tracking.
//!
//! For every remote host, it publishes how many TCP connections are opening, open, closing
//! and recently closed. The collector thread keeps a live [`tracker::Tracker`] current from
//! one dump of the kernel's table and its NEW / UPDATE / DESTROY events; a scrape renders
//! per-host counts through [`exposition::Exposition`] at a cost of one step per host.
//!
//! Start-up ([`run`]): settings, logging, the HTTP listener (so that a port in use fails at
//! once), tracking switched on if asked, the HTTP server (its readiness endpoint says when
//! the counts are complete), then the collector thread (event subscription and initial
//! dump). Then it serves until SIGTERM or SIGINT, which it honours at any of these steps
//! within a bounded time, and undoes what it set up; or until the collector thread ends,
//! which is an error ([`supervision`]).
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
mod names;
mod namespaces;
mod privileges;
pub mod settings;
mod signals;
pub mod supervision;
pub mod watched;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use log::{info, warn};
use tokio::sync::oneshot;
use tracker::{HostLabels, SeriesBound};

pub use crate::cli::Args;
use crate::collector::CollectorSettings;
pub use crate::error::Error;
use crate::event_log::EventLog;
use crate::exposition::{Exposition, SharedRender, Status};
use crate::names::{NameSettings, Names};
use crate::settings::Settings;
use crate::supervision::{Ending, SupervisedThread};
use crate::watched::Namespaces;

/// How long the collector thread may take to notice the stop flag at exit before the exporter
/// exits without it (it checks the flag at least four times a second, unless it hangs).
const COLLECTOR_STOP_TIMEOUT: Duration = Duration::from_secs(2);

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
    let settings = Settings::load(args.config.as_deref(), args.flags.clone())?;
    logging::init(settings.debug);
    let web = match settings.web_config_file.get() {
        Some(path) => {
            let web = web_config::WebConfig::load(path)?;
            info!("web configuration {}: {web}", path.display());
            Some(Arc::new(web))
        }
        None => None,
    };
    let scheme = match web.as_ref().and_then(|web| web.tls()) {
        Some(_) => "https",
        None => "http",
    };
    let (reconfigure, reconfigurations) = std::sync::mpsc::channel();
    let reload = signals::ConfigReload::new(args.config, args.flags, settings.clone(), reconfigure);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let signals = {
        let _runtime = runtime.enter();
        signals::Signals::install().map_err(Error::Signals)?
    };
    let requested = SocketAddr::new(settings.bind_address, settings.listen_port);
    let listen_error = |source| Error::Listen {
        address: requested,
        source,
    };
    let listener = {
        let _runtime = runtime.enter();
        http::bind(requested).map_err(listen_error)?
    };
    // With port 0 the kernel picks the port: name the one it picked.
    let address = listener.local_addr().map_err(listen_error)?;
    // The only socket that could need more (a port below 1024) is bound, and no other thread
    // exists yet: every thread started from here on has only CAP_NET_ADMIN (and
    // CAP_SYS_ADMIN, to enter other namespaces, and CAP_SYS_PTRACE, to find their pods, when
    // it watches them).
    let watch_namespaces = !settings.namespaces.0.is_empty();
    let kept = privileges::keep_only_what_is_needed(watch_namespaces).map_err(Error::Privileges)?;
    log::debug!("capabilities kept: {kept:#x}");

    let _tracking = settings
        .ensure_tracking
        .then(switch_tracking_on)
        .transpose()?;

    if settings.accounting {
        say_if_kernel_accounting_is_off();
    }
    let hosts = Arc::new(
        HostLabels::new(
            &settings.host_groups.0,
            settings.host_prefix_length_v4.0,
            settings.host_prefix_length_v6.0,
        )
        .map_err(settings::SettingsError::from)?,
    );
    let series_bound = Arc::new(SeriesBound::new(NonZeroUsize::new(settings.max_series)));
    let namespaces = Arc::new(Namespaces::empty(watch_namespaces, series_bound));
    let status = Arc::new(Status::default());
    let exposition = Exposition::new(
        Arc::clone(&namespaces),
        Arc::clone(&status),
        settings.naming,
        settings.labels.0.clone(),
        Arc::clone(&hosts),
        settings.accounting,
        settings.host_idle_timeout.0,
    );
    let names = settings
        .resolve_hosts
        .then(|| {
            Names::start(NameSettings::of(&settings), runtime.handle(), |metrics| {
                exposition.register(metrics)
            })
        })
        .transpose()?;
    if names.is_some() && !settings.labels.0.contains(tracker::LabelName::Host) {
        warn!("resolve_hosts is on, but the host label is not chosen: no name is shown");
    }
    let exposition = match &names {
        Some(names) => exposition.with_names(Arc::clone(names)),
        None => exposition,
    };
    let http_counters = exposition.register(http::Counters::register);
    let event_log_dropped =
        exposition.register(|| metrics::counter!("conntrack_exporter_event_log_dropped_total"));
    let site = Arc::new(http::Site::new(
        settings.listen_path.as_str().to_owned(),
        SharedRender::new(Arc::new(exposition)),
        Arc::clone(&status),
    ));
    let collector_settings = CollectorSettings {
        ignore_hosts: settings.ignore_hosts.0.clone(),
        protocols: settings.protocols.0,
        labels: settings.labels.0.clone(),
        hosts,
        accounting: settings.accounting,
        resync_interval: settings.resync_interval.get(),
        netlink_buffer_bytes: settings.netlink_buffer_bytes.0,
        netlink_buffer_max_bytes: settings.netlink_buffer_max_bytes.0,
        kernel_event_filter: settings.kernel_event_filter,
        event_log: settings.log_events.then(|| {
            let log = EventLog::new(settings.log_events_format);
            let log = match &names {
                Some(names) => log.with_names(Arc::clone(names)),
                None => log,
            };
            (log, event_log_dropped)
        }),
        namespaces: settings.namespaces.0.clone(),
        watch_own_namespace: settings.watch_own_namespace,
        max_namespaces: settings.max_namespaces.get(),
    };
    let stop = Arc::new(AtomicBool::new(false));

    let outcome = runtime.block_on(async {
        let (stop_serving, serving_stopped) = oneshot::channel::<()>();
        let endpoint = http::Endpoint {
            site,
            max_connections: settings.max_connections.get(),
            status: Arc::clone(&status),
            counters: http_counters,
        };
        let mut server = http::serve_with(
            listener,
            web,
            settings.public_health_endpoints,
            endpoint,
            async {
                let _ = serving_stopped.await;
            },
        );
        let mut signal = Box::pin(signals.until_stop(reload));
        let starting = tokio::task::spawn_blocking({
            let stop = Arc::clone(&stop);
            move || {
                collector::start(
                    collector_settings,
                    namespaces,
                    status,
                    reconfigurations,
                    stop,
                )
            }
        });
        let started = tokio::select! {
            started = starting => started,
            () = &mut signal => {
                info!("stopping during start-up");
                let _ = stop_serving.send(());
                let _ = server.await;
                return Ok(None);
            }
            ended = &mut server => return Err(server_ended(ended)),
        };
        let mut collector = match started {
            Ok(started) => started?,
            Err(panicked) => {
                return Err(Error::CollectorEnded(Ending::Panicked(
                    panicked.to_string(),
                )));
            }
        };
        info!(
            "conntrack_exporter {} serving metrics at {scheme}://{address}{}",
            env!("CARGO_PKG_VERSION"),
            settings.listen_path.as_str()
        );
        // Serves until a signal, or until the collector thread or the server ends.
        let served = collector
            .serve_while_alive(signal, |shutdown| async {
                tokio::select! {
                    () = shutdown => None,
                    ended = &mut server => Some(server_ended(ended)),
                }
            })
            .await;
        if let Ok(Some(error)) = served {
            return Err(error);
        }
        info!("stopping");
        let _ = stop_serving.send(());
        let _ = server.await;
        served.map_err(Error::CollectorStopped)?;
        Ok(Some(collector))
    });
    stop.store(true, Ordering::Relaxed);
    // Neither a render nor a collector start-up still running may hold up the exit.
    runtime.shutdown_background();
    if let Some(collector) = outcome? {
        join_collector(collector);
    }
    Ok(())
}

/// The error for an HTTP server that ended before it was told to: it never does, unless it
/// panicked; the exporter then stops rather than go on unreachable.
fn server_ended(ended: Result<(), tokio::task::JoinError>) -> Error {
    Error::HttpServer(match ended {
        Ok(()) => "it stopped unexpectedly".to_owned(),
        Err(error) => error.to_string(),
    })
}

/// Waits for the collector thread to end, for up to [`COLLECTOR_STOP_TIMEOUT`].
fn join_collector(collector: SupervisedThread) {
    match collector.join_within(COLLECTOR_STOP_TIMEOUT) {
        Some(Ending::Returned) => {}
        Some(ending) => warn!("the collector thread {ending} while stopping"),
        None => warn!(
            "the collector thread did not stop within {}s; exiting without it",
            COLLECTOR_STOP_TIMEOUT.as_secs()
        ),
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
