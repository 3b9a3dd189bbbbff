//! Conntrack events on the real kernel, each test in its own network namespace: entries that
//! are created, changed and deleted arrive as NEW, UPDATE and DESTROY with the right tuples,
//! a real TCP handshake arrives as its state changes, the groups subscribed to are the ones
//! delivered, and a burst that overflows a small receive queue is reported as lost events.
//!
//! The tests need root (they skip loudly without it, and fail when `CI` is set) and the
//! `ip` and `conntrack` programs.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use conntrack_codec::{
    Entry, EntryKind, EntryMessage, NewEntry, ParseError, Protocol, Status, TcpState, Tuple,
};
use ctnetlink::{ConntrackSocket, EventGroups, EventSocket, Received, tracking_switch};

/// Events received so far on one socket.
struct Events {
    socket: EventSocket,
    received: Vec<(EntryKind, Entry)>,
}

impl Events {
    fn subscribe(groups: EventGroups) -> Events {
        let socket = EventSocket::subscribe(groups).expect("subscribe");
        socket.set_nonblocking(true).unwrap();
        Events {
            socket,
            received: Vec::new(),
        }
    }

    /// Reads what is queued now; panics on lost events.
    fn drain(&mut self) {
        loop {
            let received = &mut self.received;
            let outcome = self
                .socket
                .receive(|event| received.push(whole(event)))
                .expect("receive");
            match outcome {
                Received::Messages(_) => {}
                Received::WouldBlock => return,
                Received::EventsLost => panic!("events lost"),
            }
        }
    }

    /// Reads until `done` holds for the events received so far, for up to five seconds.
    fn wait_until(&mut self, what: &str, done: impl Fn(&[(EntryKind, Entry)]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.drain();
            if done(&self.received) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received: {:#?}",
                self.received
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The events about the connection whose original tuple is `tuple`, in arrival order.
    fn of(&self, tuple: &Tuple) -> Vec<&(EntryKind, Entry)> {
        self.received
            .iter()
            .filter(|(_, entry)| entry.original == *tuple)
            .collect()
    }

    fn has(&self, tuple: &Tuple, kind: EntryKind) -> bool {
        self.of(tuple).iter().any(|(k, _)| *k == kind)
    }
}

/// The kind and entry of an event that decoded whole, as the kernel sends them.
fn whole(event: Result<EntryMessage, ParseError>) -> (EntryKind, Entry) {
    let event = event.expect("event decodes");
    assert!(event.attribute_errors.is_empty(), "{event:?}");
    (event.kind, event.entry)
}

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
}

/// A loopback TCP connection with one exchange each way; returns its original tuple.
fn connect(address: IpAddr) -> (Tuple, TcpStream, TcpStream) {
    let listener = TcpListener::bind(SocketAddr::new(address, 0)).unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"ping").unwrap();
    let mut buf = [0; 4];
    server.read_exact(&mut buf).unwrap();
    server.write_all(b"pong").unwrap();
    client.read_exact(&mut buf).unwrap();
    let local = client.local_addr().unwrap();
    let peer = client.peer_addr().unwrap();
    let tuple = Tuple::tcp(local.ip(), local.port(), peer.ip(), peer.port());
    (tuple, client, server)
}

#[test]
fn new_update_and_destroy_arrive_with_the_right_tuples() {
    let Some(_ns) = testkit::enter("new_update_and_destroy") else {
        return;
    };
    tracking_switch::enable().expect("switch tracking on");
    let mut events = Events::subscribe(EventGroups::ALL);
    events.socket.set_receive_queue(1 << 20).unwrap();
    let mut only_destroy = Events::subscribe(EventGroups {
        new: false,
        update: false,
        destroy: true,
    });
    let mut socket = ConntrackSocket::open().unwrap();

    // Synthetic entries: NEW.
    let tcp = Tuple::tcp(v4(1), 40001, v4(2), 443);
    let udp = Tuple::udp(v6(1), 40002, v6(2), 53);
    let mut tcp_entry = NewEntry::tcp(tcp, TcpState::SynSent, 300);
    tcp_entry.mark = Some(1);
    socket.create(&tcp_entry).unwrap();
    let udp_entry = NewEntry {
        original: udp,
        reply: None,
        tcp_state: None,
        protocol_state: None,
        timeout: 300,
        status: Status::default(),
        mark: Some(2),
        zone: None,
    };
    socket.create(&udp_entry).unwrap();
    events.wait_until("two NEW events", |received| {
        received
            .iter()
            .filter(|(k, _)| *k == EntryKind::New)
            .count()
            >= 2
    });
    for (tuple, state, mark) in [(tcp, Some(TcpState::SynSent), 1), (udp, None, 2)] {
        let of = events.of(&tuple);
        assert_eq!(of.len(), 1, "{of:#?}");
        let (kind, entry) = of[0];
        assert_eq!(*kind, EntryKind::New);
        assert_eq!(entry.reply, Some(tuple.inverted()));
        assert_eq!(entry.tcp_state, state);
        assert_eq!(entry.mark, Some(mark));
        assert_eq!(entry.timeout, Some(300));
        assert!(entry.status.unwrap().contains(Status::CONFIRMED));
        assert!(entry.id.is_some());
    }

    // A changed mark: UPDATE.
    testkit::run(
        "conntrack",
        &["-U", "-p", "tcp", "-s", "192.0.2.1", "-m", "42"],
    )
    .unwrap();
    testkit::run(
        "conntrack",
        &["-U", "-p", "udp", "-s", "2001:db8::1", "-m", "43"],
    )
    .unwrap();
    events.wait_until("two UPDATE events", |received| {
        received
            .iter()
            .filter(|(k, _)| *k == EntryKind::Update)
            .count()
            >= 2
    });
    for (tuple, mark) in [(tcp, 42), (udp, 43)] {
        let of = events.of(&tuple);
        let (kind, entry) = of.last().unwrap();
        assert_eq!(*kind, EntryKind::Update);
        assert_eq!(entry.mark, Some(mark));
        assert_eq!(entry.reply, Some(tuple.inverted()));
        assert_eq!(entry.id, of[0].1.id);
    }

    // Real connections: NEW in SYN_SENT, then UPDATEs through SYN_RECV to ESTABLISHED.
    let mut connections = Vec::new();
    for address in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let (tuple, client, server) = connect(address);
        events.wait_until("a TCP handshake", |received| {
            received.iter().any(|(kind, entry)| {
                *kind == EntryKind::Update
                    && entry.original == tuple
                    && entry.tcp_state == Some(TcpState::Established)
            })
        });
        let of = events.of(&tuple);
        assert_eq!(of[0].0, EntryKind::New);
        let states: Vec<TcpState> = of.iter().filter_map(|(_, e)| e.tcp_state).collect();
        assert_eq!(
            states,
            [TcpState::SynSent, TcpState::SynRecv, TcpState::Established]
        );
        assert!(of[1..].iter().all(|(kind, _)| *kind == EntryKind::Update));
        assert!(of.iter().all(|(_, e)| e.reply == Some(tuple.inverted())));
        let established = &of.last().unwrap().1;
        assert!(established.status.unwrap().contains(Status::ASSURED));
        connections.push((tuple, client, server));
    }

