//! The exporter's settings: built-in defaults, overlaid by the config file, overlaid by the
//! command line.
//!
//! The defaults are the documented default config file itself, compiled in, so the file and
//! the behaviour cannot drift apart.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use tracker::HostPattern;

/// The default config file, as shipped in `config/conntrack_exporter.toml`.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("../../../config/conntrack_exporter.toml");

/// Every setting, resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// Address of the HTTP endpoint.
    pub bind_address: IpAddr,
    /// Port of the HTTP endpoint.
    pub listen_port: u16,
    /// Path of the metrics.
    pub listen_path: ListenPath,
    /// Remote hosts whose connections are not counted.
    pub ignore_hosts: Vec<HostPattern>,
    /// Print connection events to standard output.
    pub log_events: bool,
    /// Their format.
    pub log_events_format: EventFormat,
    /// Debug logging.
    pub debug: bool,
    /// Time between periodic resyncs; `None` disables them.
    pub resync_interval: Option<Duration>,
    /// Metric naming scheme.
    pub naming: Naming,
    /// How long a host without connections stays in the output.
    pub host_idle_timeout: Duration,
    /// Switch connection tracking on at start.
    pub ensure_tracking: bool,
    /// Initial event receive queue size.
    pub netlink_buffer_bytes: usize,
    /// Largest size the queue grows to after overruns.
    pub netlink_buffer_max_bytes: usize,
    /// HTTP connections open at once.
    pub max_connections: NonZeroUsize,
}

/// Settings as written in a file or given as flags: anything may be absent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Layer {
    pub bind_address: Option<IpAddr>,
    pub listen_port: Option<u16>,
    pub listen_path: Option<Parsed<ListenPath>>,
    pub ignore_hosts: Option<Vec<Parsed<HostPattern>>>,
    pub log_events: Option<bool>,
    pub log_events_format: Option<EventFormat>,
    pub debug: Option<bool>,
    pub resync_interval: Option<Parsed<HumanDuration>>,
    pub naming: Option<Naming>,
    pub host_idle_timeout: Option<Parsed<HumanDuration>>,
    pub ensure_tracking: Option<bool>,
    pub netlink_buffer_bytes: Option<usize>,
    pub netlink_buffer_max_bytes: Option<usize>,
    pub max_connections: Option<NonZeroUsize>,
}

impl Layer {
    /// This layer with every value that `top` sets replaced by `top`'s.
    pub(crate) fn overlay(self, top: Layer) -> Layer {
        Layer {
            bind_address: top.bind_address.or(self.bind_address),
            listen_port: top.listen_port.or(self.listen_port),
            listen_path: top.listen_path.or(self.listen_path),
            ignore_hosts: top.ignore_hosts.or(self.ignore_hosts),
            log_events: top.log_events.or(self.log_events),
            log_events_format: top.log_events_format.or(self.log_events_format),
            debug: top.debug.or(self.debug),
            resync_interval: top.resync_interval.or(self.resync_interval),
            naming: top.naming.or(self.naming),
            host_idle_timeout: top.host_idle_timeout.or(self.host_idle_timeout),
            ensure_tracking: top.ensure_tracking.or(self.ensure_tracking),
            netlink_buffer_bytes: top.netlink_buffer_bytes.or(self.netlink_buffer_bytes),
            netlink_buffer_max_bytes: top
                .netlink_buffer_max_bytes
                .or(self.netlink_buffer_max_bytes),
            max_connections: top.max_connections.or(self.max_connections),
        }
    }

    /// Parses TOML text; `origin` names it in errors.
    pub(crate) fn parse(origin: &str, text: &str) -> Result<Layer, SettingsError> {
        toml::from_str(text).map_err(|error| {
            let line = error
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            // Type errors do not name their key; the line they point at does.
            let key = line
                .and_then(|line| text.lines().nth(line - 1))
                .and_then(|line| line.split_once('='))
                .map(|(key, _)| key.trim().to_owned())
                .filter(|key| !key.is_empty() && !key.starts_with('#'));
            SettingsError::Invalid {
                origin: origin.to_owned(),
                line,
                key,
                message: error.message().trim().to_owned(),
            }
        })
    }
}

