//! `tls_server_config`: the names it uses (versions, cipher suites, curves, client
//! authentication), the checks that need several keys at once, and the rustls server
//! configuration built from it, with the `ring` provider.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use ring::digest;
use rustls::crypto::{CryptoProvider, SupportedKxGroup, ring as provider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

use crate::Error;
use crate::client_cert::{AllowedSans, AnyClientCert};
use crate::file::{TlsServerConfig, deserialize_from_str};

/// A TLS protocol version, in exporter-toolkit's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TlsVersion {
    Tls12,
    Tls13,
}

impl FromStr for TlsVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "TLS12" => Ok(TlsVersion::Tls12),
            "TLS13" => Ok(TlsVersion::Tls13),
            "TLS10" | "TLS11" => Err(format!(
                "{text} is not supported (TLS 1.0 and 1.1 are obsolete and not offered); expected TLS12 or TLS13"
            )),
            _ => Err(format!(
                "unknown TLS version {text:?}; expected TLS12, TLS13"
            )),
        }
    }
}

impl TlsVersion {
    fn protocol(self) -> &'static SupportedProtocolVersion {
        match self {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        }
    }
}

/// `client_auth_type`: whether clients are asked for a certificate, must send one, and whether
/// it must be signed by the client CA. The names are those of Go's `tls.ClientAuthType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthType {
    /// No certificate is asked for.
    #[default]
    NoClientCert,
    /// A certificate is asked for, not required, and not verified.
    RequestClientCert,
    /// A certificate is required, but not verified against a CA.
    RequireAnyClientCert,
    /// A certificate is not required; one that is sent must be signed by the client CA.
    VerifyClientCertIfGiven,
    /// A certificate signed by the client CA is required.
    RequireAndVerifyClientCert,
}

const CLIENT_AUTH_TYPES: &str = "NoClientCert, RequestClientCert, RequireAnyClientCert, \
                                 VerifyClientCertIfGiven, RequireAndVerifyClientCert";

impl FromStr for ClientAuthType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "" | "NoClientCert" => Ok(ClientAuthType::NoClientCert),
            "RequestClientCert" => Ok(ClientAuthType::RequestClientCert),
            // The older name, which exporter-toolkit still accepts.
            "RequireAnyClientCert" | "RequireClientCert" => {
                Ok(ClientAuthType::RequireAnyClientCert)
            }
            "VerifyClientCertIfGiven" => Ok(ClientAuthType::VerifyClientCertIfGiven),
            "RequireAndVerifyClientCert" => Ok(ClientAuthType::RequireAndVerifyClientCert),
            _ => Err(format!(
                "unknown client_auth_type {text:?}; expected one of {CLIENT_AUTH_TYPES}"
            )),
        }
    }
}

impl fmt::Display for ClientAuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl ClientAuthType {
    /// Whether a client certificate must chain to the client CA.
    fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuthType::VerifyClientCertIfGiven | ClientAuthType::RequireAndVerifyClientCert
        )
    }

    /// Whether a client must send a certificate.
    fn requires(self) -> bool {
        matches!(
            self,
            ClientAuthType::RequireAnyClientCert | ClientAuthType::RequireAndVerifyClientCert
        )
    }
}

/// A cipher suite that rustls offers, named as Go names it (the IANA names, which Go's
/// `tls.CipherSuites()` returns and exporter-toolkit users write).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SuiteName(SupportedCipherSuite);

impl SuiteName {
    /// Go's name of `suite`: the IANA name, which rustls also uses except for the TLS 1.3
    /// suites, where it writes `TLS13_` for `TLS_`.
    fn go_name(suite: &SupportedCipherSuite) -> Option<String> {
        let name = suite.suite().as_str()?;
        Some(match name.strip_prefix("TLS13_") {
            Some(rest) => format!("TLS_{rest}"),
            None => name.to_owned(),
        })
    }
}

impl FromStr for SuiteName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        provider::ALL_CIPHER_SUITES
            .iter()
            .find(|suite| SuiteName::go_name(suite).as_deref() == Some(text))
            .map(|suite| SuiteName(*suite))
            .ok_or_else(|| {
                let names: Vec<String> = provider::ALL_CIPHER_SUITES
                    .iter()
                    .filter_map(SuiteName::go_name)
                    .collect();
                format!(
                    "cipher suite {text:?} is not supported; supported: {}",
                    names.join(", ")
                )
            })
    }
}

