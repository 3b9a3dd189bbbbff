//! Why a web configuration could not be loaded. Every message is one line that names the file
//! and, where it is known, the line and the key.

use std::path::PathBuf;

/// A web configuration file, or a file it names, that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The web configuration file could not be read.
    #[error("cannot read web configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML text is malformed, or a key or value is not allowed.
    #[error("{}{}: {message}", path.display(), line.map(|line| format!(":{line}")).unwrap_or_default())]
    Syntax {
        /// The web configuration file.
        path: PathBuf,
        /// The line of the offending text, when known.
        line: Option<usize>,
        /// The key and what is wrong with it, with what is allowed.
        message: String,
    },
    /// The settings are well-formed but cannot work, or the certificate, key or CA files they
    /// name cannot be read or used.
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        /// The web configuration file.
        path: PathBuf,
        /// The key at fault, as a path from the top (`tls_server_config.key_file`).
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}
