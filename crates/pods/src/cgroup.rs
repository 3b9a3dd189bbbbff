//! Reading a pod UID out of `/proc/<pid>/cgroup`: pure text parsing.
//!
//! The kubelet puts every container of a pod under one cgroup named after the pod's UID, in
//! one of two layouts, chosen by its cgroup driver:
//!
//! - systemd: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/…`,
//!   where the UID's dashes are written as underscores (a dash separates the levels of a
//!   systemd slice name); guaranteed pods sit directly in `kubepods-pod<uid>.slice`;
//! - cgroupfs: `/kubepods/burstable/pod<uid>/<container>`, or `/kubepods/pod<uid>/…`.
//!
//! The pod's component is looked for anywhere in the path, not only under a top-level
//! `kubepods`: a kubelet `--cgroup-root` adds levels above it (`kubelet.slice/kubelet-kubepods.slice`
//! on kind nodes), and a reader inside a cgroup namespace sees paths relative to its own
//! root (`/../../kubepods-besteffort-pod<uid>.slice/…`).

use std::fmt;

/// A Kubernetes pod UID, as the kubelet writes it into the pod's cgroup name: a UUID
/// (`1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d`), or for a static pod the 32 hexadecimal digits
/// of its manifest's hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodUid(String);

impl PodUid {
    /// The UID as Kubernetes writes it, dashes included.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A UID whose groups are separated by `separator`, as a cgroup name holds it; `None`
    /// for anything else, so that a directory that merely starts with `pod` is not taken
    /// for a pod.
    fn parse(text: &str, separator: char) -> Option<Self> {
        const UUID_GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
        let is_hex = |group: &str| group.bytes().all(|byte| byte.is_ascii_hexdigit());
        let groups: Vec<&str> = text.split(separator).collect();
        let is_uuid = groups.len() == UUID_GROUPS.len()
            && groups
                .iter()
                .zip(UUID_GROUPS)
                .all(|(group, length)| group.len() == length && is_hex(group));
        let is_static_pod_hash = text.len() == 32 && is_hex(text);
        (is_uuid || is_static_pod_hash).then(|| Self(groups.join("-")))
    }
}

impl fmt::Display for PodUid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// The pod UID in the text of a `/proc/<pid>/cgroup` file: the first line, cgroup v2
/// (`0::/path`) or v1 (`4:memory:/path`), whose path names a pod. `None` when no line does:
/// a process outside Kubernetes, or a runtime layout this does not know.
pub(crate) fn pod_uid_of_cgroups(text: &str) -> Option<PodUid> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_hierarchy, _controllers) = (fields.next()?, fields.next()?);
            fields.next()
        })
        .find_map(pod_uid_of_path)
}

