//! Basic authentication with hashes made by `htpasswd -B`, as operators make them, and the
//! security headers, seen by curl over plain HTTP and over TLS.

mod common;

use std::process::Command;

use common::{Authority, BODY, Server, TempDir, curl, load, require, write_server_files};

/// A bcrypt hash of `password` made by htpasswd (cost 5 keeps the test quick).
fn htpasswd(password: &str) -> String {
    require("htpasswd", "apache2-utils");
    let output = Command::new("htpasswd")
        .args(["-nbB", "-C", "5", "user", password])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let line = String::from_utf8(output.stdout).unwrap();
    let hash = line.trim().strip_prefix("user:").unwrap().to_owned();
    assert!(hash.starts_with("$2y$05$"), "{hash}");
    hash
}

fn users_yaml() -> String {
    format!(
        "basic_auth_users:\n  prometheus: {}\n  grafana: '{}'\n",
        htpasswd("scrape-secret"),
        htpasswd("another one")
    )
}

fn check_credentials(url: &str, tls: &[&str]) {
    let with = |user_and_password: &str| {
        let mut arguments = tls.to_vec();
        arguments.extend(["--user", user_and_password]);
        curl(url, &arguments)
    };
    let answer = with("prometheus:scrape-secret");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.response.ends_with(BODY), "{answer:?}");
    assert_eq!(with("grafana:another one").status, 200);

    for refused in [
        with("prometheus:wrong"),
        with("prometheus:"),
        with("grafana:scrape-secret"),
        with("nobody:scrape-secret"),
        curl(url, tls),
    ] {
        assert_eq!(refused.status, 401, "{refused:?}");
        assert!(
            refused.has_header("WWW-Authenticate", "Basic"),
            "{refused:?}"
        );
        assert!(!refused.response.contains(BODY), "{refused:?}");
    }
}

#[test]
fn basic_auth_over_plain_http() {
    let dir = TempDir::new("auth-plain");
    let server = Server::start(load(&dir, &users_yaml()));
    check_credentials(&server.url("http"), &[]);
}

#[test]
fn basic_auth_over_tls() {
    let dir = TempDir::new("auth-tls");
    write_server_files(&dir, &Authority::new("server CA"));
    let yaml = format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{}",
        users_yaml()
    );
    let server = Server::start(load(&dir, &yaml));
    let ca = dir.path().join("ca.crt").display().to_string();
    check_credentials(&server.url("https"), &["--cacert", &ca]);
}

#[test]
fn without_users_every_request_is_answered() {
    let dir = TempDir::new("no-users");
    let server = Server::start(load(&dir, "basic_auth_users: {}\n"));
    let answer = curl(&server.url("http"), &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        !answer
            .response
            .to_ascii_lowercase()
            .contains("www-authenticate")
    );
}

#[test]
fn security_headers_are_on_every_response_the_refusals_included() {
    let dir = TempDir::new("headers");
    let yaml = format!(
        "http_server_config:
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    Strict-Transport-Security: max-age=31536000; includeSubDomains
    Content-Security-Policy: \"default-src 'self'\"
    X-XSS-Protection: ''
{}",
        users_yaml()
    );
    let server = Server::start(load(&dir, &yaml));
    let url = server.url("http");
    for answer in [
        curl(&url, &["--user", "prometheus:scrape-secret"]),
        curl(&url, &[]),
    ] {
        assert!(answer.has_header("X-Frame-Options", "deny"), "{answer:?}");
        assert!(
            answer.has_header("X-Content-Type-Options", "nosniff"),
            "{answer:?}"
        );
        assert!(
            answer.has_header(
                "Strict-Transport-Security",
                "max-age=31536000; includeSubDomains"
            ),
            "{answer:?}"
        );
        assert!(
            answer.has_header("Content-Security-Policy", "default-src 'self'"),
            "{answer:?}"
        );
        assert!(
            !answer.response.contains("X-XSS-Protection"),
            "an empty value is left out"
        );
    }
}
