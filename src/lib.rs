//! hubkeeper: keeps a hub reachable through a Cloudflare Tunnel and backed up into R2.
//!
//! `main.rs` parses the command line; everything else lives here so tests can run the
//! daemon in-process as well as spawn the binary.

pub mod api;
pub mod backoff;
pub mod backup;
pub mod client;
pub mod commands;
pub mod compose;
pub mod config;
pub mod config_watch;
pub mod control;
pub mod control_service;
pub mod daemon;
pub mod dns;
pub mod enrollment;
pub mod exit;
pub mod health;
pub mod http;
pub mod logging;
pub mod managed;
pub mod metrics;
pub mod process;
pub mod r2;
pub mod secrets;
pub mod status;
pub mod supervisor;
pub mod systemd;
