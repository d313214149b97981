//! `control.toml`, the control service's config: its typed model (unknown keys refused)
//! and the cross-field rules. Loading with located diagnostics is `config_load.rs`.

use hubkeeper_base::config::{HttpUrl, HumanDuration, LogLevel, NonEmpty};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the hubkeeper-control package installs it: its own directory, readable by its
/// own group (`/etc/hubkeeper` belongs to the daemon's package and group).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/hubkeeper-control/control.toml";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// TCP address to serve on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The shared secret hubs send as `Authorization: Bearer`; without it, the systemd
    /// credential `control-token`.
    pub token_file: Option<PathBuf>,
    /// The SQLite database: every enrollment, so a restart forgets nothing.
    pub database: PathBuf,
    /// Hostnames are `<subdomain>-<n>.<zone>`.
    pub zone: String,
    #[serde(default)]
    pub log_level: LogLevel,
    /// Connections served at once; more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// A client must send its request head (and its body) within this; idle
    /// keep-alive connections are closed after it.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
    pub provisioner: ProvisionerConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionerConfig {
    pub kind: ProvisionerKind,
    pub local: Option<LocalConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProvisionerKind {
    /// An S3-compatible store and the database stand in for Cloudflare.
    Local,
}

/// `[provisioner.local]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// The S3-compatible store buckets are created on.
    pub s3_endpoint: HttpUrl,
    /// What enroll answers as `r2_endpoint`; default: `s3_endpoint`.
    pub r2_endpoint: Option<HttpUrl>,
    #[serde(default = "default_region")]
    pub region: NonEmpty,
    /// The account tag written into tunnel tokens (the `a` of cloudflared's token).
    pub account_tag: NonEmpty,
    /// The store's own key pairs, handed out as R2 keys. Rotation moves a hub to the
    /// next pair.
    #[serde(default)]
    pub keys: Vec<KeyFiles>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFiles {
    pub access_key_id_file: PathBuf,
    pub secret_access_key_file: PathBuf,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8787))
}

fn default_max_connections() -> u32 {
    128
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

fn default_region() -> NonEmpty {
    NonEmpty("auto".into())
}

/// An endpoint as hubs and the SDK should see it: no trailing slash on a bare host.
pub fn endpoint_text(u: &HttpUrl) -> String {
    let s = u.0.as_str();
    if u.0.path() == "/" && u.0.query().is_none() {
        s.trim_end_matches('/').to_owned()
    } else {
        s.to_owned()
    }
}

/// Cross-field and value rules, as (dotted key, message).
pub fn validate(c: &ControlConfig) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if let Err(m) = super::names::check_zone(&c.zone) {
        problems.push(("zone".into(), m));
    }
    if c.max_connections == 0 {
        problems.push(("max_connections".into(), "must be at least 1".into()));
    }
    if c.request_timeout.get().is_zero() {
        problems.push(("request_timeout".into(), "must be longer than 0s".into()));
    }
    match (c.provisioner.kind, &c.provisioner.local) {
        (ProvisionerKind::Local, None) => problems.push((
            "provisioner.local".into(),
            "kind = \"local\" needs a [provisioner.local] section".into(),
        )),
        (ProvisionerKind::Local, Some(l)) if l.keys.is_empty() => problems.push((
            "provisioner.local.keys".into(),
            "needs at least one [[provisioner.local.keys]] pair (two or more to rotate keys)"
                .into(),
        )),
        _ => {}
    }
    problems
}
