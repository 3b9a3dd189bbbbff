//! Every protocol's state groups against the real kernel: real UDP on loopback (one flow
//! answered, one not), real TCP, and synthetic SCTP, DCCP and ICMP entries made through the
//! crate in every state. With `protocols = ["all"]` each host and protocol shows exactly the
//! groups its entries are in.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};

use conntrack_codec::{Layer4, NewEntry, Protocol, Status, Tuple};
use ctnetlink::ConntrackSocket;
use testkit::{SEED_FAMILIES, address, eventually};

/// Creates a synthetic entry with `original`, `reply` (the inverse when `None`), an SCTP or
/// DCCP `state` and `status`; the kernel's error when it refuses.
fn create(
    original: Tuple,
    reply: Option<Tuple>,
    state: Option<u8>,
    status: Status,
) -> Result<(), String> {
    let entry = NewEntry {
        original,
        reply,
        tcp_state: None,
        protocol_state: state,
        timeout: 600,
        status,
        mark: None,
        zone: None,
    };
    ConntrackSocket::open()
        .and_then(|mut table| table.create(&entry))
        .map_err(|error| format!("creating {entry:?}: {error}"))
}

/// A tuple of `protocol` with ports.
fn ports(protocol: Protocol, src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
    Tuple {
        protocol,
        ..Tuple::tcp(address(src), sport, address(dst), dport)
    }
}

/// An ICMP echo request from `src` to `dst` and its reply tuple.
fn echo(src: &str, dst: &str, id: u16) -> (Tuple, Tuple) {
    let tuple = |src, dst, kind| Tuple {
        src: address(src),
        dst: address(dst),
        protocol: Protocol::ICMP,
        layer4: Layer4::Icmp { id, kind, code: 0 },
    };
    (tuple(src, dst, 8), tuple(dst, src, 0))
}

/// Whether the kernel tracks DCCP states: it does when an entry created with a state is
/// dumped with it.
fn kernel_tracks_dccp(tuple: &Tuple) -> bool {
    let mut tracked = false;
    let mut table = ConntrackSocket::open().unwrap();
    table
        .dump(None, |entry| {
            let entry = entry.unwrap().entry;
            tracked |= entry.original == *tuple && entry.dccp_state.is_some();
        })
        .unwrap();
    tracked
}

#[test]
fn every_protocol_shows_its_groups() {
    let Some(_namespace) = testkit::enter("every_protocol_shows_its_groups") else {
        return;
    };
    // SCTP in every state (NONE is not counted): CLOSED, COOKIE_WAIT, COOKIE_ECHOED,
    // ESTABLISHED, SHUTDOWN_SENT, SHUTDOWN_RECD, SHUTDOWN_ACK_SENT, HEARTBEAT_SENT.
    for state in 0..=8 {
        let tuple = ports(
            Protocol::SCTP,
            "192.0.2.1",
            3000 + u16::from(state),
            "198.51.100.20",
            38412,
        );
        create(tuple, None, Some(state), Status::default()).unwrap();
    }
    // ICMP: one echo answered, two not.
    for (id, status) in [
        (1, Status::SEEN_REPLY),
        (2, Status::default()),
        (3, Status::default()),
    ] {
        let (original, reply) = echo("192.0.2.1", "198.51.100.22", id);
        create(original, Some(reply), None, status).unwrap();
    }
    let exporter = common::start_exporter(&[
        "--ensure-tracking",
        "--protocols",
        "all",
        "--labels",
        "host,protocol",
    ]);

    // DCCP in every state, as events: REQUEST, RESPOND, PARTOPEN, OPEN, CLOSEREQ, CLOSING,
    // TIMEWAIT. Kernels since 6.16 track DCCP as a protocol without ports or states: there
    // the one entry that can be made carries no state and is not counted.
    let dccp = |state: u8| {
        let sport = 4000 + u16::from(state);
        ports(Protocol::DCCP, "192.0.2.1", sport, "198.51.100.21", 5001)
    };
    create(dccp(1), None, Some(1), Status::default()).unwrap();
    let dccp_groups = if kernel_tracks_dccp(&dccp(1)) {
        for state in 2..=7 {
            create(dccp(state), None, Some(state), Status::default()).unwrap();
        }
        Some([3, 1, 3, 0])
    } else {
        eprintln!("NOTE: this kernel does not track DCCP states; the DCCP entry is not counted");
        None
    };

    // Real UDP on loopback: a datagram answered (open) and one not (opening).
    let server = UdpSocket::bind("127.0.0.3:0").unwrap();
    let silent = UdpSocket::bind("127.0.0.4:0").unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .send_to(b"ping", server.local_addr().unwrap())
        .unwrap();
    let mut buffer = [0u8; 16];
    let (_, from) = server.recv_from(&mut buffer).unwrap();
    server.send_to(b"pong", from).unwrap();
    client.recv_from(&mut buffer).unwrap();
    client
        .send_to(b"ping", silent.local_addr().unwrap())
        .unwrap();
    silent.recv_from(&mut buffer).unwrap();
    // Real TCP on loopback: one open connection.
    let listener = TcpListener::bind("127.0.0.5:0").unwrap();
    let _tcp = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let _accepted = listener.accept().unwrap();

    let mut expected: BTreeMap<(IpAddr, String), [u64; 4]> = [
        ("198.51.100.20", "sctp", [2, 2, 3, 1]),
        ("198.51.100.22", "icmp", [2, 1, 0, 0]),
        ("127.0.0.3", "udp", [0, 1, 0, 0]),
        ("127.0.0.4", "udp", [1, 0, 0, 0]),
        ("127.0.0.5", "tcp", [0, 1, 0, 0]),
    ]
    .into_iter()
    .map(|(host, protocol, counts)| ((address(host), protocol.to_owned()), counts))
    .collect();
    if let Some(groups) = dccp_groups {
        expected.insert((address("198.51.100.21"), "dccp".to_owned()), groups);
    }
    eventually("every protocol's groups equal its entries", || {
        let mut found = BTreeMap::new();
        for (labels, counts) in exporter.scrape().label_set_counts(SEED_FAMILIES)? {
            if counts.iter().all(|&count| count == 0) {
                continue;
            }
            let host = labels["host"].parse().map_err(|_| "not an address")?;
            found.insert((host, labels["protocol"].clone()), counts);
        }
        if found == expected {
            Ok(())
        } else {
            Err(format!("\n  expected {expected:?}\n  found    {found:?}"))
        }
    });
}
