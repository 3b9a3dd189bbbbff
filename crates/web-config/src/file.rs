//! The web configuration file as written: the exporter-toolkit format, YAML, every key
//! optional. Values that name something (a TLS version, a cipher suite, a header) are checked
//! while the file is read, so that an error points at its line.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;

use crate::Error;
use crate::headers::SecurityHeaders;
use crate::tls::{ClientAuthType, CurveName, SuiteName, TlsVersion};

/// The whole file. Keys exporter-toolkit defines but this crate does not implement are absent,
/// so that they are refused instead of silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebConfigFile {
    pub tls_server_config: Option<TlsServerConfig>,
    pub http_server_config: Option<HttpServerConfig>,
    pub basic_auth_users: Option<BTreeMap<String, BcryptHash>>,
}

/// `tls_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsServerConfig {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub client_ca_file: Option<String>,
    pub client_auth_type: Option<ClientAuthType>,
    pub client_allowed_sans: Option<Vec<String>>,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
    pub cipher_suites: Option<Vec<SuiteName>>,
    pub prefer_server_cipher_suites: Option<bool>,
    pub curve_preferences: Option<Vec<CurveName>>,
}

/// `http_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpServerConfig {
    pub http2: Option<bool>,
    pub headers: Option<SecurityHeaders>,
}

/// A bcrypt hash from `basic_auth_users`, checked for its form when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BcryptHash(pub String);

impl FromStr for BcryptHash {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse::<bcrypt::HashParts>()
            .map(|_| BcryptHash(text.to_owned()))
            .map_err(|error| {
                format!("not a bcrypt hash ({error}): expected the form $2y$10$..., as made by `htpasswd -nBC 10 \"\" | tr -d ':\\n'`")
            })
    }
}

/// Implements `Deserialize` through `FromStr`, whose error text becomes the error at the
/// value's line.
macro_rules! deserialize_from_str {
    ($($name:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
pub(crate) use deserialize_from_str;

deserialize_from_str!(BcryptHash);

/// Parses the text of the file at `path`.
pub(crate) fn parse(path: &Path, text: &str) -> Result<WebConfigFile, Error> {
    if text.trim().is_empty() {
        return Ok(WebConfigFile::default());
    }
    serde_norway::from_str::<Option<WebConfigFile>>(text)
        .map(Option::unwrap_or_default)
        .map_err(|error| {
            let line = error.location().map(|location| location.line());
            let mut message = error.to_string();
            // The message ends with the position, which the error gives as `file:line`.
            if let Some(position) = message.rfind(" at line ") {
                message.truncate(position);
            }
            // The message starts with the path of the map holding the offending entry; the
            // entry's own key is on its line.
            let key = line
                .and_then(|line| text.lines().nth(line.checked_sub(1)?))
                .and_then(|line| line.trim_start().trim_start_matches("- ").split_once(':'))
                .map(|(key, _)| key.trim())
                .filter(|key| !key.is_empty() && !key.starts_with('#'));
            if let Some(key) = key {
                message = match message.split_once(": ") {
                    Some((path, _)) if path == key || path.ends_with(&format!(".{key}")) => message,
                    Some((path, rest)) if !path.contains(' ') => format!("{path}.{key}: {rest}"),
                    _ => format!("{key}: {message}"),
                };
            }
            Error::Syntax {
                path: path.to_owned(),
                line,
                message,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        parse(Path::new("/etc/web.yml"), text)
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn empty_file_and_empty_sections_mean_nothing_configured() {
        let file = parse(Path::new("web.yml"), "").unwrap();
        assert!(file.tls_server_config.is_none() && file.basic_auth_users.is_none());
        let file = parse(Path::new("web.yml"), "# nothing\n").unwrap();
        assert!(file.http_server_config.is_none());
        let file = parse(
            Path::new("web.yml"),
            "tls_server_config:\nhttp_server_config:\n  headers:\nbasic_auth_users:\n",
        )
        .unwrap();
        assert!(file.tls_server_config.is_none());
        assert!(file.http_server_config.unwrap().headers.is_none());
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        assert_eq!(
            error("tls_server_config:\n  cert_file: a.crt\n  cert_flie: b.crt\n"),
            "/etc/web.yml:3: tls_server_config.cert_flie: unknown field `cert_flie`, expected one of \
             `cert`, `key`, `client_ca`, `cert_file`, `key_file`, `client_ca_file`, \
             `client_auth_type`, `client_allowed_sans`, `min_version`, `max_version`, \
             `cipher_suites`, `prefer_server_cipher_suites`, `curve_preferences`"
        );
        assert!(
            error("\n\nrate_limit:\n  burst: 3\n")
                .starts_with("/etc/web.yml:3: rate_limit: unknown field `rate_limit`")
        );
    }

    #[test]
    fn wrong_values_name_their_line_key_and_what_is_allowed() {
        let message = error("tls_server_config:\n  min_version: TLS14\n");
        assert!(
            message.starts_with("/etc/web.yml:2: tls_server_config.min_version: "),
            "{message}"
        );
        assert!(message.contains("TLS12, TLS13"), "{message}");

        let message = error("basic_auth_users:\n  alice: secret\n");
        assert!(
            message.starts_with("/etc/web.yml:2: basic_auth_users.alice: not a bcrypt hash"),
            "{message}"
        );

        let message = error("http_server_config:\n  http2: maybe\n");
        assert!(
            message.starts_with("/etc/web.yml:2: http_server_config.http2: invalid type"),
            "{message}"
        );
    }

    #[test]
    fn the_documented_example_file_is_valid() {
        let example = include_str!("../../../config/web-config.example.yml");
        let file = parse(Path::new("web-config.example.yml"), example).unwrap();
        let tls = file.tls_server_config.unwrap();
        assert_eq!(
            tls.cert_file.as_deref(),
            Some("/etc/conntrack-exporter/tls/server.crt")
        );
        // Its commented-out entries are valid too, once uncommented (the hash aside, which
        // the reader makes).
        let is_entry = |text: &str| {
            let text = text.trim_start();
            let key_end = text
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(text.len());
            text.starts_with("- ")
                || (key_end > 0 && text[key_end..].starts_with(':') && {
                    let after = &text[key_end + 1..];
                    after.is_empty() || after.starts_with(' ')
                })
        };
        let uncommented: String = example
            .lines()
            .map(|line| {
                let indent = &line[..line.len() - line.trim_start().len()];
                match line.trim_start().strip_prefix("# ") {
                    Some(rest) if is_entry(rest) => format!("{indent}{rest}\n"),
                    _ => format!("{line}\n"),
                }
            })
            .collect::<String>()
            .replace(
                "$2y$10$...",
                "$2y$04$Tv0GlZao/dMnlg92XliyVO5AFJAXIEv.7JFY5BV1WL6I/4zjeSX6.",
            );
        let file = parse(Path::new("uncommented.yml"), &uncommented)
            .unwrap_or_else(|error| panic!("{error}\n{uncommented}"));
        let tls = file.tls_server_config.unwrap();
        assert!(tls.client_auth_type.is_some() && tls.cipher_suites.is_some());
        assert!(tls.curve_preferences.is_some() && tls.client_allowed_sans.is_some());
        assert_eq!(file.http_server_config.unwrap().headers.unwrap().0.len(), 5);
        assert_eq!(file.basic_auth_users.unwrap().len(), 1);
    }

    #[test]
    fn malformed_yaml_is_one_line_with_its_position() {
        let message = error("tls_server_config:\n  cert_file: [a\n");
        assert!(message.starts_with("/etc/web.yml:"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}
