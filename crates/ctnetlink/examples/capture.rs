//! Captures raw ctnetlink messages from the running kernel into the hex fixture files that
//! the parser tests and the parse benchmark decode.
//!
//! ```text
//! sudo cargo run -p ctnetlink --example capture -- crates/codec/tests/fixtures
//! ```
//!
//! It runs in a private network namespace (so it needs root) and plays a fixed scenario:
//! synthetic entries created over netlink with accounting off, then real TCP and UDP
//! connections on `127.0.0.1` and `::1` with accounting and timestamps on. It writes one
//! `.hex` file per kind of reply or per connection's events: one netlink message per line, as
//! received (padding included), with `#` comment lines above. Next to them it writes what the
//! `conntrack` tool printed for the same messages, as an independent decoding to check the
//! tests' expected values against. See `crates/codec/tests/fixtures/README.md`.
//!
//! The sockets of the crate hide the bytes they receive, so this program talks netlink through
//! `mnl` directly and uses the codec only to build requests and to sort the captured events.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::UdpSocket;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use conntrack_codec::{EntryMessage, Message, NewEntry, Status, TcpState, Tuple, request};

/// Groups `NEW | UPDATE | DESTROY` in the legacy bitmask form.
const ALL_EVENT_GROUPS: u32 = 0x7;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const CT_GET_STATS: u16 = 0x105;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let output = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "crates/codec/tests/fixtures".into()),
    );
    std::fs::create_dir_all(&output)?;
    let Some(_namespace) = testkit::enter("capture") else {
        return Err("the capture needs root for its private network namespace".into());
    };
    let mut capture = Capture::new(output)?;
    capture.run()?;
    Ok(())
}

/// One captured file: comment lines and netlink messages.
#[derive(Default)]
struct Fixture {
    comments: Vec<String>,
    messages: Vec<Vec<u8>>,
}

struct Capture {
    output: PathBuf,
    requests: mnl::Socket,
    events: mnl::Socket,
    sequence: u32,
    buffer: Vec<u8>,
    fixtures: BTreeMap<&'static str, Fixture>,
    monitor: Option<Child>,
}

impl Capture {
    fn new(output: PathBuf) -> io::Result<Capture> {
        let requests = mnl::Socket::new(mnl::Bus::Netfilter)?;
        let events = mnl::Socket::open(mnl::Bus::Netfilter)?;
        events.bind(ALL_EVENT_GROUPS, mnl::mnl_sys::MNL_SOCKET_AUTOPID)?;
        Ok(Capture {
            output,
            requests,
            events,
            sequence: 0,
            buffer: vec![0; 256 * 1024],
            fixtures: BTreeMap::new(),
            monitor: None,
        })
    }

