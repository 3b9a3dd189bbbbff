//! The labels the per-connection families can carry, and the label set a connection is
//! aggregated under.
//!
//! A [`LabelSet`] is computed once per connection, when it is classified, and is the key of
//! its aggregate: whatever labels are chosen, an event costs one aggregate adjustment.
//! Labels that are not chosen stay empty in the set, so connections that differ only in them
//! share one aggregate (removing `host` sums over hosts). With a bound on the number of label
//! sets, connections of label sets beyond it share [`LabelSet::OVERFLOW`].

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use conntrack_codec::Protocol;

use crate::hosts::{Host, HostLabels, OVERFLOW_VALUE};
use crate::protocols::protocol_name;

/// One label the per-connection families can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelName {
    /// The remote address, its network or its group.
    Host,
    /// `out`, `in` or `forwarded`.
    Direction,
    /// The original destination port; empty for protocols without ports.
    ServicePort,
    /// The end opposite the remote host: the local address, or the client of forwarded
    /// traffic.
    LocalHost,
    /// The protocol's name, or its number when it has none.
    Protocol,
    /// The conntrack zone.
    Zone,
}

impl LabelName {
    /// Every label, in the order the documentation lists them.
    pub const ALL: [LabelName; 6] = [
        LabelName::Host,
        LabelName::Direction,
        LabelName::ServicePort,
        LabelName::LocalHost,
        LabelName::Protocol,
        LabelName::Zone,
    ];

    /// The label's name in the output and in settings.
    pub fn as_str(self) -> &'static str {
        match self {
            LabelName::Host => "host",
            LabelName::Direction => "direction",
            LabelName::ServicePort => "service_port",
            LabelName::LocalHost => "local_host",
            LabelName::Protocol => "protocol",
            LabelName::Zone => "zone",
        }
    }
}

impl fmt::Display for LabelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a list of label names was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// A name that is not a label.
    #[error(
        "{0:?} is not a label: expected host, direction, service_port, local_host, protocol or zone"
    )]
    Unknown(String),
    /// A label named twice.
    #[error("label {0} is listed twice")]
    Repeated(LabelName),
}

impl FromStr for LabelName {
    type Err = LabelError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        LabelName::ALL
            .into_iter()
            .find(|name| name.as_str() == text)
            .ok_or_else(|| LabelError::Unknown(text.to_owned()))
    }
}

/// The labels chosen for the per-connection families, in output order, each at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelNames(Vec<LabelName>);

impl LabelNames {
    /// `names` in this order, refused if one is repeated.
    pub fn new(names: Vec<LabelName>) -> Result<LabelNames, LabelError> {
        for (position, name) in names.iter().enumerate() {
            if names[..position].contains(name) {
                return Err(LabelError::Repeated(*name));
            }
        }
        Ok(LabelNames(names))
    }

    /// The labels, in output order.
    pub fn names(&self) -> &[LabelName] {
        &self.0
    }

    /// Whether `name` is chosen.
    pub fn contains(&self, name: LabelName) -> bool {
        self.0.contains(&name)
    }
}

impl Default for LabelNames {
    /// `host` alone, the original exporter's label.
    fn default() -> Self {
        LabelNames(vec![LabelName::Host])
    }
}

impl FromStr for LabelNames {
    type Err = LabelError;

    /// A comma-separated list; empty for no label at all.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().is_empty() {
            return LabelNames::new(Vec::new());
        }
        LabelNames::new(text.split(',').map(str::parse).collect::<Result<_, _>>()?)
    }
}

/// Who opened a connection, seen from this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// This host opened it: the original source is local.
    Out,
    /// A remote host opened it: the original destination is local.
    In,
    /// Neither end is local: this host forwards it.
    Forwarded,
}

impl Direction {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Out => "out",
            Direction::In => "in",
            Direction::Forwarded => "forwarded",
        }
    }
}

/// The labels of one aggregate: a field per label, `None` when that label is not chosen
/// (and, for `service_port`, when the protocol has no ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LabelSet {
    /// The remote address, its network or its group.
    pub host: Option<Host>,
    /// Who opened the connection.
    pub direction: Option<Direction>,
    /// The original destination port.
    pub service_port: Option<u16>,
    /// The end opposite the remote host.
    pub local_host: Option<IpAddr>,
    /// The protocol.
    pub protocol: Option<Protocol>,
    /// The conntrack zone.
    pub zone: Option<u16>,
    /// This is the overflow set, whatever the other fields say.
    pub overflow: bool,
}

impl LabelSet {
    /// The set where the connections of label sets beyond the bound are counted: every label
    /// reads `other`.
    pub const OVERFLOW: LabelSet = LabelSet {
        host: None,
        direction: None,
        service_port: None,
        local_host: None,
        protocol: None,
        zone: None,
        overflow: true,
    };

    /// The value of the label `name` as the output shows it, a host value as `hosts` writes
    /// it; empty when the set has none.
    pub fn value(&self, name: LabelName, hosts: &HostLabels) -> String {
        fn text(value: Option<impl ToString>) -> String {
            value.map(|value| value.to_string()).unwrap_or_default()
        }
        if self.overflow {
            return OVERFLOW_VALUE.to_owned();
        }
        match name {
            LabelName::Host => self.host.map(|host| hosts.text(host)).unwrap_or_default(),
            LabelName::Direction => text(self.direction.map(Direction::as_str)),
            LabelName::ServicePort => text(self.service_port),
            LabelName::LocalHost => text(self.local_host),
            LabelName::Protocol => text(self.protocol.map(protocol_name)),
            LabelName::Zone => text(self.zone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_lists_parse_in_order_and_refuse_unknown_or_repeated_names() {
        let names: LabelNames = "service_port, direction,host".parse().unwrap();
        assert_eq!(
            names.names(),
            [
                LabelName::ServicePort,
                LabelName::Direction,
                LabelName::Host
            ]
        );
        assert_eq!("".parse::<LabelNames>().unwrap().names(), []);
        let unknown = "host,port".parse::<LabelNames>().unwrap_err().to_string();
        assert_eq!(
            unknown,
            "\"port\" is not a label: expected host, direction, service_port, local_host, protocol or zone"
        );
        let twice = "zone,host,zone".parse::<LabelNames>().unwrap_err();
        assert_eq!(twice.to_string(), "label zone is listed twice");
        assert_eq!(LabelNames::default().names(), [LabelName::Host]);
    }

    #[test]
    fn values_render_as_the_output_shows_them() {
        let set = LabelSet {
            host: Some(Host::Address("fd00::9".parse().unwrap())),
            direction: Some(Direction::Forwarded),
            service_port: None,
            local_host: Some("10.0.0.1".parse().unwrap()),
            protocol: Some(Protocol(115)),
            zone: Some(0),
            overflow: false,
        };
        let hosts = HostLabels::default();
        let values: Vec<String> = LabelName::ALL.map(|name| set.value(name, &hosts)).into();
        assert_eq!(values, ["fd00::9", "forwarded", "", "10.0.0.1", "115", "0"]);
        let overflow = LabelName::ALL.map(|name| LabelSet::OVERFLOW.value(name, &hosts));
        assert_eq!(overflow, ["other"; 6]);
        for name in LabelName::ALL {
            assert_eq!(name.as_str().parse::<LabelName>(), Ok(name));
        }
    }
}
