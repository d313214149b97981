//! A thin typed client for the Cloudflare API v4 calls hubkeeper makes: tunnels, zones
//! and DNS records, R2 buckets and their lifecycle, account API tokens. It knows
//! nothing of hubs. Every call is paced (4 per second by default), bounded in time and
//! size, retried where repeating it is harmless, and fails with an [`Error`] that names
//! the call and Cloudflare's code and message, never a token.
//!
//! Retries: GET, PUT and DELETE calls (and bucket create, whose repeat is a 409) are
//! retried on 429 (waiting at least `retry-after`), 5xx, timeouts and broken
//! connections, up to `Settings::attempts`. Creating a tunnel, a DNS record or a token
//! is retried only on 429 or a refused connection: after a timeout or 5xx the caller
//! lists by name and adopts what may have been made: `ensure.rs` does that (tunnels,
//! DNS records, buckets, tokens by name) for callers that must never duplicate.

mod api;
mod client;
mod ensure;
mod error;
mod model;
mod s3;

pub use api::{CreatedTunnel, R2Scope};
pub use client::{Client, DEFAULT_API_BASE, Settings};
pub use ensure::{EnsuredTunnel, RouteError};
pub use error::{ApiMessage, CONFLICT_CODES, Error, ErrorKind};
pub use hubkeeper_proto::Secret;
pub use model::*;
pub use s3::{S3Credentials, s3_credentials};
