//! Helpers shared by the daemon's integration tests: starting the built exporter in the
//! test's network namespace and stopping it again, scraping and parsing its metrics over a
//! minimal HTTP/1.0 client, creating synthetic conntrack entries, and reading what the
//! kernel's table says through the `conntrack` and `ip` tools, as an expectation that does
//! not go through the exporter's own code.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ctnetlink::{ConntrackSocket, NewEntry, TcpState, Tuple};

/// How long any condition is waited for before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How long a test may spend waiting in all, so that a failing test still ends in well under
/// 20 seconds however many conditions it waits for.
pub const TEST_BUDGET: Duration = Duration::from_secs(15);
/// Pause between two polls of a condition.
const POLL: Duration = Duration::from_millis(50);

/// The per-host families with the original exporter's names (`naming = "seed"`), in the
/// order opening, open, closing, closed.
pub const SEED_FAMILIES: [&str; 4] = [
    "conntrack_opening_connections_total",
    "conntrack_open_connections_total",
    "conntrack_closing_connections_total",
    "conntrack_closed_connections_total",
];

/// The same families with `naming = "plain"`.
pub const PLAIN_FAMILIES: [&str; 4] = [
    "conntrack_opening_connections",
    "conntrack_open_connections",
    "conntrack_closing_connections",
    "conntrack_closed_connections",
];

/// Per remote host: connections opening, open, closing and closed.
pub type HostCounts = BTreeMap<IpAddr, [u64; 4]>;

/// The exporter binary built by Cargo for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_conntrack_exporter")
}

thread_local! {
    /// When the current test first waited for something (each test runs on its own thread).
    static FIRST_WAIT: Instant = Instant::now();
    /// Time the current test set aside on purpose (see [`extend_budget`]).
    static BUDGET_EXTENSION: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Adds `spent` to the current test's [`TEST_BUDGET`]: for time it spends on purpose outside
/// any wait (a deliberate stall of the exporter, say), which would otherwise be taken from
/// the conditions it waits for afterwards. Tests that never call it keep the plain budget.
pub fn extend_budget(spent: Duration) {
    BUDGET_EXTENSION.with(|extension| extension.set(extension.get() + spent));
}

/// Polls `check` until it returns `Ok`, and returns that value. After [`DEADLINE`], or once
/// the test has spent [`TEST_BUDGET`] since its first wait, the test fails with `what` and
/// the last reason `check` gave.
#[track_caller]
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let started = Instant::now();
    let budget_end =
        FIRST_WAIT.with(|first| *first + TEST_BUDGET) + BUDGET_EXTENSION.with(Cell::get);
    let deadline = (started + DEADLINE).min(budget_end);
    loop {
        match check() {
            Ok(value) => return value,
            Err(reason) if Instant::now() >= deadline => {
                let waited = started.elapsed().as_secs_f32();
                panic!("{what}: not reached after {waited:.1}s: {reason}")
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// A port nothing in the current namespace listens on.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a free port");
    listener.local_addr().expect("reading a bound port").port()
}

/// Runs `nft` with `args` in the current namespace.
pub fn nft(args: &[&str]) -> String {
    netns::run("nft", args).unwrap_or_else(|error| panic!("{error}"))
}

/// Keeps connections to and from `127.0.0.1:port` out of the conntrack table, so that the
/// test's own scrapes never show up in the counts they check. Only that address: the
/// exporter holds the port for IPv4 alone, so a test's IPv6 listener may get the same number.
pub fn exempt_port_from_tracking(port: u16) {
    let rules = format!(
        "ip daddr 127.0.0.1 tcp dport {port} notrack; ip saddr 127.0.0.1 tcp sport {port} notrack;"
    );
    let ruleset = format!(
        "table inet test_raw {{ \
         chain pre {{ type filter hook prerouting priority raw; {rules} }}; \
         chain out {{ type filter hook output priority raw; {rules} }}; }}"
    );
    nft(&[&ruleset]);
}

/// Output of a child process, collected by a reader thread while it runs.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<String>>);

impl Captured {
    fn collect(stream: impl Read + Send + 'static) -> (Captured, JoinHandle<()>) {
        let captured = Captured::default();
        let sink = captured.clone();
        let reader = thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while let Ok(read) = reader.read_line(&mut line) {
                if read == 0 {
                    break;
                }
                sink.0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&line);
                line.clear();
            }
        });
        (captured, reader)
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The complete lines read so far.
    pub fn lines(&self) -> Vec<String> {
        let text = self.text();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// A running exporter. Dropping it kills the process (also when the test panics).
pub struct Exporter {
    child: Child,
    /// The port of its HTTP endpoint.
    pub port: u16,
    /// Its standard output (the event log).
    pub stdout: Captured,
    /// Its standard error (its own log).
    pub stderr: Captured,
    readers: Vec<JoinHandle<()>>,
}

impl Exporter {
    /// Starts the exporter on a free port with `args` (plus `--listen-port`), exempts that
    /// port from tracking, and waits until it is ready: its initial dump is applied.
    pub fn start(args: &[&str]) -> Exporter {
        let port = free_port();
        exempt_port_from_tracking(port);
        let port_text = port.to_string();
        let mut child = Command::new(binary())
            .args(["--listen-port", &port_text])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the exporter");
        let (stdout, out_reader) = Captured::collect(child.stdout.take().expect("stdout pipe"));
        let (stderr, err_reader) = Captured::collect(child.stderr.take().expect("stderr pipe"));
        let mut exporter = Exporter {
            child,
            port,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        };
        exporter.wait_ready();
        exporter
    }

    fn wait_ready(&mut self) {
        let port = self.port;
        let child = &mut self.child;
        let stderr = &self.stderr;
        eventually("the exporter is ready", || {
            if let Ok(Some(status)) = child.try_wait() {
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
        });
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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

    /// The metrics page, parsed.
    pub fn scrape(&self) -> Scrape {
        Scrape::parse(&self.metrics_text())
    }

    /// Sends `signal` and returns at once, without waiting for any effect: for `SIGSTOP` and
    /// `SIGCONT`. A stopped exporter is still ended when the guard drops (also when the test
    /// panics meanwhile): the `SIGKILL` sent then ends a stopped process too.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill takes plain integers; `pid` is our own child, not yet reaped.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill: {}", io::Error::last_os_error());
    }

    /// Sends `signal` and waits (bounded) for the process to exit.
    pub fn stop_with(&mut self, signal: libc::c_int) -> ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill takes plain integers; `pid` is our own child, not yet reaped.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill: {}", io::Error::last_os_error());
        let child = &mut self.child;
        let status = eventually("the exporter exits after the signal", || {
            match child.try_wait() {
                Ok(Some(status)) => Ok(status),
                Ok(None) => Err("still running".into()),
                Err(error) => Err(error.to_string()),
            }
        });
        self.join_readers();
        status
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
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

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.join_readers();
    }
}

/// Runs the exporter with `args` until it exits (bounded), for start-up failures.
pub fn run_to_exit(command: &mut Command) -> (ExitStatus, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the command");
    let (stderr, reader) = Captured::collect(child.stderr.take().expect("stderr pipe"));
    let status = eventually("the command exits", || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        Ok(None) => Err("still running".into()),
        Err(error) => Err(error.to_string()),
    });
    let _ = reader.join();
    (status, stderr.text())
}

/// Sends `GET path` over HTTP/1.0 to `127.0.0.1:port`; returns the status and body.
pub fn http_get(port: u16, path: &str) -> io::Result<(u16, String)> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8(response).map_err(io::Error::other)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no end of headers in {response:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, body.to_owned()))
}

