//! Liveness (`/-/healthy`) and readiness (`/-/ready`), in the style of Prometheus and its
//! exporters, for process supervisors and Kubernetes probes.
//!
//! - **Healthy** while the collector thread makes progress: it beats a heartbeat once per
//!   turn of its loop (at least four times a second when idle). A collector that died, or
//!   hangs in a system call or on a blocked standard output, stops beating; after
//!   [`STALLED_AFTER`] the endpoint fails, and a supervisor can restart the exporter.
//! - **Ready** once the initial dump of the table is applied: before, the counts are
//!   incomplete, and the metrics path answers 503 too.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::exposition::Status;

/// How long the collector may go without a turn of its loop before the exporter counts as
/// unhealthy. Its longest legitimate pause is one resync: reading a table of a million
/// entries takes a few seconds.
pub(crate) const STALLED_AFTER: Duration = Duration::from_secs(60);

/// Whether the exporter is alive; the error says why not.
pub(crate) fn liveness(status: &Status) -> Result<&'static str, String> {
    let age = status.heartbeat.age();
    if age >= STALLED_AFTER {
        return Err(format!(
            "conntrack_exporter is unhealthy: the collector has made no progress for {}s\n",
            age.as_secs()
        ));
    }
    Ok("conntrack_exporter is healthy.\n")
}

/// Whether the exporter is ready to be scraped; the error says why not.
pub(crate) fn readiness(status: &Status) -> Result<&'static str, &'static str> {
    if status.ready.load(Ordering::Relaxed) {
        Ok("conntrack_exporter is ready.\n")
    } else {
        Err(
            "conntrack_exporter is not ready: the initial read of the conntrack table is \
             not finished.\n",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::Heartbeat;

    #[test]
    fn healthy_until_the_heartbeat_is_older_than_the_limit() {
        let status = Status::default();
        assert!(liveness(&status).is_ok());
        let status = Status {
            heartbeat: Heartbeat::last_beat_ago(STALLED_AFTER + Duration::from_secs(5)),
            ..Status::default()
        };
        let error = liveness(&status).unwrap_err();
        assert!(error.contains("no progress for 65s"), "{error}");
        status.heartbeat.beat();
        assert!(liveness(&status).is_ok());
    }

    #[test]
    fn ready_once_the_initial_dump_is_applied() {
        let status = Status::default();
        assert!(readiness(&status).is_err());
        status.ready.store(true, Ordering::Relaxed);
        assert!(readiness(&status).is_ok());
    }
}
