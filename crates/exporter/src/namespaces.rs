//! Which network namespaces to watch: the namespace files that the `namespaces` patterns
//! match now, how each is named in the `netns` label, and the watch on their directories
//! that tells when to look again.
//!
//! A namespace is known by the identity of its file (device and inode), so one seen through
//! two paths is watched once. Directories change without notice only under `/proc`, which
//! inotify does not report: the collector rescans every [`RESCAN_INTERVAL`] as well.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ctnetlink::namespace::NamespaceId;
use pods::PodUid;

use crate::settings::SettingsError;
use crate::watched::NamespaceLabels;

/// How often the patterns are matched again even when no directory changed: paths under
/// `/proc` come and go without inotify events, and a file that was not yet a namespace when
/// it appeared (`ip netns add` creates it, then mounts the namespace on it) is one later.
pub(crate) const RESCAN_INTERVAL: Duration = Duration::from_secs(5);

/// After a watched directory changed, how long to wait before matching again, so that a
/// namespace being mounted on a new file is complete and a burst of changes costs one scan.
pub(crate) const SETTLE: Duration = Duration::from_millis(100);

/// The label that names a namespace.
pub(crate) const LABEL: &str = "netns";

/// The label of the Kubernetes pod a namespace belongs to.
pub(crate) const POD_UID_LABEL: &str = "pod_uid";

/// The `netns` value of the exporter's own namespace.
pub(crate) const OWN_NAME: &str = "host";

/// The label values of a namespace named `name`, of the pod `pod_uid` when it is known.
/// Every per-namespace label is worked out here, once per namespace (and again when its pod
/// is found): a namespace's series carry them all, its connections none.
pub(crate) fn labels(name: &str, pod_uid: Option<&PodUid>) -> NamespaceLabels {
    let mut labels = vec![(LABEL, name.to_owned())];
    if let Some(uid) = pod_uid {
        labels.push((POD_UID_LABEL, uid.to_string()));
    }
    labels
}

/// The name of the namespace whose file is `path`, for the `netns` label: the file's name
/// (`cni-…` under `/run/netns`), or `pid-<pid>` for `/proc/<pid>/ns/net`, whose file name
/// says nothing.
pub(crate) fn name_of(path: &Path) -> String {
    let parts: Vec<&str> = path.iter().filter_map(|part| part.to_str()).collect();
    if let [.., "proc", pid, "ns", "net"] = parts[..]
        && pid.bytes().all(|byte| byte.is_ascii_digit())
    {
        return format!("pid-{pid}");
    }
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A path of namespace files, with `*` (any run of characters) and `?` (any one) in its last
/// component only: `/run/netns/*`, `/proc/1/ns/net`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespacePattern {
    directory: PathBuf,
    /// The last component, with its wildcards.
    name: String,
}

impl FromStr for NamespacePattern {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || SettingsError::NamespacePattern(text.to_owned());
        let (directory, name) = text.rsplit_once('/').ok_or_else(invalid)?;
        if !text.starts_with('/')
            || name.is_empty()
            || directory.contains(['*', '?'])
            || name == "."
            || name == ".."
        {
            return Err(invalid());
        }
        Ok(NamespacePattern {
            directory: PathBuf::from(if directory.is_empty() { "/" } else { directory }),
            name: name.to_owned(),
        })
    }
}

impl NamespacePattern {
    /// The directory its files are in, which the directory watch follows.
    pub(crate) fn directory(&self) -> &Path {
        &self.directory
    }

    /// The paths it matches now, in name order. A pattern without wildcards names its one
    /// path, whether or not it exists.
    fn paths(&self) -> Vec<PathBuf> {
        if !self.name.contains(['*', '?']) {
            return vec![self.directory.join(&self.name)];
        }
        let Ok(entries) = std::fs::read_dir(&self.directory) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|entry| wildcard_match(self.name.as_bytes(), entry.file_name().as_bytes()))
            .map(|entry| entry.path())
            .collect();
        paths.sort();
        paths
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of bytes and `?` for any
/// one. Linear in practice: it backtracks only to the latest `*`.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&byte) if byte == b'?' || byte == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

/// A file that a pattern matched, by identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// The first path that named it.
    pub path: PathBuf,
    /// Its identity.
    pub id: NamespaceId,
}

/// Every file the patterns match now, each identity once (under the first path that names
/// it), in pattern order. Whether each is a network namespace is for the one who opens it.
pub(crate) fn scan(patterns: &[NamespacePattern]) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    for path in patterns.iter().flat_map(NamespacePattern::paths) {
        if let Ok(id) = NamespaceId::of_path(&path)
            && !found.iter().any(|seen| seen.id == id)
        {
            found.push(Found { path, id });
        }
    }
    found
}

/// Changes in a watched directory (inotify): a file created, deleted or moved there.
#[derive(Debug)]
pub(crate) struct DirectoryWatch {
    inotify: OwnedFd,
    /// The watched directories, by watch descriptor.
    watched: HashMap<libc::c_int, PathBuf>,
    /// Room for the queued events; their names are not needed.
    buffer: Vec<u8>,
}

