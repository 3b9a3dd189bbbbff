//! Started as root, the exporter keeps only CAP_NET_ADMIN, in every thread, with
//! no-new-privileges set, and still reads events, dumps the table and holds its tracking
//! table.

mod common;

use common::{create_tcp, start_exporter};
use conntrack_codec::TcpState;
use testkit::eventually;

/// `CAP_NET_ADMIN` (bit 12) as `/proc/PID/status` prints a capability set.
const NET_ADMIN_ONLY: &str = "0000000000001000";

/// The value of `key` in a `/proc/.../status` text.
fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key} in:\n{status}"))
        .trim()
}

#[test]
fn it_keeps_only_cap_net_admin_and_still_works() {
    let Some(_namespace) = testkit::enter("it_keeps_only_cap_net_admin_and_still_works") else {
        return;
    };
    let exporter = start_exporter(&["--ensure-tracking", "--resync-interval", "1s"]);
    // Events, then a periodic dump, after the drop: the threads are all running by now.
    create_tcp("10.0.0.1", 40001, "198.51.100.7", 80, TcpState::Established);
    eventually("the event and a periodic resync are applied", || {
        let scrape = exporter.scrape();
        let open = scrape.value(
            "conntrack_open_connections_total",
            &[("host", "198.51.100.7")],
        );
        let periodic = scrape.value(
            "conntrack_exporter_resyncs_total",
            &[("reason", "periodic")],
        );
        match (open, periodic) {
            (Some(1.0), Some(count)) if count >= 1.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    let tasks = format!("/proc/{}/task", exporter.process.pid());
    let mut threads = 0;
    for task in std::fs::read_dir(&tasks).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let name = field(&status, "Name");
        for key in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(field(&status, key), NET_ADMIN_ONLY, "{key} of {name}");
        }
        for key in ["CapInh", "CapAmb"] {
            assert_eq!(field(&status, key), "0000000000000000", "{key} of {name}");
        }
        assert_eq!(field(&status, "NoNewPrivs"), "1", "{name}");
        threads += 1;
    }
    assert!(threads >= 2, "{threads} threads");
    let tables = testkit::nft(&["list", "tables"]);
    assert!(tables.contains("conntrack_exporter_"), "{tables}");
}
