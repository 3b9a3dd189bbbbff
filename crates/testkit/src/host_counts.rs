//! Per-host numbers, the unit in which the exporter's page and the kernel's table are
//! compared.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// Per remote host: connections opening, open, closing and closed.
pub type HostCounts = BTreeMap<IpAddr, [u64; 4]>;

/// The hosts with at least one connection. The exporter keeps a host whose connections are
/// all gone on its page, with zeros, for a while; the kernel's table knows nothing of it.
pub fn with_connections(counts: HostCounts) -> HostCounts {
    counts
        .into_iter()
        .filter(|(_, numbers)| numbers.iter().any(|&count| count > 0))
        .collect()
}

/// The four numbers of each host, on one line.
pub fn show(counts: &HostCounts) -> String {
    let hosts: Vec<String> = counts
        .iter()
        .map(|(host, counts)| format!("{host}={counts:?}"))
        .collect();
    format!("{{{}}}", hosts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_without_connections_are_left_out_and_shown_on_one_line() {
        let counts: HostCounts = [
            ("10.0.0.1".parse().unwrap(), [0, 0, 0, 0]),
            ("10.0.0.2".parse().unwrap(), [0, 0, 0, 1]),
        ]
        .into();
        let busy = with_connections(counts);
        assert_eq!(show(&busy), "{10.0.0.2=[0, 0, 0, 1]}");
    }
}
