//! R2 (or any S3-compatible store) for the health check: the bucket and keys an
//! enrollment names, and the check that writes a small object, reads it back,
//! compares, and deletes it, through the one S3 client of `hubkeeper-s3`.
//!
//! Problems are classified into codes with hints an admin can act on. New or rotated
//! keys can take up to a minute to work at R2 (eventual consistency), so "access
//! denied" right after a key change is reported as pending, not as an error.

use crate::secrets::Secret;
use crate::status::Problem;
use hubkeeper_s3::{Client, S3Error, S3ErrorKind};

/// How to reach a bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub path_style: bool,
}

pub use hubkeeper_s3::Limits;

impl Target {
    /// The borrowed form the S3 client takes. Region `auto`: what R2 expects, and
    /// S3-compatible stores accept any.
    pub fn s3(&self) -> hubkeeper_s3::Target<'_> {
        hubkeeper_s3::Target {
            endpoint: &self.endpoint,
            bucket: &self.bucket,
            access_key_id: &self.access_key_id,
            secret_access_key: self.secret_access_key.expose(),
            region: hubkeeper_s3::REGION_AUTO,
            path_style: self.path_style,
        }
    }
}

/// An S3 client for `target`, built only from explicit settings (never the
/// environment or `~/.aws`).
pub fn client(target: &Target, limits: Limits) -> Result<Client, Problem> {
    Client::new(&target.s3(), limits, None).map_err(|e| classify("connecting to", target, &e))
}

/// Whether `p` is what fresh keys go through while R2 propagates them.
pub fn may_be_propagation(p: &Problem) -> bool {
    p.code == "r2_access_denied"
}

/// The health check's object is a line of text: anything longer is not ours.
const MAX_TEST_OBJECT: usize = 4096;

/// Writes `<prefix><random>`, reads it back, compares, deletes it.
pub async fn check(client: &Client, target: &Target, prefix: &str) -> Result<(), Problem> {
    let key = format!("{prefix}{}", uuid::Uuid::new_v4());
    let body = format!("hubkeeper health check {}\n", uuid::Uuid::new_v4());
    client
        .put_object(&key, body.clone().into_bytes())
        .await
        .map_err(|e| classify("writing", target, &e))?;
    let read = client
        .get_object(&key, MAX_TEST_OBJECT)
        .await
        .map_err(|e| classify("reading", target, &e));
    // Best effort even if reading or comparing fails: do not leave test objects behind.
    let deleted = client
        .delete_object(&key)
        .await
        .map_err(|e| classify("deleting", target, &e));
    if read?.as_ref() != body.as_bytes() {
        return Err(Problem {
            code: "r2_corrupt",
            message: format!(
                "the test object read back from bucket {} differs from what was written",
                target.bucket
            ),
            hint: "the store returned other data than it was given: check the R2 endpoint and any proxy in between",
        });
    }
    deleted
}

fn classify(op: &str, t: &Target, e: &S3Error) -> Problem {
    let bucket = &t.bucket;
    let timeout = || Problem {
        code: "r2_timeout",
        message: format!("{op} a test object in bucket {bucket} timed out"),
        hint: "R2 did not answer in time: check this host's network; hubkeeper keeps checking",
    };
    match &e.kind {
        S3ErrorKind::Timeout => timeout(),
        S3ErrorKind::Connect(reason) | S3ErrorKind::Transport(reason) => Problem {
            code: "r2_unreachable",
            message: format!("cannot reach {}: {reason}", t.endpoint),
            hint: "check DNS and outbound HTTPS from this host to the R2 endpoint",
        },
        S3ErrorKind::Status { status, code, .. } => {
            let denied = |code: Option<&str>| Problem {
                code: "r2_access_denied",
                message: format!(
                    "R2 denied access when {op} in bucket {bucket} ({})",
                    code.unwrap_or("403")
                ),
                hint: "the R2 key lacks Object Read & Write on this bucket, or was revoked: run `hubkeeper rotate-keys`",
            };
            match code.as_deref() {
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
                c @ Some("AccessDenied" | "InvalidAccessKeyId" | "Forbidden") => denied(c),
                None if *status == 403 => denied(None),
                c => Problem {
                    code: "r2_error",
                    message: format!(
                        "R2 answered {status} ({}) when {op} in bucket {bucket}",
                        c.unwrap_or("no error code")
                    ),
                    hint: "R2 had a problem; hubkeeper keeps checking",
                },
            }
        }
        // The client's messages name the operation and key, never key material.
        _ => Problem {
            code: "r2_error",
            message: format!("{op} a test object failed: {e}"),
            hint: "check the R2 endpoint in the enrollment and this host's network",
        },
    }
}
