//! What each verb does: run the daemon, check a config, or ask a running daemon over
//! its socket. Each returns the exit code and message `main` shows.

use super::SocketArgs;
use super::socket_client::{self, ClientError};
use crate::{config, daemon};
use hubkeeper_base::exit::{self, ExitError};
use hubkeeper_base::logging;
use hyper::{Method, StatusCode};
use std::path::{Path, PathBuf};

pub fn run(path: &Path) -> Result<(), ExitError> {
    let loaded = config::load(path).map_err(|e| ExitError::from(&e))?;
    let logs = logging::init(loaded.config.log_level);
    // One thread: the daemon waits on sockets, timers and children, and a second
    // worker costs more memory than it saves time (its stack, and a malloc arena of its
    // own: managed mode -0.5 MiB anon, benches/daemon.rs). Blocking work must therefore
    // stay off this thread (`spawn_blocking`), or it stalls the status API with it.
    let rt = tokio::runtime::Builder::new_current_thread()
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

pub fn check_config(path: &Path) -> Result<(), ExitError> {
    let loaded = config::load(path).map_err(|e| ExitError::from(&e))?;
    let c = &loaded.config;
    let plan = &loaded.plan;
    let mode = plan.mode().map_or("no mode", |m| m.as_str());
    let state = if plan.is_enabled() {
        "enabled"
    } else {
        "disabled"
    };
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
    rt.block_on(socket_client::call(socket, method, path))
        .map_err(|e| match e {
            ClientError::Unreachable { .. } => ExitError::new(exit::UNAVAILABLE, e.to_string()),
            ClientError::Protocol { .. } => ExitError::new(exit::FAILURE, e.to_string()),
        })
}

pub fn status(t: &SocketArgs, json: bool) -> Result<(), ExitError> {
    let (code, body) = call(&socket_of(t)?, Method::GET, "/v1/status")?;
    if code != StatusCode::OK {
        return Err(ExitError::new(
            exit::FAILURE,
            socket_client::error_message(&body),
        ));
    }
    if json {
        print!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ExitError::new(exit::FAILURE, format!("the daemon sent invalid JSON: {e}")))?;
    print!("{}", crate::status::render::render(&v));
    Ok(())
}

fn post(t: &SocketArgs, path: &str, ok: StatusCode) -> Result<bytes::Bytes, ExitError> {
    let (code, body) = call(&socket_of(t)?, Method::POST, path)?;
    if code != ok {
        return Err(ExitError::new(
            exit::FAILURE,
            format!("{} ({code})", socket_client::error_message(&body)),
        ));
    }
    Ok(body)
}

pub fn rotate_keys(t: &SocketArgs) -> Result<(), ExitError> {
    let body = post(t, "/v1/rotate-keys", StatusCode::OK)?;
    println!("R2 keys rotated.");
    if let Ok(v) = serde_json::from_slice(&body) {
        print!("{}", crate::status::render::render(&v));
    }
    Ok(())
}

pub fn backup(t: &SocketArgs) -> Result<(), ExitError> {
    post(t, "/v1/backup", StatusCode::ACCEPTED)?;
    println!("Backup started; `hubkeeper status` shows its progress.");
    Ok(())
}
