//! On the real kernel: processes in a network namespace the test makes, moved into cgroups
//! the test makes with the kubelet's path shapes, are found with their pod UID; and a
//! namespace whose processes are in no pod, or in two pods, has none. Each test makes its
//! cgroups under a top-level directory of its own and removes them at the end.

use std::path::{Path, PathBuf};
use std::process::Command;

use pods::{NamespaceId, find_pod_uids};
use testkit::{Process, TestCgroup, cgroup_mount, cgroup2_mount, random_uuid};

/// A `sleep` started from the calling thread, so in its network namespace; killed and
/// reaped when dropped.
fn sleeper() -> Process {
    Process::spawn(Command::new("sleep").arg("600"))
}

/// The network namespace of the calling thread.
fn this_namespace() -> NamespaceId {
    NamespaceId::of_path(Path::new("/proc/thread-self/ns/net")).expect("reading the namespace")
}

/// The pod UID found for `namespace`, as a string.
fn found_uid(namespace: NamespaceId) -> Option<String> {
    let found = find_pod_uids(&[namespace]).expect("walking /proc");
    assert!(found.processes > 0, "{found:?}");
    found.get(&namespace).map(|uid| uid.to_string())
}

#[test]
fn a_process_in_a_systemd_layout_pod_cgroup_v2_gives_the_namespace_its_pod_uid() {
    let Some(_namespace) = testkit::enter("systemd_layout_cgroup_v2") else {
        return;
    };
    let namespace = this_namespace();
    let hierarchy = cgroup2_mount();
    let uid = random_uuid();
    let cgroup = TestCgroup::create(
        &hierarchy,
        &format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{}.scope",
            uid.replace('-', "_"),
            random_uuid().replace('-', "")
        ),
    );
    // Not the test's own cgroup, which is a pod's when the tests run in one.
    let outside = TestCgroup::create(&hierarchy, "system.slice/containerd.service");
    assert_eq!(found_uid(namespace), None, "a namespace without processes");
    let sleeper = sleeper();
    outside.add(sleeper.pid());
    assert_eq!(found_uid(namespace), None, "a process outside any pod");
    cgroup.add(sleeper.pid());
    assert_eq!(found_uid(namespace), Some(uid.clone()));
    // Asked by another name of the same namespace: the process's own.
    let by_process =
        NamespaceId::of_path(&PathBuf::from(format!("/proc/{}/ns/net", sleeper.pid()))).unwrap();
    assert_eq!(by_process, namespace);
    // Another namespace is not given this pod: the test's own main thread's.
    let other = NamespaceId::of_path(Path::new("/proc/self/ns/net")).unwrap();
    assert_ne!(other, namespace);
    let found = find_pod_uids(&[namespace, other]).unwrap();
    assert_eq!(found.get(&namespace).map(|uid| uid.to_string()), Some(uid));
    assert_eq!(found.get(&other), None);
}

#[test]
fn a_process_in_a_cgroupfs_layout_pod_cgroup_v1_gives_the_namespace_its_pod_uid() {
    let Some(_namespace) = testkit::enter("cgroupfs_layout_cgroup_v1") else {
        return;
    };
    let Some(hierarchy) = cgroup_mount("cgroup") else {
        eprintln!(
            "\n*** SKIPPED cgroupfs_layout_cgroup_v1: no cgroup v1 hierarchy is mounted ***\n"
        );
        return;
    };
    let namespace = this_namespace();
    let uid = random_uuid();
    let cgroup = TestCgroup::create(
        &hierarchy,
        &format!(
            "kubepods/burstable/pod{uid}/{}",
            random_uuid().replace('-', "")
        ),
    );
    let sleeper = sleeper();
    cgroup.add(sleeper.pid());
    assert_eq!(found_uid(namespace), Some(uid));
}

#[test]
fn processes_of_two_pods_in_one_namespace_give_it_no_pod_uid() {
    let Some(_namespace) = testkit::enter("two_pods_in_one_namespace") else {
        return;
    };
    let namespace = this_namespace();
    let hierarchy = cgroup2_mount();
    let (first_uid, second_uid) = (random_uuid(), random_uuid());
    // Guaranteed pods: no QoS level in the path.
    let pod_cgroup = |uid: &str| {
        TestCgroup::create(
            &hierarchy,
            &format!("kubepods.slice/kubepods-pod{}.slice", uid.replace('-', "_")),
        )
    };
    let (first_cgroup, second_cgroup) = (pod_cgroup(&first_uid), pod_cgroup(&second_uid));
    let first = sleeper();
    first_cgroup.add(first.pid());
    let second = sleeper();
    second_cgroup.add(second.pid());
    assert_eq!(found_uid(namespace), None);
    drop(first);
    assert_eq!(found_uid(namespace), Some(second_uid));
}

/// Capability numbers (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;

/// Leaves the calling thread (only it: capabilities belong to threads) with exactly
/// `capabilities` effective and permitted, as the exporter keeps them after start.
fn keep_only(capabilities: &[u32]) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    struct Half {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mask = capabilities.iter().fold(0u32, |mask, bit| mask | 1 << bit);
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let halves = [
        Half {
            effective: mask,
            permitted: mask,
            inheritable: 0,
        },
        Half {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
    ];
    // SAFETY: a version 3 header and two data structs, which capset only reads.
    let result = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, halves.as_ptr()) };
    assert_eq!(result, 0, "capset: {}", std::io::Error::last_os_error());
}

#[test]
fn reading_the_namespaces_of_other_processes_needs_cap_sys_ptrace() {
    let Some(_namespace) = testkit::enter("needs_cap_sys_ptrace") else {
        return;
    };
    let namespace = this_namespace();
    let uid = random_uuid();
    let cgroup = TestCgroup::create(
        &cgroup2_mount(),
        &format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
            uid.replace('-', "_")
        ),
    );
    // A root process holding every capability the test has, as a container's may hold
    // capabilities the exporter dropped.
    let sleeper = sleeper();
    cgroup.add(sleeper.pid());
    let scan_with = |capabilities: &'static [u32]| {
        std::thread::spawn(move || {
            keep_only(capabilities);
            let found = find_pod_uids(&[namespace]).unwrap();
            (
                found.get(&namespace).map(|uid| uid.to_string()),
                found.denied,
            )
        })
        .join()
        .unwrap()
    };
    let (found, denied_without_ptrace) = scan_with(&[CAP_NET_ADMIN]);
    assert_eq!(found, None);
    let (found, _) = scan_with(&[CAP_NET_ADMIN, CAP_SYS_ADMIN]);
    assert_eq!(found, None, "CAP_SYS_ADMIN does not grant the read");
    let (found, denied_with_ptrace) = scan_with(&[CAP_NET_ADMIN, CAP_SYS_PTRACE]);
    assert_eq!(found, Some(uid));
    // The process was counted as denied, not silently passed over.
    assert!(
        denied_without_ptrace > denied_with_ptrace,
        "denied: {denied_without_ptrace} without CAP_SYS_PTRACE, {denied_with_ptrace} with it"
    );
}
