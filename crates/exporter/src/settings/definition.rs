//! How a setting is defined: [`define_settings!`] turns one entry per setting (doc, key, type,
//! flag) into everything that deals with settings, so that adding one is one entry plus its
//! line in the default config file.

use clap::ArgMatches;
use clap::parser::ValueSource;

/// How a setting is given on the command line. The long flag is the key with dashes
/// (`bind_address`: `--bind-address`), unless the ecosystem spells it otherwise
/// (`web_config_file`: `--web.config.file`, as every Prometheus exporter does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flag {
    /// None: the setting is only in the config file.
    None,
    /// `--long-name VALUE`, and `-s VALUE` when it has a short form.
    Value {
        /// The short form.
        short: Option<char>,
        /// The long form, when it is not the key with dashes.
        long: Option<&'static str>,
        /// The placeholder of the value in `--help`.
        value_name: &'static str,
    },
    /// `--long-name` alone, which sets the setting to true.
    Switch {
        /// The short form.
        short: Option<char>,
    },
}

impl Flag {
    /// `-short VALUE` and `--long-name VALUE`.
    pub(crate) const fn value(short: char, value_name: &'static str) -> Flag {
        Flag::Value {
            short: Some(short),
            long: None,
            value_name,
        }
    }

    /// `--long-name VALUE` only.
    pub(crate) const fn long_value(value_name: &'static str) -> Flag {
        Flag::Value {
            short: None,
            long: None,
            value_name,
        }
    }

    /// `--long VALUE` only, spelled `long` rather than after the key.
    pub(crate) const fn named_value(long: &'static str, value_name: &'static str) -> Flag {
        Flag::Value {
            short: None,
            long: Some(long),
            value_name,
        }
    }

    /// `-short` and `--long-name`, which set the setting to true.
    pub(crate) const fn switch(short: char) -> Flag {
        Flag::Switch { short: Some(short) }
    }

    /// `--long-name` only, which sets the setting to true.
    pub(crate) const fn long_switch() -> Flag {
        Flag::Switch { short: None }
    }
}

/// One setting, as the command line and `--help` see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Definition {
    /// The key in the config file.
    pub key: &'static str,
    /// What it does (the doc comment of its entry), which is its `--help` text.
    pub doc: &'static str,
    /// Its flag.
    pub flag: Flag,
    /// Reads a flag's text as the setting's type: its `ValueEnum` or `FromStr`.
    pub value_parser: fn() -> clap::builder::ValueParser,
}

impl Definition {
    /// The doc comment as one paragraph.
    pub(crate) fn help(&self) -> String {
        self.doc.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// The value of the setting `key` if its flag was given on the command line.
pub(crate) fn flag_value<T>(matches: &ArgMatches, key: &str, flag: Flag) -> Option<T>
where
    T: Clone + Send + Sync + 'static,
{
    if flag == Flag::None || matches.value_source(key) != Some(ValueSource::CommandLine) {
        return None;
    }
    matches.get_one::<T>(key).cloned()
}

/// Defines every setting from one entry each:
///
/// ```text
/// /// What it does; also its --help text.
/// key: Type = Flag::value('k', "VALUE");
/// ```
///
/// and generates from them [`Settings`](super::Settings) (one field per setting),
/// [`Layer`](super::Layer) (the same, each optional: what one source gives, with `overlay`,
/// `set` from a config file value, `from_flags` and `resolve`) and `DEFINITIONS` (key, help
/// and flag, from which the command line and `--help` are built). `Type` reads a config file
/// value with `Deserialize` and a flag's text with `ValueEnum` or `FromStr`.
macro_rules! define_settings {
    ($(
        $(#[doc = $doc:literal])+
        $key:ident: $type:ty = $flag:expr;
    )+) => {
        /// Every setting, resolved.
        #[derive(Debug, Clone, PartialEq)]
        pub(crate) struct Settings {
            $(
                $(#[doc = $doc])+
                pub $key: $type,
            )+
        }

        impl Settings {
            /// The keys whose values differ between `self` and `other`, in definition order.
            pub(crate) fn changed_keys(&self, other: &Settings) -> Vec<&'static str> {
                let mut changed = Vec::new();
                $(if self.$key != other.$key {
                    changed.push(stringify!($key));
                })+
                changed
            }
        }

        /// Settings as one source gives them (built-in defaults, config file, flags): any
        /// may be absent.
        #[derive(Debug, Clone, Default)]
        pub(crate) struct Layer {
            $(
                $(#[doc = $doc])+
                pub $key: Option<$type>,
            )+
        }

        impl Layer {
            /// This layer with every value that `top` sets replaced by `top`'s.
            pub(crate) fn overlay(self, top: Layer) -> Layer {
                Layer {
                    $($key: top.$key.or(self.$key),)+
                }
            }

            /// Sets `key` to the config file's `value`, or says what is wrong with the value;
            /// `None` when `key` is not a setting.
            fn set(
                &mut self,
                key: &str,
                value: toml::Value,
            ) -> Option<Result<(), toml::de::Error>> {
                match key {
                    $(stringify!($key) => Some(
                        <$type as serde::Deserialize>::deserialize(value)
                            .map(|value| self.$key = Some(value)),
                    ),)+
                    _ => None,
                }
            }

            /// The settings whose flags `matches` holds.
            pub(crate) fn from_flags(matches: &clap::ArgMatches) -> Layer {
                Layer {
                    $($key: definition::flag_value(matches, stringify!($key), $flag),)+
                }
            }

            /// Every setting, or an error naming one that no layer set.
            fn resolve(self) -> Result<Settings, SettingsError> {
                Ok(Settings {
                    $($key: self.$key.ok_or(SettingsError::MissingDefault(stringify!($key)))?,)+
                })
            }
        }

        /// Every setting: key, help and flag, in the order `--help` lists them.
        pub(crate) const DEFINITIONS: &[Definition] = &[$(
            Definition {
                key: stringify!($key),
                doc: concat!($($doc, "\n"),+),
                flag: $flag,
                value_parser: || clap::value_parser!($type).into(),
            },
        )+];
    };
}

pub(crate) use define_settings;
