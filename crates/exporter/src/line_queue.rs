//! Lines written to a stream by a thread of their own, through a bounded queue, so that the
//! thread producing them never waits for the stream.
//!
//! The event log needs this: standard output may be a pipe that nobody reads, and a write to
//! a full pipe blocks. Had the collector written the lines itself, it would stop applying
//! events there, and the exporter would serve frozen numbers. Here the collector only hands
//! a line over; when the queue is full, the line is dropped and counted, and a warning says
//! so (at most once per [`REPORT_INTERVAL`]). Memory stays bounded by the queue's length in
//! lines, each of which is short.

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use log::warn;
use metrics::Counter;

/// Lines the writer thread collects into one write, at most (in bytes, roughly).
const BATCH_BYTES: usize = 64 * 1024;
/// Dropped lines are reported in the log at most this often.
const REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// The producing end of the queue. Dropping it lets the writer thread write what is queued
/// and end, and waits a bounded time for that.
pub(crate) struct LineQueue {
    /// `None` only while it is dropped.
    lines: Option<SyncSender<String>>,
    /// Disconnected when the writer thread ends (it holds the other end and never sends).
    writer_ended: Receiver<()>,
    /// Lines dropped, here because the queue was full, in the writer after a failed write.
    dropped: Counter,
    /// What stream the lines go to, for the log.
    stream: &'static str,
    /// When the queue is dropped, how long the lines still queued may take to be written.
    drain_limit: Duration,
    /// Dropped lines not yet reported in the log.
    unreported: u64,
    /// When dropped lines may next be reported.
    next_report: Instant,
}

impl LineQueue {
    /// Starts the writer thread `name`, which writes lines to `out` (named `stream` in the
    /// log), with room for `capacity` lines waiting; once the queue is dropped, what is
    /// still queued may take up to `drain_limit` to be written.
    pub(crate) fn start(
        name: &str,
        stream: &'static str,
        out: impl Write + Send + 'static,
        capacity: usize,
        drain_limit: Duration,
        dropped: Counter,
    ) -> io::Result<LineQueue> {
        let (lines, queued) = mpsc::sync_channel(capacity);
        let (writer_alive, writer_ended) = mpsc::channel::<()>();
        let writer_dropped = dropped.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _alive = writer_alive;
                write_lines(&queued, out, stream, &writer_dropped);
            })?;
        Ok(LineQueue {
            lines: Some(lines),
            writer_ended,
            dropped,
            stream,
            drain_limit,
            unreported: 0,
            next_report: Instant::now(),
        })
    }

    /// Hands `line` (without its newline) to the writer thread, or drops and counts it if
    /// the queue is full. Never waits.
    pub(crate) fn push(&mut self, line: String) {
        let Some(lines) = &self.lines else { return };
        match lines.try_send(line) {
            Ok(()) => {}
            // A writer that ended has counted every line it could not write; after the
            // queue it only ends once the queue is closed, so this is the full queue.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.count_dropped(),
        }
    }

    fn count_dropped(&mut self) {
        self.dropped.increment(1);
        self.unreported += 1;
        let now = Instant::now();
        if now >= self.next_report {
            warn!(
                "{} is not read fast enough: {} line(s) dropped since the last report \
                 (conntrack_exporter_event_log_dropped_total counts them all)",
                self.stream, self.unreported
            );
            self.unreported = 0;
            self.next_report = now + REPORT_INTERVAL;
        }
    }
}

impl Drop for LineQueue {
    /// Closes the queue (the writer sees it once it has taken every queued line) and waits
    /// for the writer thread to end.
    fn drop(&mut self) {
        drop(self.lines.take());
        if let Err(RecvTimeoutError::Timeout) = self.writer_ended.recv_timeout(self.drain_limit) {
            warn!(
                "{} did not take the last lines within {:?}; they are lost",
                self.stream, self.drain_limit
            );
        }
    }
}

/// The writer thread: writes lines in batches of whatever is queued, until the queue is
/// closed. After a failed write (a closed pipe, say) it says so once and counts every
/// further line as dropped, the lines of the failed batch included.
fn write_lines(queued: &Receiver<String>, mut out: impl Write, stream: &str, dropped: &Counter) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    let mut failed = false;
    while let Ok(first) = queued.recv() {
        let mut lines = 0;
        let mut next = Some(first);
        while let Some(line) = next {
            batch.extend_from_slice(line.as_bytes());
            batch.push(b'\n');
            lines += 1;
            next = if batch.len() < BATCH_BYTES {
                queued.try_recv().ok()
            } else {
                None
            };
        }
        if !failed && let Err(error) = out.write_all(&batch).and_then(|()| out.flush()) {
            warn!("writing to {stream} failed: {error}; its lines are dropped from now on");
            failed = true;
        }
        if failed {
            dropped.increment(lines);
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    /// Far longer than anything here takes: only a hang reaches it.
    const PATIENCE: Duration = Duration::from_secs(60);

    fn counter() -> (Counter, Arc<AtomicU64>) {
        let value = Arc::new(AtomicU64::new(0));
        (Counter::from_arc(Arc::clone(&value)), value)
    }

    /// A stream whose first write waits until the test opens the gate; it tells the test
    /// when that write has begun.
    struct Gated {
        written: Arc<Mutex<Vec<u8>>>,
        began: Option<mpsc::Sender<()>>,
        gate: Receiver<()>,
    }

    impl Write for Gated {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if let Some(began) = self.began.take() {
                let _ = began.send(());
                let _ = self.gate.recv();
            }
            self.written.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A stream whose reader went away.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_stream_costs_lines_beyond_the_queue_never_a_wait() {
        const CAPACITY: usize = 8;
        let written = Arc::new(Mutex::new(Vec::new()));
        let (began, write_began) = mpsc::channel();
        let (open_gate, gate) = mpsc::channel();
        let out = Gated {
            written: Arc::clone(&written),
            began: Some(began),
            gate,
        };
        let (dropped, dropped_value) = counter();
        let mut queue =
            LineQueue::start("test-writer", "the test", out, CAPACITY, PATIENCE, dropped)
                .expect("starting the writer");

        queue.push("line 0".into());
        write_began
            .recv_timeout(PATIENCE)
            .expect("the first write begins");
        // The writer is stuck in its first write: the queue fills, then lines are dropped.
        for n in 1..=CAPACITY + 5 {
            queue.push(format!("line {n}"));
        }
        assert_eq!(dropped_value.load(Ordering::Relaxed), 5);

        open_gate.send(()).unwrap();
        drop(queue);
        let expected: String = (0..=CAPACITY).map(|n| format!("line {n}\n")).collect();
        assert_eq!(
            String::from_utf8(written.lock().unwrap().clone()).unwrap(),
            expected
        );
        assert_eq!(dropped_value.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn after_a_failed_write_every_line_is_counted_as_dropped() {
        let (dropped, dropped_value) = counter();
        let mut queue = LineQueue::start("test-writer", "the test", Broken, 4, PATIENCE, dropped)
            .expect("starting the writer");
        for n in 0..100 {
            queue.push(format!("line {n}"));
        }
        drop(queue);
        assert_eq!(dropped_value.load(Ordering::Relaxed), 100);
    }
}
