//! What the four endpoints do (spec §8), independent of HTTP: enroll, status, rotate
//! keys, disable. Each operation on a hub holds that hub's lock from its first read to
//! its last write, and records every provisioned resource before the next step, so
//! racing requests see one enrollment and an interrupted one resumes where it stopped.

use super::db::{Db, DbError};
use super::locks::KeyedLocks;
use super::names;
use super::provision::{ProvisionError, Provisioner};
use super::store::{self, Begin, HubRow, HubState, NewEnrollment};
use hubkeeper_proto::control::{
    DisableRequest, DisableResponse, EnrollRequest, EnrollResponse, HubRequest, RotateKeysResponse,
    ServiceStatus,
};
use hubkeeper_proto::{ErrorDetail, HubId};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is well-formed JSON but a value is unacceptable.
    #[error("{0}")]
    Invalid(String),
    #[error("no hub \"{0}\" has enrolled")]
    UnknownHub(String),
    #[error(
        "hub \"{0}\" is enrolled under another account_id: disable it before enrolling it under a new account"
    )]
    AccountMismatch(String),
    #[error("hub \"{hub_id}\" is {state}, not enrolled: enroll it first")]
    NotEnrolled { hub_id: String, state: &'static str },
    #[error("disabling hub \"{0}\" did not finish: call disable again, then enroll")]
    DisableIncomplete(String),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error(transparent)]
    Db(#[from] DbError),
    /// A record that should be complete is not; a bug or a damaged database.
    #[error("the record of hub \"{0}\" is incomplete")]
    Corrupt(String),
}

/// The service: the database, the provisioner, the zone and the per-hub locks.
#[derive(Debug)]
pub struct Service<P> {
    pub(super) db: Db,
    pub(super) provisioner: P,
    pub(super) zone: String,
    pub(super) locks: KeyedLocks,
}

pub(super) fn hub_key(hub_id: &str) -> String {
    format!("hub:{hub_id}")
}

/// Lock order is hub, then account: bucket work of different hubs of one account
/// (ensure vs. delete) must not interleave.
pub(super) fn account_key(account_id: &str) -> String {
    format!("account:{account_id}")
}

fn hub_id(s: &str) -> Result<String, ServiceError> {
    HubId::parse(s)
        .map(|h| h.as_str().to_owned())
        .map_err(ServiceError::Invalid)
}

impl<P: Provisioner> Service<P> {
    pub fn new(db: Db, provisioner: P, zone: String) -> Self {
        Service {
            db,
            provisioner,
            zone,
            locks: KeyedLocks::default(),
        }
    }

    pub async fn enroll(&self, req: EnrollRequest) -> Result<EnrollResponse, ServiceError> {
        let hub = hub_id(&req.hub_id)?;
        names::check_account_id(&req.account_id).map_err(ServiceError::Invalid)?;
        names::check_license_id(&req.license_id).map_err(ServiceError::Invalid)?;
        let new = NewEnrollment {
            subdomain: names::subdomain(req.requested_subdomain.as_deref(), &hub),
            hub_id: hub.clone(),
            account_id: req.account_id,
            license_id: req.license_id,
            zone: self.zone.clone(),
        };

        let _hub_lock = self.locks.lock(hub_key(&hub)).await;
        let row = match self.db.call(move |c| store::begin_enroll(c, &new)).await? {
            Begin::Go(row) => *row,
            Begin::AccountMismatch => return Err(ServiceError::AccountMismatch(hub)),
            Begin::DisableIncomplete => return Err(ServiceError::DisableIncomplete(hub)),
        };
        if row.state == HubState::Active {
            return self.answer(&row);
        }
        let row = self.provision(row).await?;
        tracing::info!(
            hub_id = %row.hub_id,
            tunnel_id = row.tunnel_id.as_deref().unwrap_or(""),
            hostname = %row.hostname,
            bucket = %row.bucket,
            generation = row.generation,
            "hub enrolled"
        );
        self.answer(&row)
    }

    /// Provisions what `row` lacks, recording each resource as soon as it exists.
    async fn provision(&self, row: HubRow) -> Result<HubRow, ServiceError> {
        let p = &self.provisioner;
        let hub = row.hub_id.clone();
        {
            let _account_lock = self.locks.lock(account_key(&row.account_id)).await;
            p.ensure_bucket(&row.bucket).await?;
            let account = row.account_id.clone();
            self.db
                .call(move |c| store::bucket_present(c, &account))
                .await?;
        }
        let tunnel_id = match &row.tunnel_id {
            Some(id) => id.clone(),
            None => {
                let t = p.ensure_tunnel(&row.tunnel_name).await?;
                let (h, id) = (hub.clone(), t.id.clone());
                self.db
                    .call(move |c| store::set_tunnel(c, &h, Some(&t.id), Some(&t.token)))
                    .await?;
                id
            }
        };
        if row.dns_record_id.is_none() {
            let record = p.route_hostname(&row.hostname, &tunnel_id).await?;
            let h = hub.clone();
            self.db
                .call(move |c| store::set_dns_record(c, &h, Some(&record)))
                .await?;
        }
        if row.key_id.is_none() {
            let k = p.mint_key(&row.key_name, &row.bucket).await?;
            let h = hub.clone();
            self.db
                .call(move |c| {
                    store::set_key(c, &h, Some((&k.id, &k.access_key_id, &k.secret_access_key)))
                })
                .await?;
        }
        Ok(self.db.call(move |c| store::set_active(c, &hub)).await?)
    }

