//! Ingest formats — pure: each wire format clients send, turned into
//! [`NewEvent`](crate::model::NewEvent)s that the collector stores. Every
//! event passes [`NewEvent::checked`](crate::model::NewEvent::checked)
//! whichever format it came in. Add a format here (a module with a
//! `convert`-style function, its limits checked before anything is built),
//! then a route in `server/collector.rs` that hands its events to
//! `service::Collector`.

pub mod collectd;
pub mod cube_json;
pub mod emetrics;
pub mod session_api;

pub use cube_json::{parse_event_batch, validate_event};
