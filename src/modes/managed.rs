//! Managed mode (spec §9): one task owns enrolling, keeping cloudflared running from
//! the stored enrollment, disabling, and rotating keys. It follows the latest config
//! (a `watch` channel in) and publishes what it knows (a `watch` channel out).
//!
//! - **Enable**: enroll → `enrollment.json` + `tunnel-token` → cloudflared. An
//!   enrollment already on disk starts cloudflared at once: the control service being
//!   down or slow must never keep the tunnel from running.
//! - **Disable**: stop cloudflared at once, persist a pending disable, call `disable`
//!   (retried with backoff, across restarts), and only after it succeeded delete the
//!   Cloudflare secrets (keeping `rustic/password`).
//! - **Rotate keys**: call `rotate-keys`, rewrite `enrollment.json` atomically; on
//!   failure the old keys stay in force.

use crate::config::duration::to_go_duration;
use crate::config::{Config, ControlService, DisabledPlan, LoadedConfig, ManagedPlan, Plan};
use crate::enrollment::{self, Ingress, MadeFor, PendingDisable, Stored};
use crate::modes::control_client::{ControlClient, ControlError, RetryPolicy};
use crate::secrets::SecretsStore;
use crate::status::{Component, StatusError, rfc3339};
use crate::tunnel::supervisor::{Supervisor, TunnelSpec};
use hubkeeper_base::backoff::{Backoff, jitter};
use hubkeeper_proto::control::{DisableRequest, EnrollRequest};
use hubkeeper_proto::time::parse_rfc3339;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Retry delays for enroll and disable: quick at first, then at most every 5 minutes.
/// These loops make single attempts, so that every failure shows in the status at once.
const RETRY_INITIAL: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// What the rest of the daemon needs to know of the enrollment.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentInfo {
    pub hostname: String,
    pub tunnel_id: String,
    pub r2_bucket: String,
    /// The bucket and its keys (the secret key is a redacting `Secret`).
    pub r2: crate::health::r2::Target,
    /// When the keys were last changed by this process (enroll, rotation): R2 can take
    /// up to a minute to accept new keys. `None` for keys found on disk at start.
    pub keys_since: Option<SystemTime>,
    pub enrolled_at: Option<SystemTime>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManagedView {
    pub enrollment: Option<EnrollmentInfo>,
    /// Enroll or control-service problems (components `enroll`, `control`).
    pub errors: Vec<StatusError>,
    /// The last disable, kept across restarts.
    pub note: Option<String>,
    /// True while enroll is being tried for the first time (no answer yet).
    pub enrolling: bool,
    /// Failed control-service requests since the daemon started, by error code.
    pub control_failures: BTreeMap<&'static str, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("hubkeeper is not enrolled in managed mode: there are no keys to rotate")]
    NotEnrolled,
    #[error(transparent)]
    Control(#[from] ControlError),
    /// Nothing was asked of the control service: the old keys stay in force.
    #[error(
        "the key rotation was not started, secrets_dir is not writable: {0}; the old keys stay in force"
    )]
    NotStarted(String),
    /// The service issued new keys (and may have revoked the old ones) but they are not
    /// on disk: they are used from memory, and the rotation is done again at the next
    /// start.
    #[error(
        "the control service issued new keys, but they could not be stored: {reason}; hubkeeper uses them until it restarts, and rotates again at its next start"
    )]
    Store { reason: String, next: Box<Stored> },
}

impl RotateError {
    /// The status error for a rotation that secrets_dir kept from being recorded.
    fn store_status(&self) -> Option<StatusError> {
        matches!(self, RotateError::NotStarted(_) | RotateError::Store { .. }).then(|| {
            StatusError::new(
                Component::Control,
                "keys_not_stored",
                self.to_string(),
                "free space in secrets_dir (or make it writable by hubkeeper again), then run `hubkeeper rotate-keys` again",
            )
        })
    }
}

/// Answers a rotation with the new access key id.
pub type RotateReply = oneshot::Sender<Result<String, RotateError>>;

/// The way in: cheap to clone.
#[derive(Debug, Clone)]
pub struct Managed {
    config: watch::Sender<Arc<LoadedConfig>>,
    rotate: mpsc::Sender<RotateReply>,
}

