//! The conntrack table on the real kernel, each test in its own network namespace: entries
//! created in every TCP state are dumped exactly as created and exactly as the `conntrack`
//! tool lists them; real TCP connections on loopback show up in the state their sockets are
//! in; the table size, the per-CPU statistics and the not-found / already-present errors
//! match what was done; a dump of thousands of entries, spanning many datagrams, returns each
//! exactly once.
//!
//! The tests need root (they skip loudly without it, and fail when `CI` is set) and the
//! `ip`, `sysctl` and `conntrack` programs.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use conntrack_codec::{Entry, Family, NewEntry, Protocol, Status, TcpState, Tuple};
use ctnetlink::{ConntrackSocket, DecoderPriority, tracking_switch};

/// Every state a TCP entry can be created in (all but `None`, which the kernel would treat
/// as a new connection, and `Other`, which is not a state).
fn creatable_states() -> Vec<TcpState> {
    let states: Vec<TcpState> = TcpState::ALL
        .into_iter()
        .filter(|state| *state != TcpState::None)
        .collect();
    assert_eq!(states.len(), 9);
    states
}

fn dump(socket: &mut ConntrackSocket, family: Option<Family>) -> Vec<Entry> {
    let mut entries = Vec::new();
    let summary = socket
        .dump(family, |decoded| {
            let decoded = decoded.expect("dumped entry decodes");
            assert!(decoded.attribute_errors.is_empty(), "{decoded:?}");
            entries.push(decoded.entry)
        })
        .expect("dump");
    assert_eq!(summary.parse_errors, 0);
    assert_eq!(summary.entries, entries.len() as u64);
    entries
}

/// One line of `conntrack -L -o extended`, e.g.
/// `ipv4 2 tcp 6 599 SYN_SENT src=.. dst=.. sport=.. dport=.. [UNREPLIED] src=.. .. mark=3 use=1`.
#[derive(Debug)]
struct Listed {
    family: Family,
    protocol: Protocol,
    timeout: u32,
    state: Option<String>,
    original: Tuple,
    reply: Tuple,
    assured: bool,
    unreplied: bool,
    mark: u32,
}

fn conntrack_list() -> Vec<Listed> {
    let output = testkit::run("conntrack", &["-L", "-o", "extended"]).expect("conntrack -L");
    output.lines().map(parse_listed).collect()
}

fn parse_listed(line: &str) -> Listed {
    let words: Vec<&str> = line.split_whitespace().collect();
    let family = match words[0] {
        "ipv4" => Family::Ipv4,
        "ipv6" => Family::Ipv6,
        other => panic!("family {other} in {line}"),
    };
    let protocol = Protocol(words[3].parse().expect("protocol number"));
    assert_eq!(Some(words[2]), protocol.name(), "{line}");
    let timeout = words[4].parse().expect("timeout");
    let state = (!words[5].contains('=')).then(|| words[5].to_string());
    let mut values: HashMap<&str, Vec<&str>> = HashMap::new();
    for word in &words[5..] {
        if let Some((key, value)) = word.split_once('=') {
            values.entry(key).or_default().push(value);
        }
    }
    let field = |key: &str, index: usize| -> &str {
        values
            .get(key)
            .and_then(|v| v.get(index))
            .unwrap_or_else(|| panic!("{key} in {line}"))
    };
    let tuple = |index| {
        let address = |key| field(key, index).parse::<IpAddr>().expect("address");
        let port = |key| field(key, index).parse::<u16>().expect("port");
        Tuple {
            src: address("src"),
            dst: address("dst"),
            protocol,
            layer4: conntrack_codec::Layer4::Ports {
                src: port("sport"),
                dst: port("dport"),
            },
        }
    };
    Listed {
        family,
        protocol,
        timeout,
        state,
        original: tuple(0),
        reply: tuple(1),
        assured: words.contains(&"[ASSURED]"),
        unreplied: words.contains(&"[UNREPLIED]"),
        mark: field("mark", 0).parse().expect("mark"),
    }
}

fn addresses(family: Family) -> (IpAddr, IpAddr) {
    match family {
        Family::Ipv4 => (
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
        ),
        Family::Ipv6 => (
            "2001:db8:1::1".parse().unwrap(),
            "2001:db8:2::9".parse().unwrap(),
        ),
    }
}

