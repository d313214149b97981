//! A client of an S3-compatible store for bucket work: ensure, empty a prefix, delete.
//! Built from explicit settings only (endpoint, static keys, region, path-style): it
//! never reads the environment or `~/.aws`, so what runs is what the config says.

use super::{BucketDeletion, ProvisionError};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use hubkeeper_proto::Secret;
use std::time::Duration;

/// Where the store is and how to reach it.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
}

impl S3Store {
    pub fn new(s: &StoreSettings) -> S3Store {
        let creds = Credentials::new(
            &s.access_key_id,
            s.secret_access_key.expose(),
            None,
            None,
            "hubkeeper-control-config",
        );
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&s.endpoint)
            .region(Region::new(s.region.clone()))
            .credentials_provider(creds)
            // Development stores (and R2 by common practice) want path-style URLs.
            .force_path_style(true)
            // Only the checksums S3 requires: stores other than AWS reject the rest.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            )
            .build();
        S3Store {
            client: Client::from_conf(conf),
        }
    }

    pub async fn ensure_bucket(&self, bucket: &str) -> Result<(), ProvisionError> {
        match self.client.create_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let exists = matches!(
                    e.code(),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ) || status_of(&e) == Some(409);
                if !exists {
                    return Err(upstream("creating the bucket", bucket, &e));
                }
                // "Exists" may mean someone else's: confirm that we can use it.
                self.client
                    .head_bucket()
                    .bucket(bucket)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| upstream("checking the existing bucket", bucket, &e))
            }
        }
    }

    /// Deletes every object whose key starts with `prefix`.
    pub async fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<(), ProvisionError> {
        let mut token = None;
        loop {
            let page = match self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
            {
                Ok(p) => p,
                Err(e) if e.code() == Some("NoSuchBucket") => return Ok(()),
                Err(e) => return Err(upstream("listing backups", bucket, &e)),
            };
            // One by one: DeleteObjects needs a Content-MD5 that not every
            // S3-compatible store checks the same way, and this is the development store.
            for key in page.contents().iter().filter_map(|o| o.key()) {
                self.client
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| upstream("deleting a backup object", bucket, &e))?;
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => return Ok(()),
            }
        }
    }

    pub async fn delete_bucket(&self, bucket: &str) -> Result<BucketDeletion, ProvisionError> {
        let listed = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .max_keys(1)
            .send()
            .await;
        match listed {
            Err(e) if e.code() == Some("NoSuchBucket") || status_of(&e) == Some(404) => {
                return Ok(BucketDeletion::Missing);
            }
            Err(e) => return Err(upstream("listing the bucket", bucket, &e)),
            Ok(page) if !page.contents().is_empty() => return Ok(BucketDeletion::NotEmpty),
            Ok(_) => {}
        }
        match self.client.delete_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(BucketDeletion::Deleted),
            Err(e) if e.code() == Some("NoSuchBucket") => Ok(BucketDeletion::Missing),
            Err(e) if e.code() == Some("BucketNotEmpty") => Ok(BucketDeletion::NotEmpty),
            Err(e) => Err(upstream("deleting the bucket", bucket, &e)),
        }
    }
}

fn status_of<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// An S3 failure as a provisioning error: the operation, the bucket and the store's
/// own explanation (error codes and messages carry no credentials).
fn upstream<E>(op: &'static str, bucket: &str, e: &E) -> ProvisionError
where
    E: std::error::Error,
{
    ProvisionError::Upstream {
        op,
        detail: format!("bucket {bucket}: {}", DisplayErrorContext(e)),
    }
}
