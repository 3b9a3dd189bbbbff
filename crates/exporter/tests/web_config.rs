//! The exporter behind a web configuration file (`--web.config.file`), checked with real
//! `curl` against the real binary in a private namespace, with certificates made by the test:
//! TLS 1.2 and 1.3, HTTP/2 through ALPN, client certificates, basic auth, public or protected
//! health endpoints, security headers on every answer, certificate rotation, a handshake that
//! never ends, and bad files refused at start.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{binary, exporter_command, single_error_line};
use testkit::{Answer, Authority, Exporter, TempDir, curl, eventually};

const USER: &str = "prometheus";
const PASSWORD: &str = "scrape-secret";

/// Writes a server certificate of `authority` and its key as `server.crt` and `server.key`,
/// and the authority's certificate as `ca.crt`.
fn write_server_files(dir: &TempDir, authority: &Authority) {
    let server = authority.server();
    dir.write("server.crt", &server.certificate);
    dir.write("server.key", &server.key);
    dir.write("ca.crt", &authority.certificate());
}

/// Starts the exporter with `web.yml` (holding `yaml`) in `dir` and `args`.
#[track_caller]
fn start(dir: &TempDir, yaml: &str, args: &[&str]) -> Exporter {
    let web = dir.write("web.yml", yaml);
    exporter_command()
        .arg("--web.config.file")
        .arg(web)
        .args(args)
        .ready_when_logged()
        .start()
}

/// `https://127.0.0.1:PORT/path`.
fn https(exporter: &Exporter, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", exporter.port)
}

/// curl trusting `ca.crt` of `dir`, with more `arguments`.
fn curl_trusting(dir: &TempDir, url: &str, arguments: &[&str]) -> Answer {
    let ca = dir.path().join("ca.crt").display().to_string();
    let mut all = vec!["--cacert", ca.as_str()];
    all.extend_from_slice(arguments);
    curl(url, &all)
}

const TLS_ONLY: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

#[test]
fn tls_versions_http2_and_headers_on_every_answer() {
    let test = "web_tls_versions_http2_and_headers";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let dir = TempDir::new(test);
    write_server_files(&dir, &Authority::new("exporter CA"));
    let yaml = format!(
        "{TLS_ONLY}http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n"
    );
    let exporter = start(&dir, &yaml, &[]);
    assert!(
        exporter
            .stderr
            .text()
            .contains("serving metrics at https://"),
        "{}",
        exporter.stderr.text()
    );

    for (version, flags) in [
        ("TLSv1.2", ["--tlsv1.2", "--tls-max", "1.2"]),
        ("TLSv1.3", ["--tlsv1.3", "--tls-max", "1.3"]),
    ] {
        let answer = curl_trusting(&dir, &https(&exporter, "/metrics"), &flags);
        assert_eq!(answer.status, 200, "{version}: {answer:?}");
        assert!(
            answer.log.contains(&format!("using {version}")),
            "{version}: {}",
            answer.log
        );
        assert!(
            answer.response.contains("conntrack_exporter_"),
            "{answer:?}"
        );
    }

    let h2 = curl_trusting(&dir, &https(&exporter, "/metrics"), &["--http2"]);
    assert_eq!((h2.status, h2.http_version.as_str()), (200, "2"), "{h2:?}");
    let h1 = curl_trusting(&dir, &https(&exporter, "/metrics"), &["--http1.1"]);
    assert_eq!(
        (h1.status, h1.http_version.as_str()),
        (200, "1.1"),
        "{h1:?}"
    );

    for (path, status) in [("/metrics", 200), ("/nowhere", 404), ("/-/ready", 200)] {
        let answer = curl_trusting(&dir, &https(&exporter, path), &[]);
        assert_eq!(answer.status, status, "{path}: {answer:?}");
        assert!(
            answer.has_header("X-Frame-Options", "deny"),
            "{path}: {answer:?}"
        );
        assert!(
            answer.has_header("X-Content-Type-Options", "nosniff"),
            "{path}: {answer:?}"
        );
    }

    // Plain HTTP on the TLS port gets no page.
    let plain = curl(&format!("http://127.0.0.1:{}/metrics", exporter.port), &[]);
    assert_ne!(plain.status, 200, "{plain:?}");
}

#[test]
fn http2_off_keeps_tls_connections_on_http1() {
    let test = "web_http2_off";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let dir = TempDir::new(test);
    write_server_files(&dir, &Authority::new("exporter CA"));
    let exporter = start(
        &dir,
        &format!("{TLS_ONLY}http_server_config:\n  http2: false\n"),
        &[],
    );
    let answer = curl_trusting(&dir, &https(&exporter, "/metrics"), &["--http2"]);
    assert_eq!(
        (answer.status, answer.http_version.as_str()),
        (200, "1.1"),
        "{answer:?}"
    );
}

