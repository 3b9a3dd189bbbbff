//! Command-line flags. They keep the spelling and defaults of the original exporter, so
//! existing service definitions work unchanged. Apart from `--config`, they are built from the
//! settings' definitions: a setting with a flag gets `--its-key` (and its short form), its doc
//! comment as help, and the default from the built-in config file.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches, Parser};

use crate::settings::{DEFAULT_CONFIG, DEFINITIONS, Definition, Flag, Layer};

/// The command line: the config file, and the settings given as flags.
#[derive(Debug, Clone)]
pub struct Args {
    /// The config file, if one was given.
    pub(crate) config: Option<PathBuf>,
    /// The settings given as flags, which override the file.
    pub(crate) flags: Layer,
}

impl Parser for Args {}

impl CommandFactory for Args {
    fn command() -> Command {
        let defaults: toml::Table = DEFAULT_CONFIG.parse().unwrap_or_default();
        let file_only: Vec<&str> = DEFINITIONS
            .iter()
            .filter(|setting| setting.flag == Flag::None)
            .map(|setting| setting.key)
            .collect();
        Command::new("conntrack_exporter")
            .version(env!("CARGO_PKG_VERSION"))
            .about(
                "Prometheus exporter for Linux connection tracking: per remote host, how many \
                 connections are opening, open, closing and recently closed, and how many \
                 opened, closed and failed.",
            )
            .after_help(format!(
                "Every flag has a key of the same name (with underscores for dashes and dots) in \
                 the config file; \
                 flags override the file, the file overrides the built-in defaults. Keys with \
                 no flag: {}; the default file config/conntrack_exporter.toml documents them \
                 all. Needs CAP_NET_ADMIN to read the connection tracking table.",
                file_only.join(", ")
            ))
            .arg(
                Arg::new("config")
                    .short('c')
                    .long("config")
                    .value_name("PATH")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("Config file (TOML); without it the built-in defaults apply."),
            )
            .args(
                DEFINITIONS
                    .iter()
                    .filter_map(|setting| flag(setting, defaults.get(setting.key))),
            )
    }

    fn command_for_update() -> Command {
        Self::command()
    }
}

impl FromArgMatches for Args {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Args {
            config: matches.get_one::<PathBuf>("config").cloned(),
            flags: Layer::from_flags(matches),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        let update = Args::from_arg_matches(matches)?;
        self.config = update.config.or(self.config.take());
        self.flags = std::mem::take(&mut self.flags).overlay(update.flags);
        Ok(())
    }
}

/// The flag of `setting`, if it has one, with the `default` from the built-in config file in
/// its help.
fn flag(setting: &Definition, default: Option<&toml::Value>) -> Option<Arg> {
    let arg = Arg::new(setting.key);
    let dashed = || setting.key.replace('_', "-");
    let arg = match setting.flag {
        Flag::None => return None,
        Flag::Switch { short } => arg.long(dashed()).short(short).action(ArgAction::SetTrue),
        Flag::Value {
            short,
            long,
            value_name,
        } => arg
            .long(long.map_or_else(dashed, str::to_owned))
            .short(short)
            .value_name(value_name)
            .value_parser((setting.value_parser)())
            .action(ArgAction::Set),
    };
    let help = match default.and_then(shown_default) {
        Some(default) if matches!(setting.flag, Flag::Value { .. }) => {
            format!("{} [default: {default}]", setting.help())
        }
        _ => setting.help(),
    };
    Some(arg.help(help))
}

