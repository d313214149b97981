//! Cross-field rules that serde cannot express: what the chosen mode requires, ranges,
//! and relations between keys. Each problem names the key it is about.

use super::model::{Config, Mode};
use hubkeeper_proto::control::MAX_RETENTION_DAYS;
use std::time::Duration;

/// Longest path a Unix socket address can hold (sun_path is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// cloudflared refuses a `--grace-period` above three minutes at start.
const MAX_GRACE_PERIOD: Duration = Duration::from_secs(180);

/// Problems as (key path, message).
pub fn validate(cfg: &Config) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = Vec::new();
    let mut bad = |key: &str, msg: String| p.push((key.to_owned(), msg));

    if cfg.enabled {
        if cfg.mode.is_none() {
            bad(
                "mode",
                "enabled = true needs mode = \"managed\" or mode = \"self-managed\"".into(),
            );
        }
        if cfg.hub_id.is_none() {
            bad(
                "hub_id",
                "enabled = true needs hub_id, the stable id of this hub (e.g. hub_id = \"hub-7f3a\")"
                    .into(),
            );
        }
    }
    match cfg.mode {
        Some(Mode::Managed) if cfg.managed.is_none() => bad(
            "managed",
            "mode = \"managed\" needs a [managed] section with url, account_id and license_id"
                .into(),
        ),
        Some(Mode::SelfManaged) if cfg.self_managed.is_none() => bad(
            "self_managed",
            "mode = \"self-managed\" needs a [self_managed] section with account_id, zone and hostname"
                .into(),
        ),
        _ => {}
    }
    if let Some(sm) = &cfg.self_managed {
        let host = sm.hostname.as_str().trim_end_matches('.');
        let zone = sm.zone.as_str().trim_end_matches('.');
        if host != zone && !host.ends_with(&format!(".{zone}")) {
            bad(
                "self_managed.hostname",
                format!("\"{host}\" is not inside zone \"{zone}\": use a name ending in .{zone}"),
            );
        }
    }

    let sock_len = cfg.socket.as_os_str().len();
    if sock_len > MAX_SOCKET_PATH {
        bad(
            "socket",
            format!(
                "the path is {sock_len} bytes; a Unix socket path can have at most {MAX_SOCKET_PATH}"
            ),
        );
    }

    let t = &cfg.tunnel;
    if t.grace_period.get() > MAX_GRACE_PERIOD {
        bad(
            "tunnel.grace_period",
            format!(
                "{} is longer than cloudflared accepts (at most 3m)",
                t.grace_period
            ),
        );
    }
    if t.restart_after_failed_probes == 0 {
        bad(
            "tunnel.restart_after_failed_probes",
            "must be at least 1".into(),
        );
    }
    if t.backoff_initial > t.backoff_max {
        bad(
            "tunnel.backoff_initial",
            format!(
                "{} is longer than tunnel.backoff_max ({})",
                t.backoff_initial, t.backoff_max
            ),
        );
    }
    if t.metrics.port() == 0 {
        bad(
            "tunnel.metrics",
            format!(
                "port 0 lets cloudflared pick any port, and hubkeeper could not probe it: use a fixed one, like {}:20241",
                t.metrics.ip()
            ),
        );
    }
    if t.ready_timeout.get().is_zero() {
        bad("tunnel.ready_timeout", "must be longer than 0s".into());
    }

    if cfg.health.interval.get() < Duration::from_secs(1) {
        bad("health.interval", "must be at least 1s".into());
    }

    let b = &cfg.backup;
    if b.enabled {
        if b.paths.is_empty() {
            bad(
                "backup.paths",
                "backups are enabled but no paths are listed: add paths or set backup.enabled = false"
                    .into(),
            );
        }
        if b.keep_daily == 0 && b.keep_weekly == 0 && b.keep_monthly == 0 {
            bad(
                "backup.keep_daily",
                "keep_daily, keep_weekly and keep_monthly are all 0: retention would keep nothing"
                    .into(),
            );
        }
        if b.interval.get() < Duration::from_secs(10) {
            bad("backup.interval", "must be at least 10s".into());
        }
        if b.nice > 19 {
            bad(
                "backup.nice",
                format!(
                    "{} is not a niceness: use 0 (normal) to 19 (lowest)",
                    b.nice
                ),
            );
        }
        if b.timeout.get() < Duration::from_secs(1) {
            bad("backup.timeout", "must be at least 1s".into());
        }
        if b.verify_interval
            .get()
            .is_some_and(|d| d < Duration::from_secs(10))
        {
            bad(
                "backup.verify_interval",
                "must be at least 10s (or \"off\")".into(),
            );
        }
    }

    if cfg
        .r2
        .rotate_every
        .is_some_and(|d| d.get() < Duration::from_secs(3600))
    {
        bad(
            "r2.rotate_every",
            "must be at least 1h: R2 can take a minute to accept new keys, and each rotation is a call to the control service (90d is a common choice)".into(),
        );
    }

    if cfg.disable.retention_days > MAX_RETENTION_DAYS {
        bad(
            "disable.retention_days",
            format!(
                "{} days is past the control service's limit: use at most {MAX_RETENTION_DAYS} (ten years)",
                cfg.disable.retention_days
            ),
        );
    }

    if cfg.api.max_connections == 0 {
        bad("api.max_connections", "must be at least 1".into());
    }
    if cfg.api.request_timeout.get() < Duration::from_millis(100) {
        bad("api.request_timeout", "must be at least 100ms".into());
    }
    p
}
