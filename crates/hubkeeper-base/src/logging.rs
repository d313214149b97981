//! Logging: to journald when our stderr is the journal (`JOURNAL_STREAM`), otherwise
//! human-readable to stderr. The level comes from `RUST_LOG` if set, else from the
//! config, and follows config reloads.

use crate::config::LogLevel;
use std::os::fd::AsFd;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Changes the log level after start (on config reload).
#[derive(Debug, Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    env_override: bool,
}

impl LogControl {
    pub fn set_level(&self, level: LogLevel) {
        if self.env_override {
            return;
        }
        let _ = self.handle.reload(EnvFilter::new(level.as_str()));
    }
}

/// True if stderr is the journal stream systemd gave us (systemd.exec(5)).
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(std::io::stderr().as_fd()) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
}

/// Installs the global subscriber. Call once, before the runtime starts.
pub fn init(level: LogLevel) -> LogControl {
    let env_override = std::env::var_os("RUST_LOG").is_some();
    let filter = if env_override {
        EnvFilter::from_default_env()
    } else {
        EnvFilter::new(level.as_str())
    };
    let (filter, handle) = reload::Layer::new(filter);
    let journald = if stderr_is_journal() {
        tracing_journald::layer()
            .ok()
            .map(|l| l.with_syslog_identifier("hubkeeper".into()))
    } else {
        None
    };
    let fmt = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_target(false)
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(fmt)
        .try_init();
    LogControl {
        handle,
        env_override,
    }
}
