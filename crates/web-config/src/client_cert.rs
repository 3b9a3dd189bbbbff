//! Client certificate checks beyond what rustls ships: accepting a certificate that no CA
//! vouches for (`RequestClientCert`, `RequireAnyClientCert`), and `client_allowed_sans`.
//!
//! Even an unverified certificate must be the client's: the handshake signature is always
//! checked against the certificate's key, so a client cannot present someone else's
//! certificate.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Asks for a client certificate and accepts any, as Go's `RequestClientCert` (optional) and
/// `RequireAnyClientCert` (mandatory) do.
#[derive(Debug)]
pub(crate) struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl AnyClientCert {
    pub(crate) fn new(mandatory: bool, provider: Arc<CryptoProvider>) -> AnyClientCert {
        AnyClientCert {
            mandatory,
            provider,
        }
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // Not verified, but it must at least be a certificate.
        X509Certificate::from_der(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Another verifier, then: the certificate must carry one of the allowed subject alternative
/// names (DNS name, e-mail address, IP address or URI, compared exactly as text, as
/// exporter-toolkit compares them).
pub(crate) struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Arc<[String]>,
}

impl AllowedSans {
    pub(crate) fn new(inner: Arc<dyn ClientCertVerifier>, allowed: Arc<[String]>) -> AllowedSans {
        AllowedSans { inner, allowed }
    }
}

impl fmt::Debug for AllowedSans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllowedSans")
            .field("inner", &self.inner)
            .field("allowed", &self.allowed)
            .finish()
    }
}

/// The subject alternative names of a DER certificate, as text.
pub(crate) fn subject_alt_names(der: &[u8]) -> Result<Vec<String>, Error> {
    let (_, certificate) = X509Certificate::from_der(der)
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let extension = certificate
        .subject_alternative_name()
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let Some(extension) = extension else {
        return Ok(Vec::new());
    };
    Ok(extension
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(name) | GeneralName::RFC822Name(name) | GeneralName::URI(name) => {
                Some((*name).to_owned())
            }
            GeneralName::IPAddress(octets) => ip_address(octets).map(|ip| ip.to_string()),
            _ => None,
        })
        .collect())
}

/// An IP address SAN in the text Go gives it: IPv4-mapped IPv6 addresses as IPv4.
fn ip_address(octets: &[u8]) -> Option<IpAddr> {
    match octets.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(octets).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(octets).ok()?).to_canonical()),
        _ => None,
    }
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let names = subject_alt_names(end_entity)?;
        if names.iter().any(|name| self.allowed.contains(name)) {
            Ok(verified)
        } else {
            log::debug!(
                "client certificate refused: none of its subject alternative names {names:?} is in client_allowed_sans"
            );
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_subject_alternative_name_is_read_as_go_writes_it() {
        let mut params = rcgen::CertificateParams::new(vec!["scraper.example".to_owned()]).unwrap();
        params.subject_alt_names.extend([
            rcgen::SanType::Rfc822Name("ops@example.org".try_into().unwrap()),
            rcgen::SanType::URI("spiffe://example.org/prometheus".try_into().unwrap()),
            rcgen::SanType::IpAddress("192.0.2.7".parse().unwrap()),
            rcgen::SanType::IpAddress("2001:db8::7".parse().unwrap()),
            rcgen::SanType::IpAddress("::ffff:192.0.2.8".parse().unwrap()),
        ]);
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_alt_names(certificate.der()).unwrap(),
            [
                "scraper.example",
                "ops@example.org",
                "spiffe://example.org/prometheus",
                "192.0.2.7",
                "2001:db8::7",
                "192.0.2.8"
            ]
        );
    }

    #[test]
    fn garbage_is_a_bad_encoding_not_a_panic() {
        assert!(subject_alt_names(b"not a certificate").is_err());
        assert!(subject_alt_names(&[]).is_err());
    }
}
