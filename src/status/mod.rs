//! The status the daemon publishes: the pinned model, its pre-rendered snapshot, and the
//! human rendering used by `hubkeeper status`.

pub mod model;
pub mod render;
pub mod snapshot;

pub use model::*;
pub use snapshot::{Snapshot, StatusRx, StatusTx, publish};
