//! Foundations both hubkeeper binaries (the hub daemon and the control service) stand
//! on: config-file machinery, secret sources, the HTTP/1.1 serving plumbing, logging,
//! exit codes, the systemd notify protocol, backoff, and publishing actors' views.

pub mod backoff;
pub mod cause;
pub mod config;
pub mod exit;
pub mod http;
pub mod logging;
pub mod memory;
pub mod publish;
pub mod secret_source;
pub mod systemd;
pub mod task;

pub use hubkeeper_proto::{Secret, exposed};
