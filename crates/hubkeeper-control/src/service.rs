//! What the four endpoints do (spec §8), independent of HTTP: enroll, status, rotate
//! keys, disable. Each operation on a hub holds that hub's lock from its first read to
//! its last write, and records every provisioned resource before the next step, so
//! racing requests see one enrollment and an interrupted one resumes where it stopped.

use super::accounts::{Caller, Refusal, is_account_token, sha256};
use super::locks::KeyedLocks;
use super::names;
use super::provision::{Expiry, Ingress, ProvisionError, Provisioner};
use super::store::{Begin, HubRow, HubState, NewEnrollment, Store, StoreError};
use hubkeeper_proto::control::{
    DisableRequest, DisableResponse, EnrollRequest, EnrollResponse, HubRequest, MAX_RETENTION_DAYS,
    RotateKeysResponse, ServiceStatus,
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
    /// An account's token sent another account's id in an enroll.
    #[error(
        "this token belongs to account \"{token}\", not \"{sent}\": send account_id \"{token}\", or use a token of account \"{sent}\""
    )]
    WrongAccount { token: String, sent: String },
    /// An account's token asked to enroll a hub of another account. Answered as an
    /// unknown hub (404), so the token learns no more than that it cannot have it.
    #[error("no hub \"{0}\" can be enrolled with this token: choose another hub_id")]
    ForeignHub(String),
    /// An account's token asked to change an enrolled hub's license.
    #[error(
        "hub \"{hub_id}\" is enrolled with license_id \"{current}\", not \"{sent}\": send \"{current}\", or ask the operator to move the hub to the new license"
    )]
    LicenseChange {
        hub_id: String,
        current: String,
        sent: String,
    },
    #[error("hub \"{hub_id}\" is {state}, not enrolled: enroll it first")]
    NotEnrolled { hub_id: String, state: &'static str },
    #[error("disabling hub \"{0}\" did not finish: call disable again, then enroll")]
    DisableIncomplete(String),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record that should be complete is not; a bug or a damaged database.
    #[error("the record of hub \"{0}\" is incomplete")]
    Corrupt(String),
}

impl From<Refusal> for ServiceError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::WrongAccount { token, sent } => ServiceError::WrongAccount { token, sent },
            Refusal::ForeignHub(hub) => ServiceError::ForeignHub(hub),
            Refusal::LicenseChange {
                hub_id,
                current,
                sent,
            } => ServiceError::LicenseChange {
                hub_id,
                current,
                sent,
            },
        }
    }
}

/// Where a hub's tunnel sends traffic when its enroll names no origin (spec §3's
/// default for `tunnel.origin`; daemons before `origin` was sent).
pub const DEFAULT_ORIGIN: &str = "http://127.0.0.1:8080";

/// The service: its store, the provisioner, the zone and the per-hub locks.
#[derive(Debug)]
pub struct Service<S, P> {
    pub(super) store: S,
    pub(super) provisioner: P,
    pub(super) zone: String,
    pub(super) locks: KeyedLocks,
    /// Wakes the retention sweep before its next tick (a deletion due at once).
    pub(super) sweep_now: tokio::sync::Notify,
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

impl<S: Store, P: Provisioner> Service<S, P> {
    pub fn new(store: S, provisioner: P, zone: String) -> Self {
        Service {
            store,
            provisioner,
            zone,
            locks: KeyedLocks::default(),
            sweep_now: tokio::sync::Notify::new(),
        }
    }

