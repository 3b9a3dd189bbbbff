//! Threads whose end is the end of the exporter.
//!
//! The collector thread is the only thing that moves the numbers. If it died while the HTTP
//! side went on serving, the exporter would report frozen numbers as if they were current,
//! and nothing would say so. A [`SupervisedThread`] therefore reports how it ended (returned,
//! failed with an error, or panicked, with the panic's message and place), and
//! [`SupervisedThread::serve_while_alive`] stops the server as soon as it ends, so that the
//! process exits with an error and whoever supervises it (systemd, Kubernetes) restarts it.
//!
//! A panic in a supervised thread is reported once, as one line, by whoever acts on its end:
//! the panic hook, which would print it over several lines, leaves it out and records it.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::pin::Pin;
use std::sync::Once;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// How a supervised thread ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Its work returned.
    Returned,
    /// Its work returned this error.
    Failed(String),
    /// It panicked: where, and with what message.
    Panicked(String),
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Returned => write!(f, "ended"),
            Ending::Failed(error) => write!(f, "failed: {error}"),
            Ending::Panicked(report) => write!(f, "panicked {report}"),
        }
    }
}

/// The future that tells a server to shut down.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A thread whose end is reported; see the [module](self).
pub struct SupervisedThread {
    handle: JoinHandle<Ending>,
    /// Receives the ending the moment the thread ends; taken by `serve_while_alive`.
    ended: Option<oneshot::Receiver<Ending>>,
}

thread_local! {
    /// Whether the current thread is supervised: its panics are recorded, not printed.
    static SUPERVISED: Cell<bool> = const { Cell::new(false) };
    /// The current thread's panic, as recorded by the hook.
    static PANIC_REPORT: RefCell<Option<String>> = const { RefCell::new(None) };
}

impl SupervisedThread {
    /// Starts a thread called `name` that runs `work`.
    pub fn spawn<E: fmt::Display>(
        name: &str,
        work: impl FnOnce() -> Result<(), E> + Send + 'static,
    ) -> io::Result<SupervisedThread> {
        install_panic_hook();
        let (report, ended) = oneshot::channel();
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                SUPERVISED.with(|supervised| supervised.set(true));
                let ending = match panic::catch_unwind(AssertUnwindSafe(work)) {
                    Ok(Ok(())) => Ending::Returned,
                    Ok(Err(error)) => Ending::Failed(one_line(&error.to_string())),
                    Err(_) => Ending::Panicked(
                        PANIC_REPORT
                            .with(RefCell::take)
                            .unwrap_or_else(|| "without a message".to_owned()),
                    ),
                };
                let _ = report.send(ending.clone());
                ending
            })?;
        Ok(SupervisedThread {
            handle,
            ended: Some(ended),
        })
    }

    /// Runs the server that `serve` makes, handing it a [`Shutdown`] that completes when
    /// `signal` completes or when the thread ends, whichever comes first. Returns what the
    /// server returned, or how the thread ended if it did.
    ///
    /// Called a second time, only `signal` shuts the server down.
    pub async fn serve_while_alive<F: Future>(
        &mut self,
        signal: impl Future<Output = ()> + Send + 'static,
        serve: impl FnOnce(Shutdown) -> F,
    ) -> Result<F::Output, Ending> {
        let ended = self.ended.take();
        let (died, death) = oneshot::channel();
        let shutdown = Box::pin(async move {
            let Some(ended) = ended else {
                return signal.await;
            };
            tokio::select! {
                () = signal => {}
                ending = ended => {
                    // The sender goes only with a report, unless the thread was torn down
                    // without unwinding, in which case the process goes with it.
                    let ending = ending.unwrap_or_else(|_| {
                        Ending::Panicked("without a report".to_owned())
                    });
                    let _ = died.send(ending);
                }
            }
        });
        let output = serve(shutdown).await;
        match death.await {
            Ok(ending) => Err(ending),
            Err(_) => Ok(output),
        }
    }

    /// Waits up to `limit` for the thread to end (the caller has asked it to stop), and says
    /// how; `None` when it has not ended by then (it is left to the process's exit).
    pub fn join_within(self, limit: std::time::Duration) -> Option<Ending> {
        let deadline = std::time::Instant::now() + limit;
        while !self.handle.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.handle.is_finished().then(|| self.join())
    }

    /// Waits for the thread to end (the caller has asked it to stop), and says how.
    pub fn join(self) -> Ending {
        self.handle
            .join()
            .unwrap_or_else(|_| Ending::Panicked("while reporting its end".to_owned()))
    }
}

/// Installs, once, a panic hook that records the panics of supervised threads instead of
/// printing them, and hands every other panic to the hook it replaces.
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if SUPERVISED.with(Cell::get) {
                PANIC_REPORT.with(|report| *report.borrow_mut() = Some(describe(info)));
            } else {
                previous(info);
            }
        }));
    });
}

/// `at src/file.rs:10:5: message`, on one line.
fn describe(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .map_or_else(|| "with a non-text payload".to_owned(), one_line);
    match info.location() {
        Some(location) => format!("at {location}: {message}"),
        None => message,
    }
}

/// `text` with its lines joined by spaces, so that a report stays one log line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_one_line() {
        assert_eq!(
            one_line("assertion failed\n  left: 1\n right: 2\n"),
            "assertion failed left: 1 right: 2"
        );
        let failed = Ending::Failed(one_line("reading events: gone\nfor good"));
        assert_eq!(failed.to_string(), "failed: reading events: gone for good");
    }

    #[test]
    fn a_returned_thread_is_joined_with_its_ending() {
        let thread = SupervisedThread::spawn("returns", || Ok::<(), String>(())).unwrap();
        assert_eq!(thread.join(), Ending::Returned);
        let thread = SupervisedThread::spawn("fails", || Err("no socket")).unwrap();
        assert_eq!(thread.join(), Ending::Failed("no socket".to_owned()));
    }

    #[test]
    fn a_panic_is_recorded_with_its_place_and_message() {
        let thread = SupervisedThread::spawn("panics", || -> Result<(), String> {
            panic!("the table is gone\nfor good")
        })
        .unwrap();
        let Ending::Panicked(report) = thread.join() else {
            panic!("a panic is reported as one")
        };
        assert!(
            report.starts_with("at crates/exporter/src/supervision.rs:"),
            "{report}"
        );
        assert!(report.ends_with(": the table is gone for good"), "{report}");
    }
}
