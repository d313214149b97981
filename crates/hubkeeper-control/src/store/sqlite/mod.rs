//! `SqliteStore`: the `Store` on one SQLite file. `db` opens the file and runs
//! migrations and blocking calls; `queries` holds the schema and the SQL. This module
//! only moves each `Store` call onto the blocking pool and says which database errors
//! mean "unavailable, retry".
//!
//! The schema and its migrations are the ones the service has always used (component
//! [`COMPONENT`]), so an existing database file keeps working.

pub mod db;
mod queries;

pub use db::{Db, DbError};
pub use queries::{COMPONENT, MIGRATIONS};

use super::{AccountTokenRow, Begin, HubRow, NewEnrollment, Store, StoreError};
use crate::provision::{R2Key, Tunnel};
use rusqlite::{Connection, ErrorCode};
use std::path::Path;

/// The service's store in SQLite. Cheap to clone: clones share the one connection.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Db,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings the service's
    /// tables up to date. Blocking: call at start-up.
    pub fn open(path: &Path) -> Result<SqliteStore, DbError> {
        let db = Db::open(path)?;
        db.migrate(COMPONENT, MIGRATIONS)?;
        Ok(SqliteStore { db })
    }

    /// Opens the database at `path` for an admin command, also while the service
    /// runs on it (see [`Db::open_alongside`]), through the same migrations.
    pub fn open_alongside(path: &Path) -> Result<SqliteStore, DbError> {
        let db = Db::open_alongside(path)?;
        db.migrate(COMPONENT, MIGRATIONS)?;
        Ok(SqliteStore { db })
    }

    /// The connection, for a provisioner that keeps its own tables in the same file
    /// (the local one): the file's lock admits one opener, so it cannot open its own.
    pub fn db(&self) -> &Db {
        &self.db
    }

    async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, DbError> + Send + 'static,
    {
        self.db.call(f).await.map_err(store_error)
    }
}

/// Which SQLite failures are "the database cannot serve now" (the caller may retry)
/// rather than a bug or a damaged file. Busy and locked outlast the busy timeout only
/// under another writer; the others are the file or its disk going away or filling up.
fn store_error(e: DbError) -> StoreError {
    let unavailable = match &e {
        DbError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => matches!(
            f.code,
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
        ),
        DbError::Open { .. } => true,
        DbError::Sqlite(_) | DbError::TooOpen { .. } | DbError::InUse { .. } | DbError::Task(_) => {
            false
        }
    };
    // SQLite's own words: `StoreError` says "database" already.
    let detail = match e {
        DbError::Sqlite(inner) => inner.to_string(),
        other => other.to_string(),
    };
    if unavailable {
        StoreError::Unavailable(detail)
    } else {
        StoreError::Failed(detail)
    }
}

impl Store for SqliteStore {
    async fn hub(&self, hub_id: &str) -> Result<Option<HubRow>, StoreError> {
        let h = hub_id.to_owned();
        self.call(move |c| queries::get_hub(c, &h)).await
    }

    async fn begin_enroll(&self, new: &NewEnrollment) -> Result<Begin, StoreError> {
        let new = new.clone();
        self.call(move |c| queries::begin_enroll(c, &new)).await
    }

    async fn bucket_ready(&self, account_id: &str) -> Result<(), StoreError> {
        let a = account_id.to_owned();
        self.call(move |c| queries::bucket_ready(c, &a)).await
    }

    async fn pending_deletions(
        &self,
        account_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let a = account_id.to_owned();
        self.call(move |c| queries::pending_deletions(c, &a)).await
    }

    async fn dirty_lifecycles(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.call(|c| queries::dirty_lifecycles(c)).await
    }

    async fn due_deletions(&self, now: &str) -> Result<Vec<HubRow>, StoreError> {
        let n = now.to_owned();
        self.call(move |c| queries::due_deletions(c, &n)).await
    }

    async fn backups_deleted(&self, hub_id: &str) -> Result<(), StoreError> {
        let h = hub_id.to_owned();
        self.call(move |c| queries::backups_deleted(c, &h)).await
    }