    pub async fn enroll(
        &self,
        caller: &Caller,
        req: EnrollRequest,
    ) -> Result<EnrollResponse, ServiceError> {
        let hub = hub_id(&req.hub_id)?;
        names::check_account_id(&req.account_id).map_err(ServiceError::Invalid)?;
        names::check_license_id(&req.license_id).map_err(ServiceError::Invalid)?;
        caller.may_enroll_as(&req.account_id)?;
        // Checked at the edge for every provisioner (the local one has no ingress to
        // set): what a Cloudflare ingress would refuse is refused here, and named.
        let origin = match &req.origin {
            Some(origin) => names::check_origin(origin).map_err(ServiceError::Invalid)?,
            None => DEFAULT_ORIGIN.to_owned(),
        };
        let no_tls_verify = req.no_tls_verify;
        let new = NewEnrollment {
            subdomain: names::subdomain(req.requested_subdomain.as_deref(), &hub),
            hub_id: hub.clone(),
            account_id: req.account_id,
            license_id: req.license_id,
            zone: self.zone.clone(),
        };

        let _hub_lock = self.locks.lock(hub_key(&hub)).await;
        caller.may_enroll(self.store.hub(&hub).await?.as_ref(), &new)?;
        let row = match self.store.begin_enroll(&new).await? {
            Begin::Go(row) => *row,
            Begin::AccountMismatch => return Err(ServiceError::AccountMismatch(hub)),
            Begin::DisableIncomplete => return Err(ServiceError::DisableIncomplete(hub)),
        };
        let ingress = Ingress {
            hostname: row.hostname.clone(),
            origin,
            no_tls_verify,
        };
        if row.state == HubState::Active {
            // The same tunnel, hostname, bucket and keys; only a changed origin is
            // carried to the tunnel's ingress.
            let row = self.ensure_ingress(row, &ingress).await?;
            return self.answer(&row);
        }
        let row = self.provision(row, &ingress).await?;
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
    async fn provision(&self, row: HubRow, ingress: &Ingress) -> Result<HubRow, ServiceError> {
        let p = &self.provisioner;
        let hub = &row.hub_id.clone();
        if !row.bucket_ready || row.bucket_deleted || row.lifecycle_dirty {
            let _account_lock = self.locks.lock(account_key(&row.account_id)).await;
            self.write_bucket_rules(
                &row.account_id,
                &row.bucket,
                !row.bucket_ready || row.bucket_deleted,
            )
            .await?;
        }
        let row = match &row.tunnel_id {
            Some(_) => row,
            None => {
                let t = p.ensure_tunnel(&row.tunnel_name).await?;
                self.store.set_tunnel(hub, Some(&t)).await?;
                HubRow {
                    tunnel_id: Some(t.id),
                    tunnel_token: Some(t.token),
                    ..row
                }
            }
        };
        let row = self.ensure_ingress(row, ingress).await?;
        let tunnel_id = row
            .tunnel_id
            .clone()
            .ok_or_else(|| ServiceError::Corrupt(hub.clone()))?;
        if row.dns_record_id.is_none() {
            let record = p.route_hostname(&row.hostname, &tunnel_id, hub).await?;
            self.store.set_dns_record(hub, Some(&record)).await?;
        }
        if row.key_id.is_none() {
            if !row.key_attempted {
                self.store.key_attempted(hub).await?;
            }
            let k = p
                .mint_key(&row.key_name, &row.bucket, row.key_attempted)
                .await?;
            self.store.set_key(hub, Some(&k)).await?;
        }
        Ok(self.store.finish_enroll(hub).await?)
    }

    /// Sets the tunnel's ingress unless it already routes to this origin.
    async fn ensure_ingress(&self, row: HubRow, ingress: &Ingress) -> Result<HubRow, ServiceError> {
        if row.origin.as_deref() == Some(ingress.origin.as_str())
            && row.no_tls_verify == ingress.no_tls_verify
        {
            return Ok(row);
        }
        let tunnel_id = row
            .tunnel_id
            .as_deref()
            .ok_or_else(|| ServiceError::Corrupt(row.hub_id.clone()))?;
        self.provisioner.set_ingress(tunnel_id, ingress).await?;
        self.store
            .set_ingress(&row.hub_id, &ingress.origin, ingress.no_tls_verify)
            .await?;
        if row.origin.is_some() {
            tracing::info!(hub_id = %row.hub_id, origin = %ingress.origin, no_tls_verify = ingress.no_tls_verify, "tunnel ingress updated");
        }
        Ok(HubRow {
            origin: Some(ingress.origin.clone()),
            no_tls_verify: ingress.no_tls_verify,
            ..row
        })
    }

    /// Creates the account's bucket (with `create`) and writes its lifecycle rules from
    /// the pending deletions. The caller holds the account's lock.
    pub(super) async fn write_bucket_rules(
        &self,
        account_id: &str,
        bucket: &str,
        create: bool,
    ) -> Result<(), ServiceError> {
        let expiries: Vec<Expiry> = self
            .store
            .pending_deletions(account_id)
            .await?
            .into_iter()
            .map(|(hub, due)| Expiry {
                prefix: names::backup_prefix(&hub),
                due,
            })
            .collect();
        if create {
            self.provisioner.ensure_bucket(bucket, &expiries).await?;
        } else {
            self.provisioner.set_expiries(bucket, &expiries).await?;
        }
        self.store.bucket_ready(account_id).await?;
        Ok(())
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
    pub async fn status(
        &self,
        caller: &Caller,
        hub_id_raw: &str,
    ) -> Result<ServiceStatus, ServiceError> {
        let hub = hub_id(hub_id_raw)?;
        let row = self
            .store
            .hub(&hub)
            .await?
            .filter(|r| caller.sees(r))
            .ok_or(ServiceError::UnknownHub(hub))?;
        let live = matches!(row.state, HubState::Active | HubState::Provisioning);
        let has_data = !row.bucket_deleted
            && row.backups_deleted_at.is_none()
            && (live || row.delete_bucket == Some(false) || row.deletion_due.is_some());
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
            tunnel_status: row.tunnel_id.as_ref().and(row.tunnel_status.clone()),
            checked_at: row.checked_at.clone(),
            deletion_due: row.deletion_due.clone(),
        })
    }

