//! `cloudflare-api-standin`: the Cloudflare API stand-in as a process, for the local
//! stack (`./dev/up`). Not Cloudflare: see the crate's library for what it keeps.

use clap::Parser;
use cloudflare_api_standin::{Options, S3Store, Standin};
use std::net::SocketAddr;
use std::path::PathBuf;

/// A stand-in for the Cloudflare API v4 (tunnels, DNS, R2 buckets, account tokens).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Keep the state in DIR/state.json, so a restart keeps it.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[arg(long, default_value = "0123456789abcdef0123456789abcdef")]
    account_id: String,
    /// A file holding the accepted bearer token(s), one a line (kept out of argv).
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// A DNS zone of the account (repeatable).
    #[arg(long = "zone", default_value = "example.com")]
    zones: Vec<String>,
    /// `per_page` when a list call names none.
    #[arg(long, default_value_t = 2)]
    default_per_page: usize,
    /// S3 endpoint where buckets are created too; its admin keys come from
    /// STANDIN_S3_ACCESS_KEY_ID and STANDIN_S3_SECRET_ACCESS_KEY.
    #[arg(long)]
    s3_endpoint: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let fail = |msg: String| -> ! {
        eprintln!("cloudflare-api-standin: {msg}");
        std::process::exit(1);
    };
    let tokens = std::fs::read_to_string(&args.token_file).unwrap_or_else(|e| {
        fail(format!(
            "cannot read the token file {}: {e}",
            args.token_file.display()
        ))
    });
    let master_tokens: Vec<String> = tokens
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if master_tokens.is_empty() {
        fail(format!(
            "the token file {} holds no token; put one per line",
            args.token_file.display()
        ));
    }
    let s3 = args.s3_endpoint.map(|endpoint| {
        let key = |name: &str| {
            std::env::var(name)
                .unwrap_or_else(|_| fail(format!("--s3-endpoint needs {name} in the environment")))
        };
        S3Store {
            endpoint,
            access_key_id: key("STANDIN_S3_ACCESS_KEY_ID"),
            secret_access_key: key("STANDIN_S3_SECRET_ACCESS_KEY"),
        }
    });
    if let Some(dir) = &args.state_dir
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        fail(format!("cannot create {}: {e}", dir.display()));
    }
    let opts = Options {
        listen: args.listen,
        account_id: args.account_id,
        master_tokens,
        zones: args.zones,
        state_dir: args.state_dir,
        default_per_page: args.default_per_page.max(1),
        s3,
    };
    let standin = Standin::start(opts)
        .await
        .unwrap_or_else(|e| fail(e.to_string()));
    // The one line a harness reads to learn the port.
    println!("listening on {}", standin.url());
    let _ = tokio::signal::ctrl_c().await;
}