    // Deleted: DESTROY, on both subscriptions.
    let mut all = vec![tcp, udp];
    all.extend(connections.iter().map(|(tuple, _, _)| *tuple));
    for tuple in &all {
        socket.delete(tuple, None).unwrap();
    }
    events.wait_until("four DESTROY events", |received| {
        received
            .iter()
            .filter(|(k, _)| *k == EntryKind::Destroy)
            .count()
            >= 4
    });
    only_destroy.wait_until("four DESTROY events", |received| received.len() >= 4);
    for tuple in &all {
        let of = events.of(tuple);
        assert!(of.len() >= 2, "{of:#?}");
        assert_eq!(of.first().unwrap().0, EntryKind::New);
        assert_eq!(of.last().unwrap().0, EntryKind::Destroy);
        assert!(
            of[1..of.len() - 1]
                .iter()
                .all(|(k, _)| *k == EntryKind::Update)
        );
        let destroyed = &of.last().unwrap().1;
        assert_eq!(destroyed.reply, Some(tuple.inverted()));
        assert_eq!(destroyed.id, of[0].1.id);
        assert!(only_destroy.has(tuple, EntryKind::Destroy));
    }
    assert_eq!(events.received.len(), 2 + 2 + 2 * 3 + 4);
    // The other subscription got nothing but the DESTROY events.
    only_destroy.drain();
    assert_eq!(only_destroy.received.len(), 4);
    assert!(
        only_destroy
            .received
            .iter()
            .all(|(kind, _)| *kind == EntryKind::Destroy)
    );
}

