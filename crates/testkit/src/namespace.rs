//! Private network namespaces: each kernel test, and the scale harness, runs in its own.

use std::io::{self, Write};
use std::net::{Ipv4Addr, TcpListener};

use crate::tools::{nft, run};

/// Proof that the current thread is in its own network namespace.
///
/// It is not `Send`: the namespace belongs to the thread that entered it.
#[derive(Debug)]
pub struct Namespace {
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Moves the current thread into a new network namespace with `lo` up.
///
/// Returns `None` after printing a skip notice when the process may not create namespaces
/// and `CI` is unset. Panics when `CI` is set and it may not, or on any other failure.
pub fn enter(test: &str) -> Option<Namespace> {
    match try_enter() {
        Ok(namespace) => Some(namespace),
        Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
            if std::env::var_os("CI").is_some() {
                panic!("{test}: needs root to create a network namespace, and CI is set: {error}");
            }
            // Written to the stream itself, not through `eprintln!`, which the test
            // harness captures and hides for passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED {test}: creating a network namespace needs root ({error}); \
                 run the tests as root to exercise the kernel ***\n"
            );
            None
        }
        Err(error) => panic!("{test}: cannot set up a private network namespace: {error}"),
    }
}

pub(crate) fn try_enter() -> io::Result<Namespace> {
    // SAFETY: unshare takes a flag word and affects only the calling thread's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    run("ip", &["link", "set", "lo", "up"])?;
    Ok(Namespace {
        _not_send: std::marker::PhantomData,
    })
}

/// A port nothing in the current namespace listens on.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a free port");
    listener.local_addr().expect("reading a bound port").port()
}

/// Keeps connections to and from `127.0.0.1:port` out of the conntrack table, so that a
/// test's own scrapes never show up in the counts it checks. Only that address: the
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
