//! The `hubkeeper-control` command line (spec §2), as clap definitions: `main.rs` parses
//! them, and the packaging task renders the man pages and completions from them.

use crate::config::DEFAULT_CONFIG_PATH;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "hubkeeper-control",
    version,
    about = "The Managed-CF control service: Cloudflare tunnels, DNS, buckets and keys for enrolled hubs",
    long_about = "The Managed-CF control service: Cloudflare tunnels, DNS, buckets and keys for \
                  enrolled hubs. Without a command it serves the control API until SIGTERM or \
                  SIGINT; `account` manages the accounts' tokens."
)]
pub struct Cli {
    /// The control service's config file.
    #[arg(
        long,
        global = true,
        env = "HUBKEEPER_CONTROL_CONFIG",
        default_value = DEFAULT_CONFIG_PATH
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Issue, list and revoke account tokens.
    ///
    /// An account's token acts on that account's hubs only; the operator's
    /// token (`token_file`) reaches every hub. These commands work while the service
    /// runs on the same database; run them as the database's owner (the service's user).
    #[command(subcommand)]
    Account(AccountCommand),
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Issue a new token for ACCOUNT_ID, printed once.
    ///
    /// The token is printed alone on stdout and stored only as its SHA-256. It works at
    /// once; the account's other tokens stay valid.
    Add {
        /// The account_id the account's hubs enroll with.
        account_id: String,
    },
    /// List account tokens by their ids, with how many are live.
    ///
    /// Per account: its live tokens' count, then each token's id (never the token),
    /// when it was created and when revoked.
    List {
        /// Only this account's tokens.
        account_id: Option<String>,
    },
    /// Revoke ACCOUNT_ID's tokens, or only one.
    ///
    /// Requests with a revoked token are refused (401) from then on. To roll an
    /// account's token without downtime: `add`, give the hubs the new token, then
    /// `revoke --token` the old one.
    Revoke {
        /// The account whose tokens to revoke.
        account_id: String,
        /// Only the token with this id: `hka_` and 8 hex digits, as `account list` shows
        /// it (a token starts with its id).
        #[arg(long, value_name = "TOKEN_ID")]
        token: Option<String>,
    },
}
