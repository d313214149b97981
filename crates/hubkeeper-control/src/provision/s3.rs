//! The local provisioner's bucket work on an S3-compatible store (ensure, empty a
//! prefix, delete), through the one S3 client of `hubkeeper-s3`. Built from explicit
//! settings only (endpoint, static keys, region, path-style): it never reads the
//! environment or `~/.aws`, so what runs is what the config says.

use super::{BucketDeletion, ProvisionError};
use hubkeeper_proto::Secret;
use hubkeeper_s3::{Client, Limits, S3Error, Target};
use std::time::Duration;

/// Where the store is and how to reach it.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// A client per bucket, sharing one connection pool.
#[derive(Debug, Clone)]
pub struct S3Store {
    settings: StoreSettings,
    http: reqwest::Client,
    limits: Limits,
}

impl S3Store {
    pub fn new(s: &StoreSettings) -> Result<S3Store, ProvisionError> {
        let limits = Limits {
            connect: Duration::from_secs(5),
            operation: Duration::from_secs(20),
            attempts: 3,
        };
        let http = hubkeeper_s3::http_client(&limits).map_err(|e| ProvisionError::Internal {
            op: "set up the S3 client",
            detail: e.to_string(),
        })?;
        Ok(S3Store {
            settings: s.clone(),
            http,
            limits,
        })
    }

    fn bucket(&self, bucket: &str) -> Result<Client, ProvisionError> {
        let s = &self.settings;
        let target = Target {
            endpoint: &s.endpoint,
            bucket,
            access_key_id: &s.access_key_id,
            secret_access_key: s.secret_access_key.expose(),
            region: &s.region,
            // Development stores (and R2 by common practice) want path-style URLs.
            path_style: true,
        };
        Client::new(&target, self.limits, Some(self.http.clone()))
            .map_err(|e| upstream("reaching the bucket", &e))
    }

    /// Creates the bucket; one that exists already and is usable is fine.
    pub async fn ensure_bucket(&self, bucket: &str) -> Result<(), ProvisionError> {
        self.bucket(bucket)?
            .create_bucket()
            .await
            .map_err(|e| upstream("creating the bucket", &e))
    }

    /// Deletes every object whose key starts with `prefix` (none when the bucket is
    /// gone).
    pub async fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<(), ProvisionError> {
        self.bucket(bucket)?
            .delete_prefix(prefix)
            .await
            .map(|_| ())
            .map_err(|e| upstream("deleting backups", &e))
    }

    pub async fn delete_bucket(&self, bucket: &str) -> Result<BucketDeletion, ProvisionError> {
        let deleted = self
            .bucket(bucket)?
            .delete_bucket()
            .await
            .map_err(|e| upstream("deleting the bucket", &e))?;
        Ok(match deleted {
            hubkeeper_s3::BucketDeletion::Deleted => BucketDeletion::Deleted,
            hubkeeper_s3::BucketDeletion::NotFound => BucketDeletion::Missing,
            hubkeeper_s3::BucketDeletion::NotEmpty => BucketDeletion::NotEmpty,
        })
    }
}

/// An S3 failure as a provisioning error: the client's message names the operation,
/// the bucket and the store's own explanation, never key material.
fn upstream(op: &'static str, e: &S3Error) -> ProvisionError {
    ProvisionError::Upstream {
        op,
        detail: e.to_string(),
    }
}
