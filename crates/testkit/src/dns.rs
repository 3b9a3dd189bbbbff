//! DNS servers for tests of name lookups, inside the test's network namespace: `dnsmasq`
//! answering only from records given on its command line, or a server that reads queries
//! and never answers. The exporter finds them through a resolver configuration that
//! [`ExporterCommand::resolv_conf`](crate::ExporterCommand::resolv_conf) mounts over
//! `/etc/resolv.conf` for it alone.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::process::{Captured, Process};
use crate::temp_dir::TempDir;
use crate::wait::eventually;

/// The port DNS clients use; a resolver configuration names no other.
const DNS_PORT: u16 = 53;

/// A resolver configuration naming `server` alone, written into `directory`.
pub fn resolv_conf(directory: &TempDir, server: IpAddr) -> PathBuf {
    directory.write("resolv.conf", &format!("nameserver {server}\n"))
}

/// `dnsmasq` serving the records of its command line on port 53 of an address of the current
/// namespace, and nothing else: every other name under `test`, `in-addr.arpa` and
/// `ip6.arpa` is answered NXDOMAIN, and it asks no other server. Killed when dropped.
pub struct DnsServer {
    _process: Process,
    /// Its log (every query it answered).
    pub log: Captured,
}

impl DnsServer {
    /// Starts it on `address` with `records`, dnsmasq options such as
    /// `--host-record=web.example.test,198.51.100.1` (A or AAAA and PTR) or
    /// `--ptr-record=7.100.51.198.in-addr.arpa,db.example.test` (PTR alone), and waits until
    /// it listens.
    #[track_caller]
    pub fn start(address: IpAddr, records: &[String]) -> DnsServer {
        let mut process = Process::spawn(
            Command::new("dnsmasq")
                .args([
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--no-resolv",
                    "--no-hosts",
                    "--bind-interfaces",
                    "--pid-file=",
                    "--user=root",
                    "--log-facility=-",
                    "--log-queries",
                    "--local=/test/",
                    "--local=/in-addr.arpa/",
                    "--local=/ip6.arpa/",
                ])
                .arg(format!("--listen-address={address}"))
                .arg(format!("--port={DNS_PORT}"))
                .args(records)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        let log = process.capture_stderr();
        eventually("dnsmasq listens", || {
            if let Some(status) = process.exit_status() {
                panic!("dnsmasq exited with {status}:\n{}", log.text());
            }
            // It logs this line once its sockets are open.
            match log.text().contains("started, version") {
                true => Ok(()),
                false => Err(log.text()),
            }
        });
        DnsServer {
            _process: process,
            log,
        }
    }
}

/// A DNS server that reads every query and never answers, as a server behind a broken link
/// looks to its clients. Stops when dropped.
pub struct SilentDnsServer {
    queries: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl SilentDnsServer {
    /// Listens on port 53 of `address`.
    #[track_caller]
    pub fn start(address: IpAddr) -> SilentDnsServer {
        let socket = UdpSocket::bind(SocketAddr::new(address, DNS_PORT))
            .unwrap_or_else(|error| panic!("binding {address}:{DNS_PORT}: {error}"));
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("setting a read timeout");
        let queries = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = thread::spawn({
            let (queries, stop) = (Arc::clone(&queries), Arc::clone(&stop));
            move || {
                let mut buffer = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if socket.recv(&mut buffer).is_ok() {
                        queries.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        SilentDnsServer {
            queries,
            stop,
            reader: Some(reader),
        }
    }

    /// Queries received so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for SilentDnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
