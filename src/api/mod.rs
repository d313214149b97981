//! The local socket API (spec §7): HTTP/1.1 over a Unix socket.

mod error;
pub mod listener;
pub mod peer;
pub mod routes;
pub mod server;

pub use error::ApiError;
