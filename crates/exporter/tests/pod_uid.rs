//! The `pod_uid` label on the real kernel: one exporter, in a namespace of its own, watches
//! namespaces that the test makes, each with synthetic entries. A `sleep` started inside a
//! namespace and moved into a cgroup with a kubelet's path shape (made by the test under a
//! directory of its own, removed at the end) gives that namespace's series the pod's UID; a
//! namespace whose process is in no pod's cgroup, and the exporter's own, get none. A
//! process that appears only after its namespace is watched gives it the UID at the next
//! rescan, and the namespace's numbers stay equal to its table through the change. Without
//! `CAP_SYS_PTRACE` a pod's namespace gets no UID, and the log says why once.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{create_tcp, exporter_command, namespace_directory};
use conntrack_codec::TcpState;
use testkit::{
    Exporter, ExporterCommand, NamedNamespace, Process, SEED_FAMILIES, Scrape, TempDir, TestCgroup,
    cgroup2_mount, eventually, kernel_host_counts, random_uuid, show, with_connections,
};

/// A `sleep` started inside `namespace`; killed and reaped when dropped.
fn sleeper_in(namespace: &NamedNamespace) -> Process {
    namespace.run(|| Process::spawn(Command::new("sleep").arg("600")))
}

/// Synthetic entries in `namespace`, from 10.0.0.1 to `remote`: `open` established ones and
/// one opening.
fn entries_in(namespace: &NamedNamespace, open: u16, remote: &'static str) {
    namespace.run(|| {
        for port in 0..open {
            create_tcp("10.0.0.1", 30000 + port, remote, 443, TcpState::Established);
        }
        create_tcp("10.0.0.1", 31000, remote, 443, TcpState::SynSent);
    });
}

/// A pod's cgroup with the systemd driver's path, its UID's dashes written as underscores.
fn systemd_layout(uid: &str) -> String {
    format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{}.scope",
        uid.replace('-', "_"),
        random_uuid().replace('-', "")
    )
}

/// A pod's cgroup with the cgroupfs driver's path.
fn cgroupfs_layout(uid: &str) -> String {
    format!(
        "kubepods/burstable/pod{uid}/{}",
        random_uuid().replace('-', "")
    )
}

