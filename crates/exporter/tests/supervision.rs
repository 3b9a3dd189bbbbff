//! The collector's end is never silent.
//!
//! No failure of the real collector is known to end it after start-up: failures there are
//! logged and retried. So the supervision is proven through the library's
//! [`SupervisedThread`], with collector work that fails or panics on demand, in front of a
//! server that answers while the work runs: the server answers until the work ends, then
//! shuts down, and the caller gets the reason as one line.
//!
//! One real cause of death existed: a standard error whose reader went away made the logger
//! panic in whichever thread logged, the collector included. The last test closes the
//! exporter's standard error and checks that its collector goes on.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;

use common::{create_tcp, exporter_command};
use conntrack_codec::TcpState;
use conntrack_exporter::supervision::{Ending, Shutdown, SupervisedThread};
use testkit::{DEADLINE, SEED_FAMILIES, address, eventually};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Answers every connection with one line until `shutdown`; returns how many it answered.
async fn answer_until(listener: TcpListener, shutdown: Shutdown) -> usize {
    let mut answered = 0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return answered,
            accepted = listener.accept() => {
                let (mut stream, _) = accepted.expect("accepting a connection");
                stream.write_all(b"alive\n").await.expect("answering");
                answered += 1;
            }
        }
    }
}

/// Runs a server in front of a collector thread that does `work` once the server has
/// answered a client, and returns how the collector ended: the server must stop then.
fn serve_in_front_of(work: impl FnOnce() -> Result<(), String> + Send + 'static) -> Ending {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let (go, answered_once) = mpsc::channel::<()>();
    let mut collector = SupervisedThread::spawn("collector", move || {
        // Runs until the server has shown that it answers while the collector lives.
        answered_once
            .recv_timeout(DEADLINE)
            .expect("the server answers");
        work()
    })
    .unwrap();
    let client = thread::spawn(move || {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        assert_eq!(line, "alive\n");
        go.send(()).unwrap();
    });
    let served = runtime.block_on(
        collector.serve_while_alive(std::future::pending(), |shutdown| {
            answer_until(listener, shutdown)
        }),
    );
    client.join().expect("the client was answered");
    served.expect_err("the server stopped because the collector ended")
}

#[test]
fn a_collector_that_fails_stops_the_server_with_its_error() {
    let ending = serve_in_front_of(|| Err("reading conntrack events failed: gone".to_owned()));
    assert_eq!(
        ending,
        Ending::Failed("reading conntrack events failed: gone".to_owned())
    );
    assert_eq!(
        ending.to_string(),
        "failed: reading conntrack events failed: gone"
    );
}

#[test]
fn a_collector_that_panics_stops_the_server_with_place_and_message() {
    let ending = serve_in_front_of(|| panic!("a bug in the collector\nsecond line"));
    let Ending::Panicked(report) = &ending else {
        panic!("{ending:?}")
    };
    assert!(
        report.starts_with("at crates/exporter/tests/supervision.rs:"),
        "{report}"
    );
    assert!(
        report.ends_with(": a bug in the collector second line"),
        "{report}"
    );
    assert!(!ending.to_string().contains('\n'), "{ending}");
}

#[test]
fn a_collector_that_ends_by_itself_stops_the_server() {
    assert_eq!(serve_in_front_of(|| Ok(())), Ending::Returned);
}

#[test]
fn a_signal_stops_the_server_and_leaves_the_collector_to_be_stopped() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let running = Arc::clone(&stop);
    let mut collector = SupervisedThread::spawn("collector", move || {
        while !running.load(Ordering::Relaxed) {
            thread::park_timeout(DEADLINE / 100);
        }
        Ok::<(), String>(())
    })
    .unwrap();
    let listener = runtime
        .block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    let served = runtime.block_on(
        collector.serve_while_alive(std::future::ready(()), |shutdown| {
            answer_until(listener, shutdown)
        }),
    );
    assert_eq!(
        served,
        Ok(0),
        "the signal, not the collector, stopped the server"
    );
    stop.store(true, Ordering::Relaxed);
    assert_eq!(collector.join(), Ending::Returned);
}

#[test]
fn a_closed_standard_error_does_not_stop_the_collector() {
    let test = "a_closed_standard_error_does_not_stop_the_collector";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    // With --debug every periodic resync logs a line.
    let mut exporter = exporter_command()
        .args(["--debug", "--resync-interval", "1s"])
        .leave_stderr_unread()
        .start();
    exporter.process.close_stderr();
    let resyncs = |exporter: &testkit::Exporter| {
        let scrape = exporter.scrape();
        scrape
            .value(
                "conntrack_exporter_resyncs_total",
                &[("reason", "periodic")],
            )
            .unwrap_or(0.0)
    };
    let before = resyncs(&exporter);
    eventually("periodic resyncs go on, logging into a closed pipe", || {
        let now = resyncs(&exporter);
        if now >= before + 2.0 {
            Ok(())
        } else {
            Err(format!("{before} periodic resyncs before, {now} now"))
        }
    });
    // And events are still applied.
    let host = "198.51.100.77";
    create_tcp("192.0.2.7", 41000, host, 443, TcpState::SynSent);
    let counts = exporter.wait_until_kernel_table_matches(SEED_FAMILIES);
    assert_eq!(counts[&address(host)], [1, 0, 0, 0]);
    assert_eq!(exporter.process.exit_status(), None, "the exporter runs");
}
