//! Certificate rotation without a restart: new files are used for the next connections; files
//! that cannot be used leave the previous ones in place.

mod common;

use common::{Authority, Server, TempDir, curl, eventually, load, write_server_files};

const WEB_YML: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

#[test]
fn a_rotated_certificate_is_picked_up_and_a_broken_one_is_not() {
    let first = Authority::new("first CA");
    let second = Authority::new("second CA");
    let dir = TempDir::new("rotation");
    write_server_files(&dir, &first);
    let first_ca = dir.write("first-ca.crt", first.certificate());
    let second_ca = dir.write("second-ca.crt", second.certificate());
    let server = Server::start(load(&dir, WEB_YML));
    let url = server.url("https");
    let trusting = |ca: &std::path::Path| curl(&url, &["--cacert", &ca.display().to_string()]).ok;
    assert!(trusting(&first_ca));
    assert!(!trusting(&second_ca));

    // A certificate of the second CA with the key of another: refused, the first stays.
    let rotated = second.server();
    let unrelated = second.server();
    dir.write("server.crt", &rotated.certificate);
    dir.write("server.key", &unrelated.key);
    // Several checks pass (one a second at most) while the broken pair is in place.
    for _ in 0..4 {
        assert!(
            trusting(&first_ca),
            "a certificate whose key does not match was loaded"
        );
        std::thread::sleep(std::time::Duration::from_millis(400));
    }

    // The matching key arrives: the second certificate is served from then on.
    dir.write("server.key", &rotated.key);
    assert!(
        eventually(30, || trusting(&second_ca)),
        "the rotated certificate was not picked up"
    );
    assert!(!trusting(&first_ca));

    // A file that disappears for a while keeps the current one too.
    std::fs::remove_file(dir.path().join("server.key")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(trusting(&second_ca));
}

#[test]
fn a_rotated_client_ca_is_picked_up() {
    let server_authority = Authority::new("server CA");
    let old_clients = Authority::new("old client CA");
    let new_clients = Authority::new("new client CA");
    let dir = TempDir::new("client-ca-rotation");
    write_server_files(&dir, &server_authority);
    dir.write("clients.crt", old_clients.certificate());
    let yaml = format!(
        "{WEB_YML}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.crt\n"
    );
    let server = Server::start(load(&dir, &yaml));
    let url = server.url("https");
    let ca = dir.path().join("ca.crt").display().to_string();
    let client = new_clients.client(&["prometheus.example"]);
    let certificate = dir
        .write("client.crt", client.certificate)
        .display()
        .to_string();
    let key = dir.write("client.key", client.key).display().to_string();
    let admitted = || {
        curl(
            &url,
            &["--cacert", &ca, "--cert", &certificate, "--key", &key],
        )
        .ok
    };
    assert!(!admitted());
    dir.write("clients.crt", new_clients.certificate());
    assert!(
        eventually(30, admitted),
        "the new client CA was not picked up"
    );
}
