//! The clients an exporter must survive. Each holds its connections open until dropped.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::scrape::{CLIENT_TIMEOUT, address};

/// How long an attacking connection keeps trying to connect: a server that accepts slowly
/// leaves it waiting in the kernel's queue, or dropping its first attempts.
const PATIENT_CONNECT: Duration = Duration::from_secs(60);

/// Connections that each send the start of a request and never finish it ("slowloris").
#[derive(Debug)]
pub struct HalfSentRequests {
    streams: Vec<TcpStream>,
}

impl HalfSentRequests {
    /// Opens `count` connections to `port`, each sending a request line and one header, never
    /// the end of the headers.
    pub fn open(port: u16, count: usize) -> io::Result<HalfSentRequests> {
        let start = format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
        let streams = connect_and_send(port, count, start.as_bytes())?;
        Ok(HalfSentRequests { streams })
    }

    /// How many connections it opened.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether it opened none.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

/// Connections that each send many pipelined requests and never read an answer.
#[derive(Debug)]
pub struct UnreadPipelines {
    streams: Vec<TcpStream>,
}

impl UnreadPipelines {
    /// Opens `connections` connections to `port`, each sending `requests` complete
    /// `GET /metrics` requests (without gzip) at once.
    pub fn open(port: u16, connections: usize, requests: usize) -> io::Result<UnreadPipelines> {
        let request = format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        let streams = connect_and_send(port, connections, request.repeat(requests).as_bytes())?;
        Ok(UnreadPipelines { streams })
    }

    /// How many connections it opened.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether it opened none.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

fn connect_and_send(port: u16, count: usize, text: &[u8]) -> io::Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect_timeout(&address(port), PATIENT_CONNECT)?;
        stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        stream.write_all(text)?;
        streams.push(stream);
    }
    Ok(streams)
}

/// How long opening one more HTTP/2 stream may wait before the server's stream limit is
/// taken as reached.
const STREAM_OPEN_WAIT: Duration = Duration::from_millis(200);

/// Cleartext HTTP/2 connections that grant every stream a zero flow-control window and open
/// many requests: the answers' headers arrive, their bodies stay stuck in the server.
#[derive(Debug)]
pub struct ZeroWindowStreams {
    answered: usize,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ZeroWindowStreams {
    /// Opens `connections` connections to `port` and up to `streams` requests for `path` on
    /// each, as many as the server allows, and waits for their answers' headers.
    pub fn open(
        port: u16,
        path: &str,
        connections: usize,
        streams: usize,
    ) -> io::Result<ZeroWindowStreams> {
        let (opened, answered) = mpsc::channel();
        let (stop, stopped) = oneshot::channel();
        let uri = format!("http://127.0.0.1:{port}{path}");
        // The connections live on their own thread, which inherits the caller's network
        // namespace, with a runtime of its own.
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => return drop(opened.send(Err(error))),
            };
            runtime.block_on(async move {
                let mut held = Vec::with_capacity(connections);
                let mut answers = 0;
                for _ in 0..connections {
                    match zero_window_connection(port, &uri, streams).await {
                        Ok(connection) => {
                            answers += connection.1.len();
                            held.push(connection);
                        }
                        Err(error) => return drop(opened.send(Err(error))),
                    }
                }
                let _ = opened.send(Ok(answers));
                let _ = stopped.await;
            });
        });
        let answered = answered
            .recv()
            .map_err(|_| io::Error::other("the HTTP/2 client thread ended"))??;
        Ok(ZeroWindowStreams {
            answered,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// How many requests got their answer's headers (each of those holds a body the server
    /// cannot send).
    pub fn answered(&self) -> usize {
        self.answered
    }
}

impl Drop for ZeroWindowStreams {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One connection and the answers whose bodies it never accepts.
type HeldConnection = (
    h2::client::SendRequest<Bytes>,
    Vec<http::Response<h2::RecvStream>>,
);

async fn zero_window_connection(
    port: u16,
    uri: &str,
    streams: usize,
) -> io::Result<HeldConnection> {
    let tcp = tokio::net::TcpStream::connect(address(port)).await?;
    let (mut client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut pending = Vec::with_capacity(streams);
    for _ in 0..streams {
        client = match tokio::time::timeout(STREAM_OPEN_WAIT, client.clone().ready()).await {
            Ok(ready) => ready.map_err(io::Error::other)?,
            // The server's stream limit is reached: the client waits for a stream to end.
            Err(_) => break,
        };
        let request = http::Request::get(uri).body(()).map_err(io::Error::other)?;
        let (answer, _) = client
            .send_request(request, true)
            .map_err(io::Error::other)?;
        pending.push(answer);
    }
    let mut answers = Vec::with_capacity(pending.len());
    for answer in pending {
        // A stream beyond the server's limit is refused: it has no answer to hold.
        if let Ok(Ok(answer)) = tokio::time::timeout(CLIENT_TIMEOUT, answer).await {
            answers.push(answer);
        }
    }
    Ok((client, answers))
}