    async fn set_ingress(
        &self,
        hub_id: &str,
        origin: &str,
        no_tls_verify: bool,
    ) -> Result<(), StoreError> {
        let (h, o) = (hub_id.to_owned(), origin.to_owned());
        self.call(move |c| queries::set_ingress(c, &h, &o, no_tls_verify))
            .await
    }

    async fn key_attempted(&self, hub_id: &str) -> Result<(), StoreError> {
        let h = hub_id.to_owned();
        self.call(move |c| queries::key_attempted(c, &h)).await
    }

    async fn set_tunnel_statuses(
        &self,
        statuses: Vec<(String, String)>,
        checked_at: &str,
    ) -> Result<(), StoreError> {
        let at = checked_at.to_owned();
        self.call(move |c| queries::set_tunnel_statuses(c, &statuses, &at))
            .await
    }

    async fn bucket_deleted(&self, account_id: &str) -> Result<(), StoreError> {
        let a = account_id.to_owned();
        self.call(move |c| queries::bucket_deleted(c, &a)).await
    }

    async fn set_tunnel(&self, hub_id: &str, tunnel: Option<&Tunnel>) -> Result<(), StoreError> {
        let (h, t) = (hub_id.to_owned(), tunnel.cloned());
        self.call(move |c| {
            queries::set_tunnel(
                c,
                &h,
                t.as_ref().map(|t| t.id.as_str()),
                t.as_ref().map(|t| &t.token),
            )
        })
        .await
    }

    async fn set_dns_record(
        &self,
        hub_id: &str,
        record_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let (h, r) = (hub_id.to_owned(), record_id.map(str::to_owned));
        self.call(move |c| queries::set_dns_record(c, &h, r.as_deref()))
            .await
    }

    async fn set_key(&self, hub_id: &str, key: Option<&R2Key>) -> Result<(), StoreError> {
        let (h, k) = (hub_id.to_owned(), key.cloned());
        self.call(move |c| {
            let parts = k.as_ref().map(|k| {
                (
                    k.id.as_str(),
                    k.access_key_id.as_str(),
                    &k.secret_access_key,
                )
            });
            queries::set_key(c, &h, parts)
        })
        .await
    }

    async fn finish_enroll(&self, hub_id: &str) -> Result<HubRow, StoreError> {
        let h = hub_id.to_owned();
        self.call(move |c| queries::set_active(c, &h))
            .await?
            .ok_or_else(|| StoreError::MissingHub(hub_id.to_owned()))
    }

    async fn begin_disable(
        &self,
        hub_id: &str,
        delete_bucket: bool,
        retention_days: u32,
    ) -> Result<HubRow, StoreError> {
        let h = hub_id.to_owned();
        self.call(move |c| queries::begin_disable(c, &h, delete_bucket, retention_days))
            .await?
            .ok_or_else(|| StoreError::MissingHub(hub_id.to_owned()))
    }

    async fn finish_disable(
        &self,
        hub_id: &str,
        deletion_due: Option<&str>,
    ) -> Result<(), StoreError> {
        let (h, until) = (hub_id.to_owned(), deletion_due.map(str::to_owned));
        self.call(move |c| queries::finish_disable(c, &h, until.as_deref()))
            .await
    }

