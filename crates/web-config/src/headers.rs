//! `http_server_config.headers`: the security headers added to every response. Only the
//! headers exporter-toolkit allows can be set, and those whose values form a closed set only
//! take those values, so that a file means the same to every exporter of the ecosystem.

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The headers that may be set, each with its allowed values (empty: any value).
const ALLOWED: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// The configured headers, ready to be added to a response. A header set to an empty value is
/// left out, as exporter-toolkit does.
#[derive(Debug, Clone, Default)]
pub(crate) struct SecurityHeaders(pub HeaderMap);

impl SecurityHeaders {
    /// Adds `name: value` if the name is allowed and the value is one it takes.
    fn insert(&mut self, name: &str, value: &str) -> Result<(), String> {
        let Some((_, allowed)) = ALLOWED.iter().find(|(allowed, _)| *allowed == name) else {
            let names: Vec<&str> = ALLOWED.iter().map(|(name, _)| *name).collect();
            return Err(format!(
                "HTTP header {name:?} cannot be configured; allowed: {}",
                names.join(", ")
            ));
        };
        if !allowed.is_empty() && !allowed.contains(&value) {
            return Err(format!(
                "invalid value {value:?} for {name}: expected one of {}",
                allowed.join(", ")
            ));
        }
        if value.is_empty() {
            return Ok(());
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value {value:?} for {name}: not a valid header value"))?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a valid header name"))?;
        self.0.insert(name, value);
        Ok(())
    }
}

impl<'de> Deserialize<'de> for SecurityHeaders {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;

        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = SecurityHeaders;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a map of header names to values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecurityHeaders, A::Error> {
                let mut headers = SecurityHeaders::default();
                while let Some((name, value)) = map.next_entry::<String, Option<String>>()? {
                    headers
                        .insert(&name, value.as_deref().unwrap_or_default())
                        .map_err(serde::de::Error::custom)?;
                }
                Ok(headers)
            }
        }

        deserializer.deserialize_any(HeadersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_headers_and_values_are_kept() {
        let mut headers = SecurityHeaders::default();
        headers.insert("X-Frame-Options", "deny").unwrap();
        headers.insert("X-Content-Type-Options", "nosniff").unwrap();
        headers
            .insert(
                "Strict-Transport-Security",
                "max-age=31536000; includeSubDomains",
            )
            .unwrap();
        headers.insert("Content-Security-Policy", "").unwrap();
        assert_eq!(headers.0.len(), 3, "an empty value leaves the header out");
        assert_eq!(headers.0["x-frame-options"], "deny");
    }

    #[test]
    fn other_headers_and_values_are_refused_with_what_is_allowed() {
        let mut headers = SecurityHeaders::default();
        let error = headers.insert("Server", "mine").unwrap_err();
        assert!(error.contains("\"Server\" cannot be configured; allowed: Strict-Transport-Security, X-Content-Type-Options"), "{error}");
        let error = headers.insert("X-Frame-Options", "allow").unwrap_err();
        assert_eq!(
            error,
            "invalid value \"allow\" for X-Frame-Options: expected one of deny, sameorigin"
        );
        // Names are matched as exporter-toolkit matches them: exactly.
        assert!(headers.insert("x-frame-options", "deny").is_err());
        assert!(
            headers
                .insert("X-XSS-Protection", "1\nInjected: yes")
                .is_err()
        );
    }
}
