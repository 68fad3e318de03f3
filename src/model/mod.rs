//! Domain types shared by every layer — pure: no IO, no async.

pub mod clock;
pub mod emetrics;
pub mod event;
pub mod service;
pub mod session_api;
pub mod time;

pub use clock::{Clock, ManualClock, SystemClock};
pub use event::{
    BatchError, EventData, EventError, MAX_DATA_DEPTH, NewEvent, StoredEvent, parse_event_batch,
    validate_event,
};
pub use service::{Service, ServiceError};
