//! The types of settings that are more than a number, an address or a switch: each reads
//! itself from a flag's text (`FromStr`) and from the config file (`Deserialize`), and refuses
//! values that make no sense with a message that says what is allowed.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use tracker::{HostGroup, HostPattern, LabelNames, ProtocolSet};

use super::SettingsError;
use crate::namespaces::NamespacePattern;

/// The longest duration a setting takes, in days: longer ones are typing mistakes.
pub(crate) const MAX_DURATION_DAYS: u64 = 365;
/// [`MAX_DURATION_DAYS`] as a duration.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(MAX_DURATION_DAYS * 86_400);
/// The shortest periodic resync interval: a resync reads the whole table, which takes a good
/// part of a second on a large one, so resyncs closer together would keep a core busy.
pub(crate) const MIN_RESYNC_INTERVAL: Duration = Duration::from_secs(1);
/// The smallest event receive queue: one page. Less would not hold a burst of a few dozen
/// events, and a queue of 0 bytes could never grow (it doubles after each overrun).
pub(crate) const MIN_QUEUE_BYTES: usize = 4096;
/// The largest event receive queue: 1 GiB. The kernel doubles the size it is given and keeps
/// it in a C `int`, so larger sizes would be cut silently.
pub(crate) const MAX_QUEUE_BYTES: usize = 1 << 30;

/// Implements `Deserialize` for types read from a config file string through their
/// `FromStr`, whose error becomes the message.
macro_rules! deserialize_from_str {
    ($($type:ty),+) => {$(
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    )+};
}

deserialize_from_str!(
    ListenPath,
    HumanDuration,
    ResyncInterval,
    OptionalPath,
    Timeout
);

/// A file that a setting may name: the empty string names none, so that the default config
/// file can hold the key with its default value, and a flag can undo the file's choice
/// (`--web.config.file ""`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OptionalPath(Option<PathBuf>);

impl OptionalPath {
    /// The path, unless none is named.
    pub(crate) fn get(&self) -> Option<&Path> {
        self.0.as_deref()
    }
}

impl FromStr for OptionalPath {
    type Err = Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(OptionalPath(
            (!text.is_empty()).then(|| PathBuf::from(text)),
        ))
    }
}

/// The HTTP path of the metrics: an absolute path other than `/` (the landing page), made of
/// URL-safe characters (letters, digits, `-`, `.`, `_`, `~`) between single slashes, without
/// `.` or `..` segments, query or fragment. A trailing slash is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenPath(String);

impl ListenPath {
    /// The path.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ListenPath {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let path = text.strip_suffix('/').unwrap_or(text);
        let clean_segment = |segment: &str| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"-._~".contains(&byte))
        };
        match path.strip_prefix('/') {
            // `/-/` holds the health endpoints.
            Some(segments) if segments.starts_with("-/") => {
                Err(SettingsError::ListenPath(text.to_owned()))
            }
            Some(segments) if segments.split('/').all(clean_segment) => {
                Ok(ListenPath(path.to_owned()))
            }
            _ => Err(SettingsError::ListenPath(text.to_owned())),
        }
    }
}

/// A duration: a whole number with a unit (`500ms`, `30s`, `5m`, `2h`, `1d`), several run
/// together (`1h30m`), or `0`; at most [`MAX_DURATION_DAYS`] days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed == "0" {
            return Ok(HumanDuration(Duration::ZERO));
        }
        // Spaces and fractions, which the parser would take, are kept out so that every
        // duration is written the same way.
        let duration = Some(trimmed)
            .filter(|text| !text.contains(|c: char| c.is_whitespace() || c == '.'))
            .and_then(|text| humantime::parse_duration(text).ok())
            .ok_or_else(|| SettingsError::Duration(text.to_owned()))?;
        if duration > MAX_DURATION {
            return Err(SettingsError::DurationTooLong(text.to_owned()));
        }
        Ok(HumanDuration(duration))
    }
}

/// A time limit: a [`HumanDuration`] above zero (a limit of zero would fail everything it
/// limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeout(pub Duration);

impl FromStr for Timeout {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let HumanDuration(limit) = text.parse()?;
        if limit.is_zero() {
            return Err(SettingsError::ZeroTimeout(text.to_owned()));
        }
        Ok(Timeout(limit))
    }
}

/// The periodic resync interval: a [`HumanDuration`] of at least [`MIN_RESYNC_INTERVAL`], or
/// `0` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResyncInterval(Option<Duration>);

impl ResyncInterval {
    /// The interval, or `None` when periodic resyncs are off.
    pub(crate) fn get(self) -> Option<Duration> {
        self.0
    }
}

impl FromStr for ResyncInterval {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let HumanDuration(interval) = text.parse()?;
        if interval.is_zero() {
            Ok(ResyncInterval(None))
        } else if interval < MIN_RESYNC_INTERVAL {
            Err(SettingsError::ResyncIntervalTooShort(text.to_owned()))
        } else {
            Ok(ResyncInterval(Some(interval)))
        }
    }
}

/// A size of the event receive queue in bytes, from [`MIN_QUEUE_BYTES`] to
/// [`MAX_QUEUE_BYTES`]. The config file gives it as a number, a flag as its digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueBytes(pub usize);

