//! The addresses assigned to this network namespace's interfaces, and notice of changes.
//!
//! The exporter needs them to tell the local end of a connection from the remote one.
//! Reading uses `getifaddrs`; changes are announced on the rtnetlink address groups, and any
//! announcement simply means "read again", so no route message is decoded here.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};

use crate::error::Error;
use crate::socket::{AlignedBuffer, NetlinkSocket, Read};

/// `RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR` in the legacy bind bitmask.
const ADDRESS_GROUPS: u32 = 0x10 | 0x100;

/// Room for one notice; its content is never read, and a larger one is simply cut.
const NOTICE_BUFFER: usize = 8192;

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
    socket: NetlinkSocket,
    buffer: AlignedBuffer,
}

impl AddressChanges {
    /// Subscribes to address changes.
    pub fn subscribe() -> Result<Self, Error> {
        const OPERATION: &str = "watching interface addresses";
        Ok(AddressChanges {
            socket: NetlinkSocket::open(mnl::Bus::Route, ADDRESS_GROUPS, OPERATION)?,
            buffer: AlignedBuffer::new(NOTICE_BUFFER),
        })
    }

    /// Bytes of the buffer that notices are read into, held for the socket's life.
    pub fn buffer_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Reads every queued notice, without waiting, and says whether there was any. An
    /// overflowed queue counts as a change.
    pub fn drain(&mut self) -> Result<bool, Error> {
        const OPERATION: &str = "reading address changes";
        let mut changed = false;
        loop {
            match self
                .socket
                .read(OPERATION, &mut self.buffer, libc::MSG_DONTWAIT)?
            {
                Read::Data(_) | Read::Overrun => changed = true,
                Read::Empty => return Ok(changed),
            }
        }
    }
}

impl AsRawFd for AddressChanges {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}
