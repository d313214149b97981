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
    /// The operator's token (`Authorization: Bearer`), which may act on every hub;
    /// without it, the systemd credential `control-token`. Hubs use their account's
    /// tokens (`hubkeeper-control account add`).
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
    /// How often the retention sweep and the tunnel status check run (at most a
    /// minute: spec §11).
    #[serde(default = "default_sweep_interval")]
    pub sweep_interval: HumanDuration,
    pub provisioner: ProvisionerConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionerConfig {
    pub kind: ProvisionerKind,
    pub local: Option<LocalConfig>,
    pub cloudflare: Option<CloudflareConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProvisionerKind {
    /// An S3-compatible store and the database stand in for Cloudflare.
    Local,
    /// A real Cloudflare account (spec §11).
    Cloudflare,
}

/// `[provisioner.cloudflare]` (spec §11; pinned keys).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudflareConfig {
    #[serde(default = "default_api_base")]
    pub api_base: HttpUrl,
    pub account_id: NonEmpty,
    /// The API token; without it, the systemd credential `cloudflare-token`.
    pub api_token_file: Option<PathBuf>,
    /// Default `https://<account_id>.r2.cloudflarestorage.com` (with `.eu` or
    /// `.fedramp` before `.r2` for those jurisdictions).
    pub r2_endpoint: Option<HttpUrl>,
    #[serde(default)]
    pub jurisdiction: Jurisdiction,
    /// Where a new bucket is placed: `wnam`, `enam`, `weur`, `eeur`, `apac` or `oc`.
    pub location_hint: Option<NonEmpty>,
    /// Cloudflare allows 1,200 requests per 5 minutes per user, summed over every
    /// client of the account: 4 per second leaves the dashboard room.
    #[serde(default = "default_requests_per_second")]
    pub max_requests_per_second: u32,
    /// One attempt of one Cloudflare call, from sending to the end of the answer.
    #[serde(default = "default_cloudflare_timeout")]
    pub request_timeout: HumanDuration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jurisdiction {
    #[default]
    Default,
    Eu,
    Fedramp,
}

impl Jurisdiction {
    pub fn as_str(self) -> &'static str {
        match self {
            Jurisdiction::Default => "default",
            Jurisdiction::Eu => "eu",
            Jurisdiction::Fedramp => "fedramp",
        }
    }
}

fn default_api_base() -> HttpUrl {
    HttpUrl::from_static(cloudflare_api::DEFAULT_API_BASE)
}

fn default_cloudflare_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}

fn default_requests_per_second() -> u32 {
    4
}

fn default_sweep_interval() -> HumanDuration {
    HumanDuration::secs(60)
}

/// The R2 S3 endpoint of an account in a jurisdiction.
pub fn default_r2_endpoint(account_id: &str, j: Jurisdiction) -> String {
    match j {
        Jurisdiction::Default => format!("https://{account_id}.r2.cloudflarestorage.com"),
        other => format!(
            "https://{account_id}.{}.r2.cloudflarestorage.com",
            other.as_str()
        ),
    }
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
    let sweep = c.sweep_interval.get();
    if sweep.is_zero() || sweep > std::time::Duration::from_secs(60) {
        problems.push((
            "sweep_interval".into(),
            "must be between 1s and 1m: retained backups are deleted at the first sweep after their deadline".into(),
        ));
    }
    if let Some(cf) = &c.provisioner.cloudflare {
        if cf.max_requests_per_second == 0 || cf.max_requests_per_second > 20 {
            problems.push((
                "provisioner.cloudflare.max_requests_per_second".into(),
                "must be between 1 and 20 (Cloudflare allows 1,200 requests per 5 minutes)".into(),
            ));
        }
        if cf.request_timeout.get().is_zero() {
            problems.push((
                "provisioner.cloudflare.request_timeout".into(),
                "must be longer than 0s".into(),
            ));
        }
        if let Some(h) = &cf.location_hint
            && !matches!(
                h.as_str(),
                "wnam" | "enam" | "weur" | "eeur" | "apac" | "oc"
            )
        {
            problems.push((
                "provisioner.cloudflare.location_hint".into(),
                "must be one of wnam, enam, weur, eeur, apac, oc".into(),
            ));
        }
    }
    match (c.provisioner.kind, &c.provisioner.cloudflare) {
        (ProvisionerKind::Cloudflare, None) => problems.push((
            "provisioner.cloudflare".into(),
            "kind = \"cloudflare\" needs a [provisioner.cloudflare] section with account_id".into(),
        )),
        (ProvisionerKind::Local, Some(_)) => problems.push((
            "provisioner.cloudflare".into(),
            "is only read with kind = \"cloudflare\": remove it, or set kind".into(),
        )),
        _ => {}
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
        (ProvisionerKind::Cloudflare, Some(_)) => problems.push((
            "provisioner.local".into(),
            "is only read with kind = \"local\": remove it, or set kind".into(),
        )),
        _ => {}
    }
    problems
}
