//! Self-reporting — pure bookkeeping, no IO: Orion-style transaction
//! metrics (`/admin/metrics`), the session's module statistics and their
//! results documents, Cube's self events (`cube_request`, `cube_compute`),
//! and all of it in the Prometheus text format (`/metrics`). Transport
//! records into these and serves them; the collector stores the documents
//! and events they produce.

pub mod opmetrics;
pub mod prometheus;
pub mod results;
pub mod self_events;