/// The `pod_uid` values of the series labelled `netns = name`, each once; `None` stands for
/// series without the label.
fn pod_uids_of(scrape: &Scrape, name: &str) -> Vec<Option<String>> {
    let mut found: Vec<Option<String>> = scrape
        .samples
        .iter()
        .filter(|sample| sample.labels.get("netns").map(String::as_str) == Some(name))
        .map(|sample| sample.labels.get("pod_uid").cloned())
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Waits until every series of the namespace `name` carries `pod_uid` (none when `None`),
/// and its per-host numbers under that label equal the namespace's own table exactly.
#[track_caller]
fn wait_until_labelled_and_exact(
    exporter: &Exporter,
    name: &str,
    namespace: &NamedNamespace,
    pod_uid: Option<&str>,
) {
    let what = format!("netns {name} labelled pod_uid={pod_uid:?} and equal to its own table");
    eventually(&what, || {
        let scrape = exporter.scrape();
        let uids = pod_uids_of(&scrape, name);
        if uids != [pod_uid.map(str::to_owned)] {
            return Err(format!("pod_uid values {uids:?} on the series of {name}"));
        }
        let kernel = namespace.run(kernel_host_counts);
        let scraped = match pod_uid {
            Some(uid) => scrape.host_counts_with(SEED_FAMILIES, "pod_uid", uid)?,
            None => scrape.host_counts_with(SEED_FAMILIES, "netns", name)?,
        };
        let scraped = with_connections(scraped);
        if kernel.is_empty() || scraped != kernel {
            return Err(format!(
                "\n  kernel:   {}\n  exporter: {}",
                show(&kernel),
                show(&scraped)
            ));
        }
        let connections = kernel.values().flatten().sum::<u64>() as f64;
        let mut labels = vec![("netns", name)];
        labels.extend(pod_uid.map(|uid| ("pod_uid", uid)));
        let gauge = scrape.value("conntrack_exporter_connections", &labels);
        if gauge != Some(connections) {
            return Err(format!("{gauge:?} connections, {connections} in the table"));
        }
        Ok(())
    });
}

/// The network namespace named `name` in `directory`, with its entries.
fn namespace_with_entries(directory: &Path, name: &str, remote: &'static str) -> NamedNamespace {
    let namespace = NamedNamespace::create(&directory.join(name));
    entries_in(&namespace, 2, remote);
    namespace
}

#[test]
fn a_namespace_whose_processes_are_in_a_pod_cgroup_carries_its_pod_uid() {
    let test = "a_namespace_whose_processes_are_in_a_pod_cgroup_carries_its_pod_uid";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let directory = TempDir::new("pod-uid");
    let (netns, pattern) = namespace_directory(&directory);
    let pod = namespace_with_entries(&netns, "cni-pod", "192.0.2.1");
    let plain = namespace_with_entries(&netns, "plain", "192.0.2.2");
    let hierarchy = cgroup2_mount();
    let uid = random_uuid();
    let pod_cgroup = TestCgroup::create(&hierarchy, &systemd_layout(&uid));
    // Not the test's own cgroup, which is a pod's when the tests run in one.
    let service_cgroup = TestCgroup::create(&hierarchy, "system.slice/containerd.service");
    // Declared after the cgroups, so dropped (killed) before them, also when the test fails.
    let pod_process = sleeper_in(&pod);
    pod_cgroup.add(pod_process.pid());
    let plain_process = sleeper_in(&plain);
    service_cgroup.add(plain_process.pid());
    // One in the exporter's namespace (the test's), in the pod's cgroup too: the exporter's
    // own namespace is never given a pod, whatever runs in it.
    let own_process = Process::spawn(Command::new("sleep").arg("600"));
    pod_cgroup.add(own_process.pid());
    create_tcp("10.0.0.1", 40000, "198.51.100.1", 80, TcpState::Established);

    let exporter = exporter_command()
        .args(["--namespaces", &pattern, "--ensure-tracking"])
        .start();
    wait_until_labelled_and_exact(&exporter, "cni-pod", &pod, Some(&uid));
    wait_until_labelled_and_exact(&exporter, "plain", &plain, None);
    let scrape = exporter.scrape();
    assert_eq!(pod_uids_of(&scrape, "host"), [None], "{}", scrape.text);
    // The namespace's self-metrics carry it as well.
    for family in [
        "conntrack_exporter_connections",
        "conntrack_exporter_namespace_open_files",
    ] {
        let labels = [("netns", "cni-pod"), ("pod_uid", uid.as_str())];
        assert!(
            scrape.value(family, &labels).is_some(),
            "{family} {labels:?} missing:\n{}",
            scrape.text
        );
    }
    let resyncs = [
        ("netns", "cni-pod"),
        ("pod_uid", uid.as_str()),
        ("reason", "startup"),
    ];
    assert_eq!(
        scrape.value("conntrack_exporter_resyncs_total", &resyncs),
        Some(1.0)
    );
    let mut exporter = exporter;
    exporter.stop_cleanly();
}

#[test]
fn a_process_that_appears_after_its_namespace_gives_it_its_pod_uid_at_a_rescan() {
    let test = "a_process_that_appears_after_its_namespace_gives_it_its_pod_uid_at_a_rescan";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    let directory = TempDir::new("pod-uid-late");
    let (netns, pattern) = namespace_directory(&directory);
    // The runtime makes the namespace file first, and starts the pod's processes later.
    let late = namespace_with_entries(&netns, "cni-late", "192.0.2.3");
    let uid = random_uuid();
    let pod_cgroup = TestCgroup::create(&cgroup2_mount(), &cgroupfs_layout(&uid));
    let exporter = exporter_command().args(["--namespaces", &pattern]).start();
    wait_until_labelled_and_exact(&exporter, "cni-late", &late, None);

    let pod_process = sleeper_in(&late);
    pod_cgroup.add(pod_process.pid());
    wait_until_labelled_and_exact(&exporter, "cni-late", &late, Some(&uid));
    // The same tracker carries on: events go on being counted under the new labels, and
    // the counters did not start again.
    late.run(|| create_tcp("10.0.0.1", 32000, "192.0.2.4", 22, TcpState::Established));
    wait_until_labelled_and_exact(&exporter, "cni-late", &late, Some(&uid));
    let scrape = exporter.scrape();
    let labels = [("netns", "cni-late"), ("pod_uid", uid.as_str())];
    let counted = |family: &str, extra: (&'static str, &'static str)| {
        let mut labels = labels.to_vec();
        labels.push(extra);
        scrape.value(family, &labels)
    };
    assert_eq!(
        counted("conntrack_exporter_resyncs_total", ("reason", "startup")),
        Some(1.0),
        "{}",
        scrape.text
    );
    assert_eq!(
        counted("conntrack_exporter_events_total", ("type", "new")),
        Some(1.0),
        "{}",
        scrape.text
    );
    let log = exporter.stderr.text();
    let said = format!("pod {uid} found in network namespace cni-late");
    assert_eq!(log.matches(&said).count(), 1, "{log}");
    let mut exporter = exporter;
    exporter.stop_cleanly();
}

#[test]
fn without_cap_sys_ptrace_a_pod_namespace_gets_no_pod_uid_and_the_log_says_so_once() {
    let test = "without_cap_sys_ptrace_a_pod_namespace_gets_no_pod_uid_and_the_log_says_so_once";
    let Some(_namespace) = testkit::enter(test) else {
        return;
    };
    if !testkit::require_tool(test, "setpriv", "util-linux") {
        return;
    }
    let directory = TempDir::new("pod-uid-denied");
    let (netns, pattern) = namespace_directory(&directory);
    let pod = namespace_with_entries(&netns, "cni-pod", "192.0.2.5");
    let uid = random_uuid();
    let pod_cgroup = TestCgroup::create(&cgroup2_mount(), &systemd_layout(&uid));
    // A root process with every capability the test has, which the exporter does not.
    let pod_process = sleeper_in(&pod);
    pod_cgroup.add(pod_process.pid());
    // The exporter as a root process without CAP_SYS_PTRACE.
    let without_ptrace = directory.write(
        "without-ptrace",
        &format!(
            "#!/bin/sh\nexec setpriv --bounding-set -sys_ptrace --inh-caps -sys_ptrace {} \"$@\"\n",
            common::binary()
        ),
    );
    std::fs::set_permissions(&without_ptrace, PermissionsExt::from_mode(0o755)).unwrap();
    let exporter = ExporterCommand::new(&without_ptrace)
        .args(["--namespaces", &pattern])
        .start();
    wait_until_labelled_and_exact(&exporter, "cni-pod", &pod, None);
    // Past a rescan, which looks again and finds nothing again.
    let rescan = Duration::from_secs(6);
    std::thread::sleep(rescan);
    testkit::extend_budget(rescan);
    wait_until_labelled_and_exact(&exporter, "cni-pod", &pod, None);
    let log = exporter.stderr.text();
    assert_eq!(log.matches("looking for pod UIDs: ").count(), 1, "{log}");
    assert!(log.contains("needs CAP_SYS_PTRACE"), "{log}");
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", exporter.process.pid())).unwrap();
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .map(str::trim);
    // CAP_NET_ADMIN and CAP_SYS_ADMIN only: CAP_SYS_PTRACE is kept when held, not gained.
    assert_eq!(effective, Some("0000000000201000"));
}
