//! The floor reader: the least any program can do with conntrack events. It subscribes to
//! NEW, UPDATE and DESTROY on a netlink socket with the given receive queue size, receives
//! datagrams and counts them, decoding nothing. The scale harness measures the exporter's
//! CPU time per event against this program's.
//!
//! Usage: `floor_reader QUEUE_BYTES`. On SIGTERM it prints
//! `{"events": N, "overruns": M}` and exits.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn main() -> io::Result<()> {
    let queue: libc::c_int = std::env::args()
        .nth(1)
        .and_then(|bytes| bytes.parse().ok())
        .unwrap_or(32 << 20);
    // SAFETY: plain system calls with valid arguments; the handler only stores an atomic,
    // and SA_RESTART is left out so that a blocked recv returns EINTR on SIGTERM.
    let fd = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = request_stop as extern "C" fn(libc::c_int) as usize;
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_NETFILTER)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `address` and `queue` outlive the calls that read them.
    unsafe {
        let mut address: libc::sockaddr_nl = std::mem::zeroed();
        address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        address.nl_groups = 0x1 | 0x2 | 0x4;
        let length = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        if libc::bind(fd, (&raw const address).cast(), length) != 0 {
            return Err(io::Error::last_os_error());
        }
        let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let value = (&raw const queue).cast();
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, value, size);
    }
    let mut buffer = vec![0u8; 64 * 1024];
    let (mut events, mut overruns) = (0u64, 0u64);
    while !STOP.load(Ordering::Relaxed) {
        // SAFETY: the buffer is valid for writes of its length.
        let received = unsafe { libc::recv(fd, buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        if received > 0 {
            events += 1;
        } else if io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
            overruns += 1;
        }
    }
    println!("{{\"events\": {events}, \"overruns\": {overruns}}}");
    Ok(())
}