/// An elliptic curve for key exchange, in Go's spelling.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CurveName(&'static dyn SupportedKxGroup);

impl FromStr for CurveName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "X25519" => Ok(CurveName(provider::kx_group::X25519)),
            "CurveP256" => Ok(CurveName(provider::kx_group::SECP256R1)),
            "CurveP384" => Ok(CurveName(provider::kx_group::SECP384R1)),
            _ => Err(format!(
                "curve {text:?} is not supported; supported: X25519, CurveP256, CurveP384"
            )),
        }
    }
}

deserialize_from_str!(TlsVersion, ClientAuthType, SuiteName, CurveName);

/// Where a certificate, key or CA comes from: a file, re-read when it changes, or the text
/// of the web configuration itself.
#[derive(Debug, Clone)]
enum Source {
    File { key: &'static str, path: PathBuf },
    Inline(String),
}

impl Source {
    /// The `file_key` path (relative to `dir`) or else the inline `text`, if either is set.
    fn new(
        file_key: &'static str,
        file: Option<String>,
        text: Option<String>,
        dir: &Path,
    ) -> Option<Source> {
        match (
            file.filter(|file| !file.is_empty()),
            text.filter(|text| !text.is_empty()),
        ) {
            (Some(file), _) => Some(Source::File {
                key: file_key,
                path: dir.join(file),
            }),
            (None, Some(text)) => Some(Source::Inline(text)),
            (None, None) => None,
        }
    }

    fn read(&self, config: &Path) -> Result<Vec<u8>, Error> {
        match self {
            Source::File { key, path } => std::fs::read(path).map_err(|error| Error::Invalid {
                path: config.to_owned(),
                key,
                message: format!("cannot read {}: {error}", path.display()),
            }),
            Source::Inline(text) => Ok(text.clone().into_bytes()),
        }
    }
}

/// The TLS settings, checked, from which a server configuration is built at start and again
/// whenever the files change.
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    /// The web configuration file, for errors.
    config: PathBuf,
    certificate: Source,
    key: Source,
    client_ca: Option<Source>,
    client_auth: ClientAuthType,
    allowed_sans: Option<Arc<[String]>>,
    versions: Vec<&'static SupportedProtocolVersion>,
    provider: Arc<CryptoProvider>,
    ignore_client_order: bool,
    alpn: Vec<Vec<u8>>,
}

