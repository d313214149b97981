//! The `hubkeeper-control` command line (spec §2), as clap definitions: `main.rs` parses
//! them, and the packaging task renders the man page and completions from them.

use crate::config::DEFAULT_CONFIG_PATH;
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "hubkeeper-control",
    version,
    about = "The Managed-CF control service: Cloudflare tunnels, DNS, buckets and keys for enrolled hubs"
)]
pub struct Cli {
    /// The control service's config file.
    #[arg(long, env = "HUBKEEPER_CONTROL_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}
