//! The addresses assigned to this network namespace's interfaces, and notice of changes.
//!
//! The exporter needs them to tell the local end of a connection from the remote one.
//! Reading uses `getifaddrs`; changes are announced on the rtnetlink address groups, and any
//! announcement simply means "read again", so no route message is decoded here.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};

use crate::error::SocketError;

/// `RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR` in the legacy bind bitmask.
const ADDRESS_GROUPS: u32 = 0x10 | 0x100;

/// Every IPv4 and IPv6 address currently assigned to an interface.
pub fn local_addresses() -> io::Result<HashSet<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut addresses = HashSet::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let node = unsafe { &*cursor };
        if let Some(address) = socket_address(node.ifa_addr) {
            addresses.insert(address);
        }
        cursor = node.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(addresses)
}

fn socket_address(address: *const libc::sockaddr) -> Option<IpAddr> {
    if address.is_null() {
        return None;
    }
    // SAFETY: getifaddrs gives a valid sockaddr whose family says which struct it is.
    match i32::from(unsafe { (*address).sa_family }) {
        libc::AF_INET => {
            // SAFETY: the family is AF_INET, so this is a sockaddr_in.
            let v4 = unsafe { &*address.cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family is AF_INET6, so this is a sockaddr_in6.
            let v6 = unsafe { &*address.cast::<libc::sockaddr_in6>() };
            Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// A socket that becomes readable when an interface address is added or removed.
pub struct AddressChanges {
    socket: mnl::Socket,
    buffer: Vec<u8>,
}

impl AddressChanges {
    /// Subscribes to address changes, non-blocking.
    pub fn subscribe() -> Result<Self, SocketError> {
        const OPERATION: &str = "watching interface addresses";
        let socket = crate::socket::open_socket(mnl::Bus::Route, ADDRESS_GROUPS, OPERATION)?;
        let changes = AddressChanges {
            socket,
            buffer: vec![0; 8192],
        };
        crate::socket::set_nonblocking(changes.as_raw_fd(), true)
            .map_err(|e| SocketError::from_errno(OPERATION, e, false))?;
        Ok(changes)
    }

    /// Reads every queued notice and says whether there was any. An overflowed queue
    /// counts as a change.
    pub fn drain(&mut self) -> Result<bool, SocketError> {
        let mut changed = false;
        loop {
            // SAFETY: the buffer is valid for writes of its length.
            let received = unsafe {
                libc::recv(
                    self.as_raw_fd(),
                    self.buffer.as_mut_ptr().cast(),
                    self.buffer.len(),
                    0,
                )
            };
            if received >= 0 {
                changed = true;
                continue;
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EAGAIN) => return Ok(changed),
                Some(libc::EINTR) => continue,
                Some(libc::ENOBUFS) => changed = true,
                _ => {
                    let operation = "reading address changes";
                    return Err(SocketError::from_errno(operation, error, false));
                }
            }
        }
    }
}

impl AsRawFd for AddressChanges {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}