    fn answer(&self, row: &HubRow) -> Result<EnrollResponse, ServiceError> {
        let corrupt = || ServiceError::Corrupt(row.hub_id.clone());
        Ok(EnrollResponse {
            tunnel_id: row.tunnel_id.clone().ok_or_else(corrupt)?,
            tunnel_token: row.tunnel_token.clone().ok_or_else(corrupt)?,
            hostname: row.hostname.clone(),
            r2_endpoint: self.provisioner.r2_endpoint().to_owned(),
            r2_bucket: row.bucket.clone(),
            r2_access_key_id: row.access_key_id.clone().ok_or_else(corrupt)?,
            r2_secret_access_key: row.secret_access_key.clone().ok_or_else(corrupt)?,
        })
    }

    /// Served from the database without locking: it may show a step in progress.
    pub async fn status(&self, hub_id_raw: &str) -> Result<ServiceStatus, ServiceError> {
        let hub = hub_id(hub_id_raw)?;
        let h = hub.clone();
        let row = self
            .db
            .call(move |c| store::get_hub(c, &h))
            .await?
            .ok_or(ServiceError::UnknownHub(hub))?;
        let live = matches!(row.state, HubState::Active | HubState::Provisioning);
        let has_data = !row.bucket_deleted && (live || row.delete_bucket == Some(false));
        let mut errors = Vec::new();
        match row.state {
            HubState::Provisioning => errors.push(ErrorDetail {
                code: "enrollment_incomplete".into(),
                message: "enrollment did not finish: enroll again to resume it".into(),
            }),
            HubState::Disabling => errors.push(ErrorDetail {
                code: "disable_incomplete".into(),
                message: "disabling did not finish: call disable again to resume it".into(),
            }),
            HubState::Active | HubState::Disabled => {}
        }
        Ok(ServiceStatus {
            enabled: row.state == HubState::Active,
            hostname: live.then(|| row.hostname.clone()),
            tunnel_id: row.tunnel_id.clone(),
            r2_bucket: has_data.then(|| row.bucket.clone()),
            // The service does not probe hubs; the daemon reports its own checks.
            last_health_check: None,
            errors,
        })
    }

    pub async fn rotate_keys(&self, req: HubRequest) -> Result<RotateKeysResponse, ServiceError> {
        let hub = hub_id(&req.hub_id)?;
        let _hub_lock = self.locks.lock(hub_key(&hub)).await;
        let h = hub.clone();
        let row = self
            .db
            .call(move |c| store::get_hub(c, &h))
            .await?
            .ok_or_else(|| ServiceError::UnknownHub(hub.clone()))?;
        if row.state != HubState::Active {
            return Err(ServiceError::NotEnrolled {
                hub_id: hub,
                state: row.state.as_str(),
            });
        }
        let old = row
            .key_id
            .clone()
            .ok_or_else(|| ServiceError::Corrupt(hub.clone()))?;
        let k = self.provisioner.roll_key(&old, &row.bucket).await?;
        let answer = RotateKeysResponse {
            r2_access_key_id: k.access_key_id.clone(),
            r2_secret_access_key: k.secret_access_key.clone(),
        };
        let h = hub.clone();
        self.db
            .call(move |c| {
                store::set_key(c, &h, Some((&k.id, &k.access_key_id, &k.secret_access_key)))
            })
            .await?;
        tracing::info!(hub_id = %hub, "R2 keys rotated");
        Ok(answer)
    }

    /// Tears the hub down (`teardown.rs`). Unknown and already disabled hubs are a
    /// success: the caller's goal, "this hub holds nothing", is met.
    pub async fn disable(&self, req: DisableRequest) -> Result<DisableResponse, ServiceError> {
        let hub = hub_id(&req.hub_id)?;
        let _hub_lock = self.locks.lock(hub_key(&hub)).await;
        let h = hub.clone();
        let row = self.db.call(move |c| store::get_hub(c, &h)).await?;
        let Some(row) = row else {
            tracing::info!(hub_id = %hub, "disable of a hub that never enrolled: nothing to do");
            return Ok(DisableResponse { ok: true });
        };
        if row.state == HubState::Disabled {
            return Ok(DisableResponse { ok: true });
        }
        let (h, delete, days) = (hub.clone(), req.delete_bucket, req.retention_days);
        let row = self
            .db
            .call(move |c| store::begin_disable(c, &h, delete, days))
            .await?;
        self.teardown(row).await?;
        tracing::info!(hub_id = %hub, delete_bucket = delete, retention_days = days, "hub disabled");
        Ok(DisableResponse { ok: true })
    }
}