impl QueueBytes {
    fn new(bytes: u64, text: impl ToString) -> Result<QueueBytes, SettingsError> {
        usize::try_from(bytes)
            .ok()
            .filter(|bytes| (MIN_QUEUE_BYTES..=MAX_QUEUE_BYTES).contains(bytes))
            .map(QueueBytes)
            .ok_or_else(|| SettingsError::QueueBytes(text.to_string()))
    }
}

impl FromStr for QueueBytes {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = text
            .trim()
            .parse()
            .map_err(|_| SettingsError::QueueBytes(text.to_owned()))?;
        QueueBytes::new(bytes, text)
    }
}

impl<'de> Deserialize<'de> for QueueBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = u64::deserialize(deserializer)?;
        QueueBytes::new(bytes, bytes).map_err(serde::de::Error::custom)
    }
}

/// Host patterns: a comma-separated list on the command line, an array of strings in the
/// config file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct HostList(pub Vec<HostPattern>);

impl FromStr for HostList {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().is_empty() {
            return Ok(HostList::default());
        }
        let patterns = text.split(',').map(str::parse).collect::<Result<_, _>>()?;
        Ok(HostList(patterns))
    }
}

impl<'de> Deserialize<'de> for HostList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        let patterns = texts.iter().map(|text| text.parse::<HostPattern>());
        let patterns = patterns.collect::<Result<_, _>>();
        patterns.map(HostList).map_err(serde::de::Error::custom)
    }
}

/// Network namespace files to watch: a comma-separated list on the command line, an array of
/// strings in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct NamespaceList(pub Vec<NamespacePattern>);

impl FromStr for NamespaceList {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().is_empty() {
            return Ok(NamespaceList::default());
        }
        let patterns = text.split(',').map(|path| path.trim().parse());
        Ok(NamespaceList(patterns.collect::<Result<_, _>>()?))
    }
}

impl<'de> Deserialize<'de> for NamespaceList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        let patterns = texts.iter().map(|text| text.parse::<NamespacePattern>());
        let patterns = patterns.collect::<Result<_, _>>();
        patterns
            .map(NamespaceList)
            .map_err(serde::de::Error::custom)
    }
}

/// The labels of the per-connection families, in output order: a comma-separated list on
/// the command line, an array of strings in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct LabelList(pub LabelNames);

impl FromStr for LabelList {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(LabelList(text.parse()?))
    }
}

impl<'de> Deserialize<'de> for LabelList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        let names = texts.iter().map(|text| text.parse());
        let names = names.collect::<Result<_, _>>().and_then(LabelNames::new);
        names.map(LabelList).map_err(serde::de::Error::custom)
    }
}

/// The protocols counted: a comma-separated list on the command line, an array of strings
/// in the config file; names, numbers, or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ProtocolList(pub ProtocolSet);

impl FromStr for ProtocolList {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(ProtocolList(text.parse()?))
    }
}

impl<'de> Deserialize<'de> for ProtocolList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        let set = ProtocolSet::parse(texts.iter().map(String::as_str));
        set.map(ProtocolList).map_err(serde::de::Error::custom)
    }
}

/// A prefix length of `MAX` bits at most (32 for IPv4, 128 for IPv6): the config file gives
/// it as a number, a flag as its digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PrefixLength<const MAX: u8>(pub u8);

impl<const MAX: u8> PrefixLength<MAX> {
    fn new(bits: i64, text: impl ToString) -> Result<Self, SettingsError> {
        u8::try_from(bits)
            .ok()
            .filter(|bits| *bits <= MAX)
            .map(PrefixLength)
            .ok_or_else(|| SettingsError::PrefixLength {
                text: text.to_string(),
                max: MAX,
            })
    }
}

impl<const MAX: u8> FromStr for PrefixLength<MAX> {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bits = text.trim().parse().unwrap_or(-1);
        PrefixLength::new(bits, text)
    }
}

impl<'de, const MAX: u8> Deserialize<'de> for PrefixLength<MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bits = i64::deserialize(deserializer)?;
        PrefixLength::new(bits, bits).map_err(serde::de::Error::custom)
    }
}

/// The named host groups, each a `[[host_groups]]` table of the config file with a `name` and
/// its `networks`; checked as a whole (names non-empty and unique). There is no flag: a list of
/// named lists does not fit on a command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct HostGroupList(pub Vec<HostGroup>);

/// One `[[host_groups]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostGroupTable {
    name: String,
    networks: Vec<String>,
}

impl<'de> Deserialize<'de> for HostGroupList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let tables = Vec::<HostGroupTable>::deserialize(deserializer)?;
        let groups = tables
            .iter()
            .map(|table| HostGroup::parse(&table.name, table.networks.iter().map(String::as_str)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(serde::de::Error::custom)?;
        tracker::check_host_groups(&groups).map_err(serde::de::Error::custom)?;
        Ok(HostGroupList(groups))
    }
}

impl FromStr for HostGroupList {
    type Err = SettingsError;

