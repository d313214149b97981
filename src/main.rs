//! The `hubkeeper` command line: parses arguments and starts the right thing.

use clap::{Parser, Subcommand};
use hubkeeper::client::{self, ClientError};
use hubkeeper::exit::{self, ExitError};
use hubkeeper::{config, control_service, daemon, logging};
use hyper::{Method, StatusCode};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "hubkeeper",
    version,
    about = "Keeps a hub reachable through a Cloudflare Tunnel and backed up into R2"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Debug)]
struct ConfigArg {
    /// The config file.
    #[arg(long, env = "HUBKEEPER_CONFIG", default_value = config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
}

#[derive(clap::Args, Debug)]
struct SocketArgs {
    /// The daemon's socket; by default the `socket` of the config file.
    #[arg(long, env = "HUBKEEPER_SOCKET")]
    socket: Option<PathBuf>,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(clap::Args, Debug)]
struct ControlConfigArg {
    /// The control service's config file.
    #[arg(long, env = "HUBKEEPER_CONTROL_CONFIG", default_value = control_service::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Cmd {
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
    /// Run the Managed-CF control service.
    ControlService(ControlConfigArg),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Usage errors are "anything else" (1); help and version are success.
            return ExitCode::from(if e.use_stderr() {
                exit::FAILURE
            } else {
                exit::OK
            });
        }
    };
    let result = match cli.cmd {
        Cmd::Run(c) => run(&c.config),
        Cmd::CheckConfig(c) => check_config(&c.config),
        Cmd::Status { target, json } => status(&target, json),
        Cmd::RotateKeys(t) => rotate_keys(&t),
        Cmd::Backup(t) => backup(&t),
        Cmd::ControlService(c) => control_service::run_command(&c.config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("{e}");
            }
            ExitCode::from(e.code)
        }
    }
}

fn config_exit(e: &config::ConfigError) -> ExitError {
    let n = e.problems.len();
    let plural = if n == 1 { "problem" } else { "problems" };
    ExitError::new(
        exit::CONFIG,
        format!("{e}\n{n} {plural} in {}", e.path.display()),
    )
}

fn run(path: &Path) -> Result<(), ExitError> {
    let loaded = config::load(path).map_err(|e| config_exit(&e))?;
    let logs = logging::init(loaded.config.log_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ExitError::new(exit::FAILURE, format!("cannot start the runtime: {e}")))?;
    let opts = daemon::RunOptions { logs: Some(logs) };
    rt.block_on(daemon::run(loaded, opts, Default::default()))
        .map_err(|e| {
            tracing::error!("{e}");
            // Already logged (to the journal or stderr): do not print it twice.
            ExitError::new(exit::FAILURE, "")
        })
}

fn check_config(path: &Path) -> Result<(), ExitError> {
    let loaded = config::load(path).map_err(|e| config_exit(&e))?;
    let c = &loaded.config;
    let mode = c.mode.map_or("no mode", |m| m.as_str());
    let state = if c.enabled { "enabled" } else { "disabled" };
    println!(
        "{}: OK ({state}, {mode}, socket {})",
        path.display(),
        c.socket.display()
    );
    Ok(())
}

fn socket_of(t: &SocketArgs) -> Result<PathBuf, ExitError> {
    if let Some(s) = &t.socket {
        return Ok(s.clone());
    }
    config::load::socket_only(&t.config.config).map_err(|e| {
        ExitError::new(
            exit::CONFIG,
            format!("{e}\n(pass --socket to reach the daemon without reading the config)"),
        )
    })
}

fn call(
    socket: &Path,
    method: Method,
    path: &str,
) -> Result<(StatusCode, bytes::Bytes), ExitError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ExitError::new(exit::FAILURE, e.to_string()))?;
    rt.block_on(client::call(socket, method, path))
        .map_err(|e| match e {
            ClientError::Unreachable { .. } => ExitError::new(exit::UNAVAILABLE, e.to_string()),
            ClientError::Protocol { .. } => ExitError::new(exit::FAILURE, e.to_string()),
        })
}

fn status(t: &SocketArgs, json: bool) -> Result<(), ExitError> {
    let (code, body) = call(&socket_of(t)?, Method::GET, "/v1/status")?;
    if code != StatusCode::OK {
        return Err(ExitError::new(exit::FAILURE, client::error_message(&body)));
    }
    if json {
        print!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ExitError::new(exit::FAILURE, format!("the daemon sent invalid JSON: {e}")))?;
    print!("{}", hubkeeper::status::render::render(&v));
    Ok(())
}

fn post(t: &SocketArgs, path: &str, ok: StatusCode) -> Result<bytes::Bytes, ExitError> {
    let (code, body) = call(&socket_of(t)?, Method::POST, path)?;
    if code != ok {
        return Err(ExitError::new(
            exit::FAILURE,
            format!("{} ({code})", client::error_message(&body)),
        ));
    }
    Ok(body)
}

fn rotate_keys(t: &SocketArgs) -> Result<(), ExitError> {
    let body = post(t, "/v1/rotate-keys", StatusCode::OK)?;
    println!("R2 keys rotated.");
    if let Ok(v) = serde_json::from_slice(&body) {
        print!("{}", hubkeeper::status::render::render(&v));
    }
    Ok(())
}

fn backup(t: &SocketArgs) -> Result<(), ExitError> {
    post(t, "/v1/backup", StatusCode::ACCEPTED)?;
    println!("Backup started; `hubkeeper status` shows its progress.");
    Ok(())
}
