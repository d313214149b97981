//! The run plan: what a valid config asks the daemon to do, as one value per mode that
//! carries everything that mode needs (its ids, endpoints and secrets). It is built once,
//! when a config loads and validates, so nothing downstream asks "which mode is active"
//! or re-checks that a section exists: a mode the plan names has what it needs.

use super::model::{Config, Mode};
use crate::secrets::Secret;
use hubkeeper_proto::HubId;
use std::time::Duration;
use url::Url;

/// One of three, never an inconsistent mix.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// `enabled = false`.
    Disabled(DisabledPlan),
    /// `enabled = true`, `mode = "managed"`.
    Managed(ManagedPlan),
    /// `enabled = true`, `mode = "self-managed"`.
    SelfManaged(SelfManagedPlan),
}

/// Switched off. What is still needed to finish a disable: which control service to
/// tell, for which hub (a pending disable on disk names its own hub).
#[derive(Debug, Clone, PartialEq)]
pub struct DisabledPlan {
    /// The mode the config names, shown in the status.
    pub mode: Option<Mode>,
    pub hub_id: Option<HubId>,
    /// The control service, when the config still names one (`[managed]` with its
    /// token): an enrolled hub is disabled there.
    pub control: Option<ControlService>,
    /// `[disable]`: what to ask of the control service.
    pub delete_bucket: bool,
    pub retention_days: u32,
}

/// How to reach the control service (spec §8).
#[derive(Debug, Clone, PartialEq)]
pub struct ControlService {
    pub url: Url,
    pub token: Secret,
    /// How long one request may take (connect included).
    pub request_timeout: Duration,
}

/// Managed mode: enroll with the control service, run what it hands out.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedPlan {
    pub hub_id: HubId,
    pub control: ControlService,
    pub account_id: String,
    pub license_id: String,
    pub requested_subdomain: Option<String>,
}

/// Self-managed mode: the admin's own Cloudflare account (spec §10).
#[derive(Debug, Clone, PartialEq)]
pub struct SelfManagedPlan {
    pub hub_id: HubId,
    pub api_base: Url,
    pub account_id: String,
    pub api_token: Secret,
    pub zone: String,
    pub hostname: String,
    pub tunnel_name: String,
    pub r2: Option<SelfManagedR2>,
}

/// Backups into a bucket and keys the admin made.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfManagedR2 {
    pub bucket: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub endpoint: Option<Url>,
}

impl Plan {
    pub fn is_enabled(&self) -> bool {
        !matches!(self, Plan::Disabled(_))
    }

    /// The mode named in the config (also when disabled), for the status.
    pub fn mode(&self) -> Option<Mode> {
        match self {
            Plan::Disabled(d) => d.mode,
            Plan::Managed(_) => Some(Mode::Managed),
            Plan::SelfManaged(_) => Some(Mode::SelfManaged),
        }
    }

    pub fn hub_id(&self) -> Option<&HubId> {
        match self {
            Plan::Disabled(d) => d.hub_id.as_ref(),
            Plan::Managed(m) => Some(&m.hub_id),
            Plan::SelfManaged(s) => Some(&s.hub_id),
        }
    }
}

/// The secrets a plan needs, read by the loader; a mode whose secret is missing never
/// gets here (the loader reports it with the key's position instead).
#[derive(Debug, Default)]
pub(super) struct PlanSecrets {
    pub control_token: Option<Secret>,
    pub cloudflare_token: Option<Secret>,
    pub r2_access_key_id: Option<Secret>,
    pub r2_secret_access_key: Option<Secret>,
}

/// Why a validated config still makes no plan: a rule of `validate.rs` is missing.
/// The loader reports it like any other config problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Unplannable {
    pub key: &'static str,
    pub message: &'static str,
}

/// Builds the plan of a config that passed validation, with the secrets the loader read.
pub(super) fn plan(cfg: &Config, secrets: PlanSecrets) -> Result<Plan, Unplannable> {
    let missing = |key, message| Unplannable { key, message };
    let control = |token: Option<Secret>| {
        let m = cfg.managed.as_ref()?;
        Some(ControlService {
            url: m.url.0.clone(),
            token: token?,
            request_timeout: m.request_timeout.get(),
        })
    };
    if !cfg.enabled {
        return Ok(Plan::Disabled(DisabledPlan {
            mode: cfg.mode,
            hub_id: cfg.hub_id.clone(),
            control: control(secrets.control_token),
            delete_bucket: cfg.disable.delete_bucket,
            retention_days: cfg.disable.retention_days,
        }));
    }
    let hub_id = cfg
        .hub_id
        .clone()
        .ok_or(missing("hub_id", "enabled = true needs hub_id"))?;
    match cfg.mode {
        None => Err(missing("mode", "enabled = true needs a mode")),
        Some(Mode::Managed) => {
            let m = cfg.managed.as_ref().ok_or(missing(
                "managed",
                "mode = \"managed\" needs a [managed] section",
            ))?;
            let control = control(secrets.control_token).ok_or(missing(
                "managed.token_file",
                "mode = \"managed\" needs the control service's token",
            ))?;
            Ok(Plan::Managed(ManagedPlan {
                hub_id,
                control,
                account_id: m.account_id.as_str().to_owned(),
                license_id: m.license_id.as_str().to_owned(),
                requested_subdomain: m.requested_subdomain.clone(),
            }))
        }
        Some(Mode::SelfManaged) => {
            let sm = cfg.self_managed.as_ref().ok_or(missing(
                "self_managed",
                "mode = \"self-managed\" needs a [self_managed] section",
            ))?;
            let api_token = secrets.cloudflare_token.ok_or(missing(
                "self_managed.api_token_file",
                "mode = \"self-managed\" needs a Cloudflare API token",
            ))?;
            let r2 = match (
                &sm.r2,
                secrets.r2_access_key_id,
                secrets.r2_secret_access_key,
            ) {
                (None, _, _) => None,
                (Some(r2), Some(access_key_id), Some(secret_access_key)) => Some(SelfManagedR2 {
                    bucket: r2.bucket.as_str().to_owned(),
                    access_key_id,
                    secret_access_key,
                    endpoint: r2.endpoint.as_ref().map(|u| u.0.clone()),
                }),
                (Some(_), _, _) => {
                    return Err(missing(
                        "self_managed.r2",
                        "[self_managed.r2] needs both key files",
                    ));
                }
            };
            Ok(Plan::SelfManaged(SelfManagedPlan {
                tunnel_name: sm
                    .tunnel_name
                    .clone()
                    .unwrap_or_else(|| format!("hubkeeper-{hub_id}")),
                hub_id,
                api_base: sm.api_base.0.clone(),
                account_id: sm.account_id.as_str().to_owned(),
                api_token,
                zone: sm.zone.as_str().to_owned(),
                hostname: sm.hostname.as_str().to_owned(),
                r2,
            }))
        }
    }
}
