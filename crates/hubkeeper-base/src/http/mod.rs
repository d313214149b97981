//! HTTP/1.1 plumbing shared by the daemon's socket API (`api`) and the control
//! service's TCP API (`hubkeeper_control::api`): the accept loop (`serve`), the bounded
//! and timed body read (`body`), and the one error shape with its JSON answers
//! (`error`). Routing and request parsing stay with each API.

pub mod body;
pub mod error;
pub mod exchange;
pub mod serve;

pub use error::HttpError;