/// The pod UID that a component of the cgroup `path` names, in either layout.
fn pod_uid_of_path(path: &str) -> Option<PodUid> {
    path.split('/').find_map(|component| {
        match component.strip_suffix(".slice") {
            // systemd: the slice name repeats every level above it, `kubepods` among them.
            Some(slice) => {
                let (levels, pod) = slice.rsplit_once('-')?;
                if !levels.split('-').any(|level| level == "kubepods") {
                    return None;
                }
                PodUid::parse(pod.strip_prefix("pod")?, '_')
            }
            None => PodUid::parse(component.strip_prefix("pod")?, '-'),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";

    fn uid_of(path: &str) -> Option<String> {
        pod_uid_of_path(path).map(|uid| uid.to_string())
    }

    #[test]
    fn systemd_layout_with_each_qos_class() {
        for path in [
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_5e6f_4a7b_8c9d_0e1f2a3b4c5d.slice/cri-containerd-3f1e5c0e9b8a7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a4938271605f4e.scope",
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1a2b3c4d_5e6f_4a7b_8c9d_0e1f2a3b4c5d.slice/crio-9b8a7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a4938271605f4e3f1e5c0e.scope",
            // Guaranteed pods have no QoS level.
            "/kubepods.slice/kubepods-pod1a2b3c4d_5e6f_4a7b_8c9d_0e1f2a3b4c5d.slice/docker-3f1e5c0e9b8a7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a4938271605f4e.scope",
            // The pod's own slice, where a process may sit before its container scope exists.
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_5e6f_4a7b_8c9d_0e1f2a3b4c5d.slice",
        ] {
            assert_eq!(uid_of(path).as_deref(), Some(UID), "{path}");
        }
    }

    #[test]
    fn cgroupfs_layout_with_each_qos_class() {
        for path in [
            "/kubepods/burstable/pod1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d/3f1e5c0e9b8a7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a4938271605f4e",
            "/kubepods/besteffort/pod1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d/3f1e5c0e9b8a7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a4938271605f4e",
            "/kubepods/pod1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d/3f1e5c0e9b8a7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a4938271605f4e",
        ] {
            assert_eq!(uid_of(path).as_deref(), Some(UID), "{path}");
        }
    }

    #[test]
    fn a_cgroup_root_above_kubepods_or_a_cgroup_namespace_changes_nothing() {
        for path in [
            // kind: the kubelet's --cgroup-root is kubelet.slice.
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod1a2b3c4d_5e6f_4a7b_8c9d_0e1f2a3b4c5d.slice/cri-containerd-3f1e5c0e9b8a.scope",
            "/kubelet/kubepods/burstable/pod1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d/3f1e5c0e9b8a",
            // Read from inside a private cgroup namespace.
            "/../../kubepods-besteffort-pod1a2b3c4d_5e6f_4a7b_8c9d_0e1f2a3b4c5d.slice/cri-containerd-3f1e5c0e9b8a.scope",
            "/../pod1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d/3f1e5c0e9b8a",
        ] {
            assert_eq!(uid_of(path).as_deref(), Some(UID), "{path}");
        }
    }

    #[test]
    fn a_static_pod_is_named_by_its_manifest_hash() {
        let hash = "6c4c8e3a0b1f7e0a1f2d3c4b5a697887";
        for path in [
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6c4c8e3a0b1f7e0a1f2d3c4b5a697887.slice/cri-containerd-3f1e.scope",
            "/kubepods/burstable/pod6c4c8e3a0b1f7e0a1f2d3c4b5a697887/3f1e",
        ] {
            assert_eq!(uid_of(path).as_deref(), Some(hash), "{path}");
        }
    }

    #[test]
    fn paths_outside_kubernetes_name_no_pod() {
        for path in [
            "/",
            "",
            "/system.slice/containerd.service",
            "/user.slice/user-1000.slice/session-2.scope",
            "/kubepods.slice/kubepods-burstable.slice",
            "/kubepods/burstable",
            // podman names its pods differently, and a slice outside kubepods is not a pod.
            "/machine.slice/machine-libpod_pod_4c0ee2a0b7d5.slice/libpod-3f1e5c0e9b8a.scope",
            "/system.slice/system-pod1a2b3c4d_5e6f_4a7b_8c9d_0e1f2a3b4c5d.slice",
            // Almost a UID: a group too short, a non-hexadecimal digit, a wrong separator.
            "/kubepods/burstable/pod1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5/3f1e",
            "/kubepods/burstable/pod1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5g/3f1e",
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d.slice",
            "/kubepods/burstable/pod1a2b3c4d_5e6f_4a7b_8c9d_0e1f2a3b4c5d/3f1e",
            "/podcast/1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        ] {
            assert_eq!(uid_of(path), None, "{path}");
        }
    }

    #[test]
    fn cgroup_v2_file() {
        let text = "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1a2b3c4d_5e6f_4a7b_8c9d_0e1f2a3b4c5d.slice/cri-containerd-3f1e5c0e9b8a.scope\n";
        assert_eq!(pod_uid_of_cgroups(text).unwrap().as_str(), UID);
    }

    #[test]
    fn cgroup_v1_file_with_the_pod_in_some_hierarchies_only() {
        // A v1 node: the kubelet's hierarchies name the pod; others (here the named systemd
        // one and a controller it does not manage) do not.
        let text = "\
12:rdma:/
11:cpuset:/kubepods/burstable/pod1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d/3f1e5c0e9b8a
10:memory:/kubepods/burstable/pod1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d/3f1e5c0e9b8a
4:cpu,cpuacct:/kubepods/burstable/pod1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d/3f1e5c0e9b8a
1:name=systemd:/system.slice/containerd.service
0::/system.slice/containerd.service
";
        assert_eq!(pod_uid_of_cgroups(text).unwrap().as_str(), UID);
    }

    #[test]
    fn files_without_a_pod() {
        for text in [
            "",
            "0::/\n",
            "0::/system.slice/sshd.service\n",
            "1:name=systemd:/user.slice\n0::/user.slice/user-0.slice/session-1.scope\n",
            // Malformed lines are skipped, not misread.
            "pod1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d\n",
            "0:/kubepods/pod1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d\n",
        ] {
            assert_eq!(pod_uid_of_cgroups(text), None, "{text:?}");
        }
    }
}
