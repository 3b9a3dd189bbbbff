//! The exporter as a child process in the current namespace: started with arguments on a
//! port of its own, ready once its readiness endpoint answers (which it does only after the
//! initial dump) or, for an exporter that needs TLS or credentials, once it logs its start-up
//! line (also after the initial dump), then scraped, signalled and stopped.

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::exposition::Scrape;
use crate::host_counts::{HostCounts, show};
use crate::http::http_get;
use crate::kernel_table::{conntrack_list, kernel_host_counts};
use crate::namespace::{exempt_port_from_tracking, free_port};
use crate::process::{Captured, Process};
use crate::wait::{eventually, test_deadline, within};

/// How to start the exporter; [`start`](Self::start) starts it.
#[derive(Debug, Clone)]
pub struct ExporterCommand {
    binary: PathBuf,
    args: Vec<OsString>,
    port: Option<u16>,
    exempt_port: bool,
    read_stdout: bool,
    read_stderr: bool,
    ready_within: Option<Duration>,
    ready_when_logged: bool,
    resolv_conf: Option<PathBuf>,
}

impl ExporterCommand {
    /// The exporter `binary`, by default on a free port exempted from tracking, its output
    /// captured, and ready within the test's deadline.
    pub fn new(binary: impl Into<PathBuf>) -> ExporterCommand {
        ExporterCommand {
            binary: binary.into(),
            args: Vec::new(),
            port: None,
            exempt_port: true,
            read_stdout: true,
            read_stderr: true,
            ready_within: None,
            ready_when_logged: false,
            resolv_conf: None,
        }
    }

    /// Adds an argument (after `--listen-port`).
    pub fn arg(mut self, arg: impl Into<OsString>) -> ExporterCommand {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments (after `--listen-port`).
    pub fn args<I, S>(mut self, args: I) -> ExporterCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Listens on `port` instead of a free one; with `0` the kernel picks the port, which
    /// is learnt from the exporter's start-up line (`serving metrics at http://ADDRESS:PORT/…`)
    /// and is not exempted from tracking.
    pub fn port(mut self, port: u16) -> ExporterCommand {
        self.port = Some(port);
        self
    }

    /// Leaves the namespace's firewall alone: the scrapes' own connections are tracked
    /// (and counted, where tracking is on).
    pub fn track_own_port(mut self) -> ExporterCommand {
        self.exempt_port = false;
        self
    }

    /// Connects its standard output to a pipe that nobody reads: once the pipe is full, a
    /// write to it blocks.
    pub fn leave_stdout_unread(mut self) -> ExporterCommand {
        self.read_stdout = false;
        self
    }

    /// Leaves its standard error unread (see [`leave_stdout_unread`](Self::leave_stdout_unread)),
    /// for a caller that closes it with [`Process::close_stderr`].
    pub fn leave_stderr_unread(mut self) -> ExporterCommand {
        self.read_stderr = false;
        self
    }

    /// Takes its start-up line (`serving metrics at ...`, logged once the initial dump is
    /// applied) as the sign that it is ready, rather than plain HTTP's `/-/ready`: for an
    /// exporter that serves HTTPS or asks for credentials.
    pub fn ready_when_logged(mut self) -> ExporterCommand {
        self.ready_when_logged = true;
        self
    }

    /// Starts it in a mount namespace of its own where `path` is mounted over
    /// `/etc/resolv.conf`: its name lookups go to the servers `path` names (a test's DNS
    /// server), and nothing outside the process sees the change.
    pub fn resolv_conf(mut self, path: impl Into<PathBuf>) -> ExporterCommand {
        self.resolv_conf = Some(path.into());
        self
    }

    /// Waits up to `limit` for it to be ready, instead of the test's deadline.
    pub fn ready_within(mut self, limit: Duration) -> ExporterCommand {
        self.ready_within = Some(limit);
        self
    }

    /// Starts it and waits until its landing page answers; panics, with its log, if it
    /// exits or does not answer in time.
    #[track_caller]
    pub fn start(self) -> Exporter {
        let port = self.port.unwrap_or_else(free_port);
        if self.exempt_port && port != 0 {
            exempt_port_from_tracking(port);
        }
        let mut command = Command::new(&self.binary);
        command
            .arg("--listen-port")
            .arg(port.to_string())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = &self.resolv_conf {
            mount_in_child(&mut command, path, "/etc/resolv.conf");
        }
        let mut process = Process::spawn(&mut command);
        let stdout = if self.read_stdout {
            process.capture_stdout()
        } else {
            Captured::default()
        };
        let stderr = if self.read_stderr {
            process.capture_stderr()
        } else {
            Captured::default()
        };
        let mut exporter = Exporter {
            process,
            port,
            stdout,
            stderr,
        };
        let deadline = self
            .ready_within
            .map_or_else(test_deadline, |limit| Instant::now() + limit);
        if port == 0 || self.ready_when_logged {
            exporter.port = exporter.wait_for_startup_line(deadline);
        }
        if !self.ready_when_logged {
            exporter.wait_ready(deadline);
        }
        exporter
    }
}

/// Makes `command`'s process start in a mount namespace of its own, with `source` bind-mounted
/// over `target` there. Mounts are made private first, so that the bind mount never
/// propagates back to the test's namespace.
fn mount_in_child(command: &mut Command, source: &Path, target: &str) {
    let source = CString::new(source.as_os_str().as_bytes()).expect("a path without NUL");
    let target = CString::new(target).expect("a path without NUL");
    let pre_exec = move || -> io::Result<()> {
        let check = |result: libc::c_int| match result {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        };
        // SAFETY: between fork and exec only async-signal-safe system calls run, on
        // strings allocated before the fork; the calls change only the child's namespaces.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ))
        }
    };
    // SAFETY: the closure allocates nothing and calls only async-signal-safe functions.
    unsafe {
        command.pre_exec(pre_exec);
    }
}

