//! A synthetic conntrack table: entries created through ctnetlink (no packet is sent).

use std::net::Ipv4Addr;

use conntrack_codec::{NewEntry, TcpState, Tuple};
use ctnetlink::ConntrackSocket;

/// Creates `per_host` established TCP connections to each of `hosts` remote hosts in the
/// current network namespace: from `10.0.0.0/8` to port 443 of addresses in `172.16.0.0/12`,
/// none of them local, so that the exporter counts each under its destination. They expire
/// after an hour. Returns how many were created.
pub fn fill(hosts: u32, per_host: u32) -> Result<u32, ctnetlink::Error> {
    let mut table = ConntrackSocket::open()?;
    for host in 0..hosts {
        let [_, high, middle, low] = host.to_be_bytes();
        let destination = Ipv4Addr::new(172, 16 + (high & 0x0f), middle, low);
        for index in 0..per_host {
            let [_, high, middle, low] = index.to_be_bytes();
            let source = Ipv4Addr::new(10, high, middle, low);
            let tuple = Tuple::tcp(source.into(), 40000, destination.into(), 443);
            table.create(&NewEntry::tcp(tuple, TcpState::Established, 3600))?;
        }
    }
    Ok(hosts * per_host)
}
