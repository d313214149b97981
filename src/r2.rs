//! R2 (or any S3-compatible store) through aws-sdk-s3: the client, built only from
//! explicit settings (never the environment or `~/.aws`), and the health check that
//! writes a small object, reads it back, compares, and deletes it.
//!
//! Problems are classified into codes with hints an admin can act on. New or rotated
//! keys can take up to a minute to work at R2 (eventual consistency), so "access
//! denied" right after a key change is reported as pending, not as an error.

use crate::secrets::Secret;
use crate::status::Problem;
use std::time::Duration;

/// How to reach a bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub path_style: bool,
}

/// Timeouts and retries: bounded, so a hung store costs a check, never the daemon.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect: Duration,
    pub operation: Duration,
    pub attempts: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            operation: Duration::from_secs(20),
            attempts: 2,
        }
    }
}

pub type Client = reqwest::Client;

/// THROWAWAY EXPERIMENT: aws-sdk-s3 cut out; a reqwest client stands in for a thin S3 client.
pub fn client(_target: &Target, limits: Limits) -> Client {
    reqwest::Client::builder()
        .connect_timeout(limits.connect)
        .timeout(limits.operation)
        .build()
        .expect("client")
}

/// THROWAWAY EXPERIMENT: one unsigned round trip to the endpoint, outcome ignored.
pub async fn check(client: &Client, target: &Target, prefix: &str) -> Result<(), Problem> {
    let url = format!("{}/{}/{prefix}{}", target.endpoint, target.bucket, uuid::Uuid::new_v4());
    let _ = client.get(url).send().await.map(|r| r.status());
    Ok(())
}

/// Whether `p` is what fresh keys go through while R2 propagates them.
pub fn may_be_propagation(p: &Problem) -> bool {
    p.code == "r2_access_denied"
}