/// The certificates and keys as read, whose digest tells whether they changed.
pub(crate) struct Inputs {
    certificate: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Inputs {
    /// SHA-256 of everything read: equal digests, equal inputs.
    pub(crate) fn digest(&self) -> digest::Digest {
        let mut context = digest::Context::new(&digest::SHA256);
        for part in [&self.certificate, &self.key] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        if let Some(client_ca) = &self.client_ca {
            context.update(client_ca);
        }
        context.finish()
    }
}

impl TlsSettings {
    /// The settings of `section`, whose relative paths are relative to `dir`; `None` when the
    /// section configures no TLS (exporter-toolkit then serves plain HTTP).
    pub(crate) fn resolve(
        config: &Path,
        section: TlsServerConfig,
        http2: bool,
    ) -> Result<Option<TlsSettings>, Error> {
        let invalid = |key: &'static str, message: String| Error::Invalid {
            path: config.to_owned(),
            key,
            message,
        };
        let dir = config.parent().unwrap_or(Path::new("."));
        let client_auth = section.client_auth_type.unwrap_or_default();
        let certificate = Source::new(
            "tls_server_config.cert_file",
            section.cert_file,
            section.cert,
            dir,
        );
        let key = Source::new(
            "tls_server_config.key_file",
            section.key_file,
            section.key,
            dir,
        );
        let client_ca = Source::new(
            "client_ca_file",
            section.client_ca_file,
            section.client_ca,
            dir,
        );
        let enabled = certificate.is_some()
            || key.is_some()
            || client_ca.is_some()
            || section.client_auth_type.is_some();
        if !enabled {
            return Ok(None);
        }
        let certificate = certificate.ok_or_else(|| {
            invalid(
                "tls_server_config",
                "missing one of cert or cert_file".into(),
            )
        })?;
        let key = key
            .ok_or_else(|| invalid("tls_server_config", "missing one of key or key_file".into()))?;
        if client_ca.is_some() && client_auth == ClientAuthType::NoClientCert {
            return Err(invalid(
                "tls_server_config.client_auth_type",
                "a client CA is configured but client_auth_type is NoClientCert; \
                 set RequireAndVerifyClientCert (or VerifyClientCertIfGiven)"
                    .into(),
            ));
        }
        if client_auth.verifies() && client_ca.is_none() {
            return Err(invalid(
                "tls_server_config.client_ca_file",
                format!("client_auth_type {client_auth} needs client_ca_file (or client_ca)"),
            ));
        }
        let allowed_sans = section.client_allowed_sans.filter(|sans| !sans.is_empty());
        if allowed_sans.is_some() && !client_auth.requires() {
            return Err(invalid(
                "tls_server_config.client_allowed_sans",
                format!(
                    "needs client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert, \
                     not {client_auth}: otherwise a client may send no certificate to match"
                ),
            ));
        }
        let min = section.min_version.unwrap_or(TlsVersion::Tls12);
        let max = section.max_version.unwrap_or(TlsVersion::Tls13);
        let versions: Vec<_> = [TlsVersion::Tls12, TlsVersion::Tls13]
            .into_iter()
            .filter(|version| (min..=max).contains(version))
            .map(TlsVersion::protocol)
            .collect();
        if versions.is_empty() {
            return Err(invalid(
                "tls_server_config.min_version",
                "min_version TLS13 is above max_version TLS12".into(),
            ));
        }
        let mut provider = provider::default_provider();
        if let Some(suites) = section.cipher_suites.filter(|suites| !suites.is_empty()) {
            // As in Go, the list selects and orders the TLS 1.2 suites; TLS 1.3 suites are
            // always all offered.
            provider
                .cipher_suites
                .retain(|suite| suite.version() == &rustls::version::TLS13);
            provider.cipher_suites.extend(
                suites
                    .iter()
                    .map(|suite| suite.0)
                    .filter(|suite| suite.version() == &rustls::version::TLS12),
            );
        }
        if let Some(curves) = section
            .curve_preferences
            .filter(|curves| !curves.is_empty())
        {
            provider.kx_groups = curves.iter().map(|curve| curve.0).collect();
        }
        let alpn = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        let settings = TlsSettings {
            config: config.to_owned(),
            certificate,
            key,
            client_ca,
            client_auth,
            allowed_sans: allowed_sans.map(Into::into),
            versions,
            provider: Arc::new(provider),
            ignore_client_order: section.prefer_server_cipher_suites.unwrap_or(true),
            alpn,
        };
        Ok(Some(settings))
    }

    /// Reads the certificate, key and client CA.
    pub(crate) fn read(&self) -> Result<Inputs, Error> {
        Ok(Inputs {
            certificate: self.certificate.read(&self.config)?,
            key: self.key.read(&self.config)?,
            client_ca: self
                .client_ca
                .as_ref()
                .map(|source| source.read(&self.config))
                .transpose()?,
        })
    }

    /// The paths of the files read, for messages.
    pub(crate) fn describe_sources(&self) -> String {
        let name = |source: &Source| match source {
            Source::File { path, .. } => path.display().to_string(),
            Source::Inline(_) => "inline".to_owned(),
        };
        let mut text = format!(
            "certificate {}, key {}",
            name(&self.certificate),
            name(&self.key)
        );
        if let Some(client_ca) = &self.client_ca {
            text.push_str(&format!(", client CA {}", name(client_ca)));
        }
        text
    }

    /// How clients authenticate.
    pub(crate) fn client_auth(&self) -> ClientAuthType {
        self.client_auth
    }

