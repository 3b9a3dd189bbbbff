//! The exporter's settings: built-in defaults, overlaid by the config file, overlaid by the
//! command line.
//!
//! Each setting is defined once, in the list below: its doc comment (also its `--help`
//! text), key, type and flag. The struct of resolved settings, the layers that the defaults,
//! the file and the flags give, their overlay, the flags themselves and `--help` all come
//! from that list. The defaults are the documented default config file itself, compiled in,
//! so the file and the behaviour cannot drift apart; a test checks that it holds exactly the
//! keys defined here. Adding a setting: one entry here, one documented line in
//! `config/conntrack_exporter.toml`.

mod definition;
mod error;
mod file;
mod values;

use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::Path;

use definition::define_settings;
pub(crate) use definition::{Definition, Flag};
pub use error::SettingsError;
pub(crate) use values::EventFormat;
pub use values::Naming;
use values::{
    HostGroupList, HostList, HumanDuration, LabelList, ListenPath, NamespaceList, OptionalPath,
    PrefixLength, ProtocolList, QueueBytes, ResyncInterval, Timeout,
};

/// The default config file, as shipped in `config/conntrack_exporter.toml`.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("../../../../config/conntrack_exporter.toml");

/// How the built-in defaults are named in errors.
const BUILT_IN: &str = "built-in defaults";

define_settings! {
    /// Address of the HTTP endpoint.
    bind_address: IpAddr = Flag::value('b', "IP");

    /// Port of the HTTP endpoint; 0 takes a free port, which the log names.
    listen_port: u16 = Flag::value('l', "PORT");

    /// Path of the metrics: an absolute path of letters, digits, '-', '.', '_' and '~'
    /// between single slashes.
    listen_path: ListenPath = Flag::value('p', "PATH");

    /// Comma-separated remote hosts not to count: IPs, IP:port ([fd00::5]:3306 for IPv6) or
    /// CIDR networks.
    ignore_hosts: HostList = Flag::value('i', "HOSTS");

    /// Print one line per connection event to standard output.
    log_events: bool = Flag::switch('e');

    /// Format of the event lines.
    log_events_format: EventFormat = Flag::value('f', "FORMAT");

    /// Log debugging detail to standard error.
    debug: bool = Flag::switch('d');

    /// Time between full re-reads of the table that correct the live view, e.g. 30s or 5m;
    /// at least 1s, or 0 to turn them off.
    resync_interval: ResyncInterval = Flag::long_value("DURATION");

    /// Comma-separated protocols whose connections are counted: tcp, udp, udplite, sctp,
    /// dccp, icmp, icmpv6, gre or a protocol number; or all.
    protocols: ProtocolList = Flag::long_value("PROTOCOLS");

    /// Comma-separated labels of the per-connection families, in order: host, direction,
    /// service_port, local_host, protocol, zone. Leaving host out sums over hosts.
    labels: LabelList = Flag::long_value("LABELS");

    /// Count bytes and packets per label set (needs net.netfilter.nf_conntrack_acct = 1).
    /// Live connections' growth is read at each resync.
    accounting: bool = Flag::long_switch();

    /// Metric names: seed (the original exporter's, ending in _total) or plain.
    naming: Naming = Flag::None;

    /// How long a host whose connections have all gone stays in the output, with zeros.
    host_idle_timeout: HumanDuration = Flag::None;

    /// Named groups of networks, [[host_groups]] tables of a name and its networks: a remote
    /// address in a group's networks is reported as host="<name>"; the longest prefix wins.
    host_groups: HostGroupList = Flag::None;

    /// Prefix length, 0 to 32, of the network an IPv4 remote address outside every host
    /// group is reported as (24: host="203.0.113.0/24"); 32 reports the address.
    host_prefix_length_v4: PrefixLength<32> = Flag::long_value("BITS");

    /// Prefix length, 0 to 128, of the network an IPv6 remote address outside every host
    /// group is reported as (64: host="2001:db8:1:2::/64"); 128 reports the address.
    host_prefix_length_v6: PrefixLength<128> = Flag::long_value("BITS");

    /// Most label sets in the output; connections of further label sets are counted in one
    /// set whose labels all read "other". 0: no bound.
    max_series: usize = Flag::long_value("N");

    /// Switch connection tracking on in this network namespace while running.
    ensure_tracking: bool = Flag::long_switch();

    /// Size of the kernel's event receive queue in bytes.
    netlink_buffer_bytes: QueueBytes = Flag::None;

    /// Largest size in bytes the event receive queue doubles to after events were lost.
    netlink_buffer_max_bytes: QueueBytes = Flag::None;

    /// Have the kernel drop the events of protocols not counted before queuing them (a BPF
    /// filter on the event socket); false: read and check every event.
    kernel_event_filter: bool = Flag::None;

    /// HTTP connections open at once; when all are taken, the one quiet the longest makes
    /// room.
    max_connections: NonZeroUsize = Flag::long_value("N");

    /// Web configuration file in the format of Prometheus' exporter-toolkit: TLS, client
    /// certificates, basic auth, security headers, HTTP/2. Empty: plain HTTP, open to all.
    web_config_file: OptionalPath = Flag::named_value("web.config.file", "PATH");

    /// Serve /-/healthy and /-/ready without the basic auth credentials of the web
    /// configuration file, for probes that have none.
    public_health_endpoints: bool = Flag::long_switch();

    /// Show the name of a remote address (its PTR record, if that name resolves back to the
    /// address) instead of the address, through the system's resolver configuration.
    resolve_hosts: bool = Flag::long_switch();

    /// How long a confirmed name is used before it is looked up again.
    resolve_cache_ttl: HumanDuration = Flag::None;

    /// How long an address without a confirmed name (or whose lookup failed) waits before
    /// it is looked up again.
    resolve_negative_cache_ttl: HumanDuration = Flag::None;

    /// Addresses whose names (or their absence) are remembered at most.
    resolve_cache_entries: NonZeroUsize = Flag::None;

    /// Name lookups started per second at most.
    resolve_rate: NonZeroU32 = Flag::None;

    /// Name lookups under way at once at most.
    resolve_max_concurrent: NonZeroUsize = Flag::None;

    /// How long one name lookup (the PTR record and its confirmation) may take; above 0.
    resolve_timeout: Timeout = Flag::None;

    /// Comma-separated network namespace files to watch as well, each labelled netns (and
    /// pod_uid, for a Kubernetes pod's): absolute paths, with * and ? in the last component
    /// only, such as /run/netns/* or /proc/1/ns/net. Empty: the exporter's own namespace
    /// only, without the netns label.
    namespaces: NamespaceList = Flag::long_value("PATHS");

    /// With namespaces, watch the exporter's own network namespace too (netns="host").
    watch_own_namespace: bool = Flag::None;

    /// With namespaces, the most namespaces watched at once; further ones are skipped and
    /// counted.
    max_namespaces: NonZeroUsize = Flag::None;
}

