//! The control API over HTTP/1.1 on TCP: its state, limits and shutdown (`server`), the
//! routing `match` and request parsing (`routes`), bearer authentication (`auth`) and
//! its own errors (`error`). The accept loop, body reading and error shape it shares
//! with the socket API are in `hubkeeper_base::http`.

pub mod auth;
pub mod error;
pub mod routes;
pub mod server;

pub use error::HttpError;
pub use server::{Limits, State, run};
