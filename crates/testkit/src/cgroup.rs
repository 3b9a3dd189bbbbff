//! Cgroups made by a test, with the path shapes the kubelet gives pods' cgroups, so that the
//! pod UID lookup can be tested against the real kernel. Each test makes its cgroups under a
//! top-level directory of its own, and removes them when done, also when it fails.

use std::fs;
use std::path::{Path, PathBuf};

/// A random UUID from the kernel, as the Kubernetes API server makes pod UIDs.
pub fn random_uuid() -> String {
    fs::read_to_string("/proc/sys/kernel/random/uuid")
        .expect("reading a random UUID")
        .trim()
        .to_owned()
}

/// The mount point of the first cgroup file system of type `fstype` (`cgroup2`, or `cgroup`
/// for a v1 hierarchy) whose root is the hierarchy's root; `None` when none is mounted.
pub fn cgroup_mount(fstype: &str) -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("reading mountinfo");
    mountinfo.lines().find_map(|line| {
        let (mount, filesystem) = line.split_once(" - ")?;
        let mount: Vec<&str> = mount.split(' ').collect();
        let (root, mount_point) = (*mount.get(3)?, *mount.get(4)?);
        (filesystem.split(' ').next()? == fstype && root == "/").then(|| mount_point.into())
    })
}

/// The mount point of the cgroup v2 hierarchy (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on a hybrid system). Panics when none is mounted: the kernel tests need one.
#[track_caller]
pub fn cgroup2_mount() -> PathBuf {
    cgroup_mount("cgroup2").expect("no cgroup2 file system is mounted")
}

/// A cgroup `path` below a directory of the test's own in a mounted hierarchy, as a kubelet
/// with `--cgroup-root` set to that directory would make it. Removed when dropped: drop the
/// processes moved into it first, as a cgroup with processes cannot be removed.
#[derive(Debug)]
pub struct TestCgroup {
    top: PathBuf,
    leaf: PathBuf,
}

impl TestCgroup {
    /// Makes the cgroup `path` (with its parents) in the hierarchy mounted at `hierarchy`.
    #[track_caller]
    pub fn create(hierarchy: &Path, path: &str) -> TestCgroup {
        let top = hierarchy.join(format!("conntrack-exporter-test-{}", random_uuid()));
        let leaf = top.join(path);
        fs::create_dir_all(&leaf)
            .unwrap_or_else(|error| panic!("creating the cgroup {}: {error}", leaf.display()));
        TestCgroup { top, leaf }
    }

    /// Moves the process `pid` into the cgroup.
    #[track_caller]
    pub fn add(&self, pid: u32) {
        let procs = self.leaf.join("cgroup.procs");
        fs::write(&procs, pid.to_string())
            .unwrap_or_else(|error| panic!("writing to {}: {error}", procs.display()));
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let mut directory = self.leaf.as_path();
        while directory.starts_with(&self.top) {
            if let Err(error) = fs::remove_dir(directory) {
                eprintln!("cannot remove the cgroup {}: {error}", directory.display());
            }
            directory = directory.parent().expect("a cgroup below the hierarchy");
        }
    }
}
