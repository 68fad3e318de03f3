//! Cubed: a time-series server that collects timestamped events and derives
//! metrics from them after the fact, compatible with square/cube's API.
//!
//! See ARCHITECTURE.md for the layers, the code map and the invariants
//! between modules (`tests/architecture.rs` checks the dependency rules).

pub mod expr;
pub mod ingest;
pub mod limits;
pub mod metric;
pub mod model;
pub mod plan;
pub mod server;
pub mod service;
pub mod storage;
pub mod telemetry;

/// Locking that survives a panic elsewhere: a poisoned mutex is used as it
/// is (every value guarded here stays consistent between statements), so one
/// panicking request can never stop later ones.
pub(crate) mod sync {
    use std::sync::{Mutex, MutexGuard, PoisonError};

    pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
