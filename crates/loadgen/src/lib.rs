//! Load for the exporter's tests and benchmarks, run against the real kernel and the real
//! binary in a private network namespace:
//!
//! - [`table`]: a synthetic conntrack table, so that the exporter has hosts to render;
//! - [`scrape`]: scrapes as Prometheus sends them, one at a time or many at once, timed;
//! - [`hostile`]: the clients an exporter must survive: requests never finished, pipelined
//!   requests whose answers are never read, HTTP/2 streams held at a zero window.
//!
//! The memory and open-file limit of the process under load come from `testkit`.
//!
//! Every client talks to `127.0.0.1` only.
//!
//! ```no_run
//! let port = 9318;
//! loadgen::table::fill(1_000, 20).expect("creating conntrack entries");
//! let pipelines = loadgen::hostile::UnreadPipelines::open(port, 100, 20).unwrap();
//! let answer = loadgen::scrape::scrape(port, "/metrics").unwrap();
//! assert_eq!(answer.status, 200);
//! drop(pipelines);
//! ```

pub mod hostile;
pub mod scrape;
pub mod table;