    /// Never: host groups are set in the config file only.
    fn from_str(_: &str) -> Result<Self, Self::Err> {
        Err(SettingsError::FileOnly("host_groups"))
    }
}

/// Format of the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EventFormat {
    /// One line per event as the conntrack tool prints it, plus the remote host and group.
    Netfilter,
    /// One JSON object per line.
    Json,
}

/// Metric naming scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Naming {
    /// The original exporter's names, ending in `_total`.
    Seed,
    /// The same names without `_total`, as Prometheus conventions want for gauges.
    Plain,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        let parse = |text: &str| text.parse::<HumanDuration>().map(|d| d.0).ok();
        assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(parse("365d"), Some(MAX_DURATION));
        for bad in ["", "5", "m", "5 minutes", "-1s", "1.5s", "soon", "0x10s"] {
            let error = bad.parse::<HumanDuration>().unwrap_err().to_string();
            assert!(error.contains("ms, s, m, h, d"), "{bad:?}: {error}");
        }
        for too_long in ["366d", "2y", "99999999999999h"] {
            let error = too_long.parse::<HumanDuration>().unwrap_err().to_string();
            assert!(
                error.contains("too long") || error.contains("not a duration"),
                "{too_long:?}: {error}"
            );
        }
        assert!(
            "366d"
                .parse::<HumanDuration>()
                .unwrap_err()
                .to_string()
                .contains("at most 365d")
        );
    }

    #[test]
    fn a_resync_interval_is_zero_or_at_least_a_second() {
        let parse = |text: &str| text.parse::<ResyncInterval>().map(ResyncInterval::get);
        assert_eq!(parse("0").unwrap(), None);
        assert_eq!(parse("1s").unwrap(), Some(MIN_RESYNC_INTERVAL));
        assert_eq!(parse("60s").unwrap(), Some(Duration::from_secs(60)));
        for too_short in ["1ms", "999ms", "1ns"] {
            let error = parse(too_short).unwrap_err().to_string();
            assert!(
                error.contains("at least 1s") && error.contains("\"0\""),
                "{too_short}: {error}"
            );
        }
    }

    #[test]
    fn a_listen_path_is_a_clean_absolute_path() {
        for (text, path) in [
            ("/metrics", "/metrics"),
            ("/metrics/", "/metrics"),
            ("/probe/conntrack-v1.2_x~y", "/probe/conntrack-v1.2_x~y"),
        ] {
            assert_eq!(text.parse::<ListenPath>().unwrap().as_str(), path);
        }
        for bad in [
            "",
            "/",
            "//",
            "metrics",
            "/metrics?x=1",
            "/metrics#top",
            "/a//b",
            "/metrics//",
            "/../metrics",
            "/./metrics",
            "/a/..",
            "/met rics",
            "/<script>",
            "/%2e",
            "/m\"",
            "/métriques",
        ] {
            let error = bad.parse::<ListenPath>().unwrap_err().to_string();
            assert!(error.contains("absolute path"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn a_queue_size_is_within_what_the_kernel_takes() {
        assert_eq!("4096".parse().ok(), Some(QueueBytes(MIN_QUEUE_BYTES)));
        assert_eq!("1073741824".parse().ok(), Some(QueueBytes(MAX_QUEUE_BYTES)));
        for bad in [
            "0",
            "4095",
            "1073741825",
            "-1",
            "lots",
            "18446744073709551616",
        ] {
            let error = bad.parse::<QueueBytes>().unwrap_err().to_string();
            assert!(error.contains("from 4096 to 1073741824"), "{bad}: {error}");
        }
    }

    #[test]
    fn prefix_lengths_are_within_their_family() {
        assert_eq!("24".parse().ok(), Some(PrefixLength::<32>(24)));
        assert_eq!("128".parse().ok(), Some(PrefixLength::<128>(128)));
        assert_eq!("0".parse().ok(), Some(PrefixLength::<32>(0)));
        for bad in ["33", "-1", "", "x", "256"] {
            let error = bad.parse::<PrefixLength<32>>().unwrap_err().to_string();
            assert!(
                error.ends_with("expected a number of bits from 0 to 32"),
                "{bad}: {error}"
            );
        }
        assert!("129".parse::<PrefixLength<128>>().is_err());
    }

    #[test]
    fn namespace_lists_are_comma_separated_on_the_command_line() {
        let list: NamespaceList = "/run/netns/*, /proc/1/ns/net".parse().unwrap();
        assert_eq!(list.0.len(), 2);
        assert_eq!("".parse().ok(), Some(NamespaceList::default()));
        let error = "/run/netns/*,netns".parse::<NamespaceList>().unwrap_err();
        assert!(error.to_string().contains("\"netns\""), "{error}");
    }

    #[test]
    fn host_lists_are_comma_separated_on_the_command_line() {
        let list: HostList = "10.0.0.1, 10.0.0.2:22,192.168.0.0/16".parse().unwrap();
        assert_eq!(list.0.len(), 3);
        assert_eq!("".parse().ok(), Some(HostList::default()));
        let error = "10.0.0.1,,10.0.0.2".parse::<HostList>().unwrap_err();
        assert!(error.to_string().contains("CIDR"), "{error}");
    }
}
