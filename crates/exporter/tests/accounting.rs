//! Bytes and packets against the real kernel: after real transfers on loopback, each host's
//! sent and received counters equal what `conntrack -L -o extended` lists for its entries:
//! for a live connection through the resyncs, for one deleted from the table through its
//! DESTROY event.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};

use conntrack_codec::Tuple;
use ctnetlink::ConntrackSocket;
use testkit::{address, eventually};

/// Sent and received packets and bytes, in that order.
type Exchanged = [f64; 4];

/// What `conntrack -L -o extended` lists for the TCP entries from 127.0.0.1 to `host`, as
/// seen from 127.0.0.1: original direction sent, reply direction received.
fn kernel_exchanged(host: &str) -> Exchanged {
    let listing = testkit::run("conntrack", &["-L", "-o", "extended", "-p", "tcp"])
        .unwrap_or_else(|error| panic!("{error}"));
    let mut sums = [0.0; 4];
    for line in listing.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words.contains(&format!("dst={host}").as_str()) {
            continue;
        }
        let values = |key: &str| -> Vec<f64> {
            let numbers = words.iter().filter_map(|word| word.strip_prefix(key));
            numbers.map(|number| number.parse().unwrap()).collect()
        };
        let (packets, bytes) = (values("packets="), values("bytes="));
        assert_eq!(
            (packets.len(), bytes.len()),
            (2, 2),
            "no counters in {line:?}"
        );
        let entry = [packets[0], bytes[0], packets[1], bytes[1]];
        for (sum, value) in sums.iter_mut().zip(entry) {
            *sum += value;
        }
    }
    sums
}

fn exporter_exchanged(exporter: &testkit::Exporter, host: &str) -> Exchanged {
    let scrape = exporter.scrape();
    [
        "conntrack_sent_packets_total",
        "conntrack_sent_bytes_total",
        "conntrack_received_packets_total",
        "conntrack_received_bytes_total",
    ]
    .map(|name| scrape.value(name, &[("host", host)]).unwrap_or(-1.0))
}

/// Sends `up` bytes from a new connection to `host`'s listener and `down` bytes back.
fn transfer(listener: &TcpListener, up: usize, down: usize) -> (TcpStream, TcpStream) {
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(&vec![b'u'; up]).unwrap();
    server.read_exact(&mut vec![0; up]).unwrap();
    server.write_all(&vec![b'd'; down]).unwrap();
    client.read_exact(&mut vec![0; down]).unwrap();
    (client, server)
}

#[test]
fn bytes_and_packets_equal_the_kernel_counters() {
    let Some(_namespace) = testkit::enter("bytes_and_packets_equal_the_kernel_counters") else {
        return;
    };
    std::fs::write("/proc/sys/net/netfilter/nf_conntrack_acct", "1").unwrap();
    let exporter = common::start_exporter(&[
        "--ensure-tracking",
        "--accounting",
        "--resync-interval",
        "1s",
    ]);

    // A live connection: its counters arrive through the resyncs.
    let live = TcpListener::bind("127.0.0.2:0").unwrap();
    let _live = transfer(&live, 200_000, 30_000);
    // A connection that ends and is deleted: its final counters arrive with its DESTROY
    // event.
    let ended = TcpListener::bind("127.0.0.3:0").unwrap();
    let (client, server) = transfer(&ended, 50_000, 7_000);
    let client_port = client.local_addr().unwrap().port();
    drop(client);
    drop(server);
    let final_counters = eventually("the ended connection is quiet", || {
        let before = kernel_exchanged("127.0.0.3");
        std::thread::sleep(std::time::Duration::from_millis(100));
        if kernel_exchanged("127.0.0.3") == before {
            Ok(before)
        } else {
            Err("its counters still change".to_owned())
        }
    });
    let tuple = Tuple::tcp(
        address("127.0.0.1"),
        client_port,
        address("127.0.0.3"),
        ended.local_addr().unwrap().port(),
    );
    ConntrackSocket::open()
        .unwrap()
        .delete(&tuple, None)
        .unwrap();

    for (host, expected) in [("127.0.0.2", None), ("127.0.0.3", Some(final_counters))] {
        let host_address: IpAddr = address(host);
        eventually(
            &format!("{host_address}'s counters equal the kernel's"),
            || {
                let kernel = expected.unwrap_or_else(|| kernel_exchanged(host));
                let found = exporter_exchanged(&exporter, host);
                if found == kernel && kernel[1] > 0.0 {
                    Ok(())
                } else {
                    Err(format!("kernel {kernel:?}, exporter {found:?}"))
                }
            },
        );
    }
    // The live connection's bytes do not shrink when later resyncs see it again.
    let seen = exporter_exchanged(&exporter, "127.0.0.2");
    assert!(seen[1] >= 200_000.0 && seen[3] >= 30_000.0, "{seen:?}");
}

#[test]
fn kernel_accounting_off_is_said_once_and_left_alone() {
    let Some(_namespace) = testkit::enter("kernel_accounting_off_is_said_once_and_left_alone")
    else {
        return;
    };
    let setting = "/proc/sys/net/netfilter/nf_conntrack_acct";
    std::fs::write(setting, "0").unwrap();
    let exporter = common::start_exporter(&["--accounting"]);
    let said = eventually("the log says the kernel's accounting is off", || {
        let log = exporter.stderr.text();
        let lines = log
            .lines()
            .filter(|line| line.contains("nf_conntrack_acct"));
        match lines.count() {
            0 => Err(format!("not in {log}")),
            count => Ok(count),
        }
    });
    assert_eq!(said, 1);
    assert_eq!(std::fs::read_to_string(setting).unwrap().trim(), "0");
}