    fn run(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        sysctl("net.netfilter.nf_conntrack_acct", "0")?;
        sysctl("net.netfilter.nf_conntrack_timestamp", "0")?;
        self.monitor = Some(
            Command::new("conntrack")
                .args(["-E", "-o", "extended,id"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()?,
        );
        sleep(Duration::from_millis(300));

        // Synthetic entries, accounting and timestamps off.
        let v4 = |last| IpAddr::V4(Ipv4Addr::new(192, 0, 2, last));
        let v6 = |last| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last));
        let mut tcp = NewEntry::tcp(
            Tuple::tcp(v4(1), 40001, v4(2), 443),
            TcpState::Established,
            3600,
        );
        tcp.mark = Some(7);
        tcp.status = Status::SEEN_REPLY | Status::ASSURED;
        let udp = NewEntry {
            original: Tuple::udp(v6(1), 40002, v6(2), 53),
            reply: None,
            tcp_state: None,
            protocol_state: None,
            timeout: 1800,
            status: Status::default(),
            mark: None,
            zone: Some(3),
        };
        let sequence = self.next_sequence();
        self.request(
            "ack",
            "reply to a create request (NLM_F_ACK)",
            request::create(sequence, &tcp),
        )?;
        self.events_into("events_synthetic")?;
        let sequence = self.next_sequence();
        self.request(
            "error_exists",
            "reply to a second create of the same tuple (EEXIST)",
            request::create(sequence, &tcp),
        )?;
        let sequence = self.next_sequence();
        self.request("ack", "", request::create(sequence, &udp))?;
        self.events_into("events_synthetic")?;
        // An UPDATE: the mark changes.
        run(
            "conntrack",
            &["-U", "-p", "tcp", "-s", "192.0.2.1", "-m", "42"],
        )?;
        self.events_into("events_synthetic")?;
        let missing = Tuple::tcp(v4(9), 1, v4(10), 2);
        let sequence = self.next_sequence();
        self.request(
            "error_not_found",
            "reply to a delete of an absent tuple (ENOENT)",
            request::delete(sequence, &missing, None),
        )?;

        // Real connections, accounting and timestamps on.
        sysctl("net.netfilter.nf_conntrack_acct", "1")?;
        sysctl("net.netfilter.nf_conntrack_timestamp", "1")?;
        ctnetlink::tracking_switch::enable()?;
        let localhost4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let localhost6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let tcp4 = TcpPair::open(localhost4)?;
        self.events_into("events_tcp_ipv4")?;
        let tcp6 = TcpPair::open(localhost6)?;
        self.events_into("events_tcp_ipv6")?;
        let udp4 = udp_exchange(localhost4)?;
        self.events_into("events_udp_ipv4")?;
        let udp6 = udp_exchange(localhost6)?;
        self.events_into("events_udp_ipv6")?;

        let sequence = self.next_sequence();
        let listing = run("conntrack", &["-L", "-o", "extended,id,ktimestamp"])?;
        self.request(
            "dump",
            "reply to a dump of all families (two synthetic entries, four real ones)",
            request::dump(sequence, None),
        )?;
        self.comment(
            "dump",
            "conntrack -L -o extended,id,ktimestamp, just before:",
        );
        for line in listing.lines() {
            self.comment("dump", line);
        }
        let sequence = self.next_sequence();
        self.request(
            "table_size",
            "reply to IPCTNL_MSG_CT_GET_STATS (6 entries)",
            request::table_size(sequence),
        )?;
        let sequence = self.next_sequence();
        let stats = run("conntrack", &["-S"])?;
        self.request(
            "cpu_stats",
            "reply to a dump of IPCTNL_MSG_CT_GET_STATS_CPU",
            request::cpu_stats(sequence),
        )?;
        self.comment("cpu_stats", "conntrack -S, just after:");
        for line in stats.lines() {
            self.comment("cpu_stats", line);
        }

        // Close the TCP connections, then delete everything: UPDATE and DESTROY events.
        let (tcp4, tcp6) = (tcp4.close()?, tcp6);
        self.events_into("events_tcp_ipv4")?;
        let tcp6 = tcp6.close()?;
        self.events_into("events_tcp_ipv6")?;
        for (name, tuple) in [
            ("events_tcp_ipv4", tcp4),
            ("events_tcp_ipv6", tcp6),
            ("events_udp_ipv4", udp4),
            ("events_udp_ipv6", udp6),
            ("events_synthetic", tcp.original),
        ] {
            let sequence = self.next_sequence();
            self.request("ack", "", request::delete(sequence, &tuple, None))?;
            self.events_into(name)?;
        }
        let sequence = self.next_sequence();
        self.request("ack", "", request::delete(sequence, &udp.original, Some(3)))?;
        self.events_into("events_synthetic")?;

        let monitor = self.monitor.take().expect("monitor started");
        let log = stop_monitor(monitor)?;
        std::fs::write(self.output.join("events.conntrack.txt"), log)?;
        self.describe_events();
        self.write()?;
        Ok(())
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence += 1;
        self.sequence
    }

    fn comment(&mut self, name: &'static str, text: &str) {
        if !text.is_empty() {
            self.fixtures
                .entry(name)
                .or_default()
                .comments
                .push(text.into());
        }
    }

    /// Sends `request` and stores every reply message under `name` (only the first reply for
    /// an acknowledgement, which several requests share).
    fn request(&mut self, name: &'static str, what: &str, request: Vec<u8>) -> io::Result<()> {
        self.comment(name, what);
        self.requests.send(&request)?;
        let keep = name != "ack"
            || self
                .fixtures
                .get("ack")
                .is_none_or(|f| f.messages.is_empty());
        loop {
            let received = self.requests.recv_raw(aligned(&mut self.buffer))?;
            let mut finished = false;
            for message in split(&aligned(&mut self.buffer)[..received]) {
                let kind = u16::from_ne_bytes([message[4], message[5]]);
                // The table size reply is a single message, neither ended nor acknowledged.
                finished |= kind == NLMSG_DONE || kind == NLMSG_ERROR || kind == CT_GET_STATS;
                if name == "ack"
                    && let Ok(Message::Error(errno)) = conntrack_codec::parse_message(message)
                {
                    return Err(io::Error::from_raw_os_error(errno));
                }
                if keep {
                    self.fixtures
                        .entry(name)
                        .or_default()
                        .messages
                        .push(message.to_vec());
                }
            }
            if finished {
                return Ok(());
            }
        }
    }

    /// Reads the events that are queued, waiting up to 300 ms for stragglers.
    fn events_into(&mut self, name: &'static str) -> io::Result<()> {
        while readable(&self.events, 300)? {
            let received = self.events.recv_raw(aligned(&mut self.buffer))?;
            for message in split(&aligned(&mut self.buffer)[..received]) {
                self.fixtures
                    .entry(name)
                    .or_default()
                    .messages
                    .push(message.to_vec());
            }
        }
        Ok(())
    }