    async fn other_bucket_users(&self, account_id: &str, hub_id: &str) -> Result<u64, StoreError> {
        let (a, h) = (account_id.to_owned(), hub_id.to_owned());
        let n = self
            .call(move |c| queries::other_bucket_users(c, &a, &h))
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Failed(format!("a negative count: {n}")))
    }

    async fn log_teardown_step(
        &self,
        hub_id: &str,
        generation: i64,
        step: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let (h, s, d) = (hub_id.to_owned(), step.to_owned(), detail.to_owned());
        self.call(move |c| queries::log_step(c, &h, generation, &s, &d))
            .await
    }

    async fn teardown_steps(
        &self,
        hub_id: &str,
        generation: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let h = hub_id.to_owned();
        self.call(move |c| queries::teardown_steps(c, &h, generation))
            .await
    }

    async fn add_account_token(
        &self,
        token_id: &str,
        account_id: &str,
        sha256: &[u8; 32],
    ) -> Result<bool, StoreError> {
        let (t, a, h) = (token_id.to_owned(), account_id.to_owned(), *sha256);
        self.call(move |c| queries::add_account_token(c, &t, &a, &h))
            .await
    }

    async fn account_token(
        &self,
        sha256: &[u8; 32],
    ) -> Result<Option<AccountTokenRow>, StoreError> {
        let h = *sha256;
        self.call(move |c| queries::account_token(c, &h)).await
    }

    async fn account_tokens(
        &self,
        account_id: Option<&str>,
    ) -> Result<Vec<AccountTokenRow>, StoreError> {
        let a = account_id.map(str::to_owned);
        self.call(move |c| queries::account_tokens(c, a.as_deref()))
            .await
    }

    async fn revoke_account_tokens(
        &self,
        account_id: &str,
        token_id: Option<&str>,
    ) -> Result<u64, StoreError> {
        let (a, t) = (account_id.to_owned(), token_id.map(str::to_owned));
        let n = self
            .call(move |c| queries::revoke_account_tokens(c, &a, t.as_deref()))
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Failed(format!("an impossible count: {n}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{go, req};
    use crate::store::{HubState, deletion_due};
    use hubkeeper_proto::Secret;

    /// A store on a fresh file; the directory lives as long as the store is used.
    fn store() -> (tempfile::TempDir, SqliteStore) {
        let d = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&d.path().join("control.db")).unwrap();
        (d, s)
    }

    fn tunnel(id: &str) -> Tunnel {
        Tunnel {
            id: id.into(),
            token: Secret::new(format!("token-of-{id}")),
        }
    }

    fn key(id: &str) -> R2Key {
        R2Key {
            id: id.into(),
            access_key_id: format!("AK-{id}"),
            secret_access_key: Secret::new(format!("sk-{id}")),
        }
    }

    /// Today's semantics: a hub still provisioning is returned as recorded (what was
    /// provisioned so far, the same generation and hostname; only a changed license id
    /// is taken), so the caller provisions only what is missing.
    #[tokio::test]
    async fn an_enrollment_in_progress_is_resumed_with_what_it_recorded() {
        let (_d, s) = store();
        let first = go(s.begin_enroll(&req("h1", "acct", "acme")).await.unwrap());
        assert_eq!(first.state, HubState::Provisioning);
        assert_eq!(
            (first.generation, first.hostname.as_str()),
            (1, "acme-1.example.com")
        );
        assert_eq!(first.tunnel_id, None);
        s.bucket_ready("acct").await.unwrap();
        s.set_tunnel("h1", Some(&tunnel("t1"))).await.unwrap();
        s.set_dns_record("h1", Some("rec1")).await.unwrap();

        // Interrupted before the key; enrolled again, with another license and
        // subdomain.
        let mut again = req("h1", "acct", "other");
        again.license_id = "lic-2".into();
        let resumed = go(s.begin_enroll(&again).await.unwrap());
        assert_eq!(resumed.state, HubState::Provisioning);
        assert_eq!(resumed.generation, 1);
        assert_eq!(resumed.hostname, first.hostname, "nothing is reallocated");
        assert_eq!(resumed.tunnel_name, first.tunnel_name);
        assert_eq!(resumed.tunnel_id.as_deref(), Some("t1"));
        assert_eq!(
            resumed.tunnel_token.as_ref().map(Secret::expose),
            Some("token-of-t1")
        );
        assert_eq!(resumed.dns_record_id.as_deref(), Some("rec1"));
        assert_eq!(resumed.key_id, None, "the step still to do");
        assert_eq!(resumed.license_id, "lic-2");
        // The resume did not use up a hostname number.
        let other = go(s.begin_enroll(&req("h2", "acct", "acme")).await.unwrap());
        assert_eq!(other.hostname, "acme-2.example.com");

        s.set_key("h1", Some(&key("k1"))).await.unwrap();
        let active = s.finish_enroll("h1").await.unwrap();
        assert_eq!(active.state, HubState::Active);
        assert!(active.enrolled_at.is_some());
        assert_eq!(active.access_key_id.as_deref(), Some("AK-k1"));
        assert_eq!(
            active.secret_access_key.as_ref().map(Secret::expose),
            Some("sk-k1")
        );
        // Active: answered from as it is.
        let done = go(s.begin_enroll(&req("h1", "acct", "acme")).await.unwrap());
        assert_eq!(done.state, HubState::Active);
        assert_eq!(done.key_id.as_deref(), Some("k1"));
        assert!(matches!(
            s.begin_enroll(&req("h1", "acct-2", "acme")).await.unwrap(),
            Begin::AccountMismatch
        ));
    }

    /// Two enrolls of one hub reaching the store together (the service's per-hub lock
    /// normally keeps them apart): one begins it, the other resumes the same record.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_begin_enroll_while_one_is_in_progress_resumes_it() {
        let (_d, s) = store();
        let new = req("h1", "acct", "acme");
        let (a, b) = tokio::join!(s.begin_enroll(&new), s.begin_enroll(&new));
        let (a, b) = (go(a.unwrap()), go(b.unwrap()));
        for r in [&a, &b] {
            assert_eq!(r.state, HubState::Provisioning);
            assert_eq!(r.generation, 1);
        }
        assert_eq!(a.hostname, b.hostname);
        assert_eq!(a.tunnel_name, b.tunnel_name);
        assert_eq!(a.key_name, b.key_name);
        let next = go(s.begin_enroll(&req("h2", "acct", "acme")).await.unwrap());
        assert_eq!(
            next.hostname, "acme-2.example.com",
            "one hostname allocated"
        );
    }

    #[tokio::test]
    async fn a_disable_resumes_logs_its_steps_and_ends_disabled() {
        let (_d, s) = store();
        go(s.begin_enroll(&req("h1", "acct", "acme")).await.unwrap());
        go(s.begin_enroll(&req("h2", "acct", "b")).await.unwrap());
        s.set_tunnel("h1", Some(&tunnel("t1"))).await.unwrap();
        s.set_dns_record("h1", Some("rec1")).await.unwrap();
        s.set_key("h1", Some(&key("k1"))).await.unwrap();
        s.finish_enroll("h1").await.unwrap();

        let d = s.begin_disable("h1", false, 30).await.unwrap();
        assert_eq!(d.state, HubState::Disabling);
        assert_eq!((d.delete_bucket, d.retention_days), (Some(false), Some(30)));
        assert!(matches!(
            s.begin_enroll(&req("h1", "acct", "acme")).await.unwrap(),
            Begin::DisableIncomplete
        ));
        s.log_teardown_step("h1", 1, "connections_deleted", "tunnel t1")
            .await
            .unwrap();
        s.set_tunnel("h1", None).await.unwrap();
        s.log_teardown_step("h1", 1, "tunnel_deleted", "tunnel t1")
            .await
            .unwrap();

        // Interrupted; disabled again with other parameters: the latest ones count,
        // and what was torn down stays torn down.
        let d = s.begin_disable("h1", true, 7).await.unwrap();
        assert_eq!((d.delete_bucket, d.retention_days), (Some(true), Some(7)));
        assert_eq!((d.tunnel_id, d.tunnel_token.is_some()), (None, false));
        assert_eq!(d.dns_record_id.as_deref(), Some("rec1"));
        s.set_dns_record("h1", None).await.unwrap();
        s.log_teardown_step("h1", 1, "dns_record_deleted", "rec1")
            .await
            .unwrap();
        s.set_key("h1", None).await.unwrap();
        s.log_teardown_step("h1", 1, "key_revoked", "key k1")
            .await
            .unwrap();
        assert_eq!(s.other_bucket_users("acct", "h1").await.unwrap(), 1);
        let until = deletion_due(7);
        s.finish_disable("h1", Some(&until)).await.unwrap();

        let h = s.hub("h1").await.unwrap().unwrap();
        assert_eq!(h.state, HubState::Disabled);
        assert!(h.disabled_at.is_some());
        assert_eq!(h.deletion_due.as_deref(), Some(until.as_str()));
        assert_eq!(
            (h.tunnel_id, h.dns_record_id, h.key_id, h.access_key_id),
            (None, None, None, None)
        );
        assert!(h.secret_access_key.is_none());
        let steps = s.teardown_steps("h1", 1).await.unwrap();
        let names: Vec<&str> = steps.iter().map(|(step, _)| step.as_str()).collect();
        assert_eq!(
            names,
            [
                "connections_deleted",
                "tunnel_deleted",
                "dns_record_deleted",
                "key_revoked"
            ]
        );
        assert_eq!(steps[2].1, "rec1");
        assert!(s.teardown_steps("h1", 2).await.unwrap().is_empty());
        // h1's backups await their deletion: it still counts for h2's bucket.
        assert_eq!(s.other_bucket_users("acct", "h2").await.unwrap(), 1);
        s.backups_deleted("h1").await.unwrap();
        assert_eq!(s.other_bucket_users("acct", "h2").await.unwrap(), 0);

        s.bucket_deleted("acct").await.unwrap();
        assert!(s.hub("h2").await.unwrap().unwrap().bucket_deleted);
        s.bucket_ready("acct").await.unwrap();
        assert!(!s.hub("h2").await.unwrap().unwrap().bucket_deleted);

        // Back again: the next generation, and the old one's log is kept apart.
        let back = go(s.begin_enroll(&req("h1", "acct", "acme")).await.unwrap());
        assert_eq!((back.generation, back.state), (2, HubState::Provisioning));
        assert_eq!(s.teardown_steps("h1", 1).await.unwrap().len(), 4);
        assert!(s.teardown_steps("h1", 2).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn updates_of_an_unknown_hub_say_which() {
        let (_d, s) = store();
        assert!(s.hub("nobody").await.unwrap().is_none());
        let e = s.finish_enroll("nobody").await.unwrap_err();
        assert!(
            matches!(&e, StoreError::MissingHub(h) if h == "nobody"),
            "{e}"
        );
        let e = s.begin_disable("nobody", false, 1).await.unwrap_err();
        assert!(matches!(e, StoreError::MissingHub(_)), "{e}");
    }

    /// The file written by one run is read by the next: same tables, same component
    /// and version in `schema_versions`.
    #[tokio::test]
    async fn an_existing_database_file_keeps_working() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("control.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            go(s.begin_enroll(&req("h1", "acct", "acme")).await.unwrap());
            s.set_tunnel("h1", Some(&tunnel("t1"))).await.unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let h = s.hub("h1").await.unwrap().unwrap();
        assert_eq!(h.tunnel_id.as_deref(), Some("t1"));
        let version: i64 = s
            .db()
            .call(|c| {
                Ok(c.query_row(
                    "SELECT version FROM schema_versions WHERE component = ?1",
                    [COMPONENT],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        assert_eq!(COMPONENT, "control");
    }

    #[test]
    fn busy_and_locked_are_unavailable_the_rest_failed() {
        let sqlite = |code| {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        for code in [rusqlite::ffi::SQLITE_BUSY, rusqlite::ffi::SQLITE_LOCKED] {
            assert!(matches!(
                store_error(sqlite(code)),
                StoreError::Unavailable(_)
            ));
        }
        for e in [
            sqlite(rusqlite::ffi::SQLITE_CONSTRAINT),
            sqlite(rusqlite::ffi::SQLITE_CORRUPT),
            DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows),
            DbError::Task("panicked".into()),
        ] {
            assert!(matches!(store_error(e), StoreError::Failed(_)));
        }
    }

    /// A real writer holding the file past the busy timeout: the store says
    /// "unavailable", and nothing of the call was written.
    #[tokio::test]
    async fn a_database_held_by_another_writer_is_unavailable() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("control.db");
        let s = SqliteStore::open(&path).unwrap();
        // Not through `Db`: its lock file would refuse a second opener, which is the
        // point of it; this stands for whatever else holds the file.
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let e = s
            .begin_enroll(&req("h1", "acct", "acme"))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
        other.execute_batch("ROLLBACK").unwrap();
        assert!(s.hub("h1").await.unwrap().is_none());
    }
}
