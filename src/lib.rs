//! hubkeeper: keeps a hub reachable through a Cloudflare Tunnel and backed up into R2.
//!
//! `main.rs` parses the command line and starts things; everything else lives here so
//! tests can run the daemon in-process as well as spawn the binary.

pub mod api;
pub mod backup;
pub mod child;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod enrollment;
pub mod health;
pub mod modes;
pub mod secrets;
pub mod status;
pub mod tunnel;
