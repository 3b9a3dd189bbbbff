//! Switching connection tracking on in the current network namespace (placeholder).