/// One sample of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels, by name.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// A parsed metrics page.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The page as served.
    pub text: String,
    /// Every sample on it.
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Parses the text exposition format; panics on a line that is not valid.
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                parse_sample(line).unwrap_or_else(|| panic!("not a metrics sample: {line:?}"))
            })
            .collect();
        Scrape {
            text: text.to_owned(),
            samples,
        }
    }

    /// The value of the sample `name` with exactly `labels`, if present.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|sample| sample.name == name && sample.labels == wanted)
            .map(|sample| sample.value)
    }

    /// Whether any sample is named `name`.
    pub fn has_family(&self, name: &str) -> bool {
        self.samples.iter().any(|sample| sample.name == name)
    }

    /// The hosts in any of the per-host `families`, with their four numbers. Fails when a
    /// host lacks one of the families: every host shows all four, zeros included.
    pub fn host_counts(&self, families: [&str; 4]) -> Result<HostCounts, String> {
        let mut found: BTreeMap<IpAddr, [Option<u64>; 4]> = BTreeMap::new();
        for sample in &self.samples {
            let Some(group) = families.iter().position(|name| *name == sample.name) else {
                continue;
            };
            let host = sample
                .labels
                .get("host")
                .ok_or_else(|| format!("{} without a host label", sample.name))?;
            let host: IpAddr = host
                .parse()
                .map_err(|_| format!("host label {host:?} is not an address"))?;
            if sample.labels.len() != 1 {
                return Err(format!("unexpected labels {:?}", sample.labels));
            }
            let slot = &mut found.entry(host).or_default()[group];
            if slot.is_some() {
                return Err(format!("{} has two samples for {host}", sample.name));
            }
            if sample.value < 0.0 || sample.value.fract() != 0.0 {
                return Err(format!("{} {host} = {}", sample.name, sample.value));
            }
            *slot = Some(sample.value as u64);
        }
        found
            .into_iter()
            .map(|(host, counts)| {
                let mut complete = [0; 4];
                for (group, count) in counts.into_iter().enumerate() {
                    complete[group] =
                        count.ok_or_else(|| format!("host {host} lacks {}", families[group]))?;
                }
                Ok((host, complete))
            })
            .collect()
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (index, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &inner[index + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The four numbers of each host, one host per line.
pub fn show(counts: &HostCounts) -> String {
    let hosts: Vec<String> = counts
        .iter()
        .map(|(host, counts)| format!("{host}={counts:?}"))
        .collect();
    format!("{{{}}}", hosts.join(", "))
}

/// The seed's state groups, by the state names the `conntrack` tool prints: the index of
/// opening, open, closing or closed, or `None` for a state that is not counted.
pub fn state_group(state: &str) -> Option<usize> {
    match state {
        "SYN_SENT" | "SYN_SENT2" | "SYN_RECV" => Some(0),
        "ESTABLISHED" => Some(1),
        "FIN_WAIT" | "CLOSE_WAIT" | "LAST_ACK" | "TIME_WAIT" => Some(2),
        "CLOSE" => Some(3),
        _ => None,
    }
}

/// The addresses of this namespace's interfaces, as `ip -o addr` lists them.
pub fn local_addresses() -> HashSet<IpAddr> {
    let listing = netns::run("ip", &["-o", "addr"]).unwrap_or_else(|error| panic!("{error}"));
    let mut local = HashSet::new();
    for line in listing.lines() {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            if word == "inet" || word == "inet6" {
                let address = words.next().and_then(|cidr| cidr.split('/').next());
                if let Some(address) = address.and_then(|address| address.parse().ok()) {
                    local.insert(address);
                }
            }
        }
    }
    local
}

/// One TCP entry as the `conntrack` tool lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedEntry {
    /// The state column.
    pub state: String,
    /// Original direction: source and destination.
    pub original: (IpAddr, IpAddr),
    /// Reply direction: source and destination.
    pub reply: Option<(IpAddr, IpAddr)>,
}

/// Every TCP entry of the kernel's table, through `conntrack -L`.
pub fn conntrack_list() -> Vec<ListedEntry> {
    let mut entries = Vec::new();
    for family in ["ipv4", "ipv6"] {
        let listing = netns::run("conntrack", &["-L", "-p", "tcp", "-f", family])
            .unwrap_or_else(|error| panic!("{error}"));
        for line in listing.lines().filter(|line| line.starts_with("tcp")) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let state = words
                .iter()
                .take_while(|word| !word.starts_with("src="))
                .last()
                .map(|state| (*state).to_owned())
                .unwrap_or_default();
            let addresses = |key: &str| -> Vec<IpAddr> {
                words
                    .iter()
                    .filter_map(|word| word.strip_prefix(key))
                    .map(|address| address.parse().expect("an address"))
                    .collect()
            };
            let (sources, destinations) = (addresses("src="), addresses("dst="));
            entries.push(ListedEntry {
                state,
                original: (sources[0], destinations[0]),
                reply: sources.get(1).copied().zip(destinations.get(1).copied()),
            });
        }
    }
    entries
}

