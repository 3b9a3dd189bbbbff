//! Waiting for any of many sockets at once (`poll`), for one thread that reads the sockets of
//! many network namespaces.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// A set of descriptors to wait for, reused from one wait to the next.
#[derive(Debug, Default)]
pub struct Readiness {
    fds: Vec<libc::pollfd>,
}

impl Readiness {
    /// Forgets every descriptor.
    pub fn clear(&mut self) {
        self.fds.clear();
    }

    /// Adds `source`; returns its index for [`is_ready`](Self::is_ready).
    pub fn add(&mut self, source: &impl AsRawFd) -> usize {
        self.add_fd(source.as_raw_fd())
    }

    fn add_fd(&mut self, fd: RawFd) -> usize {
        self.fds.push(libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        self.fds.len() - 1
    }

    /// Waits until one of the descriptors can be read (or has an error pending, such as the
    /// lost events of a full receive queue), or `timeout` passed. A signal ends the wait
    /// early, with nothing ready.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fds` is a valid array of `len` pollfd structs, borrowed for the call.
        let result = unsafe {
            libc::poll(
                self.fds.as_mut_ptr(),
                self.fds.len() as libc::nfds_t,
                millis,
            )
        };
        if result < 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EINTR) {
                self.fds.iter_mut().for_each(|fd| fd.revents = 0);
                return Ok(());
            }
            return Err(error);
        }
        Ok(())
    }

    /// Whether the descriptor at `index` was ready after the latest wait.
    pub fn is_ready(&self, index: usize) -> bool {
        self.fds.get(index).is_some_and(|fd| fd.revents != 0)
    }
}