/// The web configuration with TLS and one basic auth user.
fn tls_with_user() -> String {
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    format!(
        "{TLS_ONLY}http_server_config:\n  headers:\n    X-Frame-Options: sameorigin\nbasic_auth_users:\n  {USER}: {hash}\n"
    )
}

#[test]
fn basic_auth_accepts_the_user_and_refuses_others() {
    let test = "web_basic_auth";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let dir = TempDir::new(test);
    write_server_files(&dir, &Authority::new("exporter CA"));
    let exporter = start(&dir, &tls_with_user(), &[]);
    let good = format!("{USER}:{PASSWORD}");
    let answer = curl_trusting(&dir, &https(&exporter, "/metrics"), &["--user", &good]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer.response.contains("conntrack_exporter_"),
        "{answer:?}"
    );

    let wrong_password = format!("{USER}:guess");
    for (what, arguments) in [
        ("no credentials", vec![]),
        ("a wrong password", vec!["--user", wrong_password.as_str()]),
        ("an unknown user", vec!["--user", "root:scrape-secret"]),
    ] {
        for path in ["/metrics", "/", "/-/ready", "/-/healthy", "/nowhere"] {
            let answer = curl_trusting(&dir, &https(&exporter, path), &arguments);
            assert_eq!(answer.status, 401, "{what} on {path}: {answer:?}");
            assert!(answer.has_header("WWW-Authenticate", "Basic"), "{answer:?}");
            assert!(
                answer.has_header("X-Frame-Options", "sameorigin"),
                "{answer:?}"
            );
            assert!(
                !answer.response.contains("conntrack_"),
                "{what} on {path}: {answer:?}"
            );
        }
    }
}

#[test]
fn public_health_endpoints_need_no_credentials_but_metrics_still_do() {
    let test = "web_public_health";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let dir = TempDir::new(test);
    write_server_files(&dir, &Authority::new("exporter CA"));
    let exporter = start(&dir, &tls_with_user(), &["--public-health-endpoints"]);
    for path in ["/-/ready", "/-/healthy"] {
        let answer = curl_trusting(&dir, &https(&exporter, path), &[]);
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert!(
            answer.has_header("X-Frame-Options", "sameorigin"),
            "{answer:?}"
        );
    }
    for path in ["/metrics", "/"] {
        let answer = curl_trusting(&dir, &https(&exporter, path), &[]);
        assert_eq!(answer.status, 401, "{path}: {answer:?}");
    }
}

#[test]
fn a_required_client_certificate_is_verified() {
    let test = "web_client_certificates";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let dir = TempDir::new(test);
    write_server_files(&dir, &Authority::new("exporter CA"));
    let clients = Authority::new("clients CA");
    dir.write("clients-ca.crt", &clients.certificate());
    let yaml = format!(
        "{TLS_ONLY}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients-ca.crt\n"
    );
    let exporter = start(&dir, &yaml, &[]);
    let with_client = |name: &str, authority: &Authority| {
        let issued = authority.client(&["prometheus.example"]);
        let certificate = dir.write(&format!("{name}.crt"), &issued.certificate);
        let key = dir.write(&format!("{name}.key"), &issued.key);
        curl_trusting(
            &dir,
            &https(&exporter, "/metrics"),
            &[
                "--cert",
                &certificate.display().to_string(),
                "--key",
                &key.display().to_string(),
            ],
        )
    };
    let trusted = with_client("trusted", &clients);
    assert_eq!(trusted.status, 200, "{trusted:?}");

    let stranger = with_client("stranger", &Authority::new("another CA"));
    assert_ne!(stranger.status, 200, "{stranger:?}");
    let none = curl_trusting(&dir, &https(&exporter, "/metrics"), &[]);
    assert_ne!(none.status, 200, "{none:?}");
}

#[test]
fn a_client_trusting_another_ca_refuses_the_server() {
    let test = "web_wrong_ca";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let dir = TempDir::new(test);
    write_server_files(&dir, &Authority::new("exporter CA"));
    let exporter = start(&dir, TLS_ONLY, &[]);
    dir.write("other-ca.crt", &Authority::new("another CA").certificate());
    let other = dir.path().join("other-ca.crt").display().to_string();
    let answer = curl(&https(&exporter, "/metrics"), &["--cacert", &other]);
    assert!(!answer.ok && answer.status == 0, "{answer:?}");
}

