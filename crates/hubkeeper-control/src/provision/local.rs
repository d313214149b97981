//! The local provisioner, for development and tests: real buckets on an S3-compatible
//! store, the store's own key pairs handed out as the "R2 keys", tunnels and DNS
//! records kept in the database (there is no edge and no DNS server here), and tunnel
//! tokens in cloudflared's real format.
//!
//! What it cannot do honestly it says: a store key is shared by every hub it is handed
//! to, so "revoking" one only stops handing it out, and rotation needs at least two
//! configured pairs.

use super::s3::{S3Store, StoreSettings};
use super::tunnel_token::{self, TokenParts};
use super::{BucketDeletion, Expiry, Ingress, ProvisionError, Provisioner, R2Key, Tunnel};
use crate::store::now;
use crate::store::sqlite::{Db, DbError};
use hubkeeper_proto::Secret;
use rusqlite::{OptionalExtension, params};

pub const COMPONENT: &str = "local-provisioner";

pub const MIGRATIONS: &[&str] = &["
    CREATE TABLE local_tunnels (
        tunnel_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_at TEXT NOT NULL,
        deleted_at TEXT
    );
    CREATE UNIQUE INDEX local_tunnels_live_name ON local_tunnels (name)
        WHERE deleted_at IS NULL;
    CREATE TABLE local_dns_records (
        record_id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        name TEXT NOT NULL UNIQUE,
        content TEXT NOT NULL,
        proxied INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        modified_at TEXT NOT NULL
    );
    CREATE TABLE local_keys (
        key_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        bucket TEXT NOT NULL,
        pair_index INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE UNIQUE INDEX local_keys_live_name ON local_keys (name)
        WHERE revoked_at IS NULL;
"];

/// One of the store's own key pairs.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

#[derive(Debug, Clone)]
pub struct LocalSettings {
    pub s3_endpoint: String,
    pub r2_endpoint: String,
    pub region: String,
    pub account_tag: String,
    /// At least one. The first is also used for bucket work.
    pub keys: Vec<KeyPair>,
}

#[derive(Debug)]
pub struct LocalProvisioner {
    db: Db,
    store: S3Store,
    account_tag: String,
    r2_endpoint: String,
    keys: Vec<KeyPair>,
}

impl LocalProvisioner {
    /// `db` must have been migrated with [`MIGRATIONS`] under [`COMPONENT`].
    pub fn new(db: Db, s: LocalSettings) -> Result<LocalProvisioner, ProvisionError> {
        // The config requires at least one pair; the first is the store's admin key.
        let admin = s.keys.first().ok_or(ProvisionError::Internal {
            op: "start the local provisioner",
            detail: "no [[provisioner.local.keys]] pair".into(),
        })?;
        let store = S3Store::new(&StoreSettings {
            endpoint: s.s3_endpoint.clone(),
            region: s.region.clone(),
            access_key_id: admin.access_key_id.clone(),
            secret_access_key: admin.secret_access_key.clone(),
        })?;
        Ok(LocalProvisioner {
            db,
            store,
            account_tag: s.account_tag,
            r2_endpoint: s.r2_endpoint,
            keys: s.keys,
        })
    }

    fn key_of(&self, key_id: String, pair_index: i64) -> R2Key {
        let n = self.keys.len() as i64;
        // The list may have shrunk since the key was minted: wrap around.
        let pair = &self.keys[pair_index.rem_euclid(n) as usize];
        R2Key {
            id: key_id,
            access_key_id: pair.access_key_id.clone(),
            secret_access_key: pair.secret_access_key.clone(),
        }
    }

    async fn db<R, F>(&self, op: &'static str, f: F) -> Result<R, ProvisionError>
    where
        R: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<R, DbError> + Send + 'static,
    {
        self.db.call(f).await.map_err(|e| ProvisionError::Internal {
            op,
            detail: e.to_string(),
        })
    }
}

impl Provisioner for LocalProvisioner {
    fn r2_endpoint(&self) -> &str {
        &self.r2_endpoint
    }

    async fn ensure_tunnel(&self, name: &str) -> Result<Tunnel, ProvisionError> {
        let name = name.to_owned();
        let (id, secret) = self
            .db("creating the tunnel", move |c| {
                let live: Option<(String, String)> = c
                    .query_row(
                        "SELECT tunnel_id, secret FROM local_tunnels
                         WHERE name = ?1 AND deleted_at IS NULL",
                        [&name],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                if let Some(found) = live {
                    return Ok(found);
                }
                let id = uuid::Uuid::new_v4().to_string();
                let secret = tunnel_token::new_secret();
                c.execute(
                    "INSERT INTO local_tunnels (tunnel_id, name, secret, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![id, name, secret.expose(), now()],
                )?;
                Ok((id, secret.expose().to_owned()))
            })
            .await?;
        let token = tunnel_token::encode(&TokenParts {
            account_tag: self.account_tag.clone(),
            tunnel_id: id.clone(),
            secret: Secret::new(secret),
        })
        .map_err(|e| ProvisionError::Internal {
            op: "encode the tunnel token",
            detail: e.to_string(),
        })?;
        Ok(Tunnel { id, token })
    }

    async fn set_ingress(
        &self,
        _tunnel_id: &str,
        _ingress: &Ingress,
    ) -> Result<(), ProvisionError> {
        // No edge to route: the service records the ingress it asked for.
        Ok(())
    }

    async fn route_hostname(
        &self,
        hostname: &str,
        tunnel_id: &str,
        _owner: &str,
    ) -> Result<String, ProvisionError> {
        let (name, content) = (hostname.to_owned(), format!("{tunnel_id}.cfargotunnel.com"));
        self.db("writing the DNS record", move |c| {
            let now = now();
            let fresh_id = uuid::Uuid::new_v4().simple().to_string();
            let id: String = c.query_row(
                "INSERT INTO local_dns_records
                    (record_id, type, name, content, proxied, created_at, modified_at)
                 VALUES (?1, 'CNAME', ?2, ?3, 1, ?4, ?4)
                 ON CONFLICT (name) DO UPDATE SET
                    type = 'CNAME', content = excluded.content, proxied = 1,
                    modified_at = excluded.modified_at
                 RETURNING record_id",
                params![fresh_id, name, content, now],
                |r| r.get(0),
            )?;
            Ok(id)
        })
        .await
    }

    async fn ensure_bucket(
        &self,
        bucket: &str,
        _expiries: &[Expiry],
    ) -> Result<(), ProvisionError> {
        self.store.ensure_bucket(bucket).await
    }

    async fn set_expiries(
        &self,
        _bucket: &str,
        _expiries: &[Expiry],
    ) -> Result<(), ProvisionError> {
        // The store has no lifecycle rules: the sweep alone deletes.
        Ok(())
    }

    async fn mint_key(
        &self,
        name: &str,
        bucket: &str,
        _maybe_exists: bool,
    ) -> Result<R2Key, ProvisionError> {
        // Keys are looked up by name in the database every time, so a lost answer
        // cannot duplicate one.
        let (name, bucket) = (name.to_owned(), bucket.to_owned());
        let n = self.keys.len() as i64;
        let (id, index) = self
            .db("minting the key", move |c| {
                let live: Option<(String, i64)> = c
                    .query_row(
                        "SELECT key_id, pair_index FROM local_keys
                         WHERE name = ?1 AND revoked_at IS NULL",
                        [&name],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                if let Some(found) = live {
                    return Ok(found);
                }
                // Spread hubs over the pairs.
                let minted: i64 =
                    c.query_row("SELECT COUNT(*) FROM local_keys", [], |r| r.get(0))?;
                let id = uuid::Uuid::new_v4().simple().to_string();
                let index = minted % n;
                c.execute(
                    "INSERT INTO local_keys (key_id, name, bucket, pair_index, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, name, bucket, index, now()],
                )?;
                Ok((id, index))
            })
            .await?;
        Ok(self.key_of(id, index))
    }

    async fn roll_key(&self, key_id: &str, bucket: &str) -> Result<R2Key, ProvisionError> {
        let n = self.keys.len() as i64;
        if n < 2 {
            return Err(ProvisionError::Unsupported(
                "the local provisioner has one key pair, so rotation cannot hand out a different one: add another [[provisioner.local.keys]]".into(),
            ));
        }
        let (old, bucket) = (key_id.to_owned(), bucket.to_owned());
        let (id, index) = self
            .db("rolling the key", move |c| {
                let tx = c.transaction()?;
                let (name, index): (String, i64) = tx
                    .query_row(
                        "SELECT name, pair_index FROM local_keys WHERE key_id = ?1",
                        [&old],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?
                    .unwrap_or_else(|| (format!("rolled-{old}"), -1));
                let now = now();
                tx.execute(
                    "UPDATE local_keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL",
                    params![old, now],
                )?;
                let id = uuid::Uuid::new_v4().simple().to_string();
                let next = (index + 1).rem_euclid(n);
                tx.execute(
                    "INSERT INTO local_keys (key_id, name, bucket, pair_index, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, name, bucket, next, now],
                )?;
                tx.commit()?;
                Ok((id, next))
            })
            .await?;
        Ok(self.key_of(id, index))
    }

    async fn revoke_key(&self, key_id: &str) -> Result<(), ProvisionError> {
        let key_id = key_id.to_owned();
        self.db("revoking the key", move |c| {
            c.execute(
                "UPDATE local_keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL",
                params![key_id, now()],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_connections(&self, _tunnel_id: &str) -> Result<(), ProvisionError> {
        // No edge, so no connections to drop.
        Ok(())
    }

    async fn delete_tunnel(&self, tunnel_id: &str) -> Result<(), ProvisionError> {
        let tunnel_id = tunnel_id.to_owned();
        self.db("deleting the tunnel", move |c| {
            // Soft delete, as Cloudflare does: the row keeps `deleted_at`.
            c.execute(
                "UPDATE local_tunnels SET deleted_at = ?2 WHERE tunnel_id = ?1 AND deleted_at IS NULL",
                params![tunnel_id, now()],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_dns_record(&self, record_id: &str) -> Result<(), ProvisionError> {
        let record_id = record_id.to_owned();
        self.db("deleting the DNS record", move |c| {
            c.execute(
                "DELETE FROM local_dns_records WHERE record_id = ?1",
                [record_id],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<(), ProvisionError> {
        self.store.delete_prefix(bucket, prefix).await
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<BucketDeletion, ProvisionError> {
        self.store.delete_bucket(bucket).await
    }

    async fn tunnel_statuses(&self) -> Result<Option<Vec<(String, String)>>, ProvisionError> {
        Ok(None)
    }
}
