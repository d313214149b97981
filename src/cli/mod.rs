//! The `hubkeeper` command line (spec §2): the clap definitions, the verbs that talk
//! to a running daemon, and the client that carries them over the socket. `main.rs`
//! parses and dispatches; the packaging task renders the man page and completions
//! from [`Cli`].

pub mod socket_client;
pub mod verbs;

use crate::config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "hubkeeper",
    version,
    about = "Keeps a hub reachable through a Cloudflare Tunnel and backed up into R2"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(clap::Args, Debug)]
pub struct ConfigArg {
    /// The config file.
    #[arg(long, env = "HUBKEEPER_CONFIG", default_value = config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct SocketArgs {
    /// The daemon's socket; by default the `socket` of the config file.
    #[arg(long, env = "HUBKEEPER_SOCKET")]
    pub socket: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the daemon.
    Run(ConfigArg),
    /// Ask the running daemon for its status.
    Status {
        #[command(flatten)]
        target: SocketArgs,
        /// Print the raw status JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate a config file and print every problem with file:line:col.
    CheckConfig(ConfigArg),
    /// Ask the daemon to rotate its R2 keys.
    RotateKeys(SocketArgs),
    /// Ask the daemon to start a backup now.
    Backup(SocketArgs),
}
