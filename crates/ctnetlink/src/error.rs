//! Errors of the ctnetlink layer.

use std::io;

/// A message or attribute from the kernel that could not be decoded.
///
/// Every malformed input maps to one of these; the parser never panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Fewer bytes remain than a header or fixed-size part needs.
    #[error("truncated {what}: needs {needed} bytes, {available} available")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A netlink message header whose length is below the header size or beyond the buffer.
    #[error("netlink message length {length} is invalid ({available} bytes available)")]
    MessageFraming {
        /// The length the header claims.
        length: usize,
        /// Bytes that were left in the buffer.
        available: usize,
    },
    /// An attribute header whose length is below the header size or beyond its container.
    #[error("attribute length {length} is invalid ({available} bytes available)")]
    AttributeFraming {
        /// The length the attribute header claims.
        length: usize,
        /// Bytes that were left in the container.
        available: usize,
    },
    /// An attribute whose payload has the wrong size for its type.
    #[error("attribute {attribute} has {length} bytes, expected {expected}")]
    AttributeLength {
        /// The attribute's name as in the kernel headers.
        attribute: &'static str,
        /// The payload size found.
        length: usize,
        /// The payload size its type requires.
        expected: usize,
    },
    /// A required attribute is absent.
    #[error("missing attribute {0}")]
    MissingAttribute(&'static str),
    /// A tuple whose source and destination belong to different address families.
    #[error("tuple mixes IPv4 and IPv6 addresses")]
    MixedFamilies,
}

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