impl Managed {
    /// Starts the engine with the config in force.
    pub fn start(
        config: Arc<LoadedConfig>,
        store: SecretsStore,
        supervisor: Supervisor,
        shutdown: CancellationToken,
    ) -> (Managed, watch::Receiver<ManagedView>, JoinHandle<()>) {
        let (cfg_tx, cfg_rx) = watch::channel(config);
        let (rot_tx, rot_rx) = mpsc::channel(4);
        let state = enrollment::load_state(&store);
        let (view_tx, view_rx) = watch::channel(ManagedView {
            note: state.note.clone(),
            ..ManagedView::default()
        });
        let engine = Engine {
            cfg: cfg_rx,
            rotate: rot_rx,
            view: view_tx,
            store,
            supervisor,
            state,
            disabled_at_service: false,
            shutdown,
        };
        let handle = tokio::spawn(engine.run());
        (
            Managed {
                config: cfg_tx,
                rotate: rot_tx,
            },
            view_rx,
            handle,
        )
    }

    /// Hands the engine a new config in force.
    pub fn reconfigure(&self, config: Arc<LoadedConfig>) {
        let _ = self.config.send(config);
    }

    /// Asks for a key rotation; the answer arrives on `reply`.
    pub fn rotate_keys(&self, reply: RotateReply) {
        if let Err(mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r)) =
            self.rotate.try_send(reply)
        {
            let _ = r.send(Err(RotateError::Control(ControlError::RateLimited {
                retry_after: None,
            })));
        }
    }
}

struct Engine {
    cfg: watch::Receiver<Arc<LoadedConfig>>,
    rotate: mpsc::Receiver<RotateReply>,
    view: watch::Sender<ManagedView>,
    store: SecretsStore,
    supervisor: Supervisor,
    state: enrollment::State,
    /// The service confirmed a disable but the secrets could not be deleted: the files
    /// on disk describe a torn-down tunnel and must not be used again.
    disabled_at_service: bool,
    shutdown: CancellationToken,
}

/// Why an activity ended.
enum Next {
    /// The config changed: decide again.
    Reconsider,
    Shutdown,
}

impl Engine {
    async fn run(mut self) {
        loop {
            let cfg = self.cfg.borrow_and_update().clone();
            let next = match &cfg.plan {
                Plan::Managed(plan) => self.serve(&cfg.config, plan).await,
                Plan::Disabled(plan) => self.off(plan).await,
                // Another mode's engine owns the tunnel then.
                Plan::SelfManaged(_) => {
                    self.supervisor.stop().await;
                    self.publish(|v| {
                        v.enrollment = None;
                        v.enrolling = false;
                    });
                    self.idle().await
                }
            };
            if let Next::Shutdown = next {
                self.supervisor.stop().await;
                return;
            }
        }
    }

    /// Enabled in managed mode: make sure there is an enrollment and cloudflared runs.
    async fn serve(&mut self, cfg: &Config, plan: &ManagedPlan) -> Next {
        let client = match client_for(&plan.control) {
            Ok(c) => c,
            Err(e) => return self.cannot_reach(Component::Enroll, e).await,
        };
        if let Some(p) = self.state.disable_pending.clone() {
            if p.hub_id == plan.hub_id.as_str() {
                // Enabled again before the control service heard of the disable: the
                // enrollment is still valid, so carry on with it.
                tracing::info!("enabled again: the pending disable is dropped");
                self.state.disable_pending = None;
                self.save_state();
            } else if let Err(next) = self.release(&client, p).await {
                // A hub_id change (below) interrupted by a restart: the old hub is
                // released before the new one enrolls.
                return next;
            }
        }
        let stored = match enrollment::load(&self.store) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        };
        let stored = match stored {
            Some(_) if self.disabled_at_service => {
                // The service tore this enrollment down; only its files were left.
                tracing::info!(
                    "the enrollment on disk was disabled at the control service: enrolling afresh"
                );
                None
            }
            Some(s) => match owner(&s, plan) {
                Owner::ThisHub => Some(s),
                Owner::OtherHub(old) => {
                    if let Err(next) = self.switch_hub(cfg, plan, &client, old).await {
                        return next;
                    }
                    None
                }
                Owner::OtherService(old) => {
                    return self.refuse_other_service(cfg, plan, &s, &old).await;
                }
            },
            None => None,
        };
        let (mut stored, keys_since) = match stored {
            Some(s) => (s, None),
            None => match self.enroll(cfg, plan, &client).await {
                Ok(s) => (s, Some(SystemTime::now())),
                Err(next) => return next,
            },
        };
        self.publish(|v| {
            v.enrollment = Some(info(cfg, &stored, keys_since));
            v.enrolling = false;
            v.errors.clear();
        });
        self.supervisor
            .run(tunnel_spec(cfg, &self.store, &stored))
            .await;
        match self.state.rotation_pending.clone() {
            Some(h) if h == plan.hub_id.as_str() => {
                // After the tunnel started: the control service must never hold it up.
                tracing::warn!(
                    "a key rotation was cut short (a crash, or secrets_dir not writable): rotating again so the keys on disk are the live ones"
                );
                let shutdown = self.shutdown.clone();
                let result = tokio::select! {
                    r = self.rotate_keys(plan, &client, &stored) => r,
                    () = shutdown.cancelled() => return Next::Shutdown,
                };
                // Nobody waits for this answer; the outcome is logged and in the status.
                let _ = self.rotated(cfg, &mut stored, result);
            }
            Some(_) => {
                // For a hub this enrollment is not: nothing of it is on disk any more.
                self.state.rotation_pending = None;
                self.save_state();
            }
            None => {}
        }

