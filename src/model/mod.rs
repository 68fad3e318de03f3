//! Domain types shared by every layer — pure: no IO, no async.

pub mod clock;
pub mod event;
pub mod js;
pub mod service;
pub mod time;

pub use crate::limits::MAX_DATA_DEPTH;
pub use clock::{Clock, ManualClock, SystemClock};
pub use event::{
    BatchError, DataError, EventData, EventError, NewEvent, StoredEvent, validate_all,
};
pub use service::{Service, ServiceError};
