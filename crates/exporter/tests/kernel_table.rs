//! The exporter's per-host numbers against the real kernel: real loopback connections to
//! several remote addresses (IPv4 and IPv6) in several states, and synthetic entries in every
//! TCP state for both families, created before and after the exporter starts. The scraped
//! opening / open / closing / closed numbers of every host must equal the kernel's table as
//! the `conntrack` tool lists it, exactly, with all four families shown for every host.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};

use common::{connect, create_tcp, start_exporter};
use conntrack_codec::{NewEntry, Status, TcpState, Tuple};
use ctnetlink::ConntrackSocket;
use testkit::{HostCounts, SEED_FAMILIES, address, show};

/// Opens real connections to the four `hosts`: two established ones to the first; one
/// established and one fully closed (TIME_WAIT) to the second; one established and one
/// half-closed (CLOSE_WAIT) to the third; one established, one reset (CLOSE) and one refused
/// (no entry: the kernel drops it at once) to the fourth. Returns the sockets to keep open.
fn real_connections(hosts: [IpAddr; 4]) -> Vec<TcpStream> {
    let mut keep = Vec::new();
    for (index, host) in hosts.into_iter().enumerate() {
        let listener = TcpListener::bind((host, 0)).unwrap();
        let (client, server) = connect(&listener);
        keep.extend([client, server]);
        match index {
            0 => {
                let (client, server) = connect(&listener);
                keep.extend([client, server]);
            }
            1 => {
                let (client, server) = connect(&listener);
                drop(client);
                drop(server);
            }
            2 => {
                let (client, mut server) = connect(&listener);
                client.shutdown(Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                server.read_to_end(&mut rest).unwrap();
                keep.extend([client, server]);
            }
            _ => {
                // Closing with unread data resets the connection.
                let (mut client, server) = connect(&listener);
                client.write_all(b"unread").unwrap();
                let mut byte = [0u8];
                let _ = server.peek(&mut byte).unwrap();
                drop(server);
                keep.push(client);
                // A refused connection leaves no entry behind.
                let closed = TcpListener::bind((host, 0)).unwrap();
                let closed_address = closed.local_addr().unwrap();
                drop(closed);
                let refused = TcpStream::connect(closed_address).unwrap_err();
                assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
            }
        }
    }
    keep
}

/// Hands out distinct source ports for synthetic entries.
struct Ports(u16);

impl Ports {
    fn next(&mut self) -> u16 {
        self.0 += 1;
        self.0
    }
}

/// One synthetic entry in every counted state from `src` to `dst`.
fn every_state(ports: &mut Ports, src: &str, dst: &str) {
    // Every named state but NONE is counted.
    for &state in &TcpState::ALL[1..] {
        create_tcp(src, ports.next(), dst, 443, state);
    }
}

#[test]
fn per_host_numbers_equal_the_kernel_table() {
    numbers_equal_the_kernel_table("per_host_numbers_equal_the_kernel_table", &[]);
}

/// The same numbers, summed over every other label, with every label on.
#[test]
fn per_host_numbers_equal_the_kernel_table_with_every_label() {
    let every = [
        "--labels",
        "host,direction,service_port,local_host,protocol,zone",
    ];
    numbers_equal_the_kernel_table(
        "per_host_numbers_equal_the_kernel_table_with_every_label",
        &every,
    );
}

/// Entries and connections as described at the top, with the exporter started with
/// `extra_args`.
fn numbers_equal_the_kernel_table(test_name: &str, extra_args: &[&str]) {
    let Some(_namespace) = testkit::enter(test_name) else {
        return;
    };
    let v4_hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"].map(address);
    let v6_hosts = ["fd00::2", "fd00::3", "fd00::4", "fd00::5"].map(address);
    for host in v6_hosts {
        let cidr = format!("{host}/128");
        testkit::run("ip", &["-6", "addr", "add", &cidr, "dev", "lo", "nodad"]).unwrap();
    }

    // Entries that exist before the exporter starts: it learns them from the initial dump.
    let mut ports = Ports(20000);
    every_state(&mut ports, "192.0.2.1", "198.51.100.1");
    for state in [TcpState::Established; 3]
        .into_iter()
        .chain([TcpState::TimeWait; 2])
    {
        create_tcp("192.0.2.1", ports.next(), "198.51.100.2", 80, state);
    }
    every_state(&mut ports, "2001:db8::1", "2001:db8::1:1");
    for state in [TcpState::SynRecv, TcpState::SynRecv, TcpState::Close] {
        create_tcp("2001:db8::1", ports.next(), "2001:db8::1:2", 80, state);
    }
    // Not counted: a TCP entry without a state, and a UDP entry.
    create_tcp(
        "192.0.2.1",
        ports.next(),
        "198.51.100.99",
        80,
        TcpState::None,
    );
    let udp = Tuple::udp(address("192.0.2.1"), 53, address("198.51.100.98"), 53);
    ConntrackSocket::open()
        .unwrap()
        .create(&NewEntry {
            original: udp,
            reply: None,
            tcp_state: None,
            protocol_state: None,
            timeout: 600,
            status: Status::default(),
            mark: None,
            zone: None,
        })
        .unwrap();

    let args = [&["--ensure-tracking"], extra_args].concat();
    let exporter = start_exporter(&args);

    // Entries and connections made while it runs: it learns them from events.
    every_state(&mut ports, "192.0.2.1", "198.51.100.3");
    create_tcp(
        "192.0.2.1",
        ports.next(),
        "198.51.100.1",
        80,
        TcpState::Established,
    );
    every_state(&mut ports, "2001:db8::1", "2001:db8::2:1");
    create_tcp(
        "2001:db8::1",
        ports.next(),
        "2001:db8::99",
        80,
        TcpState::None,
    );
    let _v4_connections = real_connections(v4_hosts);
    let _v6_connections = real_connections(v6_hosts);

    let counts = exporter.wait_until_kernel_table_matches(SEED_FAMILIES);

    // The comparison is not vacuous: the synthetic hosts carry the numbers they were given,
    // every real host is there with its open connection, uncounted entries are absent.
    let synthetic: HostCounts = [
        ("198.51.100.1", [3, 2, 4, 1]),
        ("198.51.100.2", [0, 3, 2, 0]),
        ("198.51.100.3", [3, 1, 4, 1]),
        ("2001:db8::1:1", [3, 1, 4, 1]),
        ("2001:db8::1:2", [2, 0, 0, 1]),
        ("2001:db8::2:1", [3, 1, 4, 1]),
    ]
    .into_iter()
    .map(|(host, counts)| (address(host), counts))
    .collect();
    for (host, expected) in &synthetic {
        assert_eq!(
            counts.get(host),
            Some(expected),
            "{host}: {}",
            show(&counts)
        );
    }
    for hosts in [v4_hosts, v6_hosts] {
        let real: Vec<[u64; 4]> = hosts
            .iter()
            .map(|host| counts.get(host).copied().unwrap_or_default())
            .collect();
        assert!(real.iter().all(|c| c[1] >= 1), "{hosts:?}: {real:?}");
        assert!(real[1][2] + real[2][2] >= 2, "closing: {hosts:?}: {real:?}");
        assert!(real[3][3] >= 1, "closed: {hosts:?}: {real:?}");
    }
    for host in ["198.51.100.99", "198.51.100.98", "2001:db8::99"].map(address) {
        assert!(!counts.contains_key(&host), "{host} is counted");
    }
    let scrape = exporter.scrape();
    let groups_seen = |group: usize| counts.values().filter(|c| c[group] > 0).count();
    assert!(
        (0..4).all(|group| groups_seen(group) > 0),
        "every state group occurs: {}",
        show(&counts)
    );
    assert!(
        scrape
            .value("conntrack_exporter_events_total", &[("type", "new")])
            .is_some_and(|new| new > 0.0),
        "entries created while running arrived as events"
    );
}