impl Settings {
    /// Resolves the built-in defaults overlaid by the file at `path` (if any), overlaid by
    /// `flags`.
    pub(crate) fn load(path: Option<&Path>, flags: Layer) -> Result<Settings, SettingsError> {
        let defaults = Layer::parse("built-in defaults", DEFAULT_CONFIG)?;
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Layer::parse(&path.display().to_string(), &text)?
            }
            None => Layer::default(),
        };
        Settings::resolve(defaults.overlay(file).overlay(flags))
    }

    fn resolve(layer: Layer) -> Result<Settings, SettingsError> {
        fn required<T>(value: Option<T>, key: &'static str) -> Result<T, SettingsError> {
            value.ok_or(SettingsError::MissingDefault(key))
        }
        let settings = Settings {
            bind_address: required(layer.bind_address, "bind_address")?,
            listen_port: required(layer.listen_port, "listen_port")?,
            listen_path: required(layer.listen_path, "listen_path")?.0,
            ignore_hosts: required(layer.ignore_hosts, "ignore_hosts")?
                .into_iter()
                .map(|pattern| pattern.0)
                .collect(),
            log_events: required(layer.log_events, "log_events")?,
            log_events_format: required(layer.log_events_format, "log_events_format")?,
            debug: required(layer.debug, "debug")?,
            resync_interval: Some(required(layer.resync_interval, "resync_interval")?.0.0)
                .filter(|interval| !interval.is_zero()),
            naming: required(layer.naming, "naming")?,
            host_idle_timeout: required(layer.host_idle_timeout, "host_idle_timeout")?.0.0,
            ensure_tracking: required(layer.ensure_tracking, "ensure_tracking")?,
            netlink_buffer_bytes: required(layer.netlink_buffer_bytes, "netlink_buffer_bytes")?,
            netlink_buffer_max_bytes: required(
                layer.netlink_buffer_max_bytes,
                "netlink_buffer_max_bytes",
            )?,
            max_connections: required(layer.max_connections, "max_connections")?,
        };
        if settings.netlink_buffer_max_bytes < settings.netlink_buffer_bytes {
            return Err(SettingsError::Conflict(format!(
                "netlink_buffer_max_bytes ({}) must be at least netlink_buffer_bytes ({})",
                settings.netlink_buffer_max_bytes, settings.netlink_buffer_bytes
            )));
        }
        Ok(settings)
    }
}

/// Why the settings could not be loaded.
#[derive(Debug)]
pub(crate) enum SettingsError {
    /// The config file could not be read.
    Read {
        /// Its path.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// The config file is not valid.
    Invalid {
        /// The file (or "built-in defaults").
        origin: String,
        /// Line of the offending text, when known.
        line: Option<usize>,
        /// The key on that line, when known.
        key: Option<String>,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// Two settings contradict each other.
    Conflict(String),
    /// The built-in defaults lack a key (a packaging error).
    MissingDefault(&'static str),
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::Read { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            SettingsError::Invalid {
                origin,
                line,
                key,
                message,
            } => {
                write!(f, "{origin}")?;
                if let Some(line) = line {
                    write!(f, ":{line}")?;
                }
                match key {
                    Some(key) if !message.contains(key.as_str()) => {
                        write!(f, ": {key}: {message}")
                    }
                    _ => write!(f, ": {message}"),
                }
            }
            SettingsError::Conflict(message) => write!(f, "invalid settings: {message}"),
            SettingsError::MissingDefault(key) => {
                write!(f, "the built-in default config lacks the key {key}")
            }
        }
    }
}

impl std::error::Error for SettingsError {}

/// A value read from a string through its `FromStr`, whose error becomes the config error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parsed<T>(pub T);

impl<'de, T> Deserialize<'de> for Parsed<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map(Parsed).map_err(serde::de::Error::custom)
    }
}

/// The HTTP path of the metrics: starts with `/` and is not `/` itself (the landing page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenPath(String);

impl ListenPath {
    /// The path.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ListenPath {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let path = text.trim_end_matches('/');
        if !text.starts_with('/')
            || path.is_empty()
            || text.contains(char::is_whitespace)
            || path.starts_with("/-/")
        {
            return Err(format!(
                "{text:?} is not a metrics path: expected an absolute path other than \"/\" and \
                 outside \"/-/\" (the health endpoints), such as \"/metrics\""
            ));
        }
        Ok(ListenPath(path.to_owned()))
    }
}

