//! Tearing a hub down, in the order Cloudflare needs (research §6.6): the daemon has
//! already stopped its connector; then edge connections, tunnel, DNS record, R2 key,
//! and last the backups: kept, or, with `delete_bucket`, scheduled for deletion after
//! the retention period, which the sweep (`sweep.rs`) carries out with
//! [`Service::delete_backups`]: the hub's prefix, then the bucket once no hub of the
//! account uses it.
//!
//! Each step clears its column and writes a `teardown_log` row as soon as it is done,
//! so a disable that fails half-way resumes at the first step not yet done.

use super::names;
use super::provision::{BucketDeletion, Provisioner};
use super::service::{Service, ServiceError, account_key};
use super::store::{self, HubRow, HubState, Store, StoreError};

impl<S: Store, P: Provisioner> Service<S, P> {
    pub(super) async fn teardown(&self, row: HubRow) -> Result<(), ServiceError> {
        let p = &self.provisioner;
        let hub = row.hub_id.as_str();
        let record = |step, detail| self.record_step(&row, step, detail);

        if let Some(tunnel) = &row.tunnel_id {
            p.delete_connections(tunnel).await?;
            record("connections_deleted", format!("tunnel {tunnel}")).await?;
            p.delete_tunnel(tunnel).await?;
            self.store.set_tunnel(hub, None).await?;
            record("tunnel_deleted", format!("tunnel {tunnel}")).await?;
        }
        if let Some(dns) = &row.dns_record_id {
            p.delete_dns_record(dns).await?;
            self.store.set_dns_record(hub, None).await?;
            record(
                "dns_record_deleted",
                format!("{} (record {dns})", row.hostname),
            )
            .await?;
        }
        if let Some(key) = &row.key_id {
            p.revoke_key(key).await?;
            self.store.set_key(hub, None).await?;
            record("key_revoked", format!("key {key}")).await?;
        }

        let prefix = format!("{}/{}", row.bucket, names::backup_prefix(hub));
        if row.delete_bucket == Some(true) {
            let days = row.retention_days.unwrap_or(0);
            let due = store::deletion_due(days);
            record(
                "backups_deletion_scheduled",
                format!("{prefix} kept for {days} days, deleted at {due}"),
            )
            .await?;
            self.store.finish_disable(hub, Some(&due)).await?;
            // The Date rule is the backstop while the service is down; if writing it
            // fails now, the sweep writes it (the account's rules are marked dirty).
            let _account_lock = self.locks.lock(account_key(&row.account_id)).await;
            if let Err(e) = self
                .write_bucket_rules(&row.account_id, &row.bucket, false)
                .await
            {
                tracing::warn!(hub_id = %hub, bucket = %row.bucket, "cannot write the bucket's deletion rule yet; the sweep retries: {e}");
            }
            if days == 0 {
                self.sweep_now.notify_one();
            }
        } else {
            record(
                "backups_kept",
                format!("{prefix}: kept until an operator deletes them or the hub enrolls again"),
            )
            .await?;
            self.store.finish_disable(hub, None).await?;
        }
        Ok(())
    }

    /// Deletes the backups of a disabled hub whose deadline has passed, then the
    /// account's bucket once no hub uses it. Skips a hub that enrolled again.
    pub(super) async fn delete_backups(&self, hub: &str) -> Result<(), ServiceError> {
        let _hub_lock = self.locks.lock(super::service::hub_key(hub)).await;
        let Some(row) = self.store.hub(hub).await? else {
            return Ok(());
        };
        let due = match &row.deletion_due {
            Some(due)
                if row.state == HubState::Disabled && due.as_str() <= store::now().as_str() =>
            {
                due.clone()
            }
            _ => return Ok(()),
        };
        let p = &self.provisioner;
        let _account_lock = self.locks.lock(account_key(&row.account_id)).await;
        let prefix = names::backup_prefix(hub);
        if !row.bucket_deleted {
            p.delete_prefix(&row.bucket, &prefix).await?;
        }
        self.store.backups_deleted(hub).await?;
        self.record_step(
            &row,
            "backups_deleted",
            format!("{}/{prefix} (due {due})", row.bucket),
        )
        .await?;
        if row.bucket_deleted {
            return Ok(());
        }
        let others = self.store.other_bucket_users(&row.account_id, hub).await?;
        if others > 0 {
            return self
                .record_step(
                    &row,
                    "bucket_kept",
                    format!(
                        "{}: used by {others} other hub(s) of the account",
                        row.bucket
                    ),
                )
                .await
                .map_err(Into::into);
        }
        match p.delete_bucket(&row.bucket).await? {
            BucketDeletion::Deleted | BucketDeletion::Missing => {
                self.store.bucket_deleted(&row.account_id).await?;
                self.record_step(&row, "bucket_deleted", row.bucket.clone())
                    .await?;
            }
            BucketDeletion::NotEmpty => {
                self.record_step(&row, "bucket_kept", format!("{}: not empty", row.bucket))
                    .await?;
            }
        }
        Ok(())
    }

    /// Logs one done step, to the log and to the hub's teardown log.
    async fn record_step(
        &self,
        row: &HubRow,
        step: &'static str,
        detail: String,
    ) -> Result<(), StoreError> {
        tracing::info!(hub_id = %row.hub_id, step, %detail, "teardown step done");
        self.store
            .log_teardown_step(&row.hub_id, row.generation, step, &detail)
            .await
    }
}
