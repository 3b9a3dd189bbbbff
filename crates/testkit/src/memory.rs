//! A process's resident memory, from `/proc/<pid>/status`, and its open-file limit: what the
//! load tests and harnesses measure and set.

use std::io;

/// The resident set size of process `pid` now, in bytes.
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    status_bytes(pid, "VmRSS:")
}

/// The largest resident set size process `pid` has had so far, in bytes.
pub fn peak_rss_bytes(pid: u32) -> io::Result<u64> {
    status_bytes(pid, "VmHWM:")
}

/// Sets the open-file limit of process `pid` (soft and hard), as a service manager would:
/// the common default is 1,024.
pub fn limit_open_files(pid: u32, files: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: files,
        rlim_max: files,
    };
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: prlimit reads `limit` and writes nothing (the old-limit pointer is null).
    let set = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
    if set == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn status_bytes(pid: u32, field: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .ok_or_else(|| io::Error::other(format!("no {field} in /proc/{pid}/status")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_at_least_the_current_size() {
        let pid = std::process::id();
        let rss = rss_bytes(pid).unwrap();
        assert!(rss > 0);
        assert!(peak_rss_bytes(pid).unwrap() >= rss);
    }
}
