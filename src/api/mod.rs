//! The local socket API (spec §7): HTTP/1.1 over a Unix socket.

pub mod listener;
pub mod peer;
pub mod routes;
pub mod server;

/// The socket API's errors are the shared shape, under the name the daemon uses.
pub use hubkeeper_base::http::HttpError as ApiError;
