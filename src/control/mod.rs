//! The daemon's side of the control service (spec §8): the wire types and the client.

pub mod api;
pub mod client;
