//! R2 (or any S3-compatible store) through aws-sdk-s3: the client, built only from
//! explicit settings (never the environment or `~/.aws`), and the health check that
//! writes a small object, reads it back, compares, and deletes it.
//!
//! Problems are classified into codes with hints an admin can act on. New or rotated
//! keys can take up to a minute to work at R2 (eventual consistency), so "access
//! denied" right after a key change is reported as pending, not as an error.

use crate::secrets::Secret;
use crate::status::Problem;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
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

/// An S3 client for `target`. Region `auto` (what R2 expects; S3-compatible stores
/// accept any).
pub fn client(target: &Target, limits: Limits) -> Client {
    let creds = Credentials::new(
        &target.access_key_id,
        target.secret_access_key.expose(),
        None,
        None,
        "hubkeeper",
    );
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&target.endpoint)
        .region(Region::new("auto"))
        .credentials_provider(creds)
        .force_path_style(target.path_style)
        // Only the checksums S3 requires: R2 and other stores reject the newer ones.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .retry_config(RetryConfig::standard().with_max_attempts(limits.attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(limits.connect)
                .operation_attempt_timeout(limits.operation)
                .operation_timeout(limits.operation * limits.attempts.max(1))
                .build(),
        )
        .build();
    Client::from_conf(conf)
}

/// Whether `p` is what fresh keys go through while R2 propagates them.
pub fn may_be_propagation(p: &Problem) -> bool {
    p.code == "r2_access_denied"
}

/// Writes `<prefix><random>`, reads it back, compares, deletes it.
pub async fn check(client: &Client, target: &Target, prefix: &str) -> Result<(), Problem> {
    let key = format!("{prefix}{}", uuid::Uuid::new_v4());
    let body = format!("hubkeeper health check {}\n", uuid::Uuid::new_v4());
    client
        .put_object()
        .bucket(&target.bucket)
        .key(&key)
        .body(ByteStream::from(body.clone().into_bytes()))
        .send()
        .await
        .map_err(|e| classify("writing", target, &e))?;
    let got = client
        .get_object()
        .bucket(&target.bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| classify("reading", target, &e))?;
    let bytes = got.body.collect().await.map_err(|e| Problem {
        code: "r2_unreachable",
        message: format!(
            "reading the test object from {} broke off: {e}",
            target.endpoint
        ),
        hint: "check this host's network to the R2 endpoint",
    })?;
    // Best effort even if the comparison fails: do not leave test objects behind.
    let deleted = client
        .delete_object()
        .bucket(&target.bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| classify("deleting", target, &e));
    if bytes.into_bytes().as_ref() != body.as_bytes() {
        return Err(Problem {
            code: "r2_corrupt",
            message: format!(
                "the test object read back from bucket {} differs from what was written",
                target.bucket
            ),
            hint: "the store returned other data than it was given: check the R2 endpoint and any proxy in between",
        });
    }
    deleted.map(|_| ())
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    op: &str,
    t: &Target,
    e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Problem {
    let bucket = &t.bucket;
    match e {
        SdkError::TimeoutError(_) => Problem {
            code: "r2_timeout",
            message: format!("{op} a test object in bucket {bucket} timed out"),
            hint: "R2 did not answer in time: check this host's network; hubkeeper keeps checking",
        },
        SdkError::DispatchFailure(d) if d.is_timeout() => Problem {
            code: "r2_timeout",
            message: format!("connecting to {} timed out", t.endpoint),
            hint: "R2 did not answer in time: check this host's network; hubkeeper keeps checking",
        },
        SdkError::DispatchFailure(d) => Problem {
            code: "r2_unreachable",
            message: format!(
                "cannot reach {}: {}",
                t.endpoint,
                d.as_connector_error().map_or_else(
                    || "connection failed".to_owned(),
                    |c| hubkeeper_base::cause::root_cause(c)
                )
            ),
            hint: "check DNS and outbound HTTPS from this host to the R2 endpoint",
        },
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let denied = |code: Option<&str>| Problem {
                code: "r2_access_denied",
                message: format!(
                    "R2 denied access when {op} in bucket {bucket} ({})",
                    code.unwrap_or("403")
                ),
                hint: "the R2 key lacks Object Read & Write on this bucket, or was revoked: run `hubkeeper rotate-keys`",
            };
            match e.code() {
                Some("NoSuchBucket") => Problem {
                    code: "r2_no_such_bucket",
                    message: format!("bucket {bucket} does not exist at {}", t.endpoint),
                    hint: "the bucket was deleted or never created: disable and enable hubkeeper to enroll again, or ask the control service's operator",
                },
                Some("SignatureDoesNotMatch") => Problem {
                    code: "r2_signature_mismatch",
                    message: format!(
                        "R2 rejected the signature when {op} (the secret key does not match the key id)"
                    ),
                    hint: "the R2 secret key is wrong: run `hubkeeper rotate-keys` to get a new key pair",
                },
                Some("AccessDenied" | "InvalidAccessKeyId" | "Forbidden") => denied(e.code()),
                None if status == 403 => denied(None),
                code => Problem {
                    code: "r2_error",
                    message: format!(
                        "R2 answered {status} ({}) when {op} in bucket {bucket}",
                        code.unwrap_or("no error code")
                    ),
                    hint: "R2 had a problem; hubkeeper keeps checking",
                },
            }
        }
        other => Problem {
            code: "r2_error",
            message: format!(
                "{op} a test object failed: {}",
                hubkeeper_base::cause::root_cause(other)
            ),
            hint: "check the R2 endpoint in the enrollment and this host's network",
        },
    }
}
