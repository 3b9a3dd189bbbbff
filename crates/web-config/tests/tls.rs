//! TLS as a real client (curl, OpenSSL) sees it: versions, cipher suites, HTTP/2, key types,
//! client certificates and allowed SANs.

mod common;

use std::process::Command;

use common::{
    Authority, BODY, Server, TempDir, curl, curl_with_certificate, load, require,
    write_server_files,
};

/// A TLS server with `extra` appended to its `tls_server_config`, and its directory.
fn tls_server(name: &str, authority: &Authority, extra: &str) -> (TempDir, Server) {
    let dir = TempDir::new(name);
    write_server_files(&dir, authority);
    let web = load(
        &dir,
        &format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra}"),
    );
    (dir, Server::start(web))
}

fn ca(dir: &TempDir) -> String {
    dir.path().join("ca.crt").display().to_string()
}

#[test]
fn tls_1_2_and_1_3_handshakes_with_curl() {
    let authority = Authority::new("server CA");
    let (dir, server) = tls_server("versions", &authority, "");
    let url = server.url("https");

    let answer = curl(&url, &["--cacert", &ca(&dir), "--tls-max", "1.2"]);
    assert!(answer.ok && answer.status == 200, "{answer:?}");
    assert!(answer.response.ends_with(BODY), "{answer:?}");
    assert!(
        answer.log.contains("SSL connection using TLSv1.2"),
        "{}",
        answer.log
    );

    let answer = curl(&url, &["--cacert", &ca(&dir), "--tlsv1.3"]);
    assert!(answer.ok && answer.status == 200, "{answer:?}");
    assert!(
        answer.log.contains("SSL connection using TLSv1.3"),
        "{}",
        answer.log
    );

    // Plain HTTP on the TLS port gets no answer, and a client that does not trust the
    // certificate refuses it.
    assert!(!curl(&server.url("http"), &[]).ok);
    assert!(!curl(&url, &[]).ok);
}

#[test]
fn min_and_max_version_bound_the_handshake() {
    let authority = Authority::new("server CA");
    let (dir, server) = tls_server("min-version", &authority, "  min_version: TLS13\n");
    let url = server.url("https");
    assert!(!curl(&url, &["--cacert", &ca(&dir), "--tls-max", "1.2"]).ok);
    assert!(curl(&url, &["--cacert", &ca(&dir)]).ok);

    let (dir, server) = tls_server("max-version", &authority, "  max_version: TLS12\n");
    let url = server.url("https");
    assert!(!curl(&url, &["--cacert", &ca(&dir), "--tlsv1.3"]).ok);
    let answer = curl(&url, &["--cacert", &ca(&dir)]);
    assert!(
        answer.log.contains("SSL connection using TLSv1.2"),
        "{}",
        answer.log
    );
}

#[test]
fn cipher_suites_select_the_tls_1_2_suites() {
    let authority = Authority::new("server CA");
    let (dir, server) = tls_server(
        "ciphers",
        &authority,
        "  max_version: TLS12\n  cipher_suites:\n    - TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256\n",
    );
    let url = server.url("https");
    let answer = curl(&url, &["--cacert", &ca(&dir)]);
    assert!(answer.ok, "{answer:?}");
    assert!(
        answer.log.contains("ECDHE-ECDSA-CHACHA20-POLY1305"),
        "{}",
        answer.log
    );
    let answer = curl(
        &url,
        &[
            "--cacert",
            &ca(&dir),
            "--ciphers",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ],
    );
    assert!(
        !answer.ok,
        "a suite left out of cipher_suites was negotiated: {answer:?}"
    );
}

#[test]
fn http2_is_offered_unless_switched_off() {
    let authority = Authority::new("server CA");
    let (dir, server) = tls_server("http2", &authority, "");
    let answer = curl(&server.url("https"), &["--cacert", &ca(&dir), "--http2"]);
    assert_eq!(
        (answer.status, answer.http_version.as_str()),
        (200, "2"),
        "{answer:?}"
    );

    let (dir, server) = tls_server(
        "no-http2",
        &authority,
        "http_server_config:\n  http2: false\n",
    );
    let answer = curl(&server.url("https"), &["--cacert", &ca(&dir), "--http2"]);
    assert_eq!(
        (answer.status, answer.http_version.as_str()),
        (200, "1.1"),
        "{answer:?}"
    );
}

