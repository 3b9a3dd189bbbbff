//! Benchmarks of the conntrack exporter; see `README.md` in this folder.