/// The settings that a reload of the config file (SIGHUP) applies while the exporter runs:
/// the log level, which hosts are counted (followed by a resync that classifies every
/// connection again) and the resync interval (counted from the reload). The others (the
/// listening socket, the tracking switch, metric names, the host timeout, the host groups,
/// prefix lengths and series bound, the event log, the queues, the web configuration) take
/// effect at the next start; a reload that changes one of
/// them names it in a log line.
pub(crate) const RELOADABLE: &[&str] = &["debug", "ignore_hosts", "resync_interval"];

/// Checks the text of a config file as the exporter reads one at start: every key and value,
/// over the built-in defaults. `origin` names the file in the error, which is the one line a
/// user would see. For tools that vet a file before installing it, and for the fuzz target
/// that holds the loader to "an error, never a panic".
pub fn check_config_text(origin: &str, text: &str) -> Result<(), SettingsError> {
    Settings::over_defaults(Layer::parse(origin, text)?).map(drop)
}

impl Settings {
    /// Resolves the built-in defaults overlaid by the file at `path` (if any), overlaid by
    /// `flags`.
    pub(crate) fn load(path: Option<&Path>, flags: Layer) -> Result<Settings, SettingsError> {
        let file = match path {
            Some(path) => Layer::parse(&path.display().to_string(), &file::read(path)?)?,
            None => Layer::default(),
        };
        Settings::over_defaults(file.overlay(flags))
    }