#[test]
fn entries_in_every_tcp_state_dump_as_created_and_as_conntrack_lists_them() {
    let Some(_ns) = testkit::enter("entries_in_every_tcp_state") else {
        return;
    };
    let mut socket = ConntrackSocket::open().unwrap();
    let mut created = Vec::new();
    for family in [Family::Ipv4, Family::Ipv6] {
        let (src, dst) = addresses(family);
        for (index, state) in creatable_states().into_iter().enumerate() {
            let index = u16::try_from(index).unwrap();
            let mut entry = NewEntry::tcp(
                Tuple::tcp(src, 40_000 + index, dst, 8000 + index),
                state,
                600 + 60 * u32::from(index),
            );
            entry.mark = Some(100 + u32::from(index));
            if index % 2 == 1 {
                entry.status = Status::SEEN_REPLY | Status::ASSURED;
            }
            socket.create(&entry).unwrap();
            created.push(entry);
        }
    }
    assert_eq!(created.len(), 18);

    let dumped = dump(&mut socket, None);
    let listed = conntrack_list();
    assert_eq!(
        dumped.len(),
        created.len(),
        "the dump holds exactly the entries"
    );
    assert_eq!(
        listed.len(),
        created.len(),
        "conntrack lists exactly the entries"
    );
    for want in &created {
        let family = Family::of(want.original.src);
        let matches: Vec<&Entry> = dumped
            .iter()
            .filter(|entry| entry.original == want.original)
            .collect();
        assert_eq!(matches.len(), 1, "{:?}", want.original);
        let got = matches[0];
        let state = want.tcp_state.unwrap();
        assert_eq!(got.family, family);
        assert_eq!(got.reply, Some(want.original.inverted()));
        assert_eq!(got.tcp_state, Some(state));
        assert_eq!(got.mark, want.mark);
        assert_eq!(got.zone, None);
        assert!(got.id.is_some());
        let status = got.status.unwrap();
        assert!(status.contains(Status::CONFIRMED));
        assert_eq!(
            status.contains(Status::ASSURED),
            want.status.contains(Status::ASSURED)
        );
        assert_eq!(
            status.contains(Status::SEEN_REPLY),
            want.status.contains(Status::SEEN_REPLY)
        );
        let timeout = got.timeout.unwrap();
        assert!(
            (want.timeout - 5..=want.timeout).contains(&timeout),
            "timeout {timeout} for {}",
            want.timeout
        );
        // Counters and timestamps are off by default in a new namespace.
        assert_eq!(got.counters_original, None);
        assert_eq!(got.timestamp, None);

        // The same entry as the conntrack tool decodes it.
        let tool: Vec<&Listed> = listed
            .iter()
            .filter(|line| line.original == got.original)
            .collect();
        assert_eq!(tool.len(), 1, "{:?}", got.original);
        let tool = tool[0];
        assert_eq!(tool.family, got.family);
        assert_eq!(tool.protocol, got.original.protocol);
        assert_eq!(Some(tool.reply), got.reply);
        assert_eq!(tool.state.as_deref(), Some(state.name()));
        assert_eq!(tool.assured, status.contains(Status::ASSURED));
        assert_eq!(tool.unreplied, !status.contains(Status::SEEN_REPLY));
        assert_eq!(Some(tool.mark), got.mark);
        assert!(tool.timeout.abs_diff(timeout) <= 2);
    }

    // Family filters.
    for family in [Family::Ipv4, Family::Ipv6] {
        let only = dump(&mut socket, Some(family));
        assert_eq!(only.len(), 9);
        assert!(only.iter().all(|entry| entry.family == family));
    }
}

