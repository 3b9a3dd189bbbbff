//! Why the exporter could not start or had to stop. Each message is one line meant for the
//! operator: `conntrack_exporter: error: <message>`.

use std::io;
use std::net::SocketAddr;

use crate::settings::SettingsError;

/// A failure that ends the exporter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The settings are invalid, or the config file cannot be read.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The web configuration file (`--web.config.file`) or a file it names is missing,
    /// unreadable or invalid.
    #[error(transparent)]
    WebConfig(#[from] web_config::Error),
    /// The HTTP endpoint's address cannot be listened on (in use, not local, no permission).
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address asked for.
        address: SocketAddr,
        /// The reason.
        source: io::Error,
    },
    /// The kernel refused or failed a request: subscribing to events, reading the table,
    /// switching connection tracking on (`--ensure-tracking`).
    #[error(transparent)]
    Kernel(#[from] ctnetlink::Error),
    /// The addresses of this namespace's interfaces could not be listed.
    #[error("listing interface addresses: {0}")]
    LocalAddresses(io::Error),
    /// The watch on the directories of namespace files could not be set up.
    #[error("cannot watch the directories of namespace files: {0}")]
    DirectoryWatch(io::Error),
    /// The event log's writer thread could not be created.
    #[error("cannot start the event log's writer thread: {0}")]
    EventLogThread(io::Error),
    /// The collector thread could not be created.
    #[error("cannot start the collector thread: {0}")]
    CollectorThread(io::Error),
    /// The collector thread ended during start-up without saying why (it panicked).
    #[error("the collector thread {0} during start-up")]
    CollectorEnded(crate::supervision::Ending),
    /// The collector thread ended while the exporter was serving: the numbers would no longer
    /// change, so the exporter stops for its supervisor to restart it.
    #[error(
        "the collector thread {0}; without it the numbers would stay as they are, so the exporter stops"
    )]
    CollectorStopped(crate::supervision::Ending),
    /// The asynchronous runtime of the HTTP endpoint could not be built.
    #[error("cannot start the HTTP runtime: {0}")]
    Runtime(io::Error),
    /// Capabilities beyond `CAP_NET_ADMIN` could not be dropped.
    #[error("cannot drop capabilities: {0}")]
    Privileges(io::Error),
    /// The handlers of SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 could not be installed.
    #[error("cannot install the signal handlers: {0}")]
    Signals(io::Error),
    /// `resolve_hosts` is on, and the system's resolver configuration cannot be read.
    #[error("cannot read the system's resolver configuration (/etc/resolv.conf): {0}")]
    Resolver(String),
    /// The HTTP server ended before it was told to (it never does, unless it panicked): the
    /// exporter stops rather than go on unreachable.
    #[error("the HTTP server failed: {0}")]
    HttpServer(String),
}
