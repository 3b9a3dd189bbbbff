//! The programs the harness measures: starting them in the harness's namespace, reading
//! their CPU time and resident memory from `/proc`, and scraping the exporter.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when dropped.
pub struct Process {
    child: Child,
}

impl Process {
    /// Starts `command` with its output going where the command says.
    pub fn spawn(command: &mut Command) -> Process {
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        Process { child }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time of all its threads, in nanoseconds (user and system, from schedstat).
    pub fn cpu_ns(&self) -> u64 {
        let tasks = format!("/proc/{}/task", self.pid());
        let Ok(tasks) = std::fs::read_dir(tasks) else {
            return 0;
        };
        tasks
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
            .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// Resident memory in bytes (0 once it has exited).
    pub fn rss_bytes(&self) -> u64 {
        loadgen::process::rss_bytes(self.pid()).unwrap_or(0)
    }

    /// Sends SIGTERM and waits; returns its standard output if it was piped.
    pub fn terminate(mut self) -> String {
        // SAFETY: kill with a pid this process started and has not reaped.
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        let mut output = String::new();
        if let Some(stdout) = self.child.stdout.as_mut() {
            let _ = stdout.read_to_string(&mut output);
        }
        let _ = self.child.wait();
        output
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running exporter.
pub struct Exporter {
    pub process: Process,
    pub port: u16,
}

impl Exporter {
    /// Starts `binary` on `port` with `config` written to a file in `dir`, and waits until
    /// it serves its metrics (once its initial dump is applied).
    pub fn start(binary: &Path, dir: &Path, port: u16, config: &str) -> Exporter {
        let config_path = dir.join(format!("exporter-{port}.toml"));
        std::fs::write(&config_path, config).expect("writing the exporter config");
        let log = dir.join(format!("exporter-{port}.log"));
        let stderr = std::fs::File::create(&log).expect("creating the exporter log");
        let process = Process::spawn(
            Command::new(binary)
                .arg("--config")
                .arg(&config_path)
                .arg("--listen-port")
                .arg(port.to_string())
                .arg("--bind-address")
                .arg("127.0.0.1")
                .stdout(Stdio::null())
                .stderr(stderr),
        );
        let exporter = Exporter { process, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while exporter.get("/metrics").is_err() {
            assert!(Instant::now() < deadline, "the exporter did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        exporter
    }

    /// GETs `path` and returns the body.
    pub fn get(&self, path: &str) -> io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        match response.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.0 200") || head.contains(" 200 ") => {
                Ok(body.to_owned())
            }
            _ => Err(io::Error::other(format!("unexpected response to {path}"))),
        }
    }

    /// Scrapes the metrics.
    pub fn scrape(&self) -> Scrape {
        Scrape::parse(&self.get("/metrics").expect("scraping the exporter"))
    }

    /// How long one scrape takes, end to end.
    pub fn time_scrape(&self) -> Duration {
        let started = Instant::now();
        self.get("/metrics").expect("scraping the exporter");
        started.elapsed()
    }
}

/// A parsed scrape: every sample by its name with labels, as written.
pub struct Scrape {
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Scrape { samples }
    }

    /// One sample, 0 when absent.
    pub fn value(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// The sum of every sample of a family.
    pub fn sum(&self, family: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(series, _)| {
                series
                    .strip_prefix(family)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// Per host and state group (the seed families), non-zero counts only.
    pub fn host_counts(&self) -> BTreeMap<(IpAddr, usize), u64> {
        let families = [
            "conntrack_opening_connections_total{host=\"",
            "conntrack_open_connections_total{host=\"",
            "conntrack_closing_connections_total{host=\"",
            "conntrack_closed_connections_total{host=\"",
        ];
        let mut counts = BTreeMap::new();
        for (series, value) in &self.samples {
            for (group, prefix) in families.iter().enumerate() {
                let Some(rest) = series.strip_prefix(prefix) else {
                    continue;
                };
                let Some(host) = rest.strip_suffix("\"}").and_then(|h| h.parse().ok()) else {
                    continue;
                };
                if *value > 0.0 {
                    counts.insert((host, group), *value as u64);
                }
            }
        }
        counts
    }
}

impl Process {
    /// Takes its piped standard output.
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child
            .stdout
            .take()
            .expect("standard output was not piped")
    }
}