#[test]
fn a_burst_that_overflows_a_small_queue_reports_lost_events() {
    let Some(_ns) = testkit::enter("burst_overflows_queue") else {
        return;
    };
    let mut events = Events::subscribe(EventGroups::ALL);
    let queue = events.socket.set_receive_queue(4096).unwrap();
    assert!(queue.forced, "running as root, SO_RCVBUFFORCE is allowed");
    assert!(queue.bytes < 64 * 1024, "{queue:?}");
    let mut socket = ConntrackSocket::open().unwrap();

    // A few thousand entries, without reading a single event.
    const BURST: u16 = 3000;
    for port in 0..BURST {
        let tuple = Tuple::tcp(v4(1), 10_000 + port, v4(2), 80);
        socket
            .create(&NewEntry::tcp(tuple, TcpState::Established, 600))
            .unwrap();
    }
    assert_eq!(socket.table_size().unwrap().entries, u32::from(BURST));

    let mut lost = 0;
    let mut delivered = 0;
    for _ in 0..10 * usize::from(BURST) {
        let outcome = events
            .socket
            .receive(|event| {
                let (kind, entry) = whole(event);
                assert_eq!(kind, EntryKind::New);
                assert_eq!(entry.original.protocol, Protocol::TCP);
            })
            .unwrap();
        match outcome {
            Received::EventsLost => lost += 1,
            Received::Messages(count) => delivered += count,
            Received::WouldBlock => break,
        }
    }
    assert!(lost >= 1, "no loss reported; {delivered} events delivered");
    assert!(delivered < usize::from(BURST), "{delivered} delivered");

    // Once the loss is reported and the queue drained, events flow again.
    let tuple = Tuple::udp(v4(3), 5000, v4(4), 53);
    let entry = NewEntry {
        original: tuple,
        reply: None,
        tcp_state: None,
        protocol_state: None,
        timeout: 60,
        status: Status::default(),
        mark: None,
        zone: None,
    };
    socket.create(&entry).unwrap();
    events.wait_until("the NEW event after the loss", |received| {
        received
            .iter()
            .any(|(kind, entry)| *kind == EntryKind::New && entry.original == tuple)
    });
}

#[test]
fn events_are_read_in_batches_whole_and_in_order() {
    let Some(_ns) = testkit::enter("events_in_batches") else {
        return;
    };
    let mut events = EventSocket::subscribe(EventGroups::ALL).expect("subscribe");
    events.set_receive_queue(8 << 20).unwrap();
    let mut socket = ConntrackSocket::open().unwrap();
    let tuple = |port: u16| Tuple::tcp(v4(1), port, v4(2), 80);
    let create = |socket: &mut ConntrackSocket, port| {
        socket
            .create(&NewEntry::tcp(tuple(port), TcpState::Established, 600))
            .unwrap()
    };

    // A blocking read returns as soon as one event is queued; it does not wait for a full
    // batch. Should it wait anyway, a helper thread (in the same namespace) queues more
    // events after a while, and the checks below fail instead of the test hanging.
    create(&mut socket, 1);
    let (read_done, done) = std::sync::mpsc::channel::<()>();
    let helper = std::thread::spawn(move || {
        if done.recv_timeout(Duration::from_secs(3)).is_ok() {
            return;
        }
        let mut socket = ConntrackSocket::open().unwrap();
        for port in 2..200 {
            let tuple = Tuple::tcp(v4(3), port, v4(4), 80);
            let _ = socket.create(&NewEntry::tcp(tuple, TcpState::Established, 600));
        }
    });
    let started = Instant::now();
    let mut first = Vec::new();
    let outcome = events.receive(|event| first.push(whole(event))).unwrap();
    let _ = read_done.send(());
    assert_eq!(outcome, Received::Messages(1));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the read waited"
    );
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, EntryKind::New);
    assert_eq!(first[0].1.original, tuple(1));
    helper.join().unwrap();
    socket.flush(None).unwrap();

    // A queued burst arrives whole, in order, at up to 64 events per read.
    events.set_nonblocking(true).unwrap();
    while events.receive(|_| {}).unwrap() != Received::WouldBlock {}
    const BURST: u16 = 1000;
    for port in 1000..1000 + BURST {
        create(&mut socket, port);
    }
    let mut received = Vec::new();
    let mut reads = Vec::new();
    loop {
        let outcome = events.receive(|event| received.push(whole(event))).unwrap();
        match outcome {
            Received::Messages(count) => reads.push(count),
            Received::WouldBlock => break,
            Received::EventsLost => panic!("events lost"),
        }
    }
    let ports: Vec<u16> = received
        .iter()
        .inspect(|(kind, _)| assert_eq!(*kind, EntryKind::New))
        .map(|(_, entry)| entry.original.src_port().unwrap())
        .collect();
    assert_eq!(ports, (1000..1000 + BURST).collect::<Vec<_>>());
    assert_eq!(reads.iter().sum::<usize>(), usize::from(BURST));
    assert_eq!(reads.len(), usize::from(BURST).div_ceil(64), "{reads:?}");
    assert!(reads.iter().all(|&count| count <= 64), "{reads:?}");
}

