//! Finding the processes in given network namespaces by walking `/proc`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;

use ctnetlink::namespace::NamespaceId;

use crate::cgroup::{PodUid, pod_uid_of_cgroups};

/// What one walk of `/proc` found.
#[derive(Debug, Default)]
pub struct PodUids {
    found: HashMap<NamespaceId, Found>,
    /// Processes listed in `/proc`.
    pub processes: usize,
    /// Processes whose namespace the caller may not read (see the crate's documentation on
    /// privileges). When this is not zero a namespace may have a pod that was not seen.
    pub denied: usize,
}

/// What the processes of one namespace said.
#[derive(Debug)]
enum Found {
    Pod(PodUid),
    /// Processes of different pods share the namespace (a host-network namespace does):
    /// the namespace belongs to no single pod.
    SeveralPods,
}

impl PodUids {
    /// The pod UID of the namespace `id`: `None` when none of its processes is in a pod's
    /// cgroup, when processes of several pods share it, or when it was not asked for.
    pub fn get(&self, id: &NamespaceId) -> Option<&PodUid> {
        match self.found.get(id)? {
            Found::Pod(uid) => Some(uid),
            Found::SeveralPods => None,
        }
    }

    fn record(&mut self, id: NamespaceId, uid: PodUid) {
        let found = self
            .found
            .entry(id)
            .or_insert_with(|| Found::Pod(uid.clone()));
        if matches!(found, Found::Pod(known) if *known != uid) {
            *found = Found::SeveralPods;
        }
    }
}

/// Finds the pod UID of each namespace in `namespaces`: the pod whose cgroup holds the
/// processes in that namespace.
///
/// Cost: one listing of `/proc`, one `stat` of `/proc/<pid>/ns/net` per process on the
/// node, and one read of `/proc/<pid>/cgroup` per process found in one of `namespaces`;
/// memory in proportion to `namespaces`. It does not grow with the number of namespaces
/// asked, so ask for all of them in one call; and it grows with the number of processes
/// (about 12 µs each, 32 µs for one in an asked namespace, on a loaded 2-core machine: the
/// `pod_uids` bench), so call it when namespaces appear and on a slow rescan, never per
/// event. It does not block: procfs answers from memory.
///
/// A process that ends during the walk is skipped. Only each process's main thread is looked
/// at: a thread that entered another namespace (as the exporter's own do) does not count.
/// The only error is a `/proc` that cannot be listed.
pub fn find_pod_uids(namespaces: &[NamespaceId]) -> io::Result<PodUids> {
    let wanted: HashSet<&NamespaceId> = namespaces.iter().collect();
    let mut result = PodUids::default();
    for entry in fs::read_dir("/proc")? {
        let entry = entry?;
        if !entry
            .file_name()
            .as_encoded_bytes()
            .iter()
            .all(u8::is_ascii_digit)
        {
            continue;
        }
        result.processes += 1;
        let process = entry.path();
        let namespace = match NamespaceId::of_path(&process.join("ns/net")) {
            Ok(namespace) => namespace,
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                result.denied += 1;
                continue;
            }
            // The process ended since the listing.
            Err(_) => continue,
        };
        if !wanted.contains(&namespace) {
            continue;
        }
        // Any user may read another process's cgroup file; it is gone if the process ended.
        let Ok(cgroups) = fs::read(process.join("cgroup")) else {
            continue;
        };
        if let Some(uid) = pod_uid_of_cgroups(&String::from_utf8_lossy(&cgroups)) {
            result.record(namespace, uid);
        }
    }
    Ok(result)
}
