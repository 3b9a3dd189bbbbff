//! Cost of finding the pod UIDs of network namespaces (`pods::find_pod_uids`): one walk of
//! `/proc` with a `stat` of each process's `/proc/<pid>/ns/net`, and a read of
//! `/proc/<pid>/cgroup` for each process in an asked namespace. The bench starts 1,000 extra
//! processes so that the per-process cost dominates, and compares with the floor every walk
//! pays, listing `/proc`, in the same run.
//!
//! - `pod_uids/list_proc`: the floor, `/proc` listed and its process directories counted;
//! - `pod_uids/namespace_without_processes`: a namespace no process is in, as most asked
//!   namespaces are for most processes: one `stat` per process;
//! - `pod_uids/namespace_of_every_process`: the worst case, every process in the asked
//!   namespace: a `stat` and a cgroup read per process.
//!
//! ```text
//! cargo bench -p benches --bench pod_uids
//! ```

use std::hint::black_box;
use std::path::Path;
use std::process::{Child, Command};

use criterion::{Criterion, criterion_group, criterion_main};
use pods::{NamespaceId, find_pod_uids};

/// Extra processes started for the bench.
const PROCESSES: usize = 1_000;

/// Processes killed and reaped when dropped, so that none outlives the bench.
struct Sleepers(Vec<Child>);

impl Drop for Sleepers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn pod_uids(criterion: &mut Criterion) {
    let mut sleepers = Sleepers(Vec::with_capacity(PROCESSES));
    for _ in 0..PROCESSES {
        sleepers.0.push(
            Command::new("sleep")
                .arg("600")
                .spawn()
                .expect("starting sleep"),
        );
    }
    let own = NamespaceId::of_path(Path::new("/proc/self/ns/net")).expect("reading the namespace");
    let nobody = NamespaceId {
        device: 0,
        inode: 0,
    };
    let processes = find_pod_uids(&[own]).expect("walking /proc").processes;
    println!("processes in /proc: {processes}");

    let mut group = criterion.benchmark_group("pod_uids");
    group.bench_function("list_proc", |bench| {
        bench.iter(|| {
            std::fs::read_dir("/proc")
                .expect("listing /proc")
                .filter(|entry| {
                    entry.as_ref().is_ok_and(|entry| {
                        entry
                            .file_name()
                            .as_encoded_bytes()
                            .iter()
                            .all(u8::is_ascii_digit)
                    })
                })
                .count()
        })
    });
    group.bench_function("namespace_without_processes", |bench| {
        bench.iter(|| find_pod_uids(black_box(&[nobody])).expect("walking /proc"))
    });
    group.bench_function("namespace_of_every_process", |bench| {
        bench.iter(|| find_pod_uids(black_box(&[own])).expect("walking /proc"))
    });
    group.finish();
    drop(sleepers);
}

criterion_group!(benches, pod_uids);
criterion_main!(benches);
