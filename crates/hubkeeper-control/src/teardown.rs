//! Tearing a hub down, in the order Cloudflare needs (research §6.6): the daemon has
//! already stopped its connector; then edge connections, tunnel, DNS record, R2 key,
//! and last the backups: deleted (and the bucket with them when no other hub of the
//! account uses it) or kept for the retention period.
//!
//! Each step clears its column and writes a `teardown_log` row as soon as it is done,
//! so a disable that fails half-way resumes at the first step not yet done.

use super::names;
use super::provision::{BucketDeletion, Provisioner};
use super::service::{Service, ServiceError, account_key};
use super::store::{self, HubRow, Store, StoreError};

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

        let retain_until = if row.delete_bucket == Some(true) {
            let _account_lock = self.locks.lock(account_key(&row.account_id)).await;
            let prefix = names::backup_prefix(hub);
            p.expire_prefix(&row.bucket, &prefix).await?;
            record("backups_deleted", format!("{}/{prefix}", row.bucket)).await?;
            let others = self.store.other_bucket_users(&row.account_id, hub).await?;
            if others > 0 {
                record(
                    "bucket_kept",
                    format!(
                        "{}: used by {others} other hub(s) of the account",
                        row.bucket
                    ),
                )
                .await?;
            } else {
                match p.delete_bucket(&row.bucket).await? {
                    BucketDeletion::Deleted | BucketDeletion::Missing => {
                        self.store.bucket_deleted(&row.account_id).await?;
                        record("bucket_deleted", row.bucket.clone()).await?;
                    }
                    BucketDeletion::NotEmpty => {
                        record("bucket_kept", format!("{}: not empty", row.bucket)).await?;
                    }
                }
            }
            None
        } else {
            let days = row.retention_days.unwrap_or(0);
            let until = store::retain_until(days);
            record(
                "backups_kept",
                format!(
                    "{}/{} for {days} days, until {until}",
                    row.bucket,
                    names::backup_prefix(hub)
                ),
            )
            .await?;
            Some(until)
        };
        self.store
            .finish_disable(hub, retain_until.as_deref())
            .await?;
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