impl DirectoryWatch {
    /// A watch of no directory yet.
    pub(crate) fn new() -> io::Result<DirectoryWatch> {
        // SAFETY: inotify_init1 takes flags and returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DirectoryWatch {
            // SAFETY: `fd` is a new descriptor that nothing else owns.
            inotify: unsafe { OwnedFd::from_raw_fd(fd) },
            watched: HashMap::new(),
            buffer: vec![0; 16 * 1024],
        })
    }

    /// Follows `directory`, unless it already does. A directory that does not exist (yet)
    /// is not followed: the periodic rescan tries again.
    pub(crate) fn follow(&mut self, directory: &Path) {
        if self.watched.values().any(|watched| watched == directory) {
            return;
        }
        let Ok(path) = std::ffi::CString::new(directory.as_os_str().as_bytes()) else {
            return;
        };
        let mask = libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_MOVED_TO
            | libc::IN_MOVED_FROM
            | libc::IN_ONLYDIR;
        // SAFETY: a descriptor owned by `self` and a NUL-terminated path, both valid for the
        // call.
        let watch =
            unsafe { libc::inotify_add_watch(self.inotify.as_raw_fd(), path.as_ptr(), mask) };
        if watch >= 0 {
            self.watched.insert(watch, directory.to_owned());
        }
    }

    /// Reads every queued change without waiting; says whether there was any. A directory
    /// that went away is no longer followed (it is followed again once it is back).
    pub(crate) fn drain(&mut self) -> bool {
        let mut changed = false;
        loop {
            // SAFETY: reads into the buffer `self` owns, at most its length.
            let read = unsafe {
                libc::read(
                    self.inotify.as_raw_fd(),
                    self.buffer.as_mut_ptr().cast(),
                    self.buffer.len(),
                )
            };
            let Ok(read) = usize::try_from(read) else {
                return changed;
            };
            if read == 0 {
                return changed;
            }
            changed = true;
            let mut at = 0;
            // Each event: wd (i32), mask, cookie, len (u32), then `len` bytes of name.
            while at + 16 <= read {
                let field = |offset: usize| {
                    let bytes = &self.buffer[at + offset..at + offset + 4];
                    u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
                };
                let (watch, mask, length) = (field(0) as libc::c_int, field(4), field(12));
                if mask & libc::IN_IGNORED != 0 {
                    self.watched.remove(&watch);
                }
                at += 16 + length as usize;
            }
        }
    }
}

impl AsRawFd for DirectoryWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.inotify.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_the_last_component() {
        for (pattern, name, matches) in [
            ("*", "cni-1234", true),
            ("cni-*", "cni-1234", true),
            ("cni-*", "cnx-1234", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*-*-x", "a-b-c-x", true),
            ("*x", "abc", false),
            ("net", "net", true),
            ("", "", true),
        ] {
            assert_eq!(
                wildcard_match(pattern.as_bytes(), name.as_bytes()),
                matches,
                "{pattern} {name}"
            );
        }
    }

    #[test]
    fn patterns_are_absolute_with_wildcards_last() {
        let pattern: NamespacePattern = "/run/netns/*".parse().unwrap();
        assert_eq!(pattern.directory(), Path::new("/run/netns"));
        let pattern: NamespacePattern = "/netns".parse().unwrap();
        assert_eq!(pattern.directory(), Path::new("/"));
        for bad in [
            "",
            "run/netns/*",
            "/run/*/x",
            "/proc/*/ns/net",
            "/run/netns/",
            "/a/..",
        ] {
            let error = bad.parse::<NamespacePattern>().unwrap_err().to_string();
            assert!(error.contains("last component only"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_namespace_is_named_after_its_file_or_its_process() {
        assert_eq!(name_of(Path::new("/run/netns/cni-12ab")), "cni-12ab");
        assert_eq!(name_of(Path::new("/proc/4242/ns/net")), "pid-4242");
        assert_eq!(name_of(Path::new("/proc/self/ns/net")), "net");
        assert_eq!(labels("cni-1", None), vec![("netns", "cni-1".to_owned())]);
    }

    #[test]
    fn a_scan_finds_each_file_once_whatever_path_names_it() {
        let directory = std::env::temp_dir().join(format!("ns-scan-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        std::fs::write(directory.join("a"), "").unwrap();
        std::fs::write(directory.join("b"), "").unwrap();
        std::os::unix::fs::symlink(directory.join("a"), directory.join("c")).unwrap();
        let patterns: Vec<NamespacePattern> = [
            format!("{}/*", directory.display()),
            format!("{}/a", directory.display()),
            format!("{}/missing", directory.display()),
        ]
        .iter()
        .map(|text| text.parse().unwrap())
        .collect();
        let found = scan(&patterns);
        let names: Vec<String> = found.iter().map(|found| name_of(&found.path)).collect();
        assert_eq!(names, ["a", "b"]);
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
