//! Scrapes as Prometheus sends them (HTTP/1.1, gzip accepted), timed; one at a time or many
//! at once.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a client waits for any step of a request (connecting, sending, each read)
/// before it gives up.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// One answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as received (still compressed if it was).
    pub body: Vec<u8>,
    /// From sending the request to the answer's last byte.
    pub elapsed: Duration,
}

impl Response {
    /// The first value of the header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }

    /// Parses a whole HTTP/1.1 answer; `elapsed` is how long it took. The answer to a `HEAD`
    /// request announces a length but has no body.
    fn parse(answer: &[u8], elapsed: Duration, to_head: bool) -> io::Result<Response> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        let end = answer
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .ok_or_else(|| invalid("the answer ended before its headers did"))?;
        let head = std::str::from_utf8(&answer[..end]).map_err(|_| invalid("a head not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid("no status line"))?;
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let response = Response {
            status,
            headers,
            body: answer[end + 4..].to_vec(),
            elapsed,
        };
        let promised = response
            .header("content-length")
            .and_then(|n| n.parse::<usize>().ok());
        match promised {
            Some(length) if length != response.body.len() && !to_head => Err(invalid(&format!(
                "a body of {} bytes where {length} were announced",
                response.body.len()
            ))),
            _ => Ok(response),
        }
    }
}

/// The address every client talks to.
pub fn address(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Sends `method path` with the extra `headers` and reads the whole answer (the request asks
/// the server to close the connection after it). For `HEAD`, the body is empty.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&address(port), CLIENT_TIMEOUT)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let started = Instant::now();
    stream.write_all(request_text(port, method, path, headers).as_bytes())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Response::parse(&answer, started.elapsed(), method == "HEAD")
}

/// A scrape as Prometheus sends it: `GET path`, gzip accepted.
pub fn scrape(port: u16, path: &str) -> io::Result<Response> {
    request(port, "GET", path, &[("Accept-Encoding", "gzip")])
}

/// Scrapes `path` over `count` connections at once, as [`scrape`] does: each connection
/// sends its request as soon as it is made, and all are under way together. Returns, for
/// each, the time from its request to the last byte of a 200 answer, or why it failed.
pub fn concurrent_scrapes(
    port: u16,
    path: &str,
    count: usize,
) -> io::Result<Vec<io::Result<Duration>>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let request = request_text(port, "GET", path, &[("Accept-Encoding", "gzip")]);
    runtime.block_on(async {
        let scrapes: Vec<_> = (0..count)
            .map(|_| tokio::spawn(timed_scrape(port, request.clone())))
            .collect();
        let mut results = Vec::with_capacity(count);
        for scrape in scrapes {
            results.push(
                scrape
                    .await
                    .unwrap_or_else(|panic| Err(io::Error::other(panic))),
            );
        }
        Ok(results)
    })
}

async fn timed_scrape(port: u16, request: String) -> io::Result<Duration> {
    let connecting = tokio::net::TcpStream::connect(address(port));
    let mut stream = tokio::time::timeout(CLIENT_TIMEOUT, connecting).await??;
    let started = Instant::now();
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(CLIENT_TIMEOUT, stream.read_to_end(&mut answer)).await??;
    let response = Response::parse(&answer, started.elapsed(), false)?;
    if response.status != 200 {
        return Err(io::Error::other(format!("status {}", response.status)));
    }
    Ok(response.elapsed)
}

fn request_text(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut text =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_parsed_and_checked_against_its_length() {
        let answer =
            b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\ncontent-length: 3\r\n\r\nno\n";
        let response = Response::parse(answer, Duration::ZERO, false).unwrap();
        assert_eq!(response.status, 405);
        assert_eq!(response.header("allow"), Some("GET, HEAD"));
        assert_eq!(response.body, b"no\n");
        let truncated = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort";
        assert!(Response::parse(truncated, Duration::ZERO, false).is_err());
        assert!(Response::parse(truncated, Duration::ZERO, true).is_ok());
    }
}