/// Dumps until the entry with `original` is in `state`, for up to two seconds.
fn wait_for_state(socket: &mut ConntrackSocket, original: &Tuple, state: TcpState) -> Entry {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let found = dump(socket, None)
            .into_iter()
            .find(|entry| entry.original == *original);
        if let Some(entry) = &found
            && entry.tcp_state == Some(state)
        {
            return entry.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{original:?} not in {state:?}: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Closes `stream` with a reset instead of a FIN (`SO_LINGER` with a zero timeout).
fn abort(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid descriptor owned by `stream`, and a `linger` that outlives the call,
    // with its size.
    let result = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(result, 0, "{}", std::io::Error::last_os_error());
    drop(stream);
}

fn tuple_of(client: &TcpStream) -> Tuple {
    let local = client.local_addr().unwrap();
    let peer = client.peer_addr().unwrap();
    Tuple::tcp(local.ip(), local.port(), peer.ip(), peer.port())
}

#[test]
fn real_tcp_connections_on_loopback_appear_in_their_states() {
    let Some(_ns) = testkit::enter("real_tcp_connections") else {
        return;
    };
    for (key, value) in [("acct", "1"), ("timestamp", "1")] {
        let setting = format!("net.netfilter.nf_conntrack_{key}={value}");
        testkit::run("sysctl", &["-q", "-w", &setting]).unwrap();
    }
    tracking_switch::enable().expect("switch tracking on");
    let mut socket = ConntrackSocket::open().unwrap();
    let mut seen = 0;
    for address in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let listener = TcpListener::bind(SocketAddr::new(address, 0)).unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(b"request").unwrap();
        let mut buf = [0; 7];
        server.read_exact(&mut buf).unwrap();
        server.write_all(b"answer!").unwrap();
        client.read_exact(&mut buf).unwrap();
        let tuple = tuple_of(&client);

        let open = wait_for_state(&mut socket, &tuple, TcpState::Established);
        assert_eq!(open.family, Family::of(address));
        assert_eq!(open.reply, Some(tuple.inverted()));
        let status = open.status.unwrap();
        assert!(status.contains(Status::CONFIRMED | Status::SEEN_REPLY | Status::ASSURED));
        assert!(open.timeout.unwrap() > 400_000, "{:?}", open.timeout);
        // Handshake and one data segment each way, at least.
        let original = open.counters_original.expect("accounting is on");
        let reply = open.counters_reply.expect("accounting is on");
        assert!(original.packets >= 3 && original.bytes > 7, "{original:?}");
        assert!(reply.packets >= 2 && reply.bytes > 7, "{reply:?}");
        let start = open
            .timestamp
            .and_then(|t| t.start)
            .expect("timestamps are on");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        assert!(u128::from(start) <= now && now - u128::from(start) < 60_000_000_000);

        // The client closes first; the server acknowledges: CLOSE_WAIT.
        client.shutdown(Shutdown::Write).unwrap();
        wait_for_state(&mut socket, &tuple, TcpState::CloseWait);
        // The server closes too; the client's last ACK: TIME_WAIT.
        server.shutdown(Shutdown::Write).unwrap();
        wait_for_state(&mut socket, &tuple, TcpState::TimeWait);

        // A connection aborted with a reset: CLOSE. (A connection refused with a reset
        // would not do: the kernel drops an entry at once when a reset is its only reply.)
        let aborted = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_accepted, _) = listener.accept().unwrap();
        let aborted_tuple = tuple_of(&aborted);
        wait_for_state(&mut socket, &aborted_tuple, TcpState::Established);
        abort(aborted);
        let reset = wait_for_state(&mut socket, &aborted_tuple, TcpState::Close);
        assert!(reset.timeout.unwrap() <= 10, "{:?}", reset.timeout);
        seen += 1;
    }
    assert_eq!(seen, 2);
}

