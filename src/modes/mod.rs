//! How the hub gets its Cloudflare resources (spec §1): managed mode, through the
//! control service and its client; self-managed mode comes next, as a sibling.

pub mod control_client;
pub mod managed;
