//! The status object of spec §7, with its pinned keys and values.

use crate::time::rfc3339;
use serde::Serialize;
use std::time::SystemTime;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The top-level keys of the status object (pinned: the hub UI relies on them).
pub const PINNED_KEYS: [&str; 14] = [
    "state",
    "enabled",
    "mode",
    "hub_id",
    "hostname",
    "tunnel_id",
    "r2_bucket",
    "last_health_check",
    "errors",
    "note",
    "tunnel",
    "backup",
    "checks",
    "version",
];

/// The overall state (pinned values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Disabled,
    Starting,
    Ready,
    Degraded,
    Error,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Disabled,
        State::Starting,
        State::Ready,
        State::Degraded,
        State::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Disabled => "disabled",
            State::Starting => "starting",
            State::Ready => "ready",
            State::Degraded => "degraded",
            State::Error => "error",
        }
    }
}

/// Which part of hubkeeper an error is about (pinned values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    Config,
    Enroll,
    Tunnel,
    Dns,
    R2,
    Backup,
    Control,
}

/// One entry of `errors[]`: what is wrong and what an admin should do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusError {
    pub component: Component,
    pub code: String,
    pub message: String,
    pub hint: String,
}

impl StatusError {
    pub fn new(
        component: Component,
        code: &str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            component,
            code: code.to_owned(),
            // Messages may quote a peer or a child: escaped and capped once, here.
            message: crate::text::shown(&message.into(), crate::text::MAX_MESSAGE),
            hint: crate::text::shown(&hint.into(), crate::text::MAX_MESSAGE),
        }
    }
}

/// A failure as an admin should read it: a code, what happened, what to do. The
/// components report these; the status turns them into `errors[]` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: &'static str,
    pub message: String,
    pub hint: &'static str,
}

impl Problem {
    pub fn error(&self, component: Component) -> StatusError {
        StatusError::new(component, self.code, self.message.clone(), self.hint)
    }
}

/// `tunnel.state` (pinned values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelState {
    Starting,
    Running,
    Backoff,
    Stopping,
    Stopped,
    Fatal,
}

impl TunnelState {
    pub const ALL: [TunnelState; 6] = [
        TunnelState::Starting,
        TunnelState::Running,
        TunnelState::Backoff,
        TunnelState::Stopping,
        TunnelState::Stopped,
        TunnelState::Fatal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TunnelState::Starting => "starting",
            TunnelState::Running => "running",
            TunnelState::Backoff => "backoff",
            TunnelState::Stopping => "stopping",
            TunnelState::Stopped => "stopped",
            TunnelState::Fatal => "fatal",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelStatus {
    pub state: TunnelState,
    pub pid: Option<u32>,
    pub restarts: u64,
    pub ready_connections: Option<u32>,
    #[serde(serialize_with = "ser_time_opt")]
    pub since: Option<SystemTime>,
}

impl Default for TunnelStatus {
    fn default() -> Self {
        Self {
            state: TunnelState::Stopped,
            pid: None,
            restarts: 0,
            ready_connections: None,
            since: None,
        }
    }
}

/// `backup.state` (pinned values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupState {
    Idle,
    Running,
    Failed,
    Disabled,
}

/// `backup.verify_state`: the scheduled `rustic check` (additive to the pinned fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyState {
    Idle,
    Running,
    Failed,
    /// Backups are not wanted, or `backup.verify_interval = "off"`.
    Disabled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupStatus {
    pub state: BackupState,
    #[serde(serialize_with = "ser_time_opt")]
    pub last_success: Option<SystemTime>,
    pub last_snapshot_id: Option<String>,
    #[serde(serialize_with = "ser_time_opt")]
    pub next_run: Option<SystemTime>,
    pub last_error: Option<String>,
    /// When a verify (`rustic check --read-data-subset`) last passed.
    #[serde(serialize_with = "ser_time_opt")]
    pub last_verified: Option<SystemTime>,
    pub verify_state: VerifyState,
    #[serde(serialize_with = "ser_time_opt")]
    pub next_verify: Option<SystemTime>,
}

impl Default for BackupStatus {
    fn default() -> Self {
        Self {
            state: BackupState::Disabled,
            last_success: None,
            last_snapshot_id: None,
            next_run: None,
            last_error: None,
            last_verified: None,
            verify_state: VerifyState::Disabled,
            next_verify: None,
        }
    }
}

/// The result of one health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub ok: bool,
    #[serde(serialize_with = "ser_time")]
    pub at: SystemTime,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checks {
    pub dns: Option<Check>,
    pub r2: Option<Check>,
    pub tunnel: Option<Check>,
    /// A request through Cloudflare's edge to `health.public_url`.
    pub public: Option<Check>,
}

/// The whole status object served at `GET /v1/status`. Every key is always present;
/// what is not known yet is `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub state: State,
    pub enabled: bool,
    pub mode: Option<&'static str>,
    pub hub_id: Option<String>,
    pub hostname: Option<String>,
    pub tunnel_id: Option<String>,
    pub r2_bucket: Option<String>,
    #[serde(serialize_with = "ser_time_opt")]
    pub last_health_check: Option<SystemTime>,
    pub errors: Vec<StatusError>,
    pub note: Option<String>,
    pub tunnel: TunnelStatus,
    pub backup: BackupStatus,
    pub checks: Checks,
    pub version: &'static str,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            state: State::Disabled,
            enabled: false,
            mode: None,
            hub_id: None,
            hostname: None,
            tunnel_id: None,
            r2_bucket: None,
            last_health_check: None,
            errors: Vec::new(),
            note: None,
            tunnel: TunnelStatus::default(),
            backup: BackupStatus::default(),
            checks: Checks::default(),
            version: VERSION,
        }
    }
}

