//! Why the settings could not be loaded: each message is one line that names the file, the
//! line and the key where there is one, and says what is allowed.

use std::io;
use std::path::PathBuf;

use tracker::{HostGroupError, LabelError, PatternError, ProtocolError};

use super::values::{MAX_DURATION_DAYS, MAX_QUEUE_BYTES, MIN_QUEUE_BYTES, MIN_RESYNC_INTERVAL};

/// Why the settings could not be loaded, or why one value is not allowed.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file could not be opened or read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// Its path.
        path: PathBuf,
        /// The reason.
        source: io::Error,
    },
    /// The config file is a directory, a device, a FIFO or a socket: reading it would hang or
    /// never end.
    #[error("config file {}: is {kind}, not a regular file", path.display())]
    NotAFile {
        /// Its path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The config file is larger than any config file of the exporter.
    #[error("config file {}: larger than {limit} bytes, too large for a config file", path.display())]
    TooLarge {
        /// Its path.
        path: PathBuf,
        /// The largest size read.
        limit: u64,
    },
    /// The config file is not valid TOML.
    #[error("{origin}{}: {message}", line.map(|line| format!(":{line}")).unwrap_or_default())]
    Syntax {
        /// The file (or "built-in defaults").
        origin: String,
        /// The line of the error, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// The config file has a key that is not a setting.
    #[error("{origin}:{line}: unknown field `{key}`, expected one of {expected}")]
    UnknownKey {
        /// The file.
        origin: String,
        /// The line of the key.
        line: usize,
        /// The key.
        key: String,
        /// The keys there are.
        expected: String,
    },
    /// A value in the config file is not allowed for its key.
    #[error("{origin}:{line}: {key}: {message}")]
    Value {
        /// The file.
        origin: String,
        /// The line of the key.
        line: usize,
        /// The key.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// Not a duration.
    #[error(
        "{0:?} is not a duration: expected a whole number with a unit (ms, s, m, h, d), such as \"30s\", \"5m\" or \"1h30m\", or \"0\""
    )]
    Duration(String),
    /// A duration too long to mean anything to the exporter.
    #[error("{0:?} is too long: at most {MAX_DURATION_DAYS}d")]
    DurationTooLong(String),
    /// A time limit of zero.
    #[error("{0:?} is too short: expected a duration above 0, such as \"2s\"")]
    ZeroTimeout(String),
    /// A resync interval so short that the exporter would do little but re-read the table.
    #[error(
        "{0:?} is too short: at least {min}, or \"0\" to turn the periodic resync off",
        min = humantime::format_duration(MIN_RESYNC_INTERVAL)
    )]
    ResyncIntervalTooShort(String),
    /// Not a path the metrics can be served at.
    #[error(
        "{0:?} is not a metrics path: expected an absolute path other than \"/\", such as \"/metrics\", made of letters, digits, '-', '.', '_' and '~' between single slashes, without \".\" or \"..\" segments, and outside \"/-/\" (the health endpoints)"
    )]
    ListenPath(String),
    /// Not a queue size, or one the kernel cannot use.
    #[error(
        "{0} is not a queue size: expected a number of bytes from {MIN_QUEUE_BYTES} to {MAX_QUEUE_BYTES}"
    )]
    QueueBytes(String),
    /// Not a prefix length of its address family.
    #[error("{text} is not a prefix length: expected a number of bits from 0 to {max}")]
    PrefixLength {
        /// The value given.
        text: String,
        /// The family's address length in bits.
        max: u8,
    },
    /// A setting given as a flag that only the config file can hold.
    #[error("{0} is set in the config file only")]
    FileOnly(&'static str),
    /// Not a path or pattern of namespace files.
    #[error(
        "{0:?} is not a namespace path: expected an absolute path, with * and ? in its last component only, such as \"/run/netns/*\" or \"/proc/1/ns/net\""
    )]
    NamespacePattern(String),
    /// Not a host pattern.
    #[error(transparent)]
    HostPattern(#[from] PatternError),
    /// Not a list of protocols.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Host groups that cannot be used together.
    #[error(transparent)]
    HostGroup(#[from] HostGroupError),
    /// Not a list of labels.
    #[error(transparent)]
    Label(#[from] LabelError),
    /// The event receive queue may not grow to the size it starts at.
    #[error(
        "invalid settings: netlink_buffer_max_bytes ({max}) must be at least netlink_buffer_bytes ({initial})"
    )]
    QueueCannotGrow {
        /// `netlink_buffer_bytes`.
        initial: usize,
        /// `netlink_buffer_max_bytes`.
        max: usize,
    },
    /// The built-in defaults lack a key (a packaging error).
    #[error("the built-in default config lacks the key {0}")]
    MissingDefault(&'static str),
}
