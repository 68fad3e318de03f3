//! Cubed: a time-series server that collects timestamped events and derives
//! metrics from them after the fact, compatible with square/cube's API.
//!
//! See README.md for the code map and the invariants between modules.

pub mod expr;
pub mod metric;
pub mod model;
pub mod plan;
pub mod server;
pub mod service;
pub mod storage;