    /// The settings a reload gives: the file at `path` read again, under the same `flags`.
    /// Returns them with the keys that changed but take effect only at restart.
    pub(crate) fn reload(
        &self,
        path: Option<&Path>,
        flags: Layer,
    ) -> Result<(Settings, Vec<&'static str>), SettingsError> {
        let reloaded = Settings::load(path, flags)?;
        let mut needing_restart = self.changed_keys(&reloaded);
        needing_restart.retain(|key| !RELOADABLE.contains(key));
        Ok((reloaded, needing_restart))
    }

    /// Resolves the built-in defaults overlaid by `layer`, and checks the settings against
    /// each other.
    fn over_defaults(layer: Layer) -> Result<Settings, SettingsError> {
        let defaults = Layer::parse(BUILT_IN, DEFAULT_CONFIG)?;
        let settings = defaults.overlay(layer).resolve()?;
        let (initial, max) = (
            settings.netlink_buffer_bytes.0,
            settings.netlink_buffer_max_bytes.0,
        );
        if max < initial {
            return Err(SettingsError::QueueCannotGrow { initial, max });
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::time::Duration;

    #[test]
    fn every_reloadable_key_is_a_setting() {
        for key in RELOADABLE {
            assert!(DEFINITIONS.iter().any(|d| d.key == *key), "{key}");
        }
    }

    #[test]
    fn a_reload_names_the_changes_that_need_a_restart() {
        let directory = std::env::temp_dir().join(format!("reload-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("config.toml");
        std::fs::write(&path, "debug = false\nlisten_port = 9318\n").unwrap();
        let running = Settings::load(Some(&path), Layer::default()).unwrap();
        std::fs::write(
            &path,
            "debug = true\nlisten_port = 9319\nnaming = \"plain\"\n",
        )
        .unwrap();
        let (reloaded, needing_restart) = running.reload(Some(&path), Layer::default()).unwrap();
        assert!(reloaded.debug);
        assert_eq!(needing_restart, ["listen_port", "naming"]);
        std::fs::write(&path, "debug = maybe\n").unwrap();
        let error = running.reload(Some(&path), Layer::default()).unwrap_err();
        assert!(!error.to_string().contains('\n'), "{error}");
        std::fs::remove_dir_all(&directory).unwrap();
    }

    fn load_text(text: &str) -> Result<Settings, SettingsError> {
        Settings::over_defaults(Layer::parse("test.toml", text)?)
    }

    #[test]
    fn the_default_file_sets_every_key() {
        let settings = load_text("").unwrap();
        assert_eq!(settings.listen_port, 9318);
        assert_eq!(settings.bind_address.to_string(), "0.0.0.0");
        assert_eq!(settings.listen_path.as_str(), "/metrics");
        assert_eq!(
            settings.resync_interval.get(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(settings.naming, Naming::Seed);
        assert_eq!(settings.labels.0, tracker::LabelNames::default());
        assert_eq!(settings.protocols.0, tracker::ProtocolSet::TCP);
        assert!(!settings.ensure_tracking);
        assert_eq!(settings.max_connections.get(), 512);
        assert!(!settings.accounting);
        assert_eq!(settings.web_config_file.get(), None);
        assert!(!settings.public_health_endpoints);
        assert_eq!(settings.host_groups, HostGroupList::default());
        assert_eq!(
            (
                settings.host_prefix_length_v4,
                settings.host_prefix_length_v6
            ),
            (PrefixLength(32), PrefixLength(128))
        );
        assert_eq!(settings.max_series, 10_000);
        assert!(!settings.resolve_hosts);
        assert_eq!(settings.resolve_cache_ttl.0, Duration::from_secs(3600));
        assert_eq!(
            settings.resolve_negative_cache_ttl.0,
            Duration::from_secs(300)
        );
        assert_eq!(settings.resolve_cache_entries.get(), 10_000);
        assert_eq!(settings.resolve_rate.get(), 20);
        assert_eq!(settings.resolve_max_concurrent.get(), 16);
        assert_eq!(settings.resolve_timeout.0, Duration::from_secs(2));
    }

    #[test]
    fn host_groups_are_tables_or_inline_tables() {
        let tables = "max_series = 0\n[[host_groups]]\nname = \"db\"\n\
                      networks = [\"10.1.2.0/24\", \"fd00:1:2::5\"]\n";
        let inline = "host_groups = [{ name = \"db\", networks = [\"10.1.2.0/24\", \"fd00:1:2::5\"] }]\n\
                      max_series = 0\n";
        for text in [tables, inline] {
            let settings = load_text(text).unwrap();
            let groups = &settings.host_groups.0;
            assert_eq!(groups.len(), 1);
            assert_eq!(groups[0].name, "db");
            let networks: Vec<String> = groups[0].networks.iter().map(|n| n.to_string()).collect();
            assert_eq!(networks, ["10.1.2.0/24", "fd00:1:2::5/128"]);
            assert_eq!(settings.max_series, 0);
        }
    }

    #[test]
    fn an_empty_web_config_file_names_none() {
        let settings = load_text("web_config_file = \"/etc/web.yml\"").unwrap();
        assert_eq!(
            settings.web_config_file.get(),
            Some(Path::new("/etc/web.yml"))
        );
        let file = Layer::parse("f", "web_config_file = \"/etc/web.yml\"").unwrap();
        let flags = Layer {
            web_config_file: Some("".parse().unwrap()),
            ..Layer::default()
        };
        let settings = Settings::over_defaults(file.overlay(flags)).unwrap();
        assert_eq!(settings.web_config_file.get(), None);
    }

    #[test]
    fn the_default_file_holds_exactly_the_defined_keys() {
        let table: toml::Table = DEFAULT_CONFIG.parse().unwrap();
        let in_file: BTreeSet<&str> = table.keys().map(String::as_str).collect();
        let defined: BTreeSet<&str> = DEFINITIONS.iter().map(|setting| setting.key).collect();
        assert_eq!(in_file, defined);
        assert_eq!(defined.len(), DEFINITIONS.len(), "a key is defined twice");
    }

    #[test]
    fn file_values_override_defaults_and_flags_override_both() {
        let file = Layer::parse("f", "listen_port = 9100\nnaming = \"plain\"\n").unwrap();
        let flags = Layer {
            listen_port: Some(9200),
            ..Layer::default()
        };
        let settings = Settings::over_defaults(file.overlay(flags)).unwrap();
        assert_eq!(settings.listen_port, 9200);
        assert_eq!(settings.naming, Naming::Plain);
    }

    #[test]
    fn resync_interval_zero_disables() {
        let settings = load_text("resync_interval = \"0\"").unwrap();
        assert_eq!(settings.resync_interval.get(), None);
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
                "\nnamespaces = [\"/run/netns/*\", \"/proc/*/ns/net\"]\n",
                "test.toml:2: namespaces: ",
                "with * and ? in its last component only",
            ),
            (
                "max_namespaces = 0\n",
                "test.toml:1: max_namespaces: ",
                "nonzero",
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
            ("debug = true\n[debug]\n", "test.toml:2: ", "duplicate key"),
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
            ("[web]\nport = 1\n", "test.toml:1: ", "unknown field `web`"),
            (
                "\nlabels = [\"host\", \"port\"]\n",
                "test.toml:2: labels: \"port\" is not a label",
                "expected host, direction, service_port, local_host, protocol or zone",
            ),
            (
                "protocols = [\"tcp\", \"quic\"]\n",
                "test.toml:1: protocols: \"quic\" is not a protocol",
                "tcp, udp, udplite, sctp, dccp, icmp, icmpv6, gre or a protocol number",
            ),
            (
                "labels = [\"host\", \"host\"]\n",
                "test.toml:1: labels",
                "label host is listed twice",
            ),
            (
                "\nhost_prefix_length_v4 = 33\n",
                "test.toml:2: host_prefix_length_v4: 33 is not a prefix length",
                "from 0 to 32",
            ),
            (
                "host_prefix_length_v6 = 129\n",
                "test.toml:1: host_prefix_length_v6: 129 is not a prefix length",
                "from 0 to 128",
            ),
            ("max_series = -1\n", "test.toml:1: max_series", "usize"),
            (
                "debug = false\n\n[[host_groups]]\nname = \"db\"\nnetworks = [\"10.0.0.0/8\"]\n\n\
                 [[host_groups]]\nname = \"db\"\nnetworks = []\n",
                "test.toml:3: host_groups: ",
                "group \"db\" is defined twice: group names must be unique",
            ),
            (
                "[[host_groups]]\nname = \"\"\nnetworks = []\n",
                "test.toml:1: host_groups: ",
                "every group needs a name",
            ),
            (
                "[[host_groups]]\nname = \"other\"\nnetworks = []\n",
                "test.toml:1: host_groups: ",
                "reserved for the overflow label set",
            ),
            (
                "[[host_groups]]\nname = \"db\"\nnetworks = [\"10.0.0.0/33\"]\n",
                "test.toml:1: host_groups: group \"db\": \"10.0.0.0/33\" is not a network",
                "CIDR notation",
            ),
            (
                "[[host_groups]]\nnme = \"db\"\nnetworks = []\n",
                "test.toml:1: host_groups: ",
                "unknown field `nme`, expected `name` or `networks`",
            ),
            // Values and keys quoted in an error keep it on one line.
            (
                "naming = \"f\\ncy\"\n",
                "test.toml:1: naming: ",
                "unknown variant `f\\ncy`, expected `seed` or `plain`",
            ),
            (
                "\"a\\nb\" = 1\n",
                "test.toml:1: unknown field `a\\nb`",
                "expected one of",
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
            assert!(!message.contains('\n'), "{message:?} should be one line");
        }
    }

    #[test]
    fn absurd_values_are_refused_with_the_rule() {
        let cases = [
            (
                "netlink_buffer_bytes = 0\n",
                "test.toml:1: netlink_buffer_bytes: 0 is not a queue size: expected a number of bytes from 4096 to 1073741824",
            ),
            (
                "\nnetlink_buffer_max_bytes = 4294967296\n",
                "test.toml:2: netlink_buffer_max_bytes: 4294967296 is not a queue size",
            ),
            (
                "netlink_buffer_bytes = -1\n",
                "test.toml:1: netlink_buffer_bytes: invalid value: integer `-1`, expected u64",
            ),
            (
                "listen_path = \"//\"\n",
                "test.toml:1: listen_path: \"//\" is not a metrics path",
            ),
            (
                "listen_path = \"/metrics?x=1\"\n",
                "test.toml:1: listen_path: \"/metrics?x=1\" is not a metrics path",
            ),
            (
                "resync_interval = \"1ms\"\n",
                "test.toml:1: resync_interval: \"1ms\" is too short: at least 1s, or \"0\" to turn the periodic resync off",
            ),
            (
                "host_idle_timeout = \"1000y\"\n",
                "test.toml:1: host_idle_timeout: \"1000y\" is too long: at most 365d",
            ),
            (
                "resolve_timeout = \"0\"\n",
                "test.toml:1: resolve_timeout: \"0\" is too short: expected a duration above 0",
            ),
            (
                "\nresolve_rate = 0\n",
                "test.toml:2: resolve_rate: invalid value: integer `0`, expected a nonzero u32",
            ),
            (
                "ignore_hosts = [\"10.0.0.1\",\n  \"fd00::5:3306\"]\n",
                "test.toml:1: ignore_hosts: \"fd00::5:3306\" is ambiguous: write \"[fd00::5]:3306\"",
            ),
        ];
        for (text, expected) in cases {
            let message = load_text(text).unwrap_err().to_string();
            assert!(
                message.starts_with(expected),
                "{message:?} should start with {expected:?}"
            );
        }
    }

    #[test]
    fn contradicting_buffer_sizes_are_rejected() {
        let text = "netlink_buffer_bytes = 8192\nnetlink_buffer_max_bytes = 4096\n";
        let message = load_text(text).unwrap_err().to_string();
        assert!(message.contains("netlink_buffer_max_bytes"), "{message}");
    }

    #[test]
    fn the_smallest_queue_that_cannot_grow_is_allowed() {
        let text = "netlink_buffer_bytes = 4096\nnetlink_buffer_max_bytes = 4096\n";
        let settings = load_text(text).unwrap();
        assert_eq!(settings.netlink_buffer_max_bytes, QueueBytes(4096));
    }
}