/// A duration written with a unit: `500ms`, `30s`, `5m`, `2h`, `1d`, or `0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            format!(
                "{text:?} is not a duration: expected a number with a unit (ms, s, m, h, d), such as \"30s\" or \"5m\", or \"0\""
            )
        };
        let trimmed = text.trim();
        if trimmed == "0" {
            return Ok(HumanDuration(Duration::ZERO));
        }
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        let (number, unit) = trimmed.split_at(split);
        let number: u64 = number.parse().map_err(|_| invalid())?;
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(invalid()),
        };
        let millis = number.checked_mul(unit_ms).ok_or_else(invalid)?;
        Ok(HumanDuration(Duration::from_millis(millis)))
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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

    fn load_text(text: &str) -> Result<Settings, SettingsError> {
        let defaults = Layer::parse("built-in defaults", DEFAULT_CONFIG)?;
        Settings::resolve(defaults.overlay(Layer::parse("test.toml", text)?))
    }

    #[test]
    fn the_default_file_sets_every_key() {
        let settings = load_text("").unwrap();
        assert_eq!(settings.listen_port, 9318);
        assert_eq!(settings.bind_address.to_string(), "0.0.0.0");
        assert_eq!(settings.listen_path.as_str(), "/metrics");
        assert_eq!(settings.resync_interval, Some(Duration::from_secs(60)));
        assert_eq!(settings.naming, Naming::Seed);
        assert!(!settings.ensure_tracking);
        assert_eq!(settings.max_connections.get(), 512);
    }

    #[test]
    fn file_values_override_defaults_and_flags_override_both() {
        let file = Layer::parse("f", "listen_port = 9100\nnaming = \"plain\"\n").unwrap();
        let flags = Layer {
            listen_port: Some(9200),
            ..Layer::default()
        };
        let defaults = Layer::parse("d", DEFAULT_CONFIG).unwrap();
        let settings = Settings::resolve(defaults.overlay(file).overlay(flags)).unwrap();
        assert_eq!(settings.listen_port, 9200);
        assert_eq!(settings.naming, Naming::Plain);
    }

    #[test]
    fn resync_interval_zero_disables() {
        let settings = load_text("resync_interval = \"0\"").unwrap();
        assert_eq!(settings.resync_interval, None);
    }

    #[test]
    fn errors_name_file_line_key_and_what_is_allowed() {
        let cases = [
            (
                "\n\nlisten_port = \"abc\"\n",
                "test.toml:3: listen_port: ",
                "u16",
            ),
            (
                "listen_prot = 1\n",
                "test.toml:1: ",
                "unknown field `listen_prot`",
            ),
            (
                "\nnaming = \"fancy\"\n",
                "test.toml:2: naming",
                "`seed` or `plain`",
            ),
            (
                "resync_interval = \"soon\"\n",
                "test.toml:1: ",
                "ms, s, m, h, d",
            ),
            (
                "ignore_hosts = [\"10.0.0.0/99\"]\n",
                "test.toml:1: ",
                "CIDR",
            ),
            (
                "listen_path = \"metrics\"\n",
                "test.toml:1: ",
                "absolute path",
            ),
            ("listen_port = 70000\n", "test.toml:1: listen_port", "u16"),
            (
                "log_events_format = \"xml\"\n",
                "test.toml:1: ",
                "`netfilter` or `json`",
            ),
            (
                "\nmax_connections = 0\n",
                "test.toml:2: max_connections",
                "nonzero",
            ),
            (
                "listen_path = \"/-/ready\"\n",
                "test.toml:1: ",
                "health endpoints",
            ),
        ];
        for (text, prefix, allowed) in cases {
            let message = load_text(text).unwrap_err().to_string();
            assert!(
                message.starts_with(prefix),
                "{message:?} should start with {prefix:?}"
            );
            assert!(
                message.contains(allowed),
                "{message:?} should mention {allowed:?}"
            );
        }
    }

    #[test]
    fn contradicting_buffer_sizes_are_rejected() {
        let text = "netlink_buffer_bytes = 1000\nnetlink_buffer_max_bytes = 10\n";
        let message = load_text(text).unwrap_err().to_string();
        assert!(message.contains("netlink_buffer_max_bytes"), "{message}");
    }

    #[test]
    fn durations_parse_with_units() {
        let parse = |text: &str| text.parse::<HumanDuration>().map(|d| d.0);
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "m", "5 minutes", "-1s", "1.5s"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
