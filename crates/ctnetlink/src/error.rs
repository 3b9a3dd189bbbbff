//! Errors of the ctnetlink layer.

use std::io;

use conntrack_codec::ParseError;

/// A failure talking to the kernel.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The kernel refused because the process lacks `CAP_NET_ADMIN` in its network namespace.
    #[error(
        "{operation}: permission denied: reading and watching the conntrack table needs CAP_NET_ADMIN (run as root or grant the capability)"
    )]
    PermissionDenied {
        /// What was being attempted.
        operation: &'static str,
    },
    /// The kernel answered a request with an error code.
    #[error("{operation}: the kernel answered: {source}")]
    Kernel {
        /// What was being attempted.
        operation: &'static str,
        /// The errno the kernel returned.
        source: io::Error,
    },
    /// A system call on the socket failed.
    #[error("{operation}: {source}")]
    Io {
        /// What was being attempted.
        operation: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// A reply could not be decoded.
    #[error("{operation}: malformed reply: {source}")]
    Parse {
        /// What was being attempted.
        operation: &'static str,
        /// The decoding error.
        source: ParseError,
    },
}

impl SocketError {
    /// Classifies an errno from a system call or a kernel reply.
    pub(crate) fn from_errno(operation: &'static str, error: io::Error, from_kernel: bool) -> Self {
        match error.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => SocketError::PermissionDenied { operation },
            _ if from_kernel => SocketError::Kernel {
                operation,
                source: error,
            },
            _ => SocketError::Io {
                operation,
                source: error,
            },
        }
    }

    /// True when the kernel reported that the entry does not exist (`ENOENT`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, SocketError::Kernel { source, .. } if source.raw_os_error() == Some(libc::ENOENT))
    }

    /// True when the kernel reported that the entry already exists (`EEXIST`).
    pub fn is_already_present(&self) -> bool {
        matches!(self, SocketError::Kernel { source, .. } if source.raw_os_error() == Some(libc::EEXIST))
    }
}