/// The remote end of a connection, by the seed's rule: of the original direction, the
/// destination if the source is local, the source if the destination is local; else the
/// reply direction read the same way; else the original destination.
pub fn remote_host(entry: &ListedEntry, local: &HashSet<IpAddr>) -> IpAddr {
    let far_end = |(src, dst): (IpAddr, IpAddr)| {
        if local.contains(&src) {
            Some(dst)
        } else if local.contains(&dst) {
            Some(src)
        } else {
            None
        }
    };
    far_end(entry.original)
        .or_else(|| entry.reply.and_then(far_end))
        .unwrap_or(entry.original.1)
}

/// What the exporter should show, computed from the kernel's table as the `conntrack` tool
/// lists it and the addresses `ip` lists.
pub fn kernel_host_counts() -> HostCounts {
    let local = local_addresses();
    let mut counts = HostCounts::new();
    for entry in conntrack_list() {
        if let Some(group) = state_group(&entry.state) {
            counts.entry(remote_host(&entry, &local)).or_default()[group] += 1;
        }
    }
    counts
}

/// Creates a synthetic TCP entry `src:sport -> dst:dport` in `state` that lives ten minutes.
pub fn create_tcp(src: &str, sport: u16, dst: &str, dport: u16, state: TcpState) -> Tuple {
    let tuple = Tuple::tcp(address(src), sport, address(dst), dport);
    ConntrackSocket::open()
        .and_then(|mut table| table.create(&NewEntry::tcp(tuple, state, 600)))
        .unwrap_or_else(|error| panic!("creating {tuple:?} in {state:?}: {error}"));
    tuple
}

/// Deletes the entry whose original tuple is `tuple`.
pub fn delete(tuple: &Tuple) {
    ConntrackSocket::open()
        .and_then(|mut table| table.delete(tuple, None))
        .unwrap_or_else(|error| panic!("deleting {tuple:?}: {error}"));
}

/// Parses an address literal of the test.
pub fn address(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|_| panic!("{text:?} is not an address"))
}

/// A private directory for files a test writes, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory named after `test`.
    pub fn new(test: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("conntrack_exporter_{test}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temporary directory");
        TempDir(path)
    }

    /// Writes `name` in the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("writing a temporary file");
        path
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether `program` can be found on `PATH`.
pub fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Handles a missing tool: a failure when `CI` is set, a loud skip otherwise. Returns
/// whether the test should go on.
pub fn require_tool(test: &str, program: &str, package: &str) -> bool {
    if installed(program) {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs `{program}` (Debian package {package}), and CI is set");
    }
    eprintln!(
        "\n*** SKIPPED {test}: `{program}` is not installed (Debian package {package}) ***\n"
    );
    false
}