        let mut rotate_at = scheduled_rotation(cfg, &stored);
        // A changed tunnel.origin or no_tls_verify is told to the service by enrolling
        // again (it sets the ingress); the tunnel keeps running meanwhile.
        let mut ingress_at = (stored.enrollment.ingress.as_ref() != Some(&ingress(cfg)))
            .then(tokio::time::Instant::now);
        let mut ingress_backoff = Backoff::new(RETRY_INITIAL, RETRY_MAX);
        let mut rotate_backoff = Backoff::new(RETRY_INITIAL, RETRY_MAX);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Next::Shutdown,
                r = self.cfg.changed() => {
                    if r.is_err() { return Next::Shutdown; }
                    return Next::Reconsider;
                }
                Some(reply) = self.rotate.recv() => {
                    let result = self.rotate_keys(plan, &client, &stored).await;
                    let result = self.rotated(cfg, &mut stored, result);
                    rotate_at = scheduled_rotation(cfg, &stored);
                    let _ = reply.send(result);
                }
                () = sleep_until(ingress_at), if ingress_at.is_some() => {
                    match self.update_ingress(cfg, plan, &client, &stored).await {
                        Ok(next) => {
                            stored = next;
                            let updated = info(cfg, &stored, None);
                            self.publish(|v| {
                                v.enrollment = Some(updated);
                                v.errors.retain(|e| e.code != "ingress_not_updated");
                            });
                            self.supervisor
                                .run(tunnel_spec(cfg, &self.store, &stored))
                                .await;
                            ingress_at = None;
                        }
                        Err(e) => {
                            self.set_error(StatusError::new(
                                Component::Enroll,
                                "ingress_not_updated",
                                format!("the control service was not told the new tunnel.origin: {e}"),
                                "the tunnel keeps running with the previous origin; hubkeeper retries with backoff",
                            ));
                            ingress_at = Some(
                                tokio::time::Instant::now() + jitter(ingress_backoff.next_delay()),
                            );
                        }
                    }
                }
                () = sleep_until(rotate_at), if rotate_at.is_some() => {
                    tracing::info!("the R2 keys are due for rotation (r2.rotate_every)");
                    let result = self.rotate_keys(plan, &client, &stored).await;
                    let done = result.is_ok();
                    // Nobody waits for this answer. A control-service failure leaves the
                    // old keys working: tried again later, without alarming the status
                    // (the log and the failure metric say it); a secrets_dir that kept
                    // the keys from disk is in the status (`rotated`).
                    let _ = self.rotated(cfg, &mut stored, result);
                    if done {
                        rotate_at = scheduled_rotation(cfg, &stored);
                        rotate_backoff = Backoff::new(RETRY_INITIAL, RETRY_MAX);
                    } else {
                        rotate_at = Some(
                            tokio::time::Instant::now() + jitter(rotate_backoff.next_delay()),
                        );
                    }
                }
            }
        }
    }

    /// Tries to enroll until it works, the config changes, or the daemon stops.
    async fn enroll(
        &mut self,
        cfg: &Config,
        plan: &ManagedPlan,
        client: &ControlClient,
    ) -> Result<Stored, Next> {
        let req = enroll_request(cfg, plan);
        let client = client.clone().with_retry(RetryPolicy::once());
        let mut backoff = Backoff::new(RETRY_INITIAL, RETRY_MAX);
        self.publish(|v| {
            v.enrollment = None;
            v.enrolling = v.errors.is_empty();
        });
        loop {
            let mut failure = None;
            tracing::info!(url = %plan.control.url, hub_id = %req.hub_id, "enrolling with the control service");
            let attempt = tokio::select! {
                r = client.enroll(&req) => r,
                next = self.interrupted() => return Err(next),
            };
            match attempt {
                Ok(resp) => {
                    match enrollment::save(
                        &self.store,
                        &resp,
                        made_for(plan),
                        ingress(cfg),
                        SystemTime::now(),
                    ) {
                        Ok(stored) => {
                            tracing::info!(hostname = %stored.enrollment.hostname, tunnel_id = %stored.enrollment.tunnel_id, "enrolled");
                            return Ok(stored);
                        }
                        Err(e) => {
                            tracing::error!(
                                "enrolled, but the enrollment could not be stored: {e}"
                            );
                            self.set_error(StatusError::new(
                            Component::Enroll,
                            "enrollment_not_stored",
                            format!("enrolled, but the enrollment could not be stored: {e}"),
                            "check that secrets_dir is writable by hubkeeper and the disk is not full",
                        ));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("enroll failed: {e}");
                    self.count_failure(&e);
                    self.set_error(StatusError::new(
                        Component::Enroll,
                        e.code(),
                        format!("enroll failed: {e}"),
                        e.hint(),
                    ));
                    failure = Some(e);
                }
            }
            let delay = retry_delay(&mut backoff, failure.as_ref());
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                next = self.interrupted() => return Err(next),
            }
        }
    }

    /// Enrolls again to tell the service the config's origin, and stores the answer.
    async fn update_ingress(
        &mut self,
        cfg: &Config,
        plan: &ManagedPlan,
        client: &ControlClient,
        stored: &Stored,
    ) -> Result<Stored, String> {
        let wanted = ingress(cfg);
        tracing::info!(origin = %wanted.origin, no_tls_verify = wanted.no_tls_verify, "telling the control service the tunnel's origin");
        let client = client.clone().with_retry(RetryPolicy::once());
        let resp = client
            .enroll(&enroll_request(cfg, plan))
            .await
            .map_err(|e| {
                tracing::warn!("enroll (origin update) failed: {e}");
                self.count_failure(&e);
                e.to_string()
            })?;
        enrollment::refresh(&self.store, stored, &resp, wanted).map_err(|e| {
            tracing::error!("the origin update could not be stored: {e}");
            format!("the answer could not be stored: {e}")
        })
    }

    async fn rotate_keys(
        &mut self,
        plan: &ManagedPlan,
        client: &ControlClient,
        stored: &Stored,
    ) -> Result<Stored, RotateError> {
        let hub_id = plan.hub_id.as_str();
        tracing::info!(hub_id, "rotating R2 keys");
        // Recorded before the service is asked; if even this cannot be written, the new
        // keys could not be either, so the service is not asked at all.
        let before = self.state.rotation_pending.replace(hub_id.to_owned());
        if let Err(e) = enrollment::save_state(&self.store, &self.state) {
            self.state.rotation_pending = before;
            tracing::error!("key rotation not started: {e}");
            return Err(RotateError::NotStarted(e.to_string()));
        }
        let keys = match client.rotate_keys(hub_id).await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!("key rotation failed, the old keys stay in force: {e}");
                self.count_failure(&e);
                // A refusal means nothing changed at the service; after a timeout or a
                // lost answer it may have rotated, so the next start rotates again.
                if e.is_refusal() {
                    self.state.rotation_pending = None;
                    self.save_state();
                }
                return Err(e.into());
            }
        };
        let now = SystemTime::now();
        match enrollment::update_keys(&self.store, stored, &keys, now) {
            Ok(next) => {
                self.state.rotation_pending = None;
                self.save_state();
                tracing::info!(access_key_id = %next.enrollment.r2_access_key_id, "R2 keys rotated");
                Ok(next)
            }
            Err(e) => {
                let mut next = stored.clone();
                next.enrollment.r2_access_key_id = keys.r2_access_key_id.clone();
                next.enrollment.r2_secret_access_key = keys.r2_secret_access_key.clone();
                next.enrollment.keys_rotated_at = Some(rfc3339(now));
                let e = RotateError::Store {
                    reason: e.to_string(),
                    next: Box::new(next),
                };
                tracing::error!("{e}");
                Err(e)
            }
        }
    }

    /// Takes a rotation's outcome: new keys (stored or not) are the ones in use from
    /// now on, and a secrets_dir that kept them from disk is an error in the status
    /// until a rotation is stored. Returns the answer for the caller.
    fn rotated(
        &mut self,
        cfg: &Config,
        stored: &mut Stored,
        result: Result<Stored, RotateError>,
    ) -> Result<String, RotateError> {
        let next = match &result {
            Ok(next) => Some(next.clone()),
            Err(RotateError::Store { next, .. }) => Some((**next).clone()),
            Err(_) => None,
        };
        if let Some(next) = next {
            *stored = next;
            let updated = info(cfg, stored, Some(SystemTime::now()));
            self.publish(|v| v.enrollment = Some(updated));
        }
        match &result {
            Ok(_) => self.publish(|v| v.errors.retain(|e| e.code != "keys_not_stored")),
            Err(e) => {
                if let Some(status) = e.store_status() {
                    self.set_error(status);
                }
            }
        }
        result.map(|s| s.enrollment.r2_access_key_id)
    }

    /// Disabled: cloudflared stops at once, and an enrolled hub is disabled at the
    /// control service.
    async fn off(&mut self, plan: &DisabledPlan) -> Next {
        self.supervisor.stop().await;
        let enrolled = matches!(enrollment::load(&self.store), Ok(Some(_)));
        if enrolled || self.state.disable_pending.is_some() {
            let Some(control) = &plan.control else {
                self.set_error(StatusError::new(
                    Component::Control,
                    "disable_blocked",
                    "cannot tell the control service about the disable: the config no longer names it",
                    "keep mode = \"managed\" and the [managed] section (with its token) in the config until the disable is done",
                ));
                return self.idle().await;
            };
            // Whatever ended the disable (done, or a config change it consumed, such as
            // enabling again) is for run() to act on.
            return self.disable(plan, control).await;
        }
        self.publish(|v| {
            v.enrollment = None;
            v.enrolling = false;
        });
        self.idle().await
    }

    async fn disable(&mut self, plan: &DisabledPlan, control: &ControlService) -> Next {
        let pending = match self.state.disable_pending.clone() {
            Some(mut p) => {
                // The admin may have corrected `[disable]` since: the latest config wins
                // (the hub stays the one the disable was started for).
                if (p.delete_bucket, p.retention_days) != (plan.delete_bucket, plan.retention_days)
                {
                    p.delete_bucket = plan.delete_bucket;
                    p.retention_days = plan.retention_days;
                    self.state.disable_pending = Some(p.clone());
                    self.save_state();
                }
                p
            }
            None => {
                // The enrollment names its hub; the config may name another by now.
                let enrolled_for = enrollment::load(&self.store)
                    .ok()
                    .flatten()
                    .and_then(|s| s.enrollment.made_for)
                    .map(|m| m.hub_id);
                let configured = plan.hub_id.as_ref().map(|h| h.as_str().to_owned());
                let Some(hub_id) = enrolled_for.or(configured) else {
                    self.set_error(StatusError::new(
                        Component::Control,
                        "disable_blocked",
                        "cannot tell the control service about the disable: hub_id is missing from the config",
                        "put hub_id back in the config (the same id this hub enrolled with)",
                    ));
                    return self.idle().await;
                };
                let p = PendingDisable {
                    hub_id,
                    delete_bucket: plan.delete_bucket,
                    retention_days: plan.retention_days,
                    since: rfc3339(SystemTime::now()),
                };
                // Persisted before the call: a restart in between resumes it.
                self.state.disable_pending = Some(p.clone());
                self.save_state();
                p
            }
        };
        let client = match client_for(control) {
            Ok(c) => c,
            Err(e) => return self.cannot_reach(Component::Control, e).await,
        };
        if let Err(next) = self.release(&client, pending.clone()).await {
            return next;
        }
        // What the service does with the backups (spec §11): kept; or kept for the
        // retention period, then deleted.
        let bucket = match (pending.delete_bucket, pending.retention_days) {
            (false, _) => "bucket kept".to_owned(),
            (true, 0) => "backups deleted".to_owned(),
            (true, days) => format!("bucket kept for {days} days"),
        };
        let note = format!("disabled {}; {bucket}", rfc3339(SystemTime::now()));
        tracing::info!("{note}");
        self.state.note = Some(note.clone());
        self.save_state();
        self.publish(|v| {
            v.note = Some(note);
            v.errors.clear();
        });
        Next::Reconsider
    }

    /// Tells the control service that `pending.hub_id` is disabled (retried with backoff,
    /// across restarts through `state.json`), then deletes the Cloudflare secrets (retried
    /// with backoff too: a read-only or full `secrets_dir` must not turn into a loop of
    /// disables). `Err` when a new config or shutdown interrupts it.
    async fn release(
        &mut self,
        client: &ControlClient,
        pending: PendingDisable,
    ) -> Result<(), Next> {
        let req = DisableRequest {
            hub_id: pending.hub_id.clone(),
            delete_bucket: pending.delete_bucket,
            retention_days: pending.retention_days,
        };
        let client = client.clone().with_retry(RetryPolicy::once());
        let mut backoff = Backoff::new(RETRY_INITIAL, RETRY_MAX);
        loop {
            self.publish(|v| {
                v.note = Some(format!(
                    "disable pending since {}: telling the control service",
                    pending.since
                ))
            });
            tracing::info!(hub_id = %req.hub_id, "disabling at the control service");
            let attempt = tokio::select! {
                r = client.disable(&req) => r,
                next = self.interrupted() => return Err(next),
            };
            let failure = match attempt {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!("disable not confirmed yet: {e}");
                    self.count_failure(&e);
                    let note = format!("disable pending since {}: {e}; retrying", pending.since);
                    self.set_error(StatusError::new(
                        Component::Control,
                        "disable_pending",
                        format!("the control service has not confirmed the disable: {e}"),
                        "the tunnel is stopped; hubkeeper retries with backoff (also after a restart) and then deletes the Cloudflare secrets",
                    ));
                    self.publish(|v| v.note = Some(note));
                    e
                }
            };
            let delay = retry_delay(&mut backoff, Some(&failure));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                next = self.interrupted() => return Err(next),
            }
        }
        self.state.disable_pending = None;
        // The keys a cut-short rotation was for are gone with the hub.
        self.state.rotation_pending = None;
        self.save_state();
        let mut backoff = Backoff::new(RETRY_INITIAL, RETRY_MAX);
        while let Err(e) = enrollment::remove_cloudflare_secrets(&self.store) {
            self.disabled_at_service = true;
            tracing::error!(
                "the control service confirmed the disable, but the Cloudflare secrets could not be deleted: {e}; retrying"
            );
            self.set_error(StatusError::new(
                Component::Control,
                "disable_cleanup_failed",
                format!(
                    "the control service confirmed the disable, but the Cloudflare secrets could not be deleted: {e}"
                ),
                "make secrets_dir writable by hubkeeper again (read-only mount? full disk?); hubkeeper retries with backoff",
            ));
            tokio::select! {
                () = tokio::time::sleep(jitter(backoff.next_delay())) => {}
                next = self.interrupted() => return Err(next),
            }
        }
        self.disabled_at_service = false;
        Ok(())
    }

    /// The config names another hub (or account) than the enrollment on disk was made
    /// for: the old hub is disabled at the service first, so it does not stay live there
    /// with nobody using it, and then the new hub enrolls.
    async fn switch_hub(
        &mut self,
        cfg: &Config,
        plan: &ManagedPlan,
        client: &ControlClient,
        old: MadeFor,
    ) -> Result<(), Next> {
        tracing::warn!(
            old_hub_id = %old.hub_id,
            old_account_id = %old.account_id,
            hub_id = %plan.hub_id,
            account_id = %plan.account_id,
            "the config names another hub than the enrollment on disk: disabling the old one, then enrolling the new one"
        );
        self.supervisor.stop().await;
        self.publish(|v| v.enrollment = None);
        let p = PendingDisable {
            hub_id: old.hub_id,
            // The old hub's backups are kept: a changed id is no reason to lose them.
            delete_bucket: false,
            retention_days: cfg.disable.retention_days,
            since: rfc3339(SystemTime::now()),
        };
        self.state.disable_pending = Some(p.clone());
        self.save_state();
        self.release(client, p).await?;
        self.publish(|v| v.errors.clear());
        Ok(())
    }

    /// The enrollment on disk was made with another control service: hubkeeper cannot
    /// disable it there (that service's token is not in the config), so it keeps the
    /// tunnel running on it and says what to do.
    async fn refuse_other_service(
        &mut self,
        cfg: &Config,
        plan: &ManagedPlan,
        stored: &Stored,
        old: &MadeFor,
    ) -> Next {
        tracing::error!(
            enrolled_with = %old.control_url,
            configured = %plan.control.url,
            "the enrollment on disk was made with another control service"
        );
        self.publish(|v| v.enrollment = Some(info(cfg, stored, None)));
        self.supervisor
            .run(tunnel_spec(cfg, &self.store, stored))
            .await;
        self.set_error(StatusError::new(
            Component::Enroll,
            "enrolled_elsewhere",
            format!(
                "this hub is enrolled with the control service at {}, but managed.url is now {}",
                old.control_url, plan.control.url
            ),
            format!(
                "if the service only moved, delete {} to enroll again at the new address; otherwise put managed.url back, set enabled = false to release the old enrollment, then change the url",
                self.store.file(enrollment::ENROLLMENT).display()
            ),
        ));
        self.idle().await
    }

    /// Nothing to do until the config changes. Rotation requests are refused.
    async fn idle(&mut self) -> Next {
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Next::Shutdown,
                r = self.cfg.changed() => return if r.is_err() { Next::Shutdown } else { Next::Reconsider },
                Some(reply) = self.rotate.recv() => { let _ = reply.send(Err(RotateError::NotEnrolled)); }
            }
        }
    }

    /// Resolves when a long activity must give way: a new config or shutdown.
    /// Rotation requests meanwhile are answered "not enrolled".
    async fn interrupted(&mut self) -> Next {
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Next::Shutdown,
                r = self.cfg.changed() => return if r.is_err() { Next::Shutdown } else { Next::Reconsider },
                Some(reply) = self.rotate.recv() => { let _ = reply.send(Err(RotateError::NotEnrolled)); }
            }
        }
    }

    /// No client for the control service: say why, and wait for a new config.
    async fn cannot_reach(&mut self, component: Component, e: ControlError) -> Next {
        tracing::error!("{e}");
        self.set_error(StatusError::new(
            component,
            e.code(),
            e.to_string(),
            e.hint(),
        ));
        self.idle().await
    }

    /// One more failed control-service request, by its `errors[].code`.
    fn count_failure(&self, e: &ControlError) {
        self.publish(|v| *v.control_failures.entry(e.code()).or_default() += 1);
    }

    fn set_error(&self, e: StatusError) {
        self.publish(|v| {
            v.enrolling = false;
            v.errors = vec![e];
        });
    }

    fn save_state(&self) {
        if let Err(e) = enrollment::save_state(&self.store, &self.state) {
            tracing::error!("cannot save hubkeeper's state: {e}");
        }
    }

    fn publish(&self, f: impl FnOnce(&mut ManagedView)) {
        hubkeeper_base::publish::update(&self.view, f);
    }
}

