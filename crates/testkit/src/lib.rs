//! What the kernel tests and the scale harness share.
//!
//! - [`enter`] moves the calling thread into a fresh network namespace with its loopback
//!   interface up; sockets it opens and processes it starts live there, and the namespace
//!   disappears with the thread. Other tests, on other threads, are not affected. Without
//!   root the test is skipped with a loud message, unless the `CI` environment variable is
//!   set: there a missing privilege is a failure, so a green run always means the kernel
//!   tests ran.
//! - [`NamedNamespace`] makes a namespace that outlives its thread, its file bind-mounted
//!   where an exporter watching several namespaces finds it, and runs work inside it.
//! - [`ExporterCommand`] starts the exporter as a child process in that namespace and waits
//!   until it serves; the [`Exporter`] scrapes it, signals it, stops it, and holds its
//!   captured output; its [`Process`] tells its CPU time and resident memory.
//! - [`Scrape`] is the one parser of the Prometheus text format: samples with labels, and
//!   families.
//! - [`kernel_host_counts`] says what the exporter should show, from the kernel's table as
//!   the `conntrack` tool lists it; [`host_counts`] does the same for entries read some
//!   other way.
//! - [`TestCgroup`] makes a cgroup with a kubelet's path shape, for the pod UID tests.
//! - [`Authority`] issues certificates for TLS tests, and [`curl`] is their client.
//! - [`eventually`] waits for a condition within deadlines that keep a failing test short.
//!
//! ```no_run
//! use testkit::{Exporter, SEED_FAMILIES};
//!
//! let Some(_namespace) = testkit::enter("numbers_equal_the_kernel_table") else { return };
//! let exporter = Exporter::start("target/debug/conntrack_exporter", &["--ensure-tracking"]);
//! // ... make connections: only this test's entries are visible here.
//! let counts = exporter.wait_until_kernel_table_matches(SEED_FAMILIES);
//! println!("{}", testkit::show(&counts));
//! ```

mod certificates;
mod cgroup;
mod curl;
mod dns;
mod exporter;
mod exposition;
mod host_counts;
mod http;
mod kernel_table;
mod memory;
mod named_namespace;
mod namespace;
mod process;
mod temp_dir;
mod tools;
mod wait;

pub use crate::certificates::{Authority, Issued};
pub use crate::cgroup::{TestCgroup, cgroup_mount, cgroup2_mount, random_uuid};
pub use crate::curl::{Answer, curl};
pub use crate::dns::{DnsServer, SilentDnsServer, resolv_conf};
pub use crate::exporter::{Exporter, ExporterCommand};
pub use crate::exposition::{Family, PLAIN_FAMILIES, ParseError, SEED_FAMILIES, Sample, Scrape};
pub use crate::host_counts::{HostCounts, show, with_connections};
pub use crate::http::http_get;
pub use crate::kernel_table::{
    TableEntry, address, conntrack_list, host_counts, kernel_host_counts, local_addresses,
    remote_host, state_group,
};
pub use crate::memory::{limit_open_files, peak_rss_bytes, rss_bytes};
pub use crate::named_namespace::NamedNamespace;
pub use crate::namespace::{Namespace, enter, exempt_port_from_tracking, free_port};
pub use crate::process::{Captured, Process, run_to_exit};
pub use crate::temp_dir::TempDir;
pub use crate::tools::{installed, nft, require_tool, run};
pub use crate::wait::{
    DEADLINE, TEST_BUDGET, eventually, extend_budget, poll_until, test_deadline, within,
};
