//! The Kubernetes pod that a network namespace belongs to, found without the Kubernetes
//! API: from the cgroup path of the processes in that namespace, where the kubelet writes
//! the pod's UID (`…/kubepods-burstable-pod<uid>.slice/…` or `…/kubepods/burstable/pod<uid>/…`).
//! With that UID as a label, users join with `kube_pod_info{uid=…}` from kube-state-metrics
//! for pod names and namespaces.
//!
//! ```no_run
//! use std::path::Path;
//! use pods::{NamespaceId, find_pod_uids};
//!
//! let namespace = NamespaceId::of_path(Path::new("/run/netns/cni-4f1d0c2e"))?;
//! let found = find_pod_uids(&[namespace])?;
//! if let Some(uid) = found.get(&namespace) {
//!     println!("pod_uid=\"{uid}\"");
//! }
//! if found.denied > 0 {
//!     eprintln!("{} processes could not be inspected: CAP_SYS_PTRACE is missing", found.denied);
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`find_pod_uids`] walks `/proc`, so its cost grows with the processes on the node; see
//! its documentation.
//!
//! # Privileges
//!
//! - The node's processes must be visible: in a container, the host's PID namespace
//!   (`hostPID: true` in Kubernetes), with `/proc` mounted without `hidepid`.
//! - `/proc/<pid>/cgroup` is readable by any user.
//! - `/proc/<pid>/ns/net` is not: following it is a ptrace read-access check
//!   (`PTRACE_MODE_READ_FSCREDS`). It passes when the reader has the same user and group IDs
//!   as the process, the process is dumpable and its permitted capabilities are a subset of
//!   the reader's; otherwise only `CAP_SYS_PTRACE` lets it pass. Measured on Linux 6.18 as
//!   root: with only `CAP_NET_ADMIN`, the namespace of a root process holding any other
//!   capability, and of any process of another user, is denied, while a root process
//!   holding only `CAP_NET_ADMIN` is readable; adding `CAP_SYS_ADMIN` changes nothing;
//!   adding `CAP_SYS_PTRACE` makes all of them readable. Pod processes run as other users or
//!   with other capabilities, so in practice the caller needs `CAP_SYS_PTRACE`. A denied
//!   process is counted in [`PodUids::denied`], never silently passed over. A Linux security
//!   module may deny the access too (AppArmor's `ptrace` rules); the count shows that as well.

mod cgroup;
mod scan;

pub use cgroup::PodUid;
/// A network namespace, as the exporter's other parts know it: the device and inode of its
/// file, the same through every path that names it (`/run/netns/cni-…`, `/proc/<pid>/ns/net`).
pub use ctnetlink::namespace::NamespaceId;
pub use scan::{PodUids, find_pod_uids};
