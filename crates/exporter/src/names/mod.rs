//! Names instead of addresses (`resolve_hosts`): the `host` label of a remote address reads
//! its forward-confirmed name once one is known.
//!
//! Nothing here ever waits for DNS on the way of an event or a scrape. A render asks
//! [`Names::name_to_show`] for each address it shows and gets at once what the cache knows;
//! an address without a valid answer is handed to the lookup task through a bounded queue
//! with `try_send` (a full queue refuses it, and the next render asks again), and shown as
//! an address meanwhile. The lookup task starts lookups at a steady pace, a bounded number at
//! a time, each within a time limit, and writes every answer back into the cache.
//!
//! Memory is bounded by the cache's capacity (pending lookups are cache entries too), the
//! queue's and the number of lookups under way.

mod cache;
mod lookup;
mod pace;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use log::debug;
use metrics::{Counter, Gauge, counter, describe_counter, describe_gauge, gauge};
use tokio::sync::{Semaphore, mpsc};

use crate::error::Error;
use cache::{Cache, Lifetimes};
use lookup::{Outcome, Resolver};
use pace::Pace;

/// How many seconds of lookups, at the configured rate, the request queue holds: a request
/// waits at most about this long for its turn.
const QUEUE_SECONDS: usize = 10;

/// The limits of name lookups, from the settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameSettings {
    /// How long answers are cached.
    pub lifetimes: Lifetimes,
    /// The cache's capacity, in addresses.
    pub entries: usize,
    /// Lookups started per second at most.
    pub rate: u32,
    /// Lookups under way at most.
    pub concurrent: usize,
    /// The time limit of one lookup.
    pub timeout: Duration,
}

impl NameSettings {
    /// The limits `settings` give.
    pub(crate) fn of(settings: &crate::settings::Settings) -> NameSettings {
        NameSettings {
            lifetimes: Lifetimes {
                named: settings.resolve_cache_ttl.0,
                unnamed: settings.resolve_negative_cache_ttl.0,
            },
            entries: settings.resolve_cache_entries.get(),
            rate: settings.resolve_rate.get(),
            concurrent: settings.resolve_max_concurrent.get(),
            timeout: settings.resolve_timeout.0,
        }
    }

    /// The request queue's capacity: [`QUEUE_SECONDS`] of lookups, and never more than the
    /// cache holds.
    fn queue(&self) -> usize {
        (self.rate as usize)
            .saturating_mul(QUEUE_SECONDS)
            .clamp(1, self.entries)
    }
}

/// The names of remote addresses, shared by the renders, the event log and the lookup task.
#[derive(Debug)]
pub struct Names {
    cache: Mutex<Cache>,
    requests: mpsc::Sender<IpAddr>,
    cache_entries: Gauge,
}

impl Names {
    /// Reads the system's resolver configuration and starts the lookup task on `runtime`.
    /// `register` creates the self-metrics where the metrics page shows them.
    pub(crate) fn start(
        settings: NameSettings,
        runtime: &tokio::runtime::Handle,
        register: impl FnOnce(fn() -> Metrics) -> Metrics,
    ) -> Result<Arc<Names>, Error> {
        let resolver = {
            let _runtime = runtime.enter();
            Resolver::from_system_configuration().map_err(Error::Resolver)?
        };
        log::info!(
            "showing remote hosts by their forward-confirmed names, through the system's \
             resolver configuration: at most {} lookups a second, {} at once, {}s each",
            settings.rate,
            settings.concurrent,
            settings.timeout.as_secs_f64()
        );
        let metrics = register(Metrics::register);
        let (requests, queue) = mpsc::channel(settings.queue());
        let names = Arc::new(Names {
            cache: Mutex::new(Cache::new(settings.entries, settings.lifetimes)),
            requests,
            cache_entries: metrics.cache_entries.clone(),
        });
        runtime.spawn(look_up(
            queue,
            Arc::clone(&names),
            Arc::new(resolver),
            settings,
            metrics,
        ));
        Ok(names)
    }

    /// Starts a render: what it shows from now on is what recent scrapes wanted.
    pub(crate) fn begin_render(&self) {
        self.cache().begin_render();
    }