    pub async fn rotate_keys(
        &self,
        caller: &Caller,
        req: HubRequest,
    ) -> Result<RotateKeysResponse, ServiceError> {
        let hub = hub_id(&req.hub_id)?;
        let _hub_lock = self.locks.lock(hub_key(&hub)).await;
        let row = self
            .store
            .hub(&hub)
            .await?
            .filter(|r| caller.sees(r))
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
        self.store.set_key(&hub, Some(&k)).await?;
        tracing::info!(hub_id = %hub, "R2 keys rotated");
        Ok(answer)
    }

    /// Tears the hub down (`teardown.rs`). Unknown and already disabled hubs are a
    /// success: the caller's goal, "this hub holds nothing", is met. Another account's
    /// hub gets the same answer and is left alone.
    pub async fn disable(
        &self,
        caller: &Caller,
        req: DisableRequest,
    ) -> Result<DisableResponse, ServiceError> {
        let hub = hub_id(&req.hub_id)?;
        if req.retention_days > MAX_RETENTION_DAYS {
            return Err(ServiceError::Invalid(format!(
                "retention_days must be at most {MAX_RETENTION_DAYS} (ten years), not {}: send a smaller value",
                req.retention_days
            )));
        }
        let _hub_lock = self.locks.lock(hub_key(&hub)).await;
        // Another account's hub is left alone, with the answer an unknown one gets.
        let row = self.store.hub(&hub).await?.filter(|r| caller.sees(r));
        let Some(row) = row else {
            tracing::info!(hub_id = %hub, "disable of a hub the caller does not have: nothing to do");
            return Ok(DisableResponse { ok: true });
        };
        if row.state == HubState::Disabled {
            return Ok(DisableResponse { ok: true });
        }
        let (delete, days) = (req.delete_bucket, req.retention_days);
        let row = self.store.begin_disable(&hub, delete, days).await?;
        self.teardown(row).await?;
        tracing::info!(hub_id = %hub, delete_bucket = delete, retention_days = days, "hub disabled");
        Ok(DisableResponse { ok: true })
    }
}

impl<S: Store, P> Service<S, P> {
    /// The caller a presented bearer stands for, if it is a live account token. The
    /// lookup is by hash: its timing can only tell a guesser about the hash of their
    /// guess, which helps them find nothing.
    pub async fn account_caller(&self, presented: &[u8]) -> Result<Option<Caller>, ServiceError> {
        if !is_account_token(presented) {
            return Ok(None);
        }
        let Some(t) = self.store.account_token(&sha256(presented)).await? else {
            return Ok(None);
        };
        if t.revoked_at.is_some() {
            tracing::warn!(
                account_id = %t.account_id,
                token_id = %t.token_id,
                "a revoked account token was presented: refused"
            );
            return Ok(None);
        }
        Ok(Some(Caller::Account {
            account_id: t.account_id,
            token_id: t.token_id,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::{BucketDeletion, Expiry, Ingress, R2Key, Tunnel};
    use crate::store::SqliteStore;
    use hubkeeper_proto::Secret;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Counts what it is asked and can fail one mint: enough to see what the service
    /// records, through the store, between provider calls.
    #[derive(Debug, Default)]
    struct Fake {
        calls: Mutex<Vec<String>>,
        fail_mint: AtomicBool,
    }

    impl Fake {
        fn called(&self, what: String) {
            self.calls.lock().unwrap().push(what);
        }
        fn count(&self, prefix: &str) -> usize {
            let calls = self.calls.lock().unwrap();
            calls.iter().filter(|c| c.starts_with(prefix)).count()
        }
    }

    impl Provisioner for Fake {
        fn r2_endpoint(&self) -> &str {
            "https://r2.test"
        }
        async fn ensure_tunnel(&self, name: &str) -> Result<Tunnel, ProvisionError> {
            self.called(format!("ensure_tunnel {name}"));
            Ok(Tunnel {
                id: format!("tid-{name}"),
                token: Secret::new("tok"),
            })
        }
        async fn set_ingress(&self, tunnel: &str, i: &Ingress) -> Result<(), ProvisionError> {
            self.called(format!("set_ingress {tunnel} {}", i.origin));
            Ok(())
        }
        async fn set_expiries(&self, bucket: &str, e: &[Expiry]) -> Result<(), ProvisionError> {
            self.called(format!("set_expiries {bucket} {}", e.len()));
            Ok(())
        }
        async fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<(), ProvisionError> {
            self.called(format!("delete_prefix {bucket} {prefix}"));
            Ok(())
        }
        async fn tunnel_statuses(&self) -> Result<Option<Vec<(String, String)>>, ProvisionError> {
            Ok(Some(vec![(
                "tid-hubkeeper-hub-a-1".into(),
                "healthy".into(),
            )]))
        }
        async fn route_hostname(
            &self,
            host: &str,
            tunnel: &str,
            _owner: &str,
        ) -> Result<String, ProvisionError> {
            self.called(format!("route_hostname {host} {tunnel}"));
            Ok(format!("rec-{host}"))
        }
        async fn ensure_bucket(&self, bucket: &str, _e: &[Expiry]) -> Result<(), ProvisionError> {
            self.called(format!("ensure_bucket {bucket}"));
            Ok(())
        }
        async fn mint_key(
            &self,
            name: &str,
            _bucket: &str,
            maybe_exists: bool,
        ) -> Result<R2Key, ProvisionError> {
            self.called(format!("mint_key {name} {maybe_exists}"));
            if self.fail_mint.swap(false, Ordering::SeqCst) {
                return Err(ProvisionError::Upstream {
                    op: "mint_key",
                    detail: "try later".into(),
                });
            }
            Ok(R2Key {
                id: format!("kid-{name}"),
                access_key_id: "AK".into(),
                secret_access_key: Secret::new("SK"),
            })
        }
        async fn roll_key(&self, key_id: &str, _bucket: &str) -> Result<R2Key, ProvisionError> {
            self.called(format!("roll_key {key_id}"));
            Ok(R2Key {
                id: format!("{key_id}-rolled"),
                access_key_id: "AK2".into(),
                secret_access_key: Secret::new("SK2"),
            })
        }
        async fn revoke_key(&self, key_id: &str) -> Result<(), ProvisionError> {
            self.called(format!("revoke_key {key_id}"));
            Ok(())
        }
        async fn delete_connections(&self, tunnel: &str) -> Result<(), ProvisionError> {
            self.called(format!("delete_connections {tunnel}"));
            Ok(())
        }
        async fn delete_tunnel(&self, tunnel: &str) -> Result<(), ProvisionError> {
            self.called(format!("delete_tunnel {tunnel}"));
            Ok(())
        }
        async fn delete_dns_record(&self, record: &str) -> Result<(), ProvisionError> {
            self.called(format!("delete_dns_record {record}"));
            Ok(())
        }
        async fn delete_bucket(&self, bucket: &str) -> Result<BucketDeletion, ProvisionError> {
            self.called(format!("delete_bucket {bucket}"));
            Ok(BucketDeletion::Deleted)
        }
    }

    fn enroll_req(hub: &str) -> EnrollRequest {
        EnrollRequest {
            account_id: "acct".into(),
            hub_id: hub.into(),
            license_id: "lic".into(),
            requested_subdomain: Some("acme".into()),
            origin: Some("http://127.0.0.1:8080".into()),
            no_tls_verify: false,
        }
    }

    #[tokio::test]
    async fn an_interrupted_enroll_resumes_and_a_disable_logs_each_step() {
        let d = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&d.path().join("control.db")).unwrap();
        let fake = Fake::default();
        fake.fail_mint.store(true, Ordering::SeqCst);
        let svc = Service::new(store.clone(), fake, "hubs.test".into());

        let e = svc
            .enroll(&Caller::Operator, enroll_req("hub-a"))
            .await
            .unwrap_err();
        assert!(matches!(e, ServiceError::Provision(_)), "{e}");
        // What existed before the failure is recorded.
        let row = store.hub("hub-a").await.unwrap().unwrap();
        assert_eq!(row.state, HubState::Provisioning);
        assert_eq!(row.tunnel_id.as_deref(), Some("tid-hubkeeper-hub-a-1"));
        assert!(row.dns_record_id.is_some());
        assert_eq!(row.key_id, None);
        let st = svc.status(&Caller::Operator, "hub-a").await.unwrap();
        assert_eq!(st.errors[0].code, "enrollment_incomplete");

        // The next enroll does only the missing step.
        let answer = svc
            .enroll(&Caller::Operator, enroll_req("hub-a"))
            .await
            .unwrap();
        assert_eq!(answer.tunnel_id, "tid-hubkeeper-hub-a-1");
        assert_eq!(answer.hostname, "acme-1.hubs.test");
        assert_eq!(answer.r2_access_key_id, "AK");
        let p = &svc.provisioner;
        assert_eq!(p.count("ensure_tunnel"), 1);
        assert_eq!(p.count("route_hostname"), 1);
        assert_eq!(p.count("mint_key"), 2);
        assert_eq!(
            p.count("mint_key hubkeeper-hub-a-1-r2 true"),
            1,
            "the retry looks for the key the lost answer may have created"
        );
        assert_eq!(
            p.count("ensure_bucket"),
            1,
            "the bucket was ready the second time"
        );
        assert_eq!(p.count("set_ingress"), 1);
        // A repeat enroll with a new origin sets the ingress and nothing else.
        let mut moved = enroll_req("hub-a");
        moved.origin = Some("https://127.0.0.1:8443".into());
        moved.no_tls_verify = true;
        assert_eq!(
            svc.enroll(&Caller::Operator, moved)
                .await
                .unwrap()
                .tunnel_id,
            answer.tunnel_id
        );
        assert_eq!(
            p.count("set_ingress tid-hubkeeper-hub-a-1 https://127.0.0.1:8443"),
            1
        );
        assert_eq!(p.count("ensure_tunnel"), 1);
        assert!(
            svc.status(&Caller::Operator, "hub-a")
                .await
                .unwrap()
                .enabled
        );

        let minted = store.hub("hub-a").await.unwrap().unwrap().key_id.unwrap();
        svc.rotate_keys(
            &Caller::Operator,
            HubRequest {
                hub_id: "hub-a".into(),
            },
        )
        .await
        .unwrap();
        let rolled = format!("{minted}-rolled");
        let row = store.hub("hub-a").await.unwrap().unwrap();
        assert_eq!(row.key_id.as_deref(), Some(rolled.as_str()), "recorded");

        svc.disable(
            &Caller::Operator,
            DisableRequest {
                hub_id: "hub-a".into(),
                delete_bucket: true,
                retention_days: 0,
            },
        )
        .await
        .unwrap();
        let steps: Vec<String> = store
            .teardown_steps("hub-a", 1)
            .await
            .unwrap()
            .into_iter()
            .map(|(step, _)| step)
            .collect();
        assert_eq!(
            steps,
            [
                "connections_deleted",
                "tunnel_deleted",
                "dns_record_deleted",
                "key_revoked",
                "backups_deletion_scheduled",
            ]
        );
        let row = store.hub("hub-a").await.unwrap().unwrap();
        assert_eq!(row.state, HubState::Disabled);
        assert!(row.deletion_due.is_some());
        assert!(!row.bucket_deleted, "the sweep deletes, not the disable");
        assert_eq!(
            p.count("set_expiries hubkeeper-acct 1"),
            1,
            "the Date rule backstop"
        );
        let st = svc.status(&Caller::Operator, "hub-a").await.unwrap();
        assert_eq!(st.deletion_due, row.deletion_due);

        let pass = svc.sweep().await;
        assert_eq!(pass.backups_deleted, 1, "{pass:?}");
        assert_eq!(p.count("delete_prefix hubkeeper-acct hubkeeper/hub-a/"), 1);
        assert_eq!(
            p.count("delete_bucket hubkeeper-acct"),
            1,
            "no other hub uses it"
        );
        assert_eq!(
            p.count("set_expiries hubkeeper-acct 0"),
            0,
            "no rules on a bucket gone"
        );
        let steps: Vec<String> = store
            .teardown_steps("hub-a", 1)
            .await
            .unwrap()
            .into_iter()
            .map(|(step, _)| step)
            .collect();
        assert_eq!(&steps[5..], ["backups_deleted", "bucket_deleted"]);
        let row = store.hub("hub-a").await.unwrap().unwrap();
        assert!(row.bucket_deleted);
        assert_eq!(row.deletion_due, None);
        assert_eq!(
            svc.status(&Caller::Operator, "hub-a")
                .await
                .unwrap()
                .deletion_due,
            None
        );
        assert_eq!(svc.sweep().await.backups_deleted, 0, "once");
        assert_eq!(p.count(&format!("revoke_key {rolled}")), 1);
    }
}
