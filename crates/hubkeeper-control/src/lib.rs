//! `hubkeeper-control`: the Managed-CF control service (spec §8, §11). It holds the
//! Cloudflare side of managed mode: hubs enroll with their account's bearer token (or
//! the operator's) and get a tunnel, a hostname, a bucket and bucket-scoped keys; they
//! rotate keys and disable.
//!
//! `cli` is its command line and `run` starts it; `admin` runs the `account` commands;
//! `config`/`config_load` read `control.toml`; `api` serves the API; `accounts` is who a
//! request acts for (operator or an account's token) and what it may touch;
//! `service` and `teardown` are what the endpoints do; `store` is the `Store` trait
//! through which they keep every enrollment (`store::sqlite` on one SQLite file);
//! `provision` is the boundary to the provider (`local` for development and tests,
//! `cloudflare` for a real account); `sweep` is the periodic retention sweep and tunnel
//! status check; `names` and `locks` are helpers.

pub mod accounts;
pub mod admin;
pub mod api;
pub mod cli;
pub mod config;
pub mod config_load;
mod locks;
pub mod names;
pub mod provision;
pub mod run;
pub mod service;
pub mod store;
pub mod sweep;
mod teardown;

pub use config::DEFAULT_CONFIG_PATH;
pub use run::run_command;
