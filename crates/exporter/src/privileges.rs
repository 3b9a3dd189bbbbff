//! Least privilege: once the HTTP socket is bound, the exporter keeps only `CAP_NET_ADMIN`,
//! which reading the conntrack table, subscribing to its events, forcing the event queue's
//! size and holding the tracking switch need, and sets no-new-privileges. Watching other
//! network namespaces (`namespaces`) needs `CAP_SYS_ADMIN` as well, for the whole run: the
//! kernel lets a thread enter a network namespace (`setns`) only with it, and the collector
//! enters each namespace it finds, at start and later, to open its sockets there and to list
//! its addresses when they change. With `namespaces`, `CAP_SYS_PTRACE` is kept too when held:
//! finding a namespace's pod means following other processes' `/proc/<pid>/ns/net`, a ptrace
//! read access that pod processes (other users, other capabilities) grant only to it.
//! Without `namespaces` both are dropped like the rest.
//!
//! Capabilities belong to each thread, and a new thread copies its creator's: so this runs
//! on the main thread before any other thread exists, and every later thread (collector,
//! event log writer, the runtime's blocking pool) starts with the reduced set. A later
//! feature that needs more must add it here, explicitly.

use std::io;

/// `CAP_NET_ADMIN` (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
/// `CAP_SYS_PTRACE` (linux/capability.h).
const CAP_SYS_PTRACE: u32 = 19;
/// `CAP_SYS_ADMIN` (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, as two 32-bit halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`, one half of each set.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Half {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops every capability but `CAP_NET_ADMIN` (and `CAP_SYS_ADMIN` and `CAP_SYS_PTRACE`
/// when `enter_namespaces`) from the calling thread's effective, permitted and inheritable sets,
/// and (when it may: with `CAP_SETPCAP`) from the bounding set; clears the ambient set; sets
/// no-new-privileges. Returns the capabilities still held. A process without privileges
/// loses nothing and succeeds.
pub(crate) fn keep_only_what_is_needed(enter_namespaces: bool) -> io::Result<u64> {
    let mut keep = 1u32 << CAP_NET_ADMIN;
    if enter_namespaces {
        keep |= 1 << CAP_SYS_ADMIN | 1 << CAP_SYS_PTRACE;
    }
    let check = |result: libc::c_int| {
        if result < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    // SAFETY: as above.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    })?;
    // The bounding set first, while CAP_SETPCAP may still be held; EPERM without it, when
    // there is nothing in the permitted set to protect anyway beyond what capset drops.
    for capability in 0..=last_capability() {
        let kept = capability < 32 && keep & (1 << capability) != 0;
        if !kept {
            // SAFETY: as above.
            let dropped = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0) };
            if dropped < 0 {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EPERM) => break,
                    Some(libc::EINVAL) => continue,
                    _ => return Err(error),
                }
            }
        }
    }
    let mut header = Header {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut halves = [Half::default(); 2];
    // SAFETY: the header and two data structs, as version 3 wants, valid for writes.
    check(unsafe {
        libc::syscall(libc::SYS_capget, &raw mut header, halves.as_mut_ptr()) as libc::c_int
    })?;
    let held = halves[0].permitted & keep;
    halves = [
        Half {
            effective: held,
            permitted: held,
            inheritable: 0,
        },
        Half::default(),
    ];
    // SAFETY: as above, only read.
    check(unsafe {
        libc::syscall(libc::SYS_capset, &raw mut header, halves.as_ptr()) as libc::c_int
    })?;
    Ok(u64::from(held))
}

/// The highest capability number this kernel knows.
fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(63)
}
