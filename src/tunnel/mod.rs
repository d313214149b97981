//! The tunnel: the supervisor that owns the cloudflared child, and the readiness probe
//! it runs against cloudflared's metrics server.

pub mod probe;
pub mod supervisor;

pub use supervisor::{Supervisor, TunnelSpec, TunnelView};
