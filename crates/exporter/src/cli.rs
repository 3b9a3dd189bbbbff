//! Command-line flags. They keep the spelling and defaults of the original exporter, so
//! existing service definitions work unchanged.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::Parser;
use tracker::HostPattern;

use crate::settings::{EventFormat, HumanDuration, Layer, ListenPath, Parsed};

/// Prometheus exporter for Linux connection tracking: per remote host, how many TCP
/// connections are opening, open, closing and recently closed.
#[derive(Debug, Parser)]
#[command(name = "conntrack_exporter", version)]
#[command(
    after_help = "Every flag has a key of the same name (with underscores) in the \
config file; flags override the file, the file overrides the built-in defaults. \
Keys with no flag: naming (seed | plain metric names), host_idle_timeout, \
netlink_buffer_bytes, netlink_buffer_max_bytes; the default file \
config/conntrack_exporter.toml documents them all. \
Needs CAP_NET_ADMIN to read the connection tracking table."
)]
pub struct Args {
    /// Config file (TOML); without it the built-in defaults apply.
    #[arg(short = 'c', long, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,

    /// Address of the HTTP endpoint [default: 0.0.0.0].
    #[arg(short = 'b', long, value_name = "IP")]
    pub(crate) bind_address: Option<IpAddr>,

    /// Port of the HTTP endpoint [default: 9318].
    #[arg(short = 'l', long, value_name = "PORT")]
    pub(crate) listen_port: Option<u16>,

    /// Path of the metrics [default: /metrics].
    #[arg(short = 'p', long, value_name = "PATH")]
    pub(crate) listen_path: Option<ListenPath>,

    /// Comma-separated remote hosts not to count: IPs, IP:port or CIDR networks.
    #[arg(short = 'i', long, value_name = "HOSTS", value_delimiter = ',')]
    pub(crate) ignore_hosts: Option<Vec<HostPattern>>,

    /// Print one line per connection event to standard output.
    #[arg(short = 'e', long)]
    pub(crate) log_events: bool,

    /// Format of the event lines [default: netfilter].
    #[arg(short = 'f', long, value_enum, value_name = "FORMAT")]
    pub(crate) log_events_format: Option<EventFormat>,

    /// Log debugging detail to standard error.
    #[arg(short = 'd', long)]
    pub(crate) debug: bool,

    /// Time between full re-reads of the table that correct the live view, e.g. 30s or 5m;
    /// 0 turns them off [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub(crate) resync_interval: Option<HumanDuration>,

    /// Switch connection tracking on in this network namespace while running.
    #[arg(long)]
    pub(crate) ensure_tracking: bool,

    /// HTTP connections open at once; when all are taken, the one quiet the longest makes
    /// room [default: 512].
    #[arg(long, value_name = "N")]
    pub(crate) max_connections: Option<NonZeroUsize>,
}

impl Args {
    /// The flags that were given, as a settings layer over the config file.
    pub(crate) fn layer(&self) -> Layer {
        Layer {
            bind_address: self.bind_address,
            listen_port: self.listen_port,
            listen_path: self.listen_path.clone().map(Parsed),
            ignore_hosts: self
                .ignore_hosts
                .clone()
                .map(|hosts| hosts.into_iter().map(Parsed).collect()),
            log_events: self.log_events.then_some(true),
            log_events_format: self.log_events_format,
            debug: self.debug.then_some(true),
            resync_interval: self.resync_interval.map(Parsed),
            ensure_tracking: self.ensure_tracking.then_some(true),
            max_connections: self.max_connections,
            ..Layer::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_of_the_original_exporter_parse() {
        let args = Args::try_parse_from([
            "conntrack_exporter",
            "-b",
            "127.0.0.1",
            "--listen-port=9101",
            "-p",
            "/m",
            "-i",
            "10.0.0.1,10.0.0.2:22,192.168.0.0/16",
            "-e",
            "-f",
            "json",
            "-d",
        ])
        .unwrap();
        let layer = args.layer();
        assert_eq!(layer.listen_port, Some(9101));
        assert_eq!(layer.ignore_hosts.unwrap().len(), 3);
        assert_eq!(layer.log_events, Some(true));
        assert_eq!(layer.log_events_format, Some(EventFormat::Json));
        assert_eq!(layer.debug, Some(true));
    }

    #[test]
    fn absent_flags_leave_the_file_alone() {
        let layer = Args::try_parse_from(["conntrack_exporter"])
            .unwrap()
            .layer();
        assert!(layer.listen_port.is_none() && layer.log_events.is_none());
    }

    #[test]
    fn bad_values_are_refused_with_the_rule() {
        let error = Args::try_parse_from(["x", "--resync-interval", "soon"]).unwrap_err();
        assert!(error.to_string().contains("ms, s, m, h, d"), "{error}");
        let error = Args::try_parse_from(["x", "-i", "nonsense"]).unwrap_err();
        assert!(error.to_string().contains("CIDR"), "{error}");
    }

    #[test]
    fn defaults_shown_in_help_are_the_built_in_ones() {
        let defaults = crate::settings::Settings::load(None, Layer::default()).unwrap();
        let help = Args::command().render_long_help().to_string();
        for shown in [
            format!("[default: {}]", defaults.bind_address),
            format!("[default: {}]", defaults.listen_port),
            format!("[default: {}]", defaults.listen_path.as_str()),
            "[default: netfilter]".to_owned(),
            format!(
                "[default: {}s]",
                defaults.resync_interval.unwrap().as_secs()
            ),
            format!("[default: {}]", defaults.max_connections),
        ] {
            assert!(help.contains(&shown), "--help shows no {shown}");
        }
        assert_eq!(defaults.log_events_format, EventFormat::Netfilter);
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Args::command().debug_assert();
    }
}
