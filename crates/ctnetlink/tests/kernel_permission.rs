//! Without `CAP_NET_ADMIN` the kernel refuses every conntrack request and event subscription,
//! and the crate reports [`Error::PermissionDenied`] with a message naming the
//! capability.
//!
//! Capabilities belong to threads on Linux, so the test drops `CAP_NET_ADMIN` from the
//! effective set of its own thread only (after entering its namespace, which needs
//! `CAP_SYS_ADMIN`); the other tests, on other threads, keep theirs. It needs root, like the
//! other kernel tests.

use std::net::{IpAddr, Ipv4Addr};

use conntrack_codec::{NewEntry, TcpState, Tuple};
use ctnetlink::{ConntrackSocket, Error, EventGroups, EventSocket};

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const CAP_NET_ADMIN: u32 = 12;

/// The calling thread's capability sets (version 3: two words per set).
fn capabilities() -> [CapData; 2] {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes one header and two data structs, which live for the call.
    let result = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    assert_eq!(result, 0, "capget: {}", std::io::Error::last_os_error());
    data
}

/// Clears `CAP_NET_ADMIN` from the calling thread's effective set.
fn drop_net_admin() {
    let mut data = capabilities();
    data[0].effective &= !(1 << CAP_NET_ADMIN);
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset reads one header and two data structs, which live for the call; pid 0
    // is the calling thread.
    let result = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    assert_eq!(result, 0, "capset: {}", std::io::Error::last_os_error());
}

fn assert_permission_denied<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(error @ Error::PermissionDenied { .. }) => {
            let message = error.to_string();
            assert!(message.contains("CAP_NET_ADMIN"), "{what}: {message}");
            assert!(message.contains("permission denied"), "{what}: {message}");
        }
        other => panic!("{what}: expected PermissionDenied, got {other:?}"),
    }
}

#[test]
fn without_cap_net_admin_every_request_is_permission_denied() {
    let Some(_ns) = testkit::enter("without_cap_net_admin") else {
        return;
    };
    let mut privileged = ConntrackSocket::open().unwrap();
    let address = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let tuple = Tuple::tcp(address, 1, address, 2);
    privileged
        .create(&NewEntry::tcp(tuple, TcpState::Established, 60))
        .unwrap();
    assert!(capabilities()[0].effective & (1 << CAP_NET_ADMIN) != 0);

    drop_net_admin();
    assert_eq!(capabilities()[0].effective & (1 << CAP_NET_ADMIN), 0);

    // Opening a request socket needs nothing; every request does.
    let mut socket = ConntrackSocket::open().expect("opening needs no privilege");
    assert_permission_denied(socket.dump(None, |_| {}), "dump");
    assert_permission_denied(socket.table_size(), "table size");
    assert_permission_denied(socket.cpu_stats(), "per-CPU statistics");
    let other = Tuple::tcp(address, 3, address, 4);
    assert_permission_denied(
        socket.create(&NewEntry::tcp(other, TcpState::Established, 60)),
        "create",
    );
    assert_permission_denied(socket.delete(&tuple, None), "delete");
    assert_permission_denied(socket.flush(None), "flush");
    // Subscribing to events is refused at bind time.
    assert_permission_denied(
        EventSocket::subscribe(EventGroups::ALL).map(|_| ()),
        "subscribe",
    );
    // A socket opened while the thread had the capability is still refused: the kernel
    // checks the sender of each request.
    assert_permission_denied(privileged.dump(None, |_| {}), "dump on an older socket");
}
