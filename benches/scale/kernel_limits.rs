//! The conntrack table's limit and hash size, raised for the million phase and restored
//! afterwards. On recent kernels both are global and can be set only from the initial
//! network namespace (`nf_conntrack_max` is read-only inside another one, and the hash size
//! refuses a write from one), so they are raised before the harness enters its namespace,
//! and restored from the initial one, entered again for that at the end.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

const MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const HASH_SIZE: &str = "/sys/module/nf_conntrack/parameters/hashsize";

/// The settings changed and their values before; restored on drop.
pub struct TableLimit {
    initial_namespace: File,
    changed: Vec<(&'static str, u32)>,
}

impl TableLimit {
    /// Raises the limit to at least `entries`, and the hash size to as many buckets (as an
    /// operator who raises the limit does), leaving either alone when already larger.
    /// Call it from the initial network namespace.
    pub fn raise(entries: u32) -> io::Result<TableLimit> {
        let mut limit = TableLimit {
            initial_namespace: File::open("/proc/thread-self/ns/net")?,
            changed: Vec::new(),
        };
        for path in [MAX, HASH_SIZE] {
            let before = read(path)?;
            if before < entries {
                std::fs::write(path, entries.to_string())?;
                limit.changed.push((path, before));
            }
        }
        Ok(limit)
    }
}

impl Drop for TableLimit {
    fn drop(&mut self) {
        if self.changed.is_empty() {
            return;
        }
        // SAFETY: setns with a namespace file this value holds open; it moves only the
        // calling thread, which the harness leaves only now, at its end.
        let entered =
            unsafe { libc::setns(self.initial_namespace.as_raw_fd(), libc::CLONE_NEWNET) };
        if entered != 0 {
            let error = io::Error::last_os_error();
            eprintln!(
                "scale: could not enter the initial network namespace to restore limits: {error}"
            );
            return;
        }
        for (path, value) in self.changed.iter().rev() {
            if let Err(error) = std::fs::write(path, value.to_string()) {
                eprintln!("scale: could not restore {path} to {value}: {error}");
            }
        }
    }
}

fn read(path: &str) -> io::Result<u32> {
    std::fs::read_to_string(path)?
        .trim()
        .parse()
        .map_err(|error| io::Error::other(format!("{path}: {error}")))
}