    /// The name to show for `address` now, if one is known; an address without a valid
    /// answer is queued for a lookup, if the queue has room.
    pub(crate) fn name_to_show(&self, address: IpAddr) -> Option<Arc<str>> {
        let requests = &self.requests;
        self.cache()
            .name_to_show(address, Instant::now(), |address| {
                requests.try_send(address).is_ok()
            })
    }

    /// The name known for `address`, without asking about it.
    pub(crate) fn known(&self, address: IpAddr) -> Option<Arc<str>> {
        self.cache().known(address)
    }

    /// Publishes the cache's size; called by every render, whose gauges otherwise expire.
    pub(crate) fn publish(&self) {
        let entries = self.cache().len();
        self.cache_entries.set(entries as f64);
    }

    fn settle(&self, address: IpAddr, name: Option<Arc<str>>) {
        self.cache().settle(address, name, Instant::now());
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
impl Names {
    /// Names without a lookup task: the caller receives the requests and answers them.
    pub(crate) fn without_lookups(entries: usize) -> (Arc<Names>, mpsc::Receiver<IpAddr>) {
        let lifetimes = Lifetimes {
            named: Duration::from_secs(3600),
            unnamed: Duration::from_secs(300),
        };
        let (requests, queue) = mpsc::channel(entries);
        let names = Names {
            cache: Mutex::new(Cache::new(entries, lifetimes)),
            requests,
            cache_entries: Gauge::noop(),
        };
        (Arc::new(names), queue)
    }

    /// Answers the request about `address`.
    pub(crate) fn answer(&self, address: IpAddr, name: Option<&str>) {
        self.settle(address, name.map(Arc::from));
    }
}

/// The self-metrics of name lookups.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// Lookups by result, in the order of [`Outcome::label`]s.
    lookups: [Counter; Outcome::LABELS.len()],
    cache_entries: Gauge,
}

impl Metrics {
    /// Creates the metrics in the current recorder.
    fn register() -> Metrics {
        describe_counter!(
            "conntrack_exporter_dns_lookups_total",
            "Name lookups of remote addresses, by result: name (confirmed), no_name (no PTR record), unconfirmed (the PTR name does not resolve back to the address), timeout, error."
        );
        describe_gauge!(
            "conntrack_exporter_dns_cache_entries",
            "Remote addresses whose name, or its absence, is cached or being looked up."
        );
        Metrics {
            lookups: Outcome::LABELS
                .map(|result| counter!("conntrack_exporter_dns_lookups_total", "result" => result)),
            cache_entries: gauge!("conntrack_exporter_dns_cache_entries"),
        }
    }
}

/// The lookup task: takes queued addresses at the configured pace, looks each up within the
/// time limit (a bounded number at a time), counts the outcome and caches the answer. Ends
/// when the queue's sender is gone (at exit).
async fn look_up(
    mut queue: mpsc::Receiver<IpAddr>,
    names: Arc<Names>,
    resolver: Arc<Resolver>,
    settings: NameSettings,
    metrics: Metrics,
) {
    let under_way = Arc::new(Semaphore::new(settings.concurrent));
    let mut pace = Pace::new(settings.rate);
    while let Some(address) = queue.recv().await {
        let Ok(permit) = Arc::clone(&under_way).acquire_owned().await else {
            return;
        };
        tokio::time::sleep(pace.wait(Instant::now())).await;
        let settling = Settling {
            address,
            names: Some(Arc::clone(&names)),
        };
        let resolver = Arc::clone(&resolver);
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let outcome = tokio::time::timeout(settings.timeout, resolver.confirmed_name(address))
                .await
                .unwrap_or(Outcome::Timeout);
            debug!("name lookup of {address}: {outcome}");
            metrics.lookups[outcome.index()].increment(1);
            settling.settle(outcome.into_name());
            drop(permit);
        });
    }
}

/// A lookup on its way: it settles its cache entry, with no name if the lookup ends
/// without an answer (a panic), so that no entry stays pending for good.
struct Settling {
    address: IpAddr,
    /// Taken when settled.
    names: Option<Arc<Names>>,
}

impl Settling {
    fn settle(mut self, name: Option<Arc<str>>) {
        if let Some(names) = self.names.take() {
            names.settle(self.address, name);
        }
    }
}

impl Drop for Settling {
    fn drop(&mut self) {
        if let Some(names) = self.names.take() {
            names.settle(self.address, None);
        }
    }
}