/// The port of the exporter's start-up line `... serving metrics at http://ADDRESS:PORT/PATH`
/// (or `https://`).
fn served_port(line: &str) -> Option<u16> {
    let url = line.split_once("serving metrics at ")?.1;
    let url = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = url.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

/// A running exporter. Dropping it kills the process (also when the caller panics).
pub struct Exporter {
    /// The process.
    pub process: Process,
    /// The port of its HTTP endpoint.
    pub port: u16,
    /// Its standard output (the event log); empty when left unread.
    pub stdout: Captured,
    /// Its standard error (its own log); empty when left unread.
    pub stderr: Captured,
}

impl Exporter {
    /// Starts `binary` with `args` as [`ExporterCommand::new`] does by default.
    #[track_caller]
    pub fn start(binary: impl Into<PathBuf>, args: &[&str]) -> Exporter {
        ExporterCommand::new(binary).args(args).start()
    }

    /// The port its start-up line names, once it is logged.
    #[track_caller]
    fn wait_for_startup_line(&mut self, deadline: Instant) -> u16 {
        let process = &mut self.process;
        let stderr = &self.stderr;
        within("the exporter logs its start-up line", deadline, || {
            if let Some(status) = process.exit_status() {
                panic!(
                    "the exporter exited during start-up with {status}; its log:\n{}",
                    stderr.text()
                );
            }
            stderr
                .lines()
                .iter()
                .find_map(|line| served_port(line))
                .ok_or_else(|| format!("no start-up line in:\n{}", stderr.text()))
        })
    }

    #[track_caller]
    fn wait_ready(&mut self, deadline: Instant) {
        let port = self.port;
        let process = &mut self.process;
        let stderr = &self.stderr;
        within(
            "the exporter is ready (its initial dump applied)",
            deadline,
            || {
                if let Some(status) = process.exit_status() {
                    panic!(
                        "the exporter exited during start-up with {status}; its log:\n{}",
                        stderr.text()
                    );
                }
                match http_get(port, "/-/ready") {
                    Ok((200, _)) => Ok(()),
                    Ok((status, _)) => Err(format!("HTTP status {status}")),
                    Err(error) => Err(error.to_string()),
                }
            },
        );
    }

    /// The text of the metrics page.
    pub fn metrics_text(&self) -> String {
        match http_get(self.port, "/metrics") {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!("GET /metrics answered {status}: {body}"),
            Err(error) => panic!(
                "GET /metrics failed: {error}; the exporter's log:\n{}",
                self.stderr.text()
            ),
        }
    }

    /// The metrics page, parsed; panics when it is not valid.
    pub fn scrape(&self) -> Scrape {
        let text = self.metrics_text();
        Scrape::parse(&text).unwrap_or_else(|error| panic!("the metrics page: {error}\n{text}"))
    }

    /// How long one scrape takes, end to end.
    pub fn time_scrape(&self) -> Duration {
        let started = Instant::now();
        self.metrics_text();
        started.elapsed()
    }

    /// Sends `signal` and returns at once, without waiting for any effect: for `SIGSTOP` and
    /// `SIGCONT`.
    pub fn signal(&self, signal: libc::c_int) {
        self.process.signal(signal);
    }

    /// Sends `signal` and waits (within the test's deadline) for the process to exit.
    #[track_caller]
    pub fn stop_with(&mut self, signal: libc::c_int) -> ExitStatus {
        self.process.signal(signal);
        self.process.wait_for_exit(test_deadline())
    }

    /// Stops it with SIGTERM and checks that it exits with code 0; panics with its log if not.
    #[track_caller]
    pub fn stop_cleanly(&mut self) {
        let status = self.stop_with(libc::SIGTERM);
        assert_eq!(
            status.code(),
            Some(0),
            "{status}; its log:\n{}",
            self.stderr.text()
        );
    }

    /// Waits until the per-host numbers on the metrics page equal the kernel's table read
    /// through the `conntrack` tool, and returns them. The table is read before and after
    /// the scrape; only a scrape between two equal readings counts, so a table that is still
    /// changing is simply read again.
    #[track_caller]
    pub fn wait_until_kernel_table_matches(&self, families: [&str; 4]) -> HostCounts {
        eventually(
            "the exporter's per-host numbers equal the kernel's table",
            || {
                let before = kernel_host_counts();
                let scraped = self.scrape().host_counts(families);
                let after = kernel_host_counts();
                if before != after {
                    return Err("the kernel's table changed during the scrape".into());
                }
                match scraped {
                    Ok(scraped) if scraped == before => Ok(before),
                    Ok(scraped) => Err(format!(
                        "\n  kernel:   {}\n  exporter: {}\n  kernel table:\n{}\n  exporter log:\n{}",
                        show(&before),
                        show(&scraped),
                        conntrack_list()
                            .iter()
                            .map(|entry| format!("    {entry:?}"))
                            .collect::<Vec<_>>()
                            .join("\n"),
                        self.stderr.text()
                    )),
                    Err(error) => Err(error),
                }
            },
        )
    }
}