#[test]
fn a_rotated_certificate_is_used_without_a_restart() {
    let test = "web_rotation";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let dir = TempDir::new(test);
    write_server_files(&dir, &Authority::new("first CA"));
    let exporter = start(&dir, TLS_ONLY, &[]);
    assert_eq!(
        curl_trusting(&dir, &https(&exporter, "/metrics"), &[]).status,
        200
    );

    // Renewed by another authority, in place, as cert-manager does.
    write_server_files(&dir, &Authority::new("second CA"));
    eventually("the exporter serves the renewed certificate", || {
        let answer = curl_trusting(&dir, &https(&exporter, "/metrics"), &[]);
        match answer.status {
            200 => Ok(()),
            _ => Err(format!("{answer:?}")),
        }
    });
    assert!(
        exporter.stderr.text().contains("TLS: loaded the changed"),
        "{}",
        exporter.stderr.text()
    );
}

/// Reads from `stream` until the server closes it; false if it sends a byte.
fn closed_without_answer(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut byte = [0; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

#[test]
fn a_handshake_that_never_ends_holds_no_slot() {
    let test = "web_stalled_handshake";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let dir = TempDir::new(test);
    write_server_files(&dir, &Authority::new("exporter CA"));
    let exporter = start(&dir, TLS_ONLY, &["--max-connections", "1"]);
    // The start of a TLS record holding a ClientHello, and nothing more.
    let stalled = || {
        let mut stream = TcpStream::connect(("127.0.0.1", exporter.port)).unwrap();
        stream
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .unwrap();
        stream
    };

    // The only slot is taken by a stalled handshake: a scraper still gets through, as the
    // quiet connection makes room.
    let mut first = stalled();
    let answer = curl_trusting(&dir, &https(&exporter, "/metrics"), &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(closed_without_answer(&mut first));

    // Alone, a stalled handshake is closed at the header deadline.
    let mut second = stalled();
    assert!(closed_without_answer(&mut second));
    let metrics = curl_trusting(&dir, &https(&exporter, "/metrics"), &[]).response;
    for reason in ["limit", "header_timeout"] {
        let line =
            format!("conntrack_exporter_http_connections_closed_total{{reason=\"{reason}\"}} ");
        let count: u64 = metrics
            .lines()
            .find_map(|text| text.strip_prefix(&line))
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line:?} in:\n{metrics}"));
        assert!(count >= 1, "{reason}: {count}");
    }
}

/// Runs the exporter with the web configuration file `web` and checks that it stops with
/// exit code 1 and one line that contains each of `expected`.
#[track_caller]
fn refused(web: &Path, expected: &[&str]) {
    let line = single_error_line(
        Command::new(binary())
            .args(["--listen-port", "0", "--web.config.file"])
            .arg(web),
    );
    for part in expected {
        assert!(line.contains(part), "{line:?} should mention {part:?}");
    }
}

#[test]
fn bad_web_configuration_files_stop_the_start() {
    let test = "web_bad_files";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let dir = TempDir::new(test);
    write_server_files(&dir, &Authority::new("exporter CA"));
    let missing = dir.path().join("missing.yml");
    refused(&missing, &[&missing.display().to_string()]);

    let unknown = dir.write("unknown.yml", &format!("{TLS_ONLY}tls_cofnig: {{}}\n"));
    refused(
        &unknown,
        &[&format!("{}:4", unknown.display()), "tls_cofnig"],
    );

    let other_key = Authority::new("exporter CA").server().key;
    dir.write("other.key", &other_key);
    let mismatched = dir.write(
        "mismatched.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n",
    );
    refused(&mismatched, &[&mismatched.display().to_string()]);

    let no_certificate = dir.write(
        "no-certificate.yml",
        "tls_server_config:\n  cert_file: absent.crt\n  key_file: server.key\n",
    );
    refused(&no_certificate, &["absent.crt"]);
}

#[test]
fn basic_auth_without_tls_speaks_http1_only() {
    let test = "web_plain_basic_auth";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let dir = TempDir::new(test);
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let exporter = start(&dir, &format!("basic_auth_users:\n  {USER}: {hash}\n"), &[]);
    let url = format!("http://127.0.0.1:{}/metrics", exporter.port);
    let good = format!("{USER}:{PASSWORD}");
    let answer = curl(&url, &["--user", &good]);
    assert_eq!(
        (answer.status, answer.http_version.as_str()),
        (200, "1.1"),
        "{answer:?}"
    );
    let refused = curl(&url, &[]);
    assert_eq!(refused.status, 401, "{refused:?}");
    // HTTP/2 is offered only over TLS: a client that starts with its preface gets no page.
    let h2 = curl(&url, &["--http2-prior-knowledge", "--user", &good]);
    assert_ne!(h2.status, 200, "{h2:?}");
}
