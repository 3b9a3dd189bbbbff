//! The TLS acceptor that follows its files: a new certificate, key or client CA written in
//! place (as cert-manager or an ACME client does) is used for the next connections, without a
//! restart. A change that cannot be used (half-written files, a key that does not match)
//! leaves the previous configuration in place and is logged once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::Error;
use crate::tls::TlsSettings;

/// How often, at most, the files are read again; only when a connection arrives.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Hands out a TLS acceptor per connection, built from the current certificate files. Cheap
/// to clone: clones share the configuration.
#[derive(Clone)]
pub struct ReloadingAcceptor(Arc<Shared>);

struct Shared {
    settings: TlsSettings,
    state: Mutex<State>,
}

struct State {
    /// The configuration in use.
    config: Arc<ServerConfig>,
    /// Digest of the files `config` was built from.
    loaded: Vec<u8>,
    /// Why the changed files could not be used, so that it is logged once.
    warning: Option<String>,
    /// When the files may be read again.
    next_check: Instant,
}

impl ReloadingAcceptor {
    /// Reads the files and builds the first configuration; an error here stops the start.
    pub(crate) fn new(settings: TlsSettings) -> Result<ReloadingAcceptor, Error> {
        let inputs = settings.read()?;
        let config = settings.build(&inputs)?;
        Ok(ReloadingAcceptor(Arc::new(Shared {
            settings,
            state: Mutex::new(State {
                config: Arc::new(config),
                loaded: inputs.digest().as_ref().to_vec(),
                warning: None,
                next_check: Instant::now() + CHECK_INTERVAL,
            }),
        })))
    }

    /// The acceptor for a new connection. At most once a second it first reads the files
    /// again (a few kilobytes) and, when they changed, builds a new configuration from them.
    ///
    /// The handshake itself waits for the client: bound it with a timeout, or a client that
    /// connects and sends nothing holds its connection forever.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current_config())
    }

    /// The configuration for a new connection, reloaded first when due.
    fn current_config(&self) -> Arc<ServerConfig> {
        let current = {
            let mut state = self.lock();
            let now = Instant::now();
            if now < state.next_check {
                return state.config.clone();
            }
            state.next_check = now + CHECK_INTERVAL;
            state.config.clone()
        };
        // The files are read without holding the lock: other connections go on meanwhile
        // with the configuration in use.
        self.reload_if_changed().unwrap_or(current)
    }

    /// Reads the files; if they differ from those in use, builds and installs a new
    /// configuration and returns it.
    fn reload_if_changed(&self) -> Option<Arc<ServerConfig>> {
        let settings = &self.0.settings;
        let built = settings.read().and_then(|inputs| {
            let digest = inputs.digest().as_ref().to_vec();
            if digest == self.lock().loaded {
                return Ok(None);
            }
            Ok(Some((digest, settings.build(&inputs)?)))
        });
        let mut state = self.lock();
        match built {
            Ok(None) => {
                state.warning = None;
                None
            }
            Ok(Some((digest, config))) => {
                let config = Arc::new(config);
                state.config = config.clone();
                state.loaded = digest;
                state.warning = None;
                log::info!("TLS: loaded the changed {}", settings.describe_sources());
                Some(config)
            }
            Err(error) => {
                let warning = error.to_string();
                if state.warning.as_ref() != Some(&warning) {
                    log::warn!("TLS: keeping the previous certificate and key: {warning}");
                    state.warning = Some(warning);
                }
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for ReloadingAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingAcceptor")
            .field("sources", &self.0.settings.describe_sources())
            .finish()
    }
}