#[test]
fn table_size_counts_what_was_created_and_deleted() {
    let Some(_ns) = testkit::enter("table_size_counts") else {
        return;
    };
    let mut socket = ConntrackSocket::open().unwrap();
    let empty = socket.table_size().unwrap();
    assert_eq!(empty.entries, 0);
    assert!(empty.max_entries > 0);

    let (src, dst) = addresses(Family::Ipv4);
    let (src6, dst6) = addresses(Family::Ipv6);
    let tuples: Vec<Tuple> = (0..30)
        .map(|i| match i % 3 {
            0 => Tuple::tcp(src, 1000 + i, dst, 443),
            1 => Tuple::udp(src, 1000 + i, dst, 53),
            _ => Tuple::tcp(src6, 1000 + i, dst6, 443),
        })
        .collect();
    for tuple in &tuples {
        let entry = NewEntry {
            original: *tuple,
            reply: None,
            tcp_state: (tuple.protocol == Protocol::TCP).then_some(TcpState::Established),
            protocol_state: None,
            timeout: 300,
            status: Status::default(),
            mark: None,
            zone: None,
        };
        socket.create(&entry).unwrap();
    }
    let size = socket.table_size().unwrap();
    assert_eq!(size.entries, 30);
    assert_eq!(size.max_entries, empty.max_entries);
    assert_eq!(dump(&mut socket, None).len(), 30);

    // The same tuple again: already present, and nothing changes.
    let again = NewEntry::tcp(tuples[0], TcpState::SynSent, 10);
    let error = socket.create(&again).unwrap_err();
    assert!(error.is_already_present(), "{error}");
    assert!(!error.is_not_found());
    assert_eq!(socket.table_size().unwrap().entries, 30);

    for tuple in &tuples[..10] {
        socket.delete(tuple, None).unwrap();
    }
    assert_eq!(socket.table_size().unwrap().entries, 20);

    // Deleting what is gone: not found.
    let error = socket.delete(&tuples[0], None).unwrap_err();
    assert!(error.is_not_found(), "{error}");
    assert!(!error.is_already_present());
    // In another zone, the remaining tuples are absent too.
    let error = socket.delete(&tuples[10], Some(9)).unwrap_err();
    assert!(error.is_not_found(), "{error}");

    socket.flush(Some(Family::Ipv6)).unwrap();
    let remaining = dump(&mut socket, None);
    assert!(remaining.iter().all(|entry| entry.family == Family::Ipv4));
    assert_eq!(
        socket.table_size().unwrap().entries as usize,
        remaining.len()
    );
    assert_eq!(remaining.len(), 13, "20 left, 7 of them IPv6");
    socket.flush(None).unwrap();
    assert_eq!(socket.table_size().unwrap().entries, 0);
    assert!(dump(&mut socket, None).is_empty());
}

/// `conntrack -S`: `cpu=0 found=0 invalid=0 insert=2 insert_failed=0 ...`.
fn conntrack_stats() -> Vec<HashMap<String, u32>> {
    let output = testkit::run("conntrack", &["-S"]).expect("conntrack -S");
    output
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("key=value");
                    (key.to_string(), value.parse().expect("number"))
                })
                .collect()
        })
        .collect()
}

#[test]
fn cpu_stats_match_conntrack_and_count_inserts() {
    let Some(_ns) = testkit::enter("cpu_stats_match") else {
        return;
    };
    let mut socket = ConntrackSocket::open().unwrap();
    let (src, dst) = addresses(Family::Ipv4);
    for port in 0..12 {
        let entry = NewEntry::tcp(Tuple::tcp(src, port, dst, 80), TcpState::Established, 60);
        socket.create(&entry).unwrap();
    }
    let stats = socket.cpu_stats().unwrap();
    let tool = conntrack_stats();
    assert!(!stats.is_empty());
    assert_eq!(stats.len(), tool.len());
    for (ours, theirs) in stats.iter().zip(&tool) {
        let field = |name: &str| theirs[name];
        assert_eq!(u32::from(ours.cpu), field("cpu"));
        assert_eq!(ours.found, field("found"));
        assert_eq!(ours.invalid, field("invalid"));
        assert_eq!(ours.insert, field("insert"));
        assert_eq!(ours.insert_failed, field("insert_failed"));
        assert_eq!(ours.drop, field("drop"));
        assert_eq!(ours.early_drop, field("early_drop"));
        assert_eq!(ours.error, field("error"));
        assert_eq!(ours.search_restart, field("search_restart"));
        assert_eq!(ours.clash_resolve, field("clash_resolve"));
        assert_eq!(ours.chain_too_long, field("chaintoolong"));
    }
    let inserts: u32 = stats.iter().map(|cpu| cpu.insert).sum();
    assert_eq!(inserts, 12, "{stats:#?}");
}

