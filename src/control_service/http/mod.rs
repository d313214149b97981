//! The control API over HTTP/1.1 on TCP: the accept loop (`server`), the routing
//! `match` and request parsing (`routes`), bearer authentication (`auth`) and the one
//! error shape (`error`).

pub mod auth;
pub mod error;
pub mod routes;
pub mod server;

pub use error::HttpError;
pub use server::{Limits, State, run};
