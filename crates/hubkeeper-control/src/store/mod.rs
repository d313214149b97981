//! What the control service keeps about hubs, as one trait: `Store` says, in the
//! service's words, which records it reads and writes (an enrollment begun, each
//! provisioned resource, a disable begun and finished, the teardown log), and the row
//! types here are what it gets back. `sqlite` is the one implementation so far.
//!
//! The trait is shaped for more than one database behind it (PostgreSQL with several
//! replicas comes later): each method is one short unit of work that commits before it
//! returns, so no transaction is ever open across a provider call, and the service
//! records each provisioned resource with its own call before it starts the next step.

pub mod sqlite;

use crate::provision::{R2Key, Tunnel};
use hubkeeper_proto::Secret;
use hubkeeper_proto::control::MAX_RETENTION_DAYS;
use hubkeeper_proto::time::rfc3339;
use std::future::Future;
use std::time::{Duration, SystemTime};

pub use sqlite::SqliteStore;

/// Why the store could not answer. Messages never carry a token or key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot serve right now (busy past its timeout, locked, cannot be
    /// opened or read, out of space): the call's writes were rolled back, and the
    /// same call may succeed later. Kept apart from `Failed` because only this one is
    /// worth telling the caller to retry.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// An update named a hub that has no record. Every update follows a
    /// `begin_enroll` or a read under the hub's lock, so this is a bug or a record
    /// removed behind the service's back.
    #[error("no record of hub \"{0}\"")]
    MissingHub(String),
    /// Anything else the database reported: a bug, a damaged database, a value this
    /// build cannot read.
    #[error("database error: {0}")]
    Failed(String),
}