/// A default as `--help` shows it: a string without quotes, a list comma-separated, nothing
/// for an empty list or string.
fn shown_default(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) if text.is_empty() => None,
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Array(items) if items.is_empty() => None,
        toml::Value::Array(items) => {
            let items: Vec<String> = items.iter().filter_map(shown_default).collect();
            Some(items.join(","))
        }
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{EventFormat, Settings};

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
        let layer = args.flags;
        assert_eq!(layer.listen_port, Some(9101));
        assert_eq!(layer.ignore_hosts.unwrap().0.len(), 3);
        assert_eq!(layer.log_events, Some(true));
        assert_eq!(layer.log_events_format, Some(EventFormat::Json));
        assert_eq!(layer.debug, Some(true));
        assert_eq!(layer.bind_address.unwrap().to_string(), "127.0.0.1");
        assert_eq!(layer.listen_path.unwrap().as_str(), "/m");
        assert_eq!(layer.ensure_tracking, None);
    }

    #[test]
    fn every_flag_has_its_long_and_short_spelling() {
        let args = Args::try_parse_from([
            "x",
            "-c",
            "/etc/c.toml",
            "--bind-address",
            "::1",
            "-l",
            "0",
            "--listen-path",
            "/probe",
            "--ignore-hosts",
            "[fd00::5]:3306",
            "--log-events",
            "--log-events-format",
            "netfilter",
            "--debug",
            "--resync-interval",
            "5m",
            "--ensure-tracking",
            "--web.config.file",
            "/etc/web.yml",
            "--public-health-endpoints",
        ])
        .unwrap();
        assert_eq!(args.config, Some(PathBuf::from("/etc/c.toml")));
        let layer = args.flags;
        assert_eq!(layer.listen_port, Some(0));
        assert_eq!(layer.ensure_tracking, Some(true));
        assert_eq!(layer.resync_interval.unwrap().get().unwrap().as_secs(), 300);
        let web_config_file = layer.web_config_file.unwrap();
        assert_eq!(
            web_config_file.get(),
            Some(std::path::Path::new("/etc/web.yml"))
        );
        assert_eq!(layer.public_health_endpoints, Some(true));
        for absent in ["--naming", "--host-idle-timeout", "--netlink-buffer-bytes"] {
            assert!(
                Args::try_parse_from(["x", absent, "1"]).is_err(),
                "{absent}"
            );
        }
    }

    #[test]
    fn absent_flags_leave_the_file_alone() {
        let layer = Args::try_parse_from(["conntrack_exporter"]).unwrap().flags;
        assert!(layer.listen_port.is_none() && layer.log_events.is_none());
        assert!(layer.debug.is_none() && layer.ensure_tracking.is_none());
    }

    #[test]
    fn bad_values_are_refused_with_the_rule() {
        let error = Args::try_parse_from(["x", "--resync-interval", "soon"]).unwrap_err();
        assert!(error.to_string().contains("ms, s, m, h, d"), "{error}");
        let error = Args::try_parse_from(["x", "-i", "nonsense"]).unwrap_err();
        assert!(error.to_string().contains("CIDR"), "{error}");
        for (flag, value, rule) in [
            ("-p", "//", "absolute path"),
            ("-p", "/metrics?x=1", "absolute path"),
            ("--resync-interval", "1ms", "at least 1s"),
            ("-i", "fd00::5:3306", "[fd00::5]:3306"),
            ("-l", "70000", "65535"),
        ] {
            let error = Args::try_parse_from(["x", flag, value]).unwrap_err();
            assert!(error.to_string().contains(rule), "{flag} {value}: {error}");
        }
    }

    #[test]
    fn defaults_shown_in_help_are_the_built_in_ones() {
        let defaults = Settings::load(None, Layer::default()).unwrap();
        let help = Args::command().render_long_help().to_string();
        for shown in [
            format!("[default: {}]", defaults.bind_address),
            format!("[default: {}]", defaults.listen_port),
            format!("[default: {}]", defaults.listen_path.as_str()),
            "[default: netfilter]".to_owned(),
            format!(
                "[default: {}s]",
                defaults.resync_interval.get().unwrap().as_secs()
            ),
            format!("[default: {}]", defaults.max_connections),
        ] {
            assert!(help.contains(&shown), "--help shows no {shown}");
        }
        assert_eq!(defaults.log_events_format, EventFormat::Netfilter);
    }

    #[test]
    fn help_shows_the_default_file_s_value_of_every_flag() {
        let table: toml::Table = DEFAULT_CONFIG.parse().unwrap();
        let command = Args::command();
        for setting in DEFINITIONS {
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_id() == setting.key);
            let Some(arg) = arg else {
                assert_eq!(setting.flag, Flag::None, "{} has no flag", setting.key);
                continue;
            };
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let default = shown_default(&table[setting.key]);
            match (setting.flag, default) {
                (Flag::Value { .. }, Some(default)) => assert!(
                    help.ends_with(&format!("[default: {default}]")),
                    "{}: {help}",
                    setting.key
                ),
                _ => assert!(!help.contains("[default:"), "{}: {help}", setting.key),
            }
        }
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Args::command().debug_assert();
    }
}
