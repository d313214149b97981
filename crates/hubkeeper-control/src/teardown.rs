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
use super::store::{self, HubRow};

impl<P: Provisioner> Service<P> {
    pub(super) async fn teardown(&self, row: HubRow) -> Result<(), ServiceError> {
        let p = &self.provisioner;
        let (hub, generation) = (row.hub_id.clone(), row.generation);
        let record = |step: &'static str, detail: String| {
            let h = hub.clone();
            tracing::info!(hub_id = %h, step, %detail, "teardown step done");
            self.db
                .call(move |c| store::log_step(c, &h, generation, step, &detail))
        };

        if let Some(tunnel) = &row.tunnel_id {
            p.delete_connections(tunnel).await?;
            record("connections_deleted", format!("tunnel {tunnel}")).await?;
            p.delete_tunnel(tunnel).await?;
            let h = hub.clone();
            self.db
                .call(move |c| store::set_tunnel(c, &h, None, None))
                .await?;
            record("tunnel_deleted", format!("tunnel {tunnel}")).await?;
        }
        if let Some(dns) = &row.dns_record_id {
            p.delete_dns_record(dns).await?;
            let h = hub.clone();
            self.db
                .call(move |c| store::set_dns_record(c, &h, None))
                .await?;
            record(
                "dns_record_deleted",
                format!("{} (record {dns})", row.hostname),
            )
            .await?;
        }
        if let Some(key) = &row.key_id {
            p.revoke_key(key).await?;
            let h = hub.clone();
            self.db.call(move |c| store::set_key(c, &h, None)).await?;
            record("key_revoked", format!("key {key}")).await?;
        }

        let retain_until = if row.delete_bucket == Some(true) {
            let _account_lock = self.locks.lock(account_key(&row.account_id)).await;
            let prefix = names::backup_prefix(&hub);
            p.expire_prefix(&row.bucket, &prefix).await?;
            record("backups_deleted", format!("{}/{prefix}", row.bucket)).await?;
            let (account, h) = (row.account_id.clone(), hub.clone());
            let others = self
                .db
                .call(move |c| store::other_bucket_users(c, &account, &h))
                .await?;
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
                        let account = row.account_id.clone();
                        self.db
                            .call(move |c| store::bucket_deleted(c, &account))
                            .await?;
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
                    names::backup_prefix(&hub)
                ),
            )
            .await?;
            Some(until)
        };
        self.db
            .call(move |c| store::finish_disable(c, &hub, retain_until.as_deref()))
            .await?;
        Ok(())
    }
}
