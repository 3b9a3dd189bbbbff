//! The signals the exporter answers while it runs: SIGTERM and SIGINT stop it, SIGHUP reloads
//! the config file, SIGUSR1 and SIGUSR2 are logged at debug level and otherwise ignored, so
//! that a stray signal (a `kill -USR1` meant for another process, a log rotation's `HUP`)
//! does not end it.

use std::path::PathBuf;
use std::sync::mpsc::Sender;

use std::io;

use log::{debug, error, info, warn};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::collector::Reconfiguration;
use crate::logging;
use crate::settings::{Layer, Settings};

/// The exporter's signal handlers. Installed before anything that takes time or leaves
/// something to undo, so that a signal at any later moment, the start-up dump included, has
/// its handler; from then on the signals' default actions (ending the process) no longer
/// apply.
pub(crate) struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
    user1: Signal,
    user2: Signal,
}

impl Signals {
    /// Installs the handlers; needs to run inside the Tokio runtime.
    pub(crate) fn install() -> io::Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
            user1: signal(SignalKind::user_defined1())?,
            user2: signal(SignalKind::user_defined2())?,
        })
    }

    /// Completes on SIGTERM or SIGINT; reloads the config file through `reload` on each
    /// SIGHUP meanwhile.
    pub(crate) async fn until_stop(mut self, mut reload: ConfigReload) {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => return,
                _ = self.interrupt.recv() => return,
                _ = self.hangup.recv() => reload.reload(),
                _ = self.user1.recv() => debug!("SIGUSR1 ignored"),
                _ = self.user2.recv() => debug!("SIGUSR2 ignored"),
            }
        }
    }
}

/// What a SIGHUP needs: where the settings came from, and the settings in force.
pub(crate) struct ConfigReload {
    /// The config file (`--config`), if one was given.
    path: Option<PathBuf>,
    /// The flags, which still override the file.
    flags: Layer,
    /// The settings in force.
    running: Settings,
    /// Where the collector thread takes the settings it applies at run time.
    collector: Sender<Reconfiguration>,
}

impl ConfigReload {
    /// A reload of `path` under `flags`, starting from the `running` settings, that hands
    /// the collector's part to `collector`.
    pub(crate) fn new(
        path: Option<PathBuf>,
        flags: Layer,
        running: Settings,
        collector: Sender<Reconfiguration>,
    ) -> ConfigReload {
        ConfigReload {
            path,
            flags,
            running,
            collector,
        }
    }

    /// Reads the config file again and applies what can change at run time (see
    /// `settings::RELOADABLE`). An invalid file changes nothing and is logged in one line;
    /// a changed key that takes effect only at restart is named in a log line.
    fn reload(&mut self) {
        let (reloaded, needing_restart) = match self
            .running
            .reload(self.path.as_deref(), self.flags.clone())
        {
            Ok(reloaded) => reloaded,
            Err(reason) => {
                error!("config not reloaded, the running settings stay: {reason}");
                return;
            }
        };
        if !needing_restart.is_empty() {
            warn!(
                "config reloaded; changed, but taking effect only at restart: {}",
                needing_restart.join(", ")
            );
        }
        logging::set_debug(reloaded.debug);
        // Keys needing a restart keep their running values, so that a later reload names
        // them again until the restart.
        let applied = Settings {
            debug: reloaded.debug,
            ignore_hosts: reloaded.ignore_hosts,
            resync_interval: reloaded.resync_interval,
            ..self.running.clone()
        };
        let changed = self.running.changed_keys(&applied);
        if changed.iter().any(|key| *key != "debug") {
            // Fails only when the collector thread has ended, which its supervision reports.
            let _ = self.collector.send(Reconfiguration {
                ignore_hosts: applied.ignore_hosts.0.clone(),
                resync_interval: applied.resync_interval.get(),
            });
        }
        self.running = applied;
        info!(
            "config reloaded; applied: {}",
            if changed.is_empty() {
                "no change".to_owned()
            } else {
                changed.join(", ")
            }
        );
    }
}
