//! `curl` as the HTTPS client of tests: TLS versions, client certificates, basic auth and
//! HTTP/2 as a real client negotiates them.

use std::process::Command;

use crate::tools::installed;

/// What one curl run saw.
#[derive(Debug)]
pub struct Answer {
    /// Whether curl succeeded (a handshake failure makes it fail).
    pub ok: bool,
    /// The HTTP status, 0 without a response.
    pub status: u16,
    /// The HTTP version of the response (`1.1`, `2`).
    pub http_version: String,
    /// Response headers and body.
    pub response: String,
    /// curl's verbose log: the TLS version and cipher are there.
    pub log: String,
}

impl Answer {
    /// Whether the response carries this header line (name case-insensitive).
    pub fn has_header(&self, name: &str, value: &str) -> bool {
        self.response.lines().any(|line| {
            line.split_once(':').is_some_and(|(line_name, line_value)| {
                line_name.eq_ignore_ascii_case(name) && line_value.trim() == value
            })
        })
    }
}

/// Runs curl against `url` with `arguments` (at most 20 s), and returns what it saw.
pub fn curl(url: &str, arguments: &[&str]) -> Answer {
    assert!(
        installed("curl"),
        "curl is missing: install the Debian package curl (scripts/install-packages)"
    );
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--verbose", "--include"])
        .args(["--max-time", "20"])
        .args(["--write-out", "\n%{http_code} %{http_version}"])
        .args(arguments)
        .arg(url)
        .output()
        .expect("running curl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (response, summary) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let (status, http_version) = summary.split_once(' ').unwrap_or((summary, ""));
    Answer {
        ok: output.status.success(),
        status: status.parse().unwrap_or(0),
        http_version: http_version.to_owned(),
        response: response.to_owned(),
        log: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