    /// Builds the server configuration from `inputs`, checking that the key belongs to the
    /// certificate.
    pub(crate) fn build(&self, inputs: &Inputs) -> Result<ServerConfig, Error> {
        let invalid = |key: &'static str, message: String| Error::Invalid {
            path: self.config.clone(),
            key,
            message,
        };
        let chain = certificates(&inputs.certificate)
            .map_err(|message| invalid("tls_server_config.cert_file", message))?;
        let private_key = PrivateKeyDer::from_pem_slice(&inputs.key).map_err(|error| {
            invalid(
                "tls_server_config.key_file",
                format!("no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC): {error}"),
            )
        })?;
        let verifier = self.client_verifier(inputs)?;
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&self.versions)
            .map_err(|error| invalid("tls_server_config.cipher_suites", error.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, private_key)
            .map_err(|error| match error {
                rustls::Error::InconsistentKeys(_) => invalid(
                    "tls_server_config.key_file",
                    "the private key does not belong to the certificate of cert_file".into(),
                ),
                error => invalid(
                    "tls_server_config.key_file",
                    format!("unusable private key: {error}"),
                ),
            })?;
        config.alpn_protocols = self.alpn.clone();
        config.ignore_client_order = self.ignore_client_order;
        Ok(config)
    }

    fn client_verifier(&self, inputs: &Inputs) -> Result<Arc<dyn ClientCertVerifier>, Error> {
        let invalid = |message: String| Error::Invalid {
            path: self.config.clone(),
            key: "tls_server_config.client_ca_file",
            message,
        };
        let verifier: Arc<dyn ClientCertVerifier> = match self.client_auth {
            ClientAuthType::NoClientCert => return Ok(WebPkiClientVerifier::no_client_auth()),
            ClientAuthType::RequestClientCert | ClientAuthType::RequireAnyClientCert => Arc::new(
                AnyClientCert::new(self.client_auth.requires(), self.provider.clone()),
            ),
            ClientAuthType::VerifyClientCertIfGiven
            | ClientAuthType::RequireAndVerifyClientCert => {
                let pem = inputs
                    .client_ca
                    .as_deref()
                    .expect("resolve() requires a client CA for the verifying modes");
                let mut roots = RootCertStore::empty();
                for certificate in certificates(pem).map_err(invalid)? {
                    roots
                        .add(certificate)
                        .map_err(|error| invalid(format!("unusable CA certificate: {error}")))?;
                }
                let builder = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    self.provider.clone(),
                );
                let builder = if self.client_auth.requires() {
                    builder
                } else {
                    builder.allow_unauthenticated()
                };
                builder
                    .build()
                    .map_err(|error| invalid(error.to_string()))?
            }
        };
        Ok(match &self.allowed_sans {
            Some(allowed) => Arc::new(AllowedSans::new(verifier, allowed.clone())),
            None => verifier,
        })
    }
}

/// The certificates of a PEM text; at least one.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("malformed PEM certificate: {error}"))?;
    if chain.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) found".into());
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_go_names_and_old_ones_are_refused_clearly() {
        assert_eq!("TLS12".parse::<TlsVersion>(), Ok(TlsVersion::Tls12));
        assert_eq!("TLS13".parse::<TlsVersion>(), Ok(TlsVersion::Tls13));
        assert!(
            "TLS10"
                .parse::<TlsVersion>()
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            "tls13"
                .parse::<TlsVersion>()
                .unwrap_err()
                .contains("expected TLS12, TLS13")
        );
    }

    #[test]
    fn client_auth_types_take_go_names_and_the_old_alias() {
        assert_eq!("".parse(), Ok(ClientAuthType::NoClientCert));
        assert_eq!(
            "RequireClientCert".parse(),
            Ok(ClientAuthType::RequireAnyClientCert)
        );
        assert_eq!(
            "RequireAndVerifyClientCert".parse(),
            Ok(ClientAuthType::RequireAndVerifyClientCert)
        );
        let error = "Always".parse::<ClientAuthType>().unwrap_err();
        assert!(error.ends_with(CLIENT_AUTH_TYPES), "{error}");
    }

    #[test]
    fn cipher_suites_take_go_names_and_list_the_supported_ones() {
        for name in [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ] {
            let suite: SuiteName = name.parse().unwrap();
            assert_eq!(SuiteName::go_name(&suite.0).as_deref(), Some(name));
        }
        let error = "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
            .parse::<SuiteName>()
            .unwrap_err();
        assert!(error.starts_with("cipher suite \"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA\" is not supported; supported: TLS_"), "{error}");
        assert!(
            error.contains("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
            "{error}"
        );
    }

    #[test]
    fn curves_take_go_names() {
        assert!("CurveP256".parse::<CurveName>().is_ok());
        assert!("X25519".parse::<CurveName>().is_ok());
        assert!(
            "CurveP521"
                .parse::<CurveName>()
                .unwrap_err()
                .contains("supported: X25519, CurveP256, CurveP384")
        );
    }
}
