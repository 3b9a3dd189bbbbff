//! Network namespaces other than the caller's: a netlink socket belongs, for its whole life,
//! to the namespace of the thread that created it. So a thread that enters a namespace,
//! opens its sockets there and comes back can read many namespaces' conntrack tables.
//!
//! Entering one (`setns`) needs `CAP_SYS_ADMIN`, on top of the `CAP_NET_ADMIN` that the
//! sockets themselves need in that namespace.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::Error;

/// The calling thread's own network namespace.
const OWN_NAMESPACE: &str = "/proc/thread-self/ns/net";

/// `NS_GET_NSTYPE` (linux/nsfs.h, `_IO(0xb7, 0x3)`): which kind of namespace a namespace file
/// is; fails with `ENOTTY` on any other file.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// What identifies a namespace whatever path names it: the device and inode of its file.
/// Two paths with the same identity (a bind mount under `/run/netns` and `/proc/PID/ns/net`)
/// name one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespaceId {
    /// The namespace file system's device.
    pub device: u64,
    /// The namespace's inode number (what `ip netns identify` and `lsns` show).
    pub inode: u64,
}

impl NamespaceId {
    /// The identity of the namespace file at `path` (following links), without opening it.
    /// Says nothing about whether it is a namespace file.
    pub fn of_path(path: &Path) -> io::Result<NamespaceId> {
        let metadata = std::fs::metadata(path)?;
        Ok(NamespaceId {
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }
}

/// An open network namespace file, which keeps the namespace alive while it is held.
#[derive(Debug)]
pub struct NetworkNamespace {
    file: File,
    id: NamespaceId,
}

/// Why a path could not be opened as a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be opened or examined.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The file is not a namespace file (a plain file, a mount point not yet mounted).
    #[error("not a namespace file")]
    NotANamespace,
    /// The file is a namespace file of another kind (mount, user, ...).
    #[error("a namespace file, but not of a network namespace")]
    OtherKind,
}

impl NetworkNamespace {
    /// Opens the namespace file at `path`, and checks that it is one of a network namespace.
    pub fn open(path: &Path) -> Result<NetworkNamespace, OpenError> {
        let file = File::open(path)?;
        // SAFETY: an ioctl without argument on a descriptor owned by `file`, which outlives
        // the call.
        let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
        if kind < 0 {
            let error = io::Error::last_os_error();
            return Err(match error.raw_os_error() {
                Some(libc::ENOTTY | libc::EINVAL) => OpenError::NotANamespace,
                _ => OpenError::Io(error),
            });
        }
        if kind != libc::CLONE_NEWNET {
            return Err(OpenError::OtherKind);
        }
        let metadata = file.metadata()?;
        let id = NamespaceId {
            device: metadata.dev(),
            inode: metadata.ino(),
        };
        Ok(NetworkNamespace { file, id })
    }

    /// The calling thread's own network namespace, to come back to after entering another.
    pub fn own() -> Result<NetworkNamespace, Error> {
        NetworkNamespace::open(Path::new(OWN_NAMESPACE)).map_err(|error| {
            let source = match error {
                OpenError::Io(source) => source,
                other => io::Error::other(other),
            };
            Error::Io {
                operation: "opening the own network namespace",
                source,
            }
        })
    }

    /// Its identity.
    pub fn id(&self) -> NamespaceId {
        self.id
    }

    /// Runs `work` on the calling thread inside this namespace, then moves the thread back
    /// into `home` (its own namespace, from [`own`](Self::own)). Sockets that `work` opens
    /// stay in this namespace for good. Entering needs `CAP_SYS_ADMIN`.
    ///
    /// # Panics
    ///
    /// When the thread cannot return to `home` (which it just left, so nothing but a kernel
    /// failure could refuse): going on in the wrong namespace would mix two namespaces'
    /// numbers silently.
    pub fn run_inside<T>(
        &self,
        home: &NetworkNamespace,
        work: impl FnOnce() -> T,
    ) -> Result<T, Error> {
        if let Err(source) = set_namespace(&self.file) {
            return Err(match source.raw_os_error() {
                Some(libc::EPERM) => Error::NamespacePermission,
                _ => Error::Io {
                    operation: "entering a network namespace",
                    source,
                },
            });
        }
        let result = work();
        if let Err(error) = set_namespace(&home.file) {
            panic!("cannot return to the own network namespace: {error}");
        }
        Ok(result)
    }
}

/// Moves the calling thread into the network namespace of `file`.
fn set_namespace(file: &File) -> io::Result<()> {
    // SAFETY: setns takes a descriptor owned by `file`, which outlives the call, and a flag
    // word; it changes only the calling thread's network namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_network_namespace_file_opens() {
        let own = NetworkNamespace::open(Path::new("/proc/self/ns/net")).unwrap();
        assert_eq!(
            own.id(),
            NamespaceId::of_path(Path::new("/proc/self/ns/net")).unwrap()
        );
        assert!(matches!(
            NetworkNamespace::open(Path::new("/proc/self/ns/mnt")),
            Err(OpenError::OtherKind)
        ));
        assert!(matches!(
            NetworkNamespace::open(Path::new("/proc/self/status")),
            Err(OpenError::NotANamespace)
        ));
        assert!(matches!(
            NetworkNamespace::open(Path::new("/nonexistent/ns")),
            Err(OpenError::Io(_))
        ));
    }
}
