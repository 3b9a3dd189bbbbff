//! Files that cannot work are refused when loaded, with one line that says where and why.

mod common;

use common::{Authority, TempDir, write_server_files};
use web_config::WebConfig;

/// The error of loading `yaml` as `web.yml` in a directory holding a server certificate and
/// key (`server.crt`, `server.key`) and their CA (`ca.crt`).
fn refusal(yaml: &str) -> String {
    let dir = TempDir::new("refused");
    write_server_files(&dir, &Authority::new("server CA"));
    let path = dir.write("web.yml", yaml);
    let message = WebConfig::load(&path)
        .map(|web| panic!("{yaml} was accepted: {web}"))
        .unwrap_err()
        .to_string();
    assert!(!message.contains('\n'), "not one line: {message}");
    let file = path.display().to_string();
    assert!(
        message.starts_with(&file),
        "does not name the file: {message}"
    );
    message.replacen(&file, "web.yml", 1)
}

const TLS: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

#[test]
fn a_missing_file_is_named() {
    let message = refusal("tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n");
    assert!(
        message.starts_with("web.yml: tls_server_config.cert_file: cannot read /"),
        "{message}"
    );
    assert!(
        message.contains("missing.crt: No such file or directory"),
        "{message}"
    );
    let path = std::env::temp_dir().join("web-config-no-such-file.yml");
    let message = WebConfig::load(&path).unwrap_err().to_string();
    assert!(
        message.starts_with("cannot read web configuration file"),
        "{message}"
    );
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let dir = TempDir::new("wrong-key");
    write_server_files(&dir, &Authority::new("server CA"));
    dir.write("other.key", Authority::new("other").server().key);
    let path = dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n",
    );
    let message = WebConfig::load(&path).unwrap_err().to_string();
    assert!(
        message.ends_with(": tls_server_config.key_file: the private key does not belong to the certificate of cert_file"),
        "{message}"
    );
}

#[test]
fn files_that_are_not_pem_are_refused() {
    let message = refusal("tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n");
    assert!(
        message.contains("tls_server_config.cert_file: no PEM certificate"),
        "{message}"
    );
    let message = refusal("tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n");
    assert!(
        message.contains("tls_server_config.key_file: no PEM private key"),
        "{message}"
    );
}

#[test]
fn unknown_keys_and_wrong_values_name_line_and_key() {
    assert!(
        refusal(&format!("{TLS}  client_auth: RequireAndVerifyClientCert\n"))
            .starts_with("web.yml:4: tls_server_config.client_auth: unknown field `client_auth`"),
    );
    let message = refusal(&format!(
        "{TLS}  cipher_suites:\n    - TLS_RSA_WITH_AES_128_CBC_SHA\n"
    ));
    assert!(
        message.starts_with("web.yml:5: tls_server_config.cipher_suites"),
        "{message}"
    );
    assert!(
        message.contains(
            "\"TLS_RSA_WITH_AES_128_CBC_SHA\" is not supported; supported: TLS_AES_256_GCM_SHA384"
        ),
        "{message}"
    );
    let message = refusal("http_server_config:\n  headers:\n    Server: conntrack\n");
    assert!(message.starts_with("web.yml:3: http_server_config.headers.Server: HTTP header \"Server\" cannot be configured"), "{message}");
    let message = refusal("basic_auth_users:\n  prometheus: plain-text-password\n");
    assert!(
        message.starts_with("web.yml:2: basic_auth_users.prometheus: not a bcrypt hash"),
        "{message}"
    );
}

#[test]
fn settings_that_cannot_work_together_are_refused() {
    for (yaml, expected) in [
        (
            "tls_server_config:\n  cert_file: server.crt\n".to_owned(),
            "web.yml: tls_server_config: missing one of key or key_file",
        ),
        (
            format!("{TLS}  client_auth_type: RequireAndVerifyClientCert\n"),
            "web.yml: tls_server_config.client_ca_file: client_auth_type RequireAndVerifyClientCert needs client_ca_file (or client_ca)",
        ),
        (
            format!("{TLS}  client_ca_file: ca.crt\n"),
            "web.yml: tls_server_config.client_auth_type: a client CA is configured but client_auth_type is NoClientCert",
        ),
        (
            format!(
                "{TLS}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n  client_allowed_sans: [a.example]\n"
            ),
            "web.yml: tls_server_config.client_allowed_sans: needs client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert",
        ),
        (
            format!("{TLS}  min_version: TLS13\n  max_version: TLS12\n"),
            "web.yml: tls_server_config.min_version: min_version TLS13 is above max_version TLS12",
        ),
    ] {
        let message = refusal(&yaml);
        assert!(message.starts_with(expected), "{yaml}: {message}");
    }
}

#[test]
fn an_empty_file_or_a_file_without_tls_keys_serves_plain_http() {
    let dir = TempDir::new("plain");
    for yaml in [
        "",
        "tls_server_config:\n  min_version: TLS13\n",
        "http_server_config:\n  http2: true\n",
    ] {
        let web = WebConfig::load(&dir.write("web.yml", yaml)).unwrap();
        assert!(
            web.tls().is_none() && !web.requires_credentials() && !web.http2(),
            "{yaml}"
        );
        assert_eq!(
            web.to_string(),
            "plain HTTP, no basic auth, 0 security headers"
        );
    }
}