#[test]
fn a_blocking_socket_waits_at_most_its_timeout_and_queued_reads_never_wait() {
    let Some(_ns) = testkit::enter("receive_timeout") else {
        return;
    };
    let mut socket = EventSocket::subscribe(EventGroups::ALL).expect("subscribe");
    socket
        .set_receive_timeout(Duration::from_millis(100))
        .expect("timeout");
    let mut received = Vec::new();

    // Nothing queued: the blocking read gives up after its timeout instead of hanging, and
    // the queued read does not wait at all.
    let outcome = socket
        .receive(|event| received.push(event))
        .expect("receive");
    assert_eq!(outcome, Received::WouldBlock);
    let outcome = socket
        .receive_queued(|event| received.push(event))
        .expect("receive");
    assert_eq!(outcome, Received::WouldBlock);
    assert!(received.is_empty());

    // Queued events are handed over by both.
    let mut table = ConntrackSocket::open().expect("open");
    for last in 1..=2 {
        let tuple = Tuple::tcp(v4(last), 4000, v4(100), 80);
        table
            .create(&NewEntry::tcp(tuple, TcpState::Established, 60))
            .expect("create");
    }
    let outcome = socket
        .receive_queued(|event| received.push(event))
        .expect("receive");
    assert_eq!(outcome, Received::Messages(2));
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|event| matches!(
        event,
        Ok(EntryMessage {
            kind: EntryKind::New,
            ..
        })
    )));
}

#[test]
fn a_protocol_filter_keeps_every_event_of_the_counted_protocols_and_drops_the_rest() {
    let Some(_ns) = testkit::enter("protocol_filter") else {
        return;
    };
    let mut filtered = Events::subscribe(EventGroups::ALL);
    let program = conntrack_codec::event_filter::protocol_filter(&[Protocol::TCP, Protocol::SCTP])
        .expect("a program");
    filtered.socket.set_filter(Some(&program)).expect("attach");
    let mut everything = Events::subscribe(EventGroups::ALL);
    for socket in [&filtered.socket, &everything.socket] {
        socket.set_receive_queue(4 << 20).unwrap();
    }
    let mut socket = ConntrackSocket::open().unwrap();
    // TCP and UDP over IPv4 and IPv6, in a zone and not: NEW, then DESTROY.
    let mut tuples = Vec::new();
    for index in 0..200u16 {
        let (src, dst) = if index % 2 == 0 {
            (v4(1), v4(2))
        } else {
            (v6(1), v6(2))
        };
        let tuple = if index % 3 == 0 {
            Tuple::tcp(src, 10_000 + index, dst, 443)
        } else {
            Tuple::udp(src, 10_000 + index, dst, 53)
        };
        let mut entry = NewEntry::tcp(tuple, TcpState::Established, 300);
        if tuple.protocol == Protocol::UDP {
            entry.tcp_state = None;
        }
        entry.zone = (index % 5 == 0).then_some(7);
        socket.create(&entry).unwrap();
        tuples.push((tuple, entry.zone));
    }
    for (tuple, zone) in &tuples {
        socket.delete(tuple, *zone).unwrap();
    }
    // Every event reaches the unfiltered socket; the filtered one has received by then what
    // it will receive.
    everything.wait_until("every NEW and DESTROY", |received| received.len() >= 400);
    filtered.drain();
    let tcp = |events: &Events| {
        let mut tcp: Vec<(EntryKind, Tuple)> = events
            .received
            .iter()
            .filter(|(_, entry)| entry.original.protocol == Protocol::TCP)
            .map(|(kind, entry)| (*kind, entry.original))
            .collect();
        tcp.sort_by_key(|(kind, tuple)| (format!("{kind:?}"), format!("{tuple:?}")));
        tcp
    };
    assert_eq!(
        tcp(&filtered).len(),
        2 * 67,
        "one NEW and one DESTROY per TCP entry"
    );
    assert_eq!(tcp(&filtered), tcp(&everything));
    assert!(
        filtered
            .received
            .iter()
            .all(|(_, entry)| entry.original.protocol == Protocol::TCP),
        "no UDP event passes"
    );

    // Without the filter, the same socket gets UDP events again.
    filtered.socket.set_filter(None).expect("detach");
    let udp = Tuple::udp(v4(3), 5000, v4(4), 53);
    let mut entry = NewEntry::tcp(udp, TcpState::Established, 300);
    entry.tcp_state = None;
    socket.create(&entry).unwrap();
    filtered.wait_until("the UDP event", |received| {
        received.iter().any(|(_, entry)| entry.original == udp)
    });
}
