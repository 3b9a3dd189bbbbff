//! Child processes that never outlive the test or harness that started them: their output
//! captured while they run, signals, a bounded wait for their exit, and what they cost (CPU
//! time and resident memory, from `/proc`).

use std::io::{self, BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crate::wait::{test_deadline, within};

/// Output of a child process, collected by a reader thread while it runs.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<String>>);

impl Captured {
    /// Reads `stream` to its end on a new thread. Bytes that are not UTF-8 are replaced,
    /// so that the reader never stops early and leaves the writer blocked.
    fn collect(stream: impl Read + Send + 'static) -> (Captured, JoinHandle<()>) {
        let captured = Captured::default();
        let sink = captured.clone();
        let reader = thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            while let Ok(read) = reader.read_until(b'\n', &mut line) {
                if read == 0 {
                    break;
                }
                sink.0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&String::from_utf8_lossy(&line));
                line.clear();
            }
        });
        (captured, reader)
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The complete lines read so far.
    pub fn lines(&self) -> Vec<String> {
        let text = self.text();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// A child process, killed when dropped (also when the caller panics).
pub struct Process {
    child: Child,
    readers: Vec<JoinHandle<()>>,
}

impl Process {
    /// Starts `command`, its output going where the command says.
    pub fn spawn(command: &mut Command) -> Process {
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        Process {
            child,
            readers: Vec::new(),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads its piped standard output while it runs.
    pub fn capture_stdout(&mut self) -> Captured {
        let stdout = self.take_stdout();
        self.capture(stdout)
    }

    /// Reads its piped standard error while it runs.
    pub fn capture_stderr(&mut self) -> Captured {
        let stderr = self
            .child
            .stderr
            .take()
            .expect("standard error was not piped");
        self.capture(stderr)
    }

    fn capture(&mut self, stream: impl Read + Send + 'static) -> Captured {
        let (captured, reader) = Captured::collect(stream);
        self.readers.push(reader);
        captured
    }

    /// Takes its piped standard output, for a caller that reads it itself.
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.child
            .stdout
            .take()
            .expect("standard output was not piped")
    }

    /// Closes the reading end of its piped standard error, if not taken: its next write
    /// there fails (`EPIPE`).
    pub fn close_stderr(&mut self) {
        drop(self.child.stderr.take());
    }

    /// Sends `signal` and returns at once, without waiting for any effect: for `SIGSTOP` and
    /// `SIGCONT`, say. A stopped process is still ended on drop: the `SIGKILL` sent then ends
    /// a stopped process too.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill takes plain integers; `pid` is our own child, not yet reaped.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill: {}", io::Error::last_os_error());
    }

    /// Its exit status, if it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until it exits, up to `deadline` (panics after that), and until its captured
    /// output is read to the end.
    #[track_caller]
    pub fn wait_for_exit(&mut self, deadline: Instant) -> ExitStatus {
        let child = &mut self.child;
        let status = within("the process exits", deadline, || match child.try_wait() {
            Ok(Some(status)) => Ok(status),
            Ok(None) => Err("still running".into()),
            Err(error) => Err(error.to_string()),
        });
        self.join_readers();
        status
    }

    /// Sends SIGTERM, waits for the exit and returns its standard output if it was piped
    /// and not taken.
    pub fn terminate(mut self) -> String {
        self.signal(libc::SIGTERM);
        let mut output = String::new();
        if let Some(stdout) = self.child.stdout.as_mut() {
            let _ = stdout.read_to_string(&mut output);
        }
        let _ = self.child.wait();
        output
    }

    /// CPU time of all its threads, in nanoseconds (user and system, from schedstat); 0
    /// once it has exited.
    pub fn cpu_ns(&self) -> u64 {
        let tasks = format!("/proc/{}/task", self.pid());
        let Ok(tasks) = std::fs::read_dir(tasks) else {
            return 0;
        };
        tasks
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
            .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// Resident memory in bytes; 0 once it has exited.
    pub fn rss_bytes(&self) -> u64 {
        crate::memory::rss_bytes(self.pid()).unwrap_or(0)
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.join_readers();
    }
}

/// Runs `command` until it exits (within the test's deadline), with standard input empty and
/// standard output discarded; returns its status and standard error. For start-up failures.
#[track_caller]
pub fn run_to_exit(command: &mut Command) -> (ExitStatus, String) {
    let mut process = Process::spawn(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let stderr = process.capture_stderr();
    let status = process.wait_for_exit(test_deadline());
    (status, stderr.text())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn output_is_captured_line_by_line_even_when_not_utf8() {
        let mut process = Process::spawn(
            shell("printf 'one\\n\\377two\\nthree'; printf 'oops\\n' >&2")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let stdout = process.capture_stdout();
        let stderr = process.capture_stderr();
        let status = process.wait_for_exit(Instant::now() + Duration::from_secs(60));
        assert!(status.success());
        assert_eq!(
            stdout.lines(),
            ["one", "\u{fffd}two"],
            "{:?}",
            stdout.text()
        );
        assert_eq!(stdout.text(), "one\n\u{fffd}two\nthree");
        assert_eq!(stderr.text(), "oops\n");
    }

    #[test]
    fn run_to_exit_returns_the_status_and_standard_error() {
        let (status, stderr) = run_to_exit(&mut shell("echo out; echo bad >&2; exit 3"));
        assert_eq!(status.code(), Some(3));
        assert_eq!(stderr, "bad\n");
    }

    #[test]
    fn a_dropped_process_is_killed_and_reaped() {
        let process = Process::spawn(shell("exec sleep 600").stdout(Stdio::null()));
        let pid = process.pid();
        assert!(
            process.rss_bytes() > 0,
            "a running process has resident memory"
        );
        drop(process);
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} is still there"
        );
    }
}
