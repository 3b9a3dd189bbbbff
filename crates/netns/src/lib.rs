//! Private network namespaces for tests that run against the real kernel.
//!
//! A test calls [`enter`] first. The calling thread moves into a fresh network namespace with
//! its loopback interface up; sockets it opens and processes it starts live there, and the
//! namespace disappears with the thread. Other tests, on other threads, are not affected.
//!
//! Without root the test is skipped with a loud message, unless the `CI` environment
//! variable is set: there a missing privilege is a failure, so a green run always means the
//! kernel tests ran.
//!
//! ```no_run
//! let Some(_namespace) = netns::enter("dump_lists_created_entries") else { return };
//! // ... talk to the kernel: only this test's entries are visible here.
//! ```

use std::io::{self, Write};
use std::process::Command;

/// Proof that the current thread is in its own network namespace.
///
/// It is not `Send`: the namespace belongs to the thread that entered it.
#[derive(Debug)]
pub struct Namespace {
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Moves the current thread into a new network namespace with `lo` up.
///
/// Returns `None` after printing a skip notice when the process may not create namespaces
/// and `CI` is unset. Panics when `CI` is set and it may not, or on any other failure.
pub fn enter(test: &str) -> Option<Namespace> {
    match try_enter() {
        Ok(namespace) => Some(namespace),
        Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
            if std::env::var_os("CI").is_some() {
                panic!("{test}: needs root to create a network namespace, and CI is set: {error}");
            }
            // Written to the stream itself, not through `eprintln!`, which the test
            // harness captures and hides for passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED {test}: creating a network namespace needs root ({error}); \
                 run the tests as root to exercise the kernel ***\n"
            );
            None
        }
        Err(error) => panic!("{test}: cannot set up a private network namespace: {error}"),
    }
}

fn try_enter() -> io::Result<Namespace> {
    // SAFETY: unshare takes a flag word and affects only the calling thread's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    run("ip", &["link", "set", "lo", "up"])?;
    Ok(Namespace {
        _not_send: std::marker::PhantomData,
    })
}

/// Runs a command inside the current thread's namespace and returns its standard output.
/// A command that fails to start or exits non-zero is an error carrying its standard error.
pub fn run(program: &str, args: &[&str]) -> io::Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|error| io::Error::new(error.kind(), format!("cannot run {program}: {error}")))?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{program} {}: {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
