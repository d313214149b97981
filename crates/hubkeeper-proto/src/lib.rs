//! Wire types shared by the hub daemon and the control service: what crosses a socket
//! or a TCP connection between programs, with no I/O of its own. Serde shapes only, plus
//! the redacting `Secret` they carry and the id and time formats they pin.

pub mod control;
pub mod error;
pub mod hub_id;
pub mod secret;
pub mod status;
pub mod text;
pub mod time;

pub use error::{ErrorBody, ErrorDetail};
pub use hub_id::HubId;
pub use secret::{Secret, exposed};