impl Status {
    /// One line for systemd's `STATUS=` and the log: the state and why.
    pub fn summary(&self) -> String {
        match (self.state, self.errors.first()) {
            (State::Disabled, _) => match &self.note {
                Some(n) => format!("disabled ({n})"),
                None => "disabled".into(),
            },
            (s, Some(e)) => {
                let more = match self.errors.len() {
                    1 => String::new(),
                    n => format!(" (+{} more)", n - 1),
                };
                format!("{}: {}{more}", s.as_str(), e.message)
            }
            (State::Ready, None) => match &self.hostname {
                Some(h) => format!("ready: {h}"),
                None => "ready".into(),
            },
            (s, None) => s.as_str().into(),
        }
    }
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

fn ser_time_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser_time(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::rfc3339;

    #[test]
    fn every_pinned_key_is_present_even_when_unknown() {
        let v = serde_json::to_value(Status::default()).unwrap();
        for k in PINNED_KEYS {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        for k in ["state", "pid", "restarts", "ready_connections", "since"] {
            assert!(v["tunnel"].get(k).is_some(), "missing tunnel.{k}");
        }
        for k in [
            "state",
            "last_success",
            "last_snapshot_id",
            "next_run",
            "last_error",
        ] {
            assert!(v["backup"].get(k).is_some(), "missing backup.{k}");
        }
        for k in ["dns", "r2", "tunnel", "public"] {
            assert!(v["checks"].get(k).is_some(), "missing checks.{k}");
        }
        assert_eq!(v["state"], "disabled");
        assert_eq!(v["tunnel"]["state"], "stopped");
        assert_eq!(v["backup"]["state"], "disabled");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_428_000);
        assert_eq!(rfc3339(t), "2026-11-23T10:00:00Z");
    }

    #[test]
    fn summary_names_the_first_error() {
        let mut s = Status {
            state: State::Error,
            ..Status::default()
        };
        s.errors
            .push(StatusError::new(Component::Config, "x", "bad thing", "fix"));
        s.errors
            .push(StatusError::new(Component::Config, "y", "other", "fix"));
        assert_eq!(s.summary(), "error: bad thing (+1 more)");
    }
}
