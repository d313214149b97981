//! The provisioning boundary: one trait for everything the control service asks of a
//! Cloudflare account (tunnel, DNS, bucket, bucket-scoped key, and their removal).
//!
//! The operations are shaped after the real Cloudflare API (research
//! `cloudflare-api.md` §2-§6) so that a Cloudflare implementation slots in without
//! changing the service: every "ensure" adopts what already exists under the same
//! deterministic name (a crash between "created" and "recorded" must not leak or
//! duplicate), and every delete treats "already gone" as success. The service persists
//! each result before the next step and drives the teardown order (`teardown.rs`).
//!
//! `local` is the development and test implementation against an S3-compatible store;
//! `cloudflare` provisions on a real Cloudflare account through `cloudflare_api`.

pub mod cloudflare;
pub mod local;
pub mod s3;
pub mod tunnel_token;

use hubkeeper_proto::Secret;
use std::future::Future;

/// Why the provider could not do something. Messages name the operation and the
/// resource, never a token or key.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The provider failed or refused; the caller may retry later (HTTP 502).
    #[error("{op} failed: {detail}")]
    Upstream { op: &'static str, detail: String },
    /// The provider is rate limiting: retry after this many seconds (HTTP 429).
    #[error("{op}: Cloudflare is rate limiting; retry in {retry_after_secs}s")]
    RateLimited {
        op: &'static str,
        retry_after_secs: u64,
    },
    /// Something at the provider that this service did not create stands in the way
    /// (a DNS record at the hub's hostname); an operator must look (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// This provisioner cannot do what was asked, and retrying will not help.
    #[error("{0}")]
    Unsupported(String),
    /// The provisioner's own bookkeeping failed.
    #[error("{op}: {detail}")]
    Internal { op: &'static str, detail: String },
}

/// A tunnel that exists at the provider.
#[derive(Debug, Clone)]
pub struct Tunnel {
    pub id: String,
    /// What `cloudflared tunnel run --token` takes (`tunnel_token.rs`).
    pub token: Secret,
}

/// S3 credentials scoped to one bucket. `id` is the provider's handle for rolling or
/// revoking it (Cloudflare: the API token id, which is also the access key id).
#[derive(Debug, Clone)]
pub struct R2Key {
    pub id: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// Where a tunnel sends the hub's traffic (the enroll request's `origin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingress {
    pub hostname: String,
    pub origin: String,
    pub no_tls_verify: bool,
}

/// One hub's backups to delete at `due` (RFC 3339): a bucket lifecycle rule backs the
/// service's own sweep up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub prefix: String,
    pub due: String,
}

/// What deleting a bucket came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketDeletion {
    Deleted,
    /// Already gone.
    Missing,
    /// Still holds objects (other hubs' retained backups): kept.
    NotEmpty,
}

/// Everything the service asks of the provider.
///
/// Futures are `Send` so operations can run on their own tasks: the service detaches
/// them from the HTTP connection, so a client that hangs up never cancels a half-done
/// provisioning step.
pub trait Provisioner: Send + Sync + 'static {
    /// The S3 endpoint hubs are told to use (`r2_endpoint`).
    fn r2_endpoint(&self) -> &str;

    /// Checks at start-up that the provider can be used (credentials, zone). The
    /// service starts either way, since the provider may be down for a while; the
    /// sweep logs what is wrong.
    fn check(&self) -> impl Future<Output = Result<(), ProvisionError>> + Send {
        async { Ok(()) }
    }

    /// Ensures a remotely managed tunnel named `name` exists (adopting a live one of
    /// that name: tunnel creation is not idempotent at Cloudflare) and returns its id
    /// and token.
    fn ensure_tunnel(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Tunnel, ProvisionError>> + Send;

    /// Sets the tunnel's ingress: `hostname → origin`, then a catch-all 404.
    fn set_ingress(
        &self,
        tunnel_id: &str,
        ingress: &Ingress,
    ) -> impl Future<Output = Result<(), ProvisionError>> + Send;

    /// Routes `hostname` to the tunnel: a proxied CNAME to `<tunnel_id>.cfargotunnel.com`,
    /// created, or updated when it is this service's (its comment names `owner`). A
    /// record this service did not make is never touched: [`ProvisionError::Conflict`].
    /// Returns the DNS record's id.
    fn route_hostname(
        &self,
        hostname: &str,
        tunnel_id: &str,
        owner: &str,
    ) -> impl Future<Output = Result<String, ProvisionError>> + Send;

    /// Ensures the bucket exists ("already exists and is ours" is success) with its
    /// lifecycle rules: abort incomplete multipart uploads after a day, and a rule per
    /// pending deletion.
    fn ensure_bucket(
        &self,
        bucket: &str,
        expiries: &[Expiry],
    ) -> impl Future<Output = Result<(), ProvisionError>> + Send;

    /// Rewrites the bucket's lifecycle rules (as [`Provisioner::ensure_bucket`] writes
    /// them) when the pending deletions changed.
    fn set_expiries(
        &self,
        bucket: &str,
        expiries: &[Expiry],
    ) -> impl Future<Output = Result<(), ProvisionError>> + Send;

    /// Mints S3 credentials for `bucket` only, named `name`. With `maybe_exists` (an
    /// earlier attempt's answer may have been lost), a key of that name is adopted
    /// (Cloudflare: rolled, since a token's value is shown only once) rather than
    /// duplicated.
    fn mint_key(
        &self,
        name: &str,
        bucket: &str,
        maybe_exists: bool,
    ) -> impl Future<Output = Result<R2Key, ProvisionError>> + Send;

    /// Replaces the key `key_id` with new credentials for the same bucket; the old
    /// secret stops working.
    fn roll_key(
        &self,
        key_id: &str,
        bucket: &str,
    ) -> impl Future<Output = Result<R2Key, ProvisionError>> + Send;

    fn revoke_key(&self, key_id: &str) -> impl Future<Output = Result<(), ProvisionError>> + Send;

    /// Drops the tunnel's edge connections, which otherwise block deleting it for
    /// minutes after the connector stopped.
    fn delete_connections(
        &self,
        tunnel_id: &str,
    ) -> impl Future<Output = Result<(), ProvisionError>> + Send;

    fn delete_tunnel(
        &self,
        tunnel_id: &str,
    ) -> impl Future<Output = Result<(), ProvisionError>> + Send;

    fn delete_dns_record(
        &self,
        record_id: &str,
    ) -> impl Future<Output = Result<(), ProvisionError>> + Send;

    /// Deletes every object under `prefix` (one hub's backups) now, through S3 with
    /// credentials the service holds for that purpose.
    fn delete_prefix(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<(), ProvisionError>> + Send;

    /// Deletes the bucket if it is empty.
    fn delete_bucket(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<BucketDeletion, ProvisionError>> + Send;

    /// Every tunnel's status as the provider sees it, as `(tunnel_id, status)`
    /// (`healthy`, `degraded`, `down`, `inactive`); `None` when the provider cannot
    /// tell (the local one has no edge).
    fn tunnel_statuses(
        &self,
    ) -> impl Future<Output = Result<Option<Vec<(String, String)>>, ProvisionError>> + Send;
}