/// RSA (PKCS#8 and PKCS#1), ECDSA (PKCS#8 and SEC1) and Ed25519 keys made by OpenSSL.
#[test]
fn rsa_ecdsa_and_ed25519_keys_in_every_pem_form() {
    require("openssl", "openssl");
    for (name, algorithm, traditional) in [
        ("rsa-pkcs8", &["-newkey", "rsa:2048"][..], false),
        ("rsa-pkcs1", &["-newkey", "rsa:2048"][..], true),
        (
            "ecdsa-pkcs8",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
            false,
        ),
        (
            "ecdsa-sec1",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
            true,
        ),
        ("ed25519", &["-newkey", "ed25519"][..], false),
    ] {
        let dir = TempDir::new(name);
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
            ])
            .args(algorithm)
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(dir.path().join("server.key"))
            .arg("-out")
            .arg(dir.path().join("server.crt"))
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
        if traditional {
            let key = dir.path().join("server.key");
            let converted = Command::new("openssl")
                .args(["pkey", "-traditional", "-in"])
                .arg(&key)
                .output()
                .unwrap();
            assert!(converted.status.success(), "{converted:?}");
            std::fs::write(&key, converted.stdout).unwrap();
            let pem = std::fs::read_to_string(&key).unwrap();
            assert!(
                pem.starts_with("-----BEGIN RSA PRIVATE KEY")
                    || pem.starts_with("-----BEGIN EC PRIVATE KEY"),
                "{pem}"
            );
        }
        let web = load(
            &dir,
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
        );
        let server = Server::start(web);
        let certificate = dir.path().join("server.crt").display().to_string();
        let answer = curl(&server.url("https"), &["--cacert", &certificate]);
        assert!(answer.ok && answer.status == 200, "{name}: {answer:?}");
    }
}

#[test]
fn a_required_client_certificate_is_verified_against_the_client_ca() {
    let server_authority = Authority::new("server CA");
    let clients = Authority::new("client CA");
    let strangers = Authority::new("another CA");
    let dir = TempDir::new("client-certs");
    dir.write("clients.crt", clients.certificate());
    let (server_dir, server) = tls_server(
        "require-verify",
        &server_authority,
        &format!(
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
            dir.path().join("clients.crt").display()
        ),
    );
    let url = server.url("https");
    let cacert = ca(&server_dir);
    let answer =
        curl_with_certificate(&url, &cacert, &dir, clients.client(&["prometheus.example"]));
    assert!(answer.ok && answer.status == 200, "{answer:?}");
    let answer = curl_with_certificate(
        &url,
        &cacert,
        &dir,
        strangers.client(&["prometheus.example"]),
    );
    assert!(
        !answer.ok,
        "a certificate of another CA was accepted: {answer:?}"
    );
    let answer = curl(&url, &["--cacert", &cacert]);
    assert!(!answer.ok, "no certificate was accepted: {answer:?}");
}

#[test]
fn verify_if_given_lets_clients_without_a_certificate_in_but_not_wrong_ones() {
    let server_authority = Authority::new("server CA");
    let clients = Authority::new("client CA");
    let strangers = Authority::new("another CA");
    let dir = TempDir::new("verify-if-given");
    write_server_files(&dir, &server_authority);
    dir.write("clients.crt", clients.certificate());
    let web = load(
        &dir,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: clients.crt\n",
    );
    let server = Server::start(web);
    let url = server.url("https");
    let cacert = ca(&dir);
    assert!(curl(&url, &["--cacert", &cacert]).ok);
    let answer = curl_with_certificate(&url, &cacert, &dir, strangers.client(&["x.example"]));
    assert!(!answer.ok, "{answer:?}");
}

#[test]
fn require_any_client_certificate_takes_a_self_signed_one_but_not_none() {
    let server_authority = Authority::new("server CA");
    let (dir, server) = tls_server(
        "require-any",
        &server_authority,
        "  client_auth_type: RequireAnyClientCert\n",
    );
    let url = server.url("https");
    let cacert = ca(&dir);
    assert!(!curl(&url, &["--cacert", &cacert]).ok);
    let anyone = Authority::new("self-made").client(&["me.example"]);
    let answer = curl_with_certificate(&url, &cacert, &dir, anyone);
    assert!(answer.ok && answer.status == 200, "{answer:?}");
}

#[test]
fn client_allowed_sans_admit_only_certificates_naming_an_allowed_one() {
    let server_authority = Authority::new("server CA");
    let clients = Authority::new("client CA");
    let dir = TempDir::new("sans");
    write_server_files(&dir, &server_authority);
    dir.write("clients.crt", clients.certificate());
    let web = load(
        &dir,
        "tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: clients.crt
  client_allowed_sans:
    - prometheus.monitoring.svc
    - spiffe://cluster.local/ns/monitoring/sa/prometheus
",
    );
    let server = Server::start(web);
    let url = server.url("https");
    let cacert = ca(&dir);
    for (names, admitted) in [
        (&["prometheus.monitoring.svc"][..], true),
        (
            &[
                "other.example",
                "spiffe://cluster.local/ns/monitoring/sa/prometheus",
            ][..],
            true,
        ),
        (&["grafana.monitoring.svc"][..], false),
        (&["prometheus.monitoring.svc.evil.example"][..], false),
    ] {
        let answer = curl_with_certificate(&url, &cacert, &dir, clients.client(names));
        assert_eq!(answer.ok, admitted, "{names:?}: {answer:?}");
    }
}
