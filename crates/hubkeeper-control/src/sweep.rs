//! The service's periodic work: at start-up and then every `sweep_interval` (and at
//! once when a disable asks for a deletion now), delete the backups whose retention
//! ended, rewrite bucket rules that are out of date, and look at every tunnel's status
//! at Cloudflare. One task owns it; each piece takes the same per-hub and per-account
//! locks as the endpoints, so it never races an enroll or a disable.

use super::provision::Provisioner;
use super::service::{Service, account_key};
use super::store::{self, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What one pass did, for the log and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    pub backups_deleted: usize,
    pub rules_written: usize,
    pub failures: usize,
    pub tunnels_checked: Option<usize>,
}

impl<S: Store, P: Provisioner> Service<S, P> {
    /// One pass. Failures are logged and retried at the next pass.
    pub async fn sweep(&self) -> Pass {
        let mut pass = Pass::default();
        match self.store.due_deletions(&store::now()).await {
            Ok(due) => {
                for row in due {
                    match self.delete_backups(&row.hub_id).await {
                        Ok(()) => pass.backups_deleted += 1,
                        Err(e) => {
                            pass.failures += 1;
                            tracing::warn!(hub_id = %row.hub_id, "cannot delete the retained backups yet; retrying at the next sweep: {e}");
                        }
                    }
                }
            }
            Err(e) => {
                pass.failures += 1;
                tracing::warn!("cannot read the deletions due: {e}");
            }
        }
        match self.store.dirty_lifecycles().await {
            Ok(dirty) => {
                for (account, bucket) in dirty {
                    let _account_lock = self.locks.lock(account_key(&account)).await;
                    match self.write_bucket_rules(&account, &bucket, false).await {
                        Ok(()) => pass.rules_written += 1,
                        Err(e) => {
                            pass.failures += 1;
                            tracing::warn!(bucket = %bucket, "cannot write the bucket's lifecycle rules yet: {e}");
                        }
                    }
                }
            }
            Err(e) => {
                pass.failures += 1;
                tracing::warn!("cannot read the buckets whose rules changed: {e}");
            }
        }
        match self.provisioner.tunnel_statuses().await {
            Ok(Some(statuses)) => {
                let n = statuses.len();
                match self
                    .store
                    .set_tunnel_statuses(statuses, &store::now())
                    .await
                {
                    Ok(()) => pass.tunnels_checked = Some(n),
                    Err(e) => {
                        pass.failures += 1;
                        tracing::warn!("cannot record the tunnels' status: {e}");
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                pass.failures += 1;
                tracing::warn!("cannot look at the tunnels' status: {e}");
            }
        }
        pass
    }
}

/// Sweeps at start-up, then every `every` or when woken, until `shutdown`.
pub async fn run<S: Store, P: Provisioner>(
    service: Arc<Service<S, P>>,
    every: Duration,
    shutdown: CancellationToken,
) {
    // Dropping a pass at shutdown is safe: each step is recorded before the next, and
    // a provider that hangs must not hold the service past systemd's stop timeout.
    let check = service.provisioner.check();
    tokio::select! {
        () = shutdown.cancelled() => return,
        r = check => match r {
            Ok(()) => tracing::info!("the provisioner's credentials work"),
            Err(e) => tracing::error!("the provisioner cannot be used until this is fixed: {e}"),
        },
    }
    loop {
        let pass = tokio::select! {
            () = shutdown.cancelled() => return,
            pass = service.sweep() => pass,
        };
        if pass.backups_deleted + pass.rules_written + pass.failures > 0 {
            tracing::info!(
                backups_deleted = pass.backups_deleted,
                rules_written = pass.rules_written,
                failures = pass.failures,
                tunnels = pass.tunnels_checked.unwrap_or(0),
                "sweep done"
            );
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
            () = service.sweep_now.notified() => {}
        }
    }
}
