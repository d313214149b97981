//! The status the daemon publishes: the pinned model (shared wire types), how it is
//! composed from the actors' views, its pre-rendered snapshot, the `/metrics`
//! exposition, and the human rendering used by `hubkeeper status`.

pub mod compose;
pub mod metrics;
pub mod render;
pub mod snapshot;

pub use hubkeeper_proto::status::*;
pub use hubkeeper_proto::time::rfc3339;
pub use snapshot::{Snapshot, StatusRx, StatusTx, publish};
