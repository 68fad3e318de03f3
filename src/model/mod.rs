//! Domain types shared by every layer — pure: no IO, no async.

pub mod access;
pub mod clock;
pub mod event;
pub mod js;
pub mod retention;
pub mod tenant;
pub mod time;

pub use crate::limits::MAX_DATA_DEPTH;
pub use clock::{Clock, ManualClock, SystemClock};
pub use event::{
    BatchError, DataError, EventData, EventError, NewEvent, StoredEvent, validate_all,
};
pub use tenant::{Tenant, TenantError};