/// Everything the service (`service.rs`, `teardown.rs`) asks of its storage.
///
/// Futures are `Send` because service operations run on their own tasks (see
/// `api::routes::detached`). Each method commits before it returns: a crash between
/// two calls leaves what the first recorded, which is what lets an interrupted enroll
/// or disable resume.
pub trait Store: Send + Sync + 'static {
    /// The hub's record, or `None` if it never enrolled.
    fn hub(&self, hub_id: &str) -> impl Future<Output = Result<Option<HubRow>, StoreError>> + Send;

    /// Records the start of an enrollment, or finds the one in progress or done.
    ///
    /// A hub that is provisioning or active under the same account is returned as it
    /// is (its license id updated if it changed): the caller resumes or answers from
    /// it, and nothing new is allocated. A hub under another account, or one whose
    /// disable is half done, is refused. A new or disabled hub gets, atomically, its
    /// account's bucket name (kept for good), a hostname (a disabled hub keeps its
    /// own if subdomain and zone are unchanged) and the next generation, so it gets a
    /// fresh tunnel and key.
    fn begin_enroll(
        &self,
        new: &NewEnrollment,
    ) -> impl Future<Output = Result<Begin, StoreError>> + Send;

    /// The account's bucket exists (again), with its lifecycle rules written from the
    /// pending deletions read under the same account lock.
    fn bucket_ready(&self, account_id: &str)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The account's hubs whose backups are to be deleted, as `(hub_id, deletion_due)`:
    /// what the bucket's Date rules are written from.
    fn pending_deletions(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;

    /// Accounts whose bucket rules are out of date, as `(account_id, bucket)`.
    fn dirty_lifecycles(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;

    /// Disabled hubs whose backups are due for deletion at `now` (RFC 3339).
    fn due_deletions(
        &self,
        now: &str,
    ) -> impl Future<Output = Result<Vec<HubRow>, StoreError>> + Send;

    /// The hub's backups were deleted: nothing pending any more.
    fn backups_deleted(&self, hub_id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The tunnel's ingress at the provider now routes to `origin`.
    fn set_ingress(
        &self,
        hub_id: &str,
        origin: &str,
        no_tls_verify: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A key is about to be minted: if its answer is lost, the next attempt must look
    /// for it by name rather than mint a second one.
    fn key_attempted(&self, hub_id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// What the provider says of every tunnel it lists, as `(tunnel_id, status)`, looked
    /// at `checked_at`; hubs whose tunnel is not listed get no status.
    fn set_tunnel_statuses(
        &self,
        statuses: Vec<(String, String)>,
        checked_at: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The account's bucket was deleted (or found gone).
    fn bucket_deleted(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The hub's tunnel is now `tunnel`, or, with `None`, it has none.
    fn set_tunnel(
        &self,
        hub_id: &str,
        tunnel: Option<&Tunnel>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The hub's DNS record is now `record_id`, or, with `None`, it has none.
    fn set_dns_record(
        &self,
        hub_id: &str,
        record_id: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The hub's current key (after a mint or a roll), or, with `None`, it has none.
    fn set_key(
        &self,
        hub_id: &str,
        key: Option<&R2Key>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Everything is provisioned: the hub is active. Returns the final record.
    fn finish_enroll(
        &self,
        hub_id: &str,
    ) -> impl Future<Output = Result<HubRow, StoreError>> + Send;

    /// Moves a hub to `disabling` with the disable's parameters (a resumed disable
    /// takes the latest ones). Returns the record to tear down from.
    fn begin_disable(
        &self,
        hub_id: &str,
        delete_bucket: bool,
        retention_days: u32,
    ) -> impl Future<Output = Result<HubRow, StoreError>> + Send;

    /// The teardown is done: the hub is disabled and, with `deletion_due` (RFC 3339),
    /// its backups are deleted at that time.
    fn finish_disable(
        &self,
        hub_id: &str,
        deletion_due: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// How many other hubs may have data in the account's bucket: every hub not
    /// disabled, and disabled hubs that kept their backups or await their deletion.
    fn other_bucket_users(
        &self,
        account_id: &str,
        hub_id: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Appends one done teardown step of the hub's `generation` to its log.
    fn log_teardown_step(
        &self,
        hub_id: &str,
        generation: i64,
        step: &str,
        detail: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The logged teardown steps of one generation of a hub, oldest first, as
    /// `(step, detail)`.
    fn teardown_steps(
        &self,
        hub_id: &str,
        generation: i64,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;

    /// Records a new token of `account_id` by its public id and the SHA-256 of its
    /// value (never the value). `false` if the id is taken: the caller draws another.
    fn add_account_token(
        &self,
        token_id: &str,
        account_id: &str,
        sha256: &[u8; 32],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The token whose value hashes to `sha256`, live or revoked.
    fn account_token(
        &self,
        sha256: &[u8; 32],
    ) -> impl Future<Output = Result<Option<AccountTokenRow>, StoreError>> + Send;

    /// Every account token, or one account's, by account and then age.
    fn account_tokens(
        &self,
        account_id: Option<&str>,
    ) -> impl Future<Output = Result<Vec<AccountTokenRow>, StoreError>> + Send;

    /// Revokes the account's live tokens, or only `token_id`; returns how many were
    /// live. A request with a revoked token is refused from then on.
    fn revoke_account_tokens(
        &self,
        account_id: &str,
        token_id: Option<&str>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubState {
    /// Enrollment started; some resources may exist. A new enroll resumes it.
    Provisioning,
    Active,
    /// Disable started; a new disable resumes the teardown.
    Disabling,
    Disabled,
}

impl HubState {
    /// The stored and reported name.
    pub fn as_str(self) -> &'static str {
        match self {
            HubState::Provisioning => "provisioning",
            HubState::Active => "active",
            HubState::Disabling => "disabling",
            HubState::Disabled => "disabled",
        }
    }

    /// The inverse of [`HubState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "provisioning" => HubState::Provisioning,
            "active" => HubState::Active,
            "disabling" => HubState::Disabling,
            "disabled" => HubState::Disabled,
            _ => return None,
        })
    }
}

/// One hub as recorded. Resource columns are `None` until provisioned, and again
/// after they are torn down.
#[derive(Debug, Clone)]
pub struct HubRow {
    pub hub_id: String,
    pub account_id: String,
    pub license_id: String,
    pub state: HubState,
    pub generation: i64,
    pub subdomain: String,
    pub zone: String,
    pub hostname: String,
    pub bucket: String,
    pub bucket_deleted: bool,
    pub tunnel_name: String,
    pub tunnel_id: Option<String>,
    pub tunnel_token: Option<Secret>,
    pub dns_record_id: Option<String>,
    pub key_name: String,
    pub key_id: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub enrolled_at: Option<String>,
    pub disabled_at: Option<String>,
    pub delete_bucket: Option<bool>,
    pub retention_days: Option<u32>,
    /// Written by versions before retention was enforced; read only for old rows.
    pub retain_until: Option<String>,
    /// The ingress last set at the provider; `None` until set.
    pub origin: Option<String>,
    pub no_tls_verify: bool,
    /// A key create was sent and its answer may have been lost.
    pub key_attempted: bool,
    /// When the hub's backups are deleted; `None` when no deletion is pending.
    pub deletion_due: Option<String>,
    pub backups_deleted_at: Option<String>,
    /// The tunnel's status as the provider last reported it.
    pub tunnel_status: Option<String>,
    pub checked_at: Option<String>,
    /// The account's bucket exists with its lifecycle rules.
    pub bucket_ready: bool,
    /// The account's pending deletions changed since its rules were written.
    pub lifecycle_dirty: bool,
}

/// What an enroll asks for, checked and sanitized.
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    pub hub_id: String,
    pub account_id: String,
    pub license_id: String,
    pub subdomain: String,
    pub zone: String,
}

/// What [`Store::begin_enroll`] found.
#[derive(Debug)]
pub enum Begin {
    /// Provisioning (to resume) or Active (to answer from).
    Go(Box<HubRow>),
    /// The hub is enrolled under another account.
    AccountMismatch,
    /// A disable is half done.
    DisableIncomplete,
}

/// One account token as kept: never its value, nor (outside the store) its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTokenRow {
    /// `hka_` and 8 hex digits, the start of the token (public).
    pub token_id: String,
    pub account_id: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// RFC 3339 UTC, seconds precision: how every timestamp is stored, as text in one
/// fixed format so that comparing the text compares the times.
pub fn now() -> String {
    rfc3339(SystemTime::now())
}

/// `retention_days` from now, as RFC 3339: when a disabled hub's backups are deleted.
/// Capped at the most a request may ask for, so a row written before that limit existed
/// cannot overflow the calendar mid-teardown.
pub fn deletion_due(retention_days: u32) -> String {
    let days = retention_days.min(MAX_RETENTION_DAYS);
    rfc3339(SystemTime::now() + Duration::from_secs(u64::from(days) * 86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletion_due_caps_what_an_old_row_asks_for() {
        // Rows written before the limit existed may hold u32::MAX days.
        assert_eq!(deletion_due(u32::MAX), deletion_due(MAX_RETENTION_DAYS));
    }
}

/// Requests and answers the store's tests (each backend's) share.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{Begin, HubRow, NewEnrollment};

    pub fn req(hub: &str, account: &str, sub: &str) -> NewEnrollment {
        NewEnrollment {
            hub_id: hub.into(),
            account_id: account.into(),
            license_id: "lic".into(),
            subdomain: sub.into(),
            zone: "example.com".into(),
        }
    }

    pub fn go(b: Begin) -> HubRow {
        match b {
            Begin::Go(r) => *r,
            other => panic!("{other:?}"),
        }
    }
}
