//! Network namespaces that outlive the thread that made them, kept by a bind mount of their
//! file, as `ip netns add` keeps its own under `/run/netns`: for tests of an exporter that
//! watches several namespaces from a fourth one. Made under a test's temporary directory, so
//! that tests running at once never see each other's.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::namespace::try_enter;
use crate::tools::nft;

/// A namespace with `lo` up and connection tracking on, whose file is bind-mounted at a
/// path. Dropping it unmounts and removes the file; the namespace itself ends once nothing
/// else (an exporter's sockets) holds it.
#[derive(Debug)]
pub struct NamedNamespace {
    file: PathBuf,
    mounted: bool,
}

impl NamedNamespace {
    /// Makes a namespace on a thread of its own, switches tracking on there (a hookless
    /// nftables chain with a `ct state` rule), and mounts its file at `file`, which must not
    /// exist. Panics on failure: callers entered a namespace of their own already, so they
    /// have the privileges.
    #[track_caller]
    pub fn create(file: &Path) -> NamedNamespace {
        let target = file.to_owned();
        std::thread::spawn(move || -> io::Result<()> {
            try_enter()?;
            nft(&["table inet track { chain c { ct state established accept; }; }"]);
            File::create(&target)?;
            bind_mount(Path::new("/proc/thread-self/ns/net"), &target)
        })
        .join()
        .expect("the thread making a namespace panicked")
        .unwrap_or_else(|error| panic!("making a namespace at {}: {error}", file.display()));
        NamedNamespace {
            file: file.to_owned(),
            mounted: true,
        }
    }

    /// Where its file is.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Runs `work` inside the namespace, on a thread of its own, and returns what it
    /// returns. Sockets it opens stay in the namespace; processes it starts run there.
    #[track_caller]
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        let namespace = File::open(&self.file)
            .unwrap_or_else(|error| panic!("opening {}: {error}", self.file.display()));
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns with a descriptor that `namespace` owns for the call; it
                    // moves only this thread, which ends with the scope.
                    let entered = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(entered, 0, "setns: {}", io::Error::last_os_error());
                    work()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Unmounts its file and removes it, as `ip netns delete` does.
    pub fn delete(mut self) {
        self.unmount();
    }

    fn unmount(&mut self) {
        if !std::mem::take(&mut self.mounted) {
            return;
        }
        if let Ok(path) = std::ffi::CString::new(self.file.as_os_str().as_bytes()) {
            // SAFETY: a NUL-terminated path that outlives the call.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

impl Drop for NamedNamespace {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn bind_mount(source: &Path, target: &Path) -> io::Result<()> {
    let text =
        |path: &Path| std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other);
    let (source, target) = (text(source)?, text(target)?);
    // SAFETY: NUL-terminated paths that outlive the call; a bind mount takes no file system
    // type and no data.
    let mounted = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if mounted != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