#[test]
fn a_large_dump_spanning_many_datagrams_returns_every_entry_once() {
    let Some(_ns) = testkit::enter("large_dump") else {
        return;
    };
    let mut socket = ConntrackSocket::open().unwrap();
    let (src, dst) = addresses(Family::Ipv4);
    let (src6, dst6) = addresses(Family::Ipv6);
    const COUNT: u16 = 4000;
    for port in 0..COUNT {
        let tuple = if port % 2 == 0 {
            Tuple::tcp(src, port, dst, 443)
        } else {
            Tuple::tcp(src6, port, dst6, 443)
        };
        socket
            .create(&NewEntry::tcp(tuple, TcpState::Established, 600))
            .unwrap();
    }
    assert_eq!(socket.table_size().unwrap().entries, u32::from(COUNT));
    let entries = dump(&mut socket, None);
    assert_eq!(entries.len(), usize::from(COUNT));
    let mut ports: Vec<u16> = entries
        .iter()
        .map(|entry| entry.original.src_port().unwrap())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), usize::from(COUNT), "each entry exactly once");
    assert!(
        entries
            .iter()
            .all(|entry| entry.original.src_port().unwrap() % 2
                == u16::from(entry.family == Family::Ipv6))
    );

    // Received on this thread, decoded and handed over on another: the same entries, in the
    // same order.
    let mut overlapped = Vec::new();
    let summary = socket
        .dump_overlapped(None, DecoderPriority::Caller, |decoded| {
            overlapped.push(decoded.expect("dumped entry decodes").entry)
        })
        .expect("overlapped dump");
    assert_eq!(summary.entries, u64::from(COUNT));
    assert_eq!(summary.parse_errors, 0);
    // (Tuples: the timeouts count down between the two dumps.)
    let tuples = |entries: &[Entry]| -> Vec<Tuple> { entries.iter().map(|e| e.original).collect() };
    assert_eq!(tuples(&overlapped), tuples(&entries));
    // The same replies undecoded: several datagrams' worth of bytes.
    let bytes = socket.dump_undecoded(None).expect("undecoded dump");
    assert!(
        bytes > 64 * 1024 && bytes > u64::from(COUNT) * 100,
        "{bytes} bytes"
    );
    // The socket is ready for the next request after each of them.
    assert_eq!(socket.table_size().unwrap().entries, u32::from(COUNT));
}

#[test]
fn an_overlapped_dump_of_a_family_without_entries_ends() {
    let Some(_ns) = testkit::enter("overlapped_empty_dump") else {
        return;
    };
    let mut socket = ConntrackSocket::open().unwrap();
    let (src, dst) = addresses(Family::Ipv4);
    socket
        .create(&NewEntry::tcp(
            Tuple::tcp(src, 1, dst, 443),
            TcpState::Established,
            600,
        ))
        .unwrap();
    let mut seen = 0;
    let summary = socket
        .dump_overlapped(Some(Family::Ipv6), DecoderPriority::Caller, |_| seen += 1)
        .expect("overlapped dump");
    assert_eq!((summary.entries, seen), (0, 0));
    assert!(socket.dump_undecoded(Some(Family::Ipv6)).unwrap() > 0);
    let dumped = socket.dump_overlapped(None, DecoderPriority::Caller, |_| {});
    assert_eq!(dumped.unwrap().entries, 1);
}

/// The nice value of the calling thread.
fn own_nice() -> i32 {
    // SAFETY: reads the calling thread's nice value.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

#[test]
fn an_overlapped_dump_decodes_at_the_priority_asked_for() {
    let Some(_ns) = testkit::enter("overlapped_dump_priority") else {
        return;
    };
    let mut socket = ConntrackSocket::open().unwrap();
    for port in 1..=3 {
        let (src, dst) = addresses(Family::Ipv4);
        socket
            .create(&NewEntry::tcp(
                Tuple::tcp(src, port, dst, 443),
                TcpState::Established,
                600,
            ))
            .unwrap();
    }
    let caller = own_nice();
    assert!(caller <= 9, "the test runs at nice {caller}");
    for (priority, expected) in [
        (DecoderPriority::Caller, caller),
        (DecoderPriority::Lowered(10), caller + 10),
        (DecoderPriority::Lowered(200), 19),
    ] {
        let mut seen = Vec::new();
        let summary = socket
            .dump_overlapped(None, priority, |_| seen.push(own_nice()))
            .unwrap();
        assert_eq!(summary.entries, 3);
        assert_eq!(seen, [expected; 3], "{priority:?}");
        // The receiving thread, the caller's, keeps its priority.
        assert_eq!(own_nice(), caller, "{priority:?}");
    }
}