    /// Adds a summary line per event, as decoded by this crate, to each event fixture.
    fn describe_events(&mut self) {
        for (name, fixture) in &mut self.fixtures {
            if !name.starts_with("events") {
                continue;
            }
            fixture
                .comments
                .insert(0, format!("{name}: one event per line, in arrival order"));
            for (index, bytes) in fixture.messages.iter().enumerate() {
                let text = match conntrack_codec::parse_message(bytes) {
                    Ok(Message::Entry(EntryMessage { kind, entry, .. })) => format!(
                        "{index}: {kind:?} {:?} {:?} state={:?}",
                        entry.original.src, entry.original.layer4, entry.tcp_state
                    ),
                    other => format!("{index}: {other:?}"),
                };
                fixture.comments.push(text);
            }
        }
    }

    fn write(&self) -> io::Result<()> {
        for (name, fixture) in &self.fixtures {
            let mut text = String::new();
            for comment in &fixture.comments {
                let _ = writeln!(text, "# {comment}");
            }
            for message in &fixture.messages {
                for byte in message {
                    let _ = write!(text, "{byte:02x}");
                }
                text.push('\n');
            }
            let path = self.output.join(format!("{name}.hex"));
            std::fs::write(&path, text)?;
            println!("{}: {} messages", path.display(), fixture.messages.len());
        }
        Ok(())
    }
}

/// The part of `buffer` that starts at a 4-byte boundary, as `mnl` requires.
fn aligned(buffer: &mut [u8]) -> &mut [u8] {
    let offset = buffer.as_ptr().align_offset(4);
    &mut buffer[offset..]
}

/// Splits a received buffer into its netlink messages, each with its trailing padding.
fn split(mut buffer: &[u8]) -> Vec<&[u8]> {
    let mut messages = Vec::new();
    while buffer.len() >= 16 {
        let length = u32::from_ne_bytes(buffer[..4].try_into().expect("4 bytes")) as usize;
        let padded = ((length + 3) & !3).min(buffer.len());
        if length < 16 {
            break;
        }
        messages.push(&buffer[..padded]);
        buffer = &buffer[padded..];
    }
    messages
}

fn readable(socket: &mnl::Socket, timeout_ms: i32) -> io::Result<bool> {
    let mut poll = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, and its count, for the duration of the call.
    let ready = unsafe { libc::poll(&mut poll, 1, timeout_ms) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ready > 0)
}

fn run(program: &str, args: &[&str]) -> io::Result<String> {
    testkit::run(program, args)
}

fn sysctl(key: &str, value: &str) -> io::Result<()> {
    run("sysctl", &["-q", "-w", &format!("{key}={value}")]).map(drop)
}

fn stop_monitor(mut monitor: Child) -> io::Result<String> {
    sleep(Duration::from_millis(300));
    let pid = libc::pid_t::try_from(monitor.id()).expect("pid fits");
    // SAFETY: signals the child this program started; conntrack exits cleanly on SIGINT.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let mut log = String::new();
    monitor
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_string(&mut log)?;
    monitor.wait()?;
    Ok(log)
}

/// A TCP connection on loopback with some data exchanged in both directions.
struct TcpPair {
    client: TcpStream,
    server: TcpStream,
    tuple: Tuple,
}

impl TcpPair {
    fn open(address: IpAddr) -> io::Result<TcpPair> {
        let listener = TcpListener::bind(SocketAddr::new(address, 8080))?;
        let mut client = TcpStream::connect(listener.local_addr()?)?;
        let (mut server, _) = listener.accept()?;
        client.write_all(b"hello")?;
        let mut buf = [0; 16];
        server.read_exact(&mut buf[..5])?;
        server.write_all(b"welcome!")?;
        client.read_exact(&mut buf[..8])?;
        let local = client.local_addr()?;
        let tuple = Tuple::tcp(local.ip(), local.port(), address, 8080);
        Ok(TcpPair {
            client,
            server,
            tuple,
        })
    }

    /// The client closes first: FIN_WAIT, then LAST_ACK and TIME_WAIT.
    fn close(self) -> io::Result<Tuple> {
        self.client.shutdown(Shutdown::Write)?;
        sleep(Duration::from_millis(100));
        self.server.shutdown(Shutdown::Write)?;
        sleep(Duration::from_millis(100));
        drop(self.client);
        drop(self.server);
        Ok(self.tuple)
    }
}

/// One UDP datagram each way between two loopback sockets; returns the original tuple.
fn udp_exchange(address: IpAddr) -> io::Result<Tuple> {
    let server = UdpSocket::bind(SocketAddr::new(address, 5353))?;
    let client = UdpSocket::bind(SocketAddr::new(address, 0))?;
    client.send_to(b"ping", server.local_addr()?)?;
    let mut buf = [0; 16];
    let (_, peer) = server.recv_from(&mut buf)?;
    server.send_to(b"pong!", peer)?;
    client.recv_from(&mut buf)?;
    let local = client.local_addr()?;
    Ok(Tuple::udp(local.ip(), local.port(), address, 5353))
}