/// How long to wait after a failed attempt: the next jittered backoff step, or longer
/// if the service asked for more (`Retry-After` is a floor: a broken service answering
/// `Retry-After: 0` must not turn every hub into a hot loop against it).
fn retry_delay(backoff: &mut Backoff, failure: Option<&ControlError>) -> Duration {
    let step = jitter(backoff.next_delay());
    failure
        .and_then(ControlError::retry_after)
        .map_or(step, |asked| asked.max(step))
}

/// When `r2.rotate_every` next asks for new keys: that long after the last rotation (or
/// the enrollment), at once when that is past. `None` when rotation is off.
fn scheduled_rotation(cfg: &Config, s: &Stored) -> Option<tokio::time::Instant> {
    let every = cfg.r2.rotate_every?.get();
    let e = &s.enrollment;
    let since = e
        .keys_rotated_at
        .as_deref()
        .and_then(parse_rfc3339)
        .or_else(|| parse_rfc3339(&e.enrolled_at))
        .unwrap_or_else(SystemTime::now);
    // Never later than one period from now: a date in the future (a clock that was
    // wrong, a hand-edited file) must not postpone rotation for years.
    let due_in = (since + every)
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
        .min(every);
    Some(tokio::time::Instant::now() + due_in)
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whom the enrollment on disk belongs to, compared with the config in force.
enum Owner {
    ThisHub,
    OtherHub(MadeFor),
    OtherService(MadeFor),
}

fn owner(s: &Stored, plan: &ManagedPlan) -> Owner {
    let Some(m) = &s.enrollment.made_for else {
        // Written before hubkeeper recorded it: taken to be ours.
        return Owner::ThisHub;
    };
    if m.control_url != plan.control.url.as_str() {
        Owner::OtherService(m.clone())
    } else if m.hub_id != plan.hub_id.as_str() || m.account_id != plan.account_id {
        Owner::OtherHub(m.clone())
    } else {
        Owner::ThisHub
    }
}

fn enroll_request(cfg: &Config, plan: &ManagedPlan) -> EnrollRequest {
    let i = ingress(cfg);
    EnrollRequest {
        account_id: plan.account_id.clone(),
        hub_id: plan.hub_id.as_str().to_owned(),
        license_id: plan.license_id.clone(),
        requested_subdomain: plan.requested_subdomain.clone(),
        origin: Some(i.origin),
        no_tls_verify: i.no_tls_verify,
    }
}

fn ingress(cfg: &Config) -> Ingress {
    Ingress {
        origin: cfg.tunnel.origin.0.to_string(),
        no_tls_verify: cfg.tunnel.no_tls_verify,
    }
}

fn made_for(plan: &ManagedPlan) -> MadeFor {
    MadeFor {
        hub_id: plan.hub_id.as_str().to_owned(),
        account_id: plan.account_id.clone(),
        control_url: plan.control.url.as_str().to_owned(),
    }
}

fn client_for(control: &ControlService) -> Result<ControlClient, ControlError> {
    Ok(
        ControlClient::new(control.url.clone(), &control.token, RetryPolicy::default())?
            .with_timeout(control.request_timeout),
    )
}

fn info(cfg: &Config, s: &Stored, keys_since: Option<SystemTime>) -> EnrollmentInfo {
    let e = &s.enrollment;
    EnrollmentInfo {
        hostname: e.hostname.clone(),
        tunnel_id: e.tunnel_id.clone(),
        r2_bucket: e.r2_bucket.clone(),
        r2: crate::health::r2::Target {
            endpoint: e.r2_endpoint.clone(),
            bucket: e.r2_bucket.clone(),
            access_key_id: e.r2_access_key_id.clone(),
            secret_access_key: e.r2_secret_access_key.clone(),
            path_style: cfg.r2.force_path_style,
        },
        keys_since,
        enrolled_at: parse_rfc3339(&e.enrolled_at),
    }
}

/// The pinned managed-mode invocation (spec §5).
pub fn tunnel_spec(cfg: &Config, store: &SecretsStore, stored: &Stored) -> TunnelSpec {
    let t = &cfg.tunnel;
    let token_file = store.file(enrollment::TUNNEL_TOKEN);
    let args = vec![
        "tunnel".to_owned(),
        "--no-autoupdate".to_owned(),
        "--metrics".to_owned(),
        t.metrics.to_string(),
        "--grace-period".to_owned(),
        to_go_duration(t.grace_period.get()),
        "run".to_owned(),
        "--token-file".to_owned(),
        token_file.display().to_string(),
    ];
    // What cloudflared reads at start: if any of it changes, it must restart.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    stored.tunnel_token.expose().hash(&mut h);
    if let Ok(m) = std::fs::metadata(&t.cloudflared) {
        (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()).hash(&mut h);
    }
    TunnelSpec {
        program: t.cloudflared.clone(),
        args,
        metrics: t.metrics,
        grace: t.grace_period.get(),
        ready_timeout: t.ready_timeout.get(),
        probe_interval: cfg.health.interval.get(),
        failures_to_restart: t.restart_after_failed_probes,
        backoff_initial: t.backoff_initial.get(),
        backoff_max: t.backoff_max.get(),
        inputs: h.finish(),
    }
}
