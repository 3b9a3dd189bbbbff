//! The kernel's conntrack table as an expectation that does not go through the exporter's
//! own code: entries as the `conntrack` tool lists them, local addresses as `ip` lists them,
//! and the per-host numbers the exporter should show, by the original exporter's rules.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::host_counts::HostCounts;
use crate::tools::run;

/// One TCP entry of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    /// Its TCP state as the `conntrack` tool names it (`ESTABLISHED`, `TIME_WAIT`, ...).
    pub state: String,
    /// Original direction: source and destination.
    pub original: (IpAddr, IpAddr),
    /// Reply direction: source and destination.
    pub reply: Option<(IpAddr, IpAddr)>,
}

/// Every TCP entry of the kernel's table, through `conntrack -L`.
pub fn conntrack_list() -> Vec<TableEntry> {
    let mut entries = Vec::new();
    for family in ["ipv4", "ipv6"] {
        let listing = run("conntrack", &["-L", "-p", "tcp", "-f", family])
            .unwrap_or_else(|error| panic!("{error}"));
        entries.extend(
            listing
                .lines()
                .filter(|line| line.starts_with("tcp"))
                .map(|line| {
                    parse_listed(line)
                        .unwrap_or_else(|| panic!("not an entry of conntrack -L: {line:?}"))
                }),
        );
    }
    entries
}

/// One line of `conntrack -L -p tcp`:
/// `tcp 6 431999 ESTABLISHED src=… dst=… sport=… dport=… src=… dst=… sport=… dport=… …`
fn parse_listed(line: &str) -> Option<TableEntry> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let state = words
        .iter()
        .take_while(|word| !word.starts_with("src="))
        .last()?;
    let addresses = |key: &str| -> Option<Vec<IpAddr>> {
        words
            .iter()
            .filter_map(|word| word.strip_prefix(key))
            .map(|address| address.parse().ok())
            .collect()
    };
    let (sources, destinations) = (addresses("src=")?, addresses("dst=")?);
    Some(TableEntry {
        state: (*state).to_owned(),
        original: (*sources.first()?, *destinations.first()?),
        reply: sources.get(1).copied().zip(destinations.get(1).copied()),
    })
}

/// The addresses of this namespace's interfaces, as `ip -o addr` lists them.
pub fn local_addresses() -> HashSet<IpAddr> {
    let listing = run("ip", &["-o", "addr"]).unwrap_or_else(|error| panic!("{error}"));
    let mut local = HashSet::new();
    for line in listing.lines() {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            if word == "inet" || word == "inet6" {
                let address = words.next().and_then(|cidr| cidr.split('/').next());
                if let Some(address) = address.and_then(|address| address.parse().ok()) {
                    local.insert(address);
                }
            }
        }
    }
    local
}

/// The seed's state groups, by the state names the `conntrack` tool prints: the index of
/// opening, open, closing or closed, or `None` for a state that is not counted.
pub fn state_group(state: &str) -> Option<usize> {
    match state {
        "SYN_SENT" | "SYN_SENT2" | "SYN_RECV" => Some(0),
        "ESTABLISHED" => Some(1),
        "FIN_WAIT" | "CLOSE_WAIT" | "LAST_ACK" | "TIME_WAIT" => Some(2),
        "CLOSE" => Some(3),
        _ => None,
    }
}

/// The remote end of a connection, by the seed's rule: of the original direction, the
/// destination if the source is local, the source if the destination is local; else the
/// reply direction read the same way; else the original destination.
pub fn remote_host(entry: &TableEntry, local: &HashSet<IpAddr>) -> IpAddr {
    let far_end = |(src, dst): (IpAddr, IpAddr)| {
        if local.contains(&src) {
            Some(dst)
        } else if local.contains(&dst) {
            Some(src)
        } else {
            None
        }
    };
    far_end(entry.original)
        .or_else(|| entry.reply.and_then(far_end))
        .unwrap_or(entry.original.1)
}

/// What the exporter should show for `entries`, given the `local` addresses.
pub fn host_counts(entries: &[TableEntry], local: &HashSet<IpAddr>) -> HostCounts {
    let mut counts = HostCounts::new();
    for entry in entries {
        if let Some(group) = state_group(&entry.state) {
            counts.entry(remote_host(entry, local)).or_default()[group] += 1;
        }
    }
    counts
}

/// What the exporter should show, computed from the kernel's table as the `conntrack` tool
/// lists it and the addresses `ip` lists.
pub fn kernel_host_counts() -> HostCounts {
    host_counts(&conntrack_list(), &local_addresses())
}

/// Parses an address literal of a test.
pub fn address(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|_| panic!("{text:?} is not an address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_lines_give_state_and_both_directions() {
        let line = "tcp      6 431999 ESTABLISHED src=192.0.2.1 dst=198.51.100.1 sport=40000 \
                    dport=443 [UNREPLIED] src=198.51.100.1 dst=192.0.2.1 sport=443 dport=40000 \
                    mark=0 use=1";
        let entry = parse_listed(line).unwrap();
        assert_eq!(entry.state, "ESTABLISHED");
        assert_eq!(
            entry.original,
            (address("192.0.2.1"), address("198.51.100.1"))
        );
        assert_eq!(
            entry.reply,
            Some((address("198.51.100.1"), address("192.0.2.1")))
        );
        assert_eq!(
            parse_listed("tcp 6 10 CLOSE src=nonsense dst=10.0.0.1"),
            None
        );
    }

    #[test]
    fn counts_go_to_the_far_end_by_state_group() {
        let local: HashSet<IpAddr> = [address("10.0.0.1")].into();
        let entry = |state: &str, src: &str, dst: &str, reply: Option<(&str, &str)>| TableEntry {
            state: state.to_owned(),
            original: (address(src), address(dst)),
            reply: reply.map(|(src, dst)| (address(src), address(dst))),
        };
        let entries = [
            entry("ESTABLISHED", "10.0.0.1", "192.0.2.1", None),
            entry("SYN_RECV", "192.0.2.1", "10.0.0.1", None),
            // Forwarded, then NATed to a local address in the reply direction.
            entry(
                "TIME_WAIT",
                "192.0.2.7",
                "198.51.100.1",
                Some(("10.0.0.1", "192.0.2.7")),
            ),
            // Forwarded: the original destination counts.
            entry(
                "CLOSE",
                "192.0.2.8",
                "198.51.100.2",
                Some(("198.51.100.2", "192.0.2.8")),
            ),
            entry("NONE", "10.0.0.1", "192.0.2.9", None),
        ];
        let counts = host_counts(&entries, &local);
        let expected: HostCounts = [
            (address("192.0.2.1"), [1, 1, 0, 0]),
            (address("192.0.2.7"), [0, 0, 1, 0]),
            (address("198.51.100.2"), [0, 0, 0, 1]),
        ]
        .into();
        assert_eq!(counts, expected);
    }
}
