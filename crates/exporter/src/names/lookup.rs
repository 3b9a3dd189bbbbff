//! One forward-confirmed lookup: the PTR record of an address gives names, and a name counts
//! only if its own A (for an IPv4 address) or AAAA (IPv6) records contain the address. Whoever
//! controls an address's reverse zone can write any name into its PTR record; the forward
//! lookup asks the zone of the name itself, so a remote party cannot label itself
//! `db.internal` without controlling `db.internal`.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{Name, RData};

/// The PTR names of one address that are tried at most, so that one answer with many names
/// cannot turn into many forward lookups.
const MAX_NAMES: usize = 4;

/// How a lookup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A name that resolves back to the address.
    Name(Arc<str>),
    /// No PTR record (NXDOMAIN, or no record of that type).
    NoName,
    /// PTR names, none of which resolves back to the address.
    Unconfirmed,
    /// No answer within the time limit.
    Timeout,
    /// Any other failure (the server failed or refused, no server is configured).
    Error,
}

impl Outcome {
    /// The `result` label values, in the order of [`index`](Self::index).
    pub(crate) const LABELS: [&'static str; 5] =
        ["name", "no_name", "unconfirmed", "timeout", "error"];

    /// Its position in [`LABELS`](Self::LABELS).
    pub(crate) fn index(&self) -> usize {
        match self {
            Outcome::Name(_) => 0,
            Outcome::NoName => 1,
            Outcome::Unconfirmed => 2,
            Outcome::Timeout => 3,
            Outcome::Error => 4,
        }
    }

    /// The confirmed name, if any.
    pub(crate) fn into_name(self) -> Option<Arc<str>> {
        match self {
            Outcome::Name(name) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Name(name) => write!(f, "name {name}"),
            other => f.write_str(Outcome::LABELS[other.index()]),
        }
    }
}

/// The system's resolver, as `/etc/resolv.conf` and `/etc/hosts` configure it.
pub(crate) struct Resolver(TokioResolver);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

impl Resolver {
    /// Reads the system's resolver configuration. Answers are not cached here: the
    /// exporter's own cache keeps them, within its bounds.
    pub(crate) fn from_system_configuration() -> Result<Resolver, String> {
        let mut builder = TokioResolver::builder_tokio().map_err(|error| error.to_string())?;
        builder.options_mut().cache_size = 0;
        builder
            .build()
            .map(Resolver)
            .map_err(|error| error.to_string())
    }

    /// Looks up the PTR names of `address` and returns the first whose A or AAAA records
    /// contain `address`.
    pub(crate) async fn confirmed_name(&self, address: IpAddr) -> Outcome {
        let names: Vec<Name> = match self.0.reverse_lookup(address).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::PTR(name) => Some(name.0.clone()),
                    _ => None,
                })
                .take(MAX_NAMES)
                .collect(),
            Err(error) if error.is_no_records_found() => Vec::new(),
            Err(error) => return failure(&error),
        };
        if names.is_empty() {
            return Outcome::NoName;
        }
        let mut outcome = Outcome::Unconfirmed;
        for name in names {
            let forward = match address {
                IpAddr::V4(_) => self.0.ipv4_lookup(name.clone()).await,
                IpAddr::V6(_) => self.0.ipv6_lookup(name.clone()).await,
            };
            match forward {
                Ok(lookup)
                    if lookup
                        .answers()
                        .iter()
                        .any(|record| record_address(&record.data) == Some(address)) =>
                {
                    return Outcome::Name(label_value(&name));
                }
                Ok(_) => {}
                Err(error) if error.is_no_records_found() => {}
                // A name that could not be checked is not confirmed, and says why.
                Err(error) => outcome = failure(&error),
            }
        }
        outcome
    }
}

/// The outcome of a lookup that failed with `error` (other than by finding no record).
fn failure(error: &NetError) -> Outcome {
    match error {
        NetError::Timeout => Outcome::Timeout,
        _ => Outcome::Error,
    }
}

/// The address of an A or AAAA record.
fn record_address(data: &RData) -> Option<IpAddr> {
    match data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
        _ => None,
    }
}

/// A name as the `host` label shows it: lower case, in its ASCII (punycode) form, without
/// the root's trailing dot.
fn label_value(name: &Name) -> Arc<str> {
    let text = name.to_lowercase().to_ascii();
    Arc::from(text.strip_suffix('.').unwrap_or(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_show_in_lower_case_without_the_trailing_dot() {
        let name = Name::from_ascii("Web-1.Example.TEST.").unwrap();
        assert_eq!(&*label_value(&name), "web-1.example.test");
        let name = Name::from_utf8("bücher.example.test.").unwrap();
        assert_eq!(&*label_value(&name), "xn--bcher-kva.example.test");
    }

    #[test]
    fn only_address_records_give_addresses() {
        use hickory_resolver::proto::rr::rdata::{A, AAAA, PTR};
        let v4 = std::net::Ipv4Addr::new(198, 51, 100, 1);
        let v6 = "2001:db8::1".parse().unwrap();
        assert_eq!(record_address(&RData::A(A(v4))), Some(IpAddr::V4(v4)));
        assert_eq!(record_address(&RData::AAAA(AAAA(v6))), Some(IpAddr::V6(v6)));
        let ptr = RData::PTR(PTR(Name::from_ascii("a.test.").unwrap()));
        assert_eq!(record_address(&ptr), None);
    }

    #[test]
    fn outcomes_are_labelled_in_the_order_of_their_index() {
        let outcomes = [
            Outcome::Name("a.test".into()),
            Outcome::NoName,
            Outcome::Unconfirmed,
            Outcome::Timeout,
            Outcome::Error,
        ];
        for (index, outcome) in outcomes.iter().enumerate() {
            assert_eq!(outcome.index(), index);
        }
        assert_eq!(Outcome::Name("a.test".into()).to_string(), "name a.test");
        assert_eq!(Outcome::Unconfirmed.to_string(), "unconfirmed");
        assert_eq!(failure(&NetError::Timeout), Outcome::Timeout);
        assert_eq!(failure(&NetError::NoConnections), Outcome::Error);
    }
}
