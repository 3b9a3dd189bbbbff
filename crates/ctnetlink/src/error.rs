//! The one error type of the socket side.

use std::io;

use conntrack_codec::ParseError;

/// A failure talking to the kernel: through a conntrack or event socket, the address watch,
/// or the nftables transaction of the tracking switch.
///
/// Every variant names the operation that failed, so that its message alone tells a user
/// what the program was doing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused because the process lacks `CAP_NET_ADMIN` in its network namespace.
    #[error(
        "{operation}: permission denied: this needs CAP_NET_ADMIN in the network namespace (run as root or grant the capability)"
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
    /// The kernel rejected one step of an nftables transaction; nothing was changed.
    #[error("{operation}: the kernel rejected {step}: {source}")]
    Rejected {
        /// What was being attempted.
        operation: &'static str,
        /// The step it rejected.
        step: &'static str,
        /// The errno the kernel returned.
        source: io::Error,
    },
    /// The kernel lacks a part of nftables the tracking switch needs; nothing was changed.
    #[error("{operation}: the kernel does not support {feature}: {source}")]
    Unsupported {
        /// What was being attempted.
        operation: &'static str,
        /// The missing part, with the kernel option that provides it.
        feature: &'static str,
        /// The errno the kernel returned.
        source: io::Error,
    },
    /// The kernel neither acknowledged nor rejected a step of an nftables transaction.
    #[error("{operation}: the kernel did not answer {step}")]
    Unanswered {
        /// What was being attempted.
        operation: &'static str,
        /// The step left without an answer.
        step: &'static str,
    },
    /// A system call on the socket failed.
    #[error("{operation}: {source}")]
    Io {
        /// What was being attempted.
        operation: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The process may not enter another network namespace: `setns` needs `CAP_SYS_ADMIN`.
    #[error(
        "entering a network namespace: permission denied: watching other namespaces needs CAP_SYS_ADMIN (and CAP_NET_ADMIN in each of them)"
    )]
    NamespacePermission,
    /// A reply could not be decoded.
    #[error("{operation}: malformed reply: {source}")]
    Parse {
        /// What was being attempted.
        operation: &'static str,
        /// The decoding error.
        source: ParseError,
    },
    /// libnftnl could not allocate memory for an nftables request.
    #[error("{operation}: libnftnl could not allocate {what}")]
    Allocation {
        /// What was being attempted.
        operation: &'static str,
        /// The object it could not allocate.
        what: &'static str,
    },
}

/// Where an errno came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A system call on the socket failed.
    SystemCall,
    /// The kernel answered a request with `NLMSG_ERROR`.
    Kernel,
}

impl Error {
    /// Classifies an errno: a refusal for lack of privilege, whatever its origin, says which
    /// capability is missing; any other keeps its origin.
    pub(crate) fn from_errno(operation: &'static str, source: io::Error, origin: Origin) -> Self {
        match (source.raw_os_error(), origin) {
            (Some(libc::EPERM | libc::EACCES), _) => Error::PermissionDenied { operation },
            (_, Origin::Kernel) => Error::Kernel { operation, source },
            (_, Origin::SystemCall) => Error::Io { operation, source },
        }
    }

    /// A failed system call (see [`from_errno`](Self::from_errno)).
    pub(crate) fn system_call(operation: &'static str, source: io::Error) -> Self {
        Error::from_errno(operation, source, Origin::SystemCall)
    }

    /// True when the kernel reported that the entry does not exist (`ENOENT`).
    pub fn is_not_found(&self) -> bool {
        self.kernel_errno() == Some(libc::ENOENT)
    }

    /// True when the kernel reported that the entry already exists (`EEXIST`).
    pub fn is_already_present(&self) -> bool {
        self.kernel_errno() == Some(libc::EEXIST)
    }

    fn kernel_errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { source, .. } | Error::Rejected { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
