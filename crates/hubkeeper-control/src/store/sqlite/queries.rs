//! The service's SQL on one SQLite connection: the schema (accounts with one bucket
//! each, hubs with what was provisioned for each, per-zone hostname counters, the
//! teardown log) and one plain synchronous function per `Store` method, run on the
//! blocking pool by `SqliteStore` (`mod.rs`).
//!
//! Uniqueness is enforced here as well as by the per-hub locks: a hub id, a hostname
//! and a bucket name each exist once (primary keys and UNIQUE constraints), and every
//! allocation happens in one IMMEDIATE transaction.

use super::db::DbError;
use crate::names;
use crate::store::{AccountTokenRow, Begin, HubRow, HubState, NewEnrollment, now};
use hubkeeper_proto::Secret;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

pub const COMPONENT: &str = "control";

/// Each entry migrates the schema one version up; never edit a released entry.
pub const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE accounts (
        account_id TEXT PRIMARY KEY,
        bucket TEXT NOT NULL UNIQUE,
        bucket_deleted_at TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE zone_counters (
        zone TEXT PRIMARY KEY,
        last INTEGER NOT NULL
    );
    CREATE TABLE hubs (
        hub_id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts (account_id),
        license_id TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('provisioning', 'active', 'disabling', 'disabled')),
        generation INTEGER NOT NULL,
        subdomain TEXT NOT NULL,
        zone TEXT NOT NULL,
        hostname TEXT NOT NULL UNIQUE,
        tunnel_name TEXT NOT NULL,
        tunnel_id TEXT,
        tunnel_token TEXT,
        dns_record_id TEXT,
        key_name TEXT NOT NULL,
        key_id TEXT,
        access_key_id TEXT,
        secret_access_key TEXT,
        created_at TEXT NOT NULL,
        enrolled_at TEXT,
        disabled_at TEXT,
        delete_bucket INTEGER,
        retention_days INTEGER,
        retain_until TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX hubs_by_account ON hubs (account_id);
    CREATE TABLE teardown_log (
        id INTEGER PRIMARY KEY,
        hub_id TEXT NOT NULL,
        generation INTEGER NOT NULL,
        step TEXT NOT NULL,
        detail TEXT NOT NULL,
        at TEXT NOT NULL
    );
",
    "
    -- The Cloudflare provisioner and retention (spec §11). `origin`/`no_tls_verify`
    -- are the ingress last set at the provider (NULL: not set yet);
    -- `key_attempted_at` marks a token create whose answer may have been lost, so a
    -- resumed enroll looks the token up by name instead of minting a second;
    -- `deletion_due` is when a disabled hub's backups are deleted (NULL: none pending).
    ALTER TABLE hubs ADD COLUMN origin TEXT;
    ALTER TABLE hubs ADD COLUMN no_tls_verify INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE hubs ADD COLUMN key_attempted_at TEXT;
    ALTER TABLE hubs ADD COLUMN deletion_due TEXT;
    ALTER TABLE hubs ADD COLUMN backups_deleted_at TEXT;
    ALTER TABLE hubs ADD COLUMN tunnel_status TEXT;
    ALTER TABLE hubs ADD COLUMN checked_at TEXT;
    CREATE INDEX hubs_by_deletion_due ON hubs (deletion_due) WHERE deletion_due IS NOT NULL;
    CREATE INDEX hubs_by_tunnel ON hubs (tunnel_id) WHERE tunnel_id IS NOT NULL;
    -- Before this version `delete_bucket = 1` deleted the backups during the disable.
    UPDATE hubs SET backups_deleted_at = disabled_at
        WHERE state = 'disabled' AND delete_bucket = 1;
    -- `bucket_ready`: created with its lifecycle rules; `lifecycle_dirty`: the set of
    -- pending deletions changed since the rules were last written.
    ALTER TABLE accounts ADD COLUMN bucket_ready INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE accounts ADD COLUMN lifecycle_dirty INTEGER NOT NULL DEFAULT 0;
",
    "
    -- Account tokens (`hubkeeper-control account add`): only the SHA-256 of a token is
    -- kept, never the token. Revoked rows stay, for `account list`.
    CREATE TABLE account_tokens (
        token_id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        sha256 BLOB NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE INDEX account_tokens_by_account ON account_tokens (account_id);
",
];

const HUB_COLUMNS: &str = "h.hub_id, h.account_id, h.license_id, h.state, h.generation,
    h.subdomain, h.zone, h.hostname, a.bucket, a.bucket_deleted_at IS NOT NULL,
    h.tunnel_name, h.tunnel_id, h.tunnel_token, h.dns_record_id, h.key_name, h.key_id,
    h.access_key_id, h.secret_access_key, h.enrolled_at, h.disabled_at, h.delete_bucket,
    h.retention_days, h.retain_until, h.origin, h.no_tls_verify,
    h.key_attempted_at IS NOT NULL, h.deletion_due, h.backups_deleted_at, h.tunnel_status,
    h.checked_at, a.bucket_ready, a.lifecycle_dirty";

fn hub_from_row(r: &Row<'_>) -> rusqlite::Result<HubRow> {
    let state: String = r.get(3)?;
    Ok(HubRow {
        hub_id: r.get(0)?,
        account_id: r.get(1)?,
        license_id: r.get(2)?,
        state: parse_state(&state)?,
        generation: r.get(4)?,
        subdomain: r.get(5)?,
        zone: r.get(6)?,
        hostname: r.get(7)?,
        bucket: r.get(8)?,
        bucket_deleted: r.get(9)?,
        tunnel_name: r.get(10)?,
        tunnel_id: r.get(11)?,
        tunnel_token: r.get::<_, Option<String>>(12)?.map(Secret::new),
        dns_record_id: r.get(13)?,
        key_name: r.get(14)?,
        key_id: r.get(15)?,
        access_key_id: r.get(16)?,
        secret_access_key: r.get::<_, Option<String>>(17)?.map(Secret::new),
        enrolled_at: r.get(18)?,
        disabled_at: r.get(19)?,
        delete_bucket: r.get(20)?,
        retention_days: r.get(21)?,
        retain_until: r.get(22)?,
        origin: r.get(23)?,
        no_tls_verify: r.get(24)?,
        key_attempted: r.get(25)?,
        deletion_due: r.get(26)?,
        backups_deleted_at: r.get(27)?,
        tunnel_status: r.get(28)?,
        checked_at: r.get(29)?,
        bucket_ready: r.get(30)?,
        lifecycle_dirty: r.get(31)?,
    })
}

fn parse_state(s: &str) -> rusqlite::Result<HubState> {
    HubState::parse(s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            rusqlite::types::Type::Text,
            format!("unknown hub state {s:?}").into(),
        )
    })
}

pub fn get_hub(conn: &Connection, hub_id: &str) -> Result<Option<HubRow>, DbError> {
    let sql = format!(
        "SELECT {HUB_COLUMNS} FROM hubs h JOIN accounts a ON a.account_id = h.account_id
         WHERE h.hub_id = ?1"
    );
    Ok(conn.query_row(&sql, [hub_id], hub_from_row).optional()?)
}

fn must_get(conn: &Connection, hub_id: &str) -> Result<HubRow, DbError> {
    get_hub(conn, hub_id)?.ok_or(DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
}

/// Records the start of an enrollment, or finds the one in progress or done.
///
/// For a new hub, or one that was disabled, this allocates in one transaction: the
/// account's bucket name (kept for good), the hostname (a disabled hub keeps its
/// hostname if its subdomain and zone are unchanged), and a new generation, so the
/// hub gets a fresh tunnel and key.
pub fn begin_enroll(conn: &mut Connection, e: &NewEnrollment) -> Result<Begin, DbError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now();
    let prev = get_hub(&tx, &e.hub_id)?;
    match &prev {
        Some(h) if matches!(h.state, HubState::Provisioning | HubState::Active) => {
            if h.account_id != e.account_id {
                return Ok(Begin::AccountMismatch);
            }
            if h.license_id != e.license_id {
                tx.execute(
                    "UPDATE hubs SET license_id = ?2, updated_at = ?3 WHERE hub_id = ?1",
                    params![e.hub_id, e.license_id, now],
                )?;
            }
            let row = must_get(&tx, &e.hub_id)?;
            tx.commit()?;
            return Ok(Begin::Go(Box::new(row)));
        }
        Some(h) if h.state == HubState::Disabling => return Ok(Begin::DisableIncomplete),
        _ => {}
    }

    ensure_account(&tx, &e.account_id, &now)?;
    if let Some(h) = prev.as_ref().filter(|h| h.deletion_due.is_some()) {
        // Enrolling again before the deadline keeps the backups: the deletion is
        // cancelled with the old row, and the bucket's rules must drop its Date rule.
        tx.execute(
            "UPDATE accounts SET lifecycle_dirty = 1 WHERE account_id = ?1",
            [&h.account_id],
        )?;
    }
    let hostname = match &prev {
        Some(h) if h.subdomain == e.subdomain && h.zone == e.zone => h.hostname.clone(),
        _ => allocate_hostname(&tx, &e.subdomain, &e.zone)?,
    };
    let generation = prev.as_ref().map_or(1, |h| h.generation + 1);
    let created_at = match &prev {
        Some(_) => tx.query_row(
            "SELECT created_at FROM hubs WHERE hub_id = ?1",
            [&e.hub_id],
            |r| r.get::<_, String>(0),
        )?,
        None => now.clone(),
    };
    tx.execute("DELETE FROM hubs WHERE hub_id = ?1", [&e.hub_id])?;
    tx.execute(
        "INSERT INTO hubs (hub_id, account_id, license_id, state, generation, subdomain,
            zone, hostname, tunnel_name, key_name, created_at, updated_at)
         VALUES (?1, ?2, ?3, 'provisioning', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            e.hub_id,
            e.account_id,
            e.license_id,
            generation,
            e.subdomain,
            e.zone,
            hostname,
            names::tunnel(&e.hub_id, generation),
            names::key(&e.hub_id, generation),
            created_at,
            now
        ],
    )?;
    let row = must_get(&tx, &e.hub_id)?;
    tx.commit()?;
    Ok(Begin::Go(Box::new(row)))
}

/// The account's bucket name, allocated on first sight and never changed.
fn ensure_account(conn: &Connection, account_id: &str, now: &str) -> Result<(), DbError> {
    let known: Option<String> = conn
        .query_row(
            "SELECT bucket FROM accounts WHERE account_id = ?1",
            [account_id],
            |r| r.get(0),
        )
        .optional()?;
    if known.is_some() {
        return Ok(());
    }
    for attempt in 0.. {
        let bucket = names::bucket(account_id, attempt);
        let taken: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM accounts WHERE bucket = ?1)",
            [&bucket],
            |r| r.get(0),
        )?;
        if !taken {
            conn.execute(
                "INSERT INTO accounts (account_id, bucket, created_at) VALUES (?1, ?2, ?3)",
                params![account_id, bucket, now],
            )?;
            return Ok(());
        }
    }
    unreachable!("the attempts never end")
}

fn allocate_hostname(conn: &Connection, subdomain: &str, zone: &str) -> Result<String, DbError> {
    loop {
        let n: i64 = conn.query_row(
            "INSERT INTO zone_counters (zone, last) VALUES (?1, 1)
             ON CONFLICT (zone) DO UPDATE SET last = last + 1
             RETURNING last",
            [zone],
            |r| r.get(0),
        )?;
        let candidate = names::hostname(subdomain, n, zone);
        let taken: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM hubs WHERE hostname = ?1)",
            [&candidate],
            |r| r.get(0),
        )?;
        if !taken {
            return Ok(candidate);
        }
    }
}

/// The bucket exists with the rules written from the pending deletions as they were
/// when read (the caller holds the account's lock, so they are still current).
pub fn bucket_ready(conn: &Connection, account_id: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE accounts SET bucket_deleted_at = NULL, bucket_ready = 1, lifecycle_dirty = 0
         WHERE account_id = ?1",
        [account_id],
    )?;
    Ok(())
}

/// The hubs of an account whose backups are to be deleted, as `(hub_id, deletion_due)`.
pub fn pending_deletions(
    conn: &Connection,
    account_id: &str,
) -> Result<Vec<(String, String)>, DbError> {
    let mut st = conn.prepare(
        "SELECT hub_id, deletion_due FROM hubs
         WHERE account_id = ?1 AND deletion_due IS NOT NULL ORDER BY hub_id",
    )?;
    let rows = st
        .query_map([account_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Accounts whose bucket rules are out of date, as `(account_id, bucket)`.
pub fn dirty_lifecycles(conn: &Connection) -> Result<Vec<(String, String)>, DbError> {
    let mut st = conn.prepare(
        "SELECT account_id, bucket FROM accounts
         WHERE lifecycle_dirty = 1 AND bucket_deleted_at IS NULL ORDER BY account_id",
    )?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Disabled hubs whose deletion is due at `now`, oldest deadline first.
pub fn due_deletions(conn: &Connection, now: &str) -> Result<Vec<HubRow>, DbError> {
    let sql = format!(
        "SELECT {HUB_COLUMNS} FROM hubs h JOIN accounts a ON a.account_id = h.account_id
         WHERE h.state = 'disabled' AND h.deletion_due IS NOT NULL AND h.deletion_due <= ?1
         ORDER BY h.deletion_due"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st
        .query_map([now], hub_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The hub's backups are gone: no deletion pending, and the account's rules must drop
/// its Date rule.
pub fn backups_deleted(conn: &mut Connection, hub_id: &str) -> Result<(), DbError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now();
    tx.execute(
        "UPDATE hubs SET deletion_due = NULL, backups_deleted_at = ?2, updated_at = ?2
         WHERE hub_id = ?1",
        params![hub_id, now],
    )?;
    tx.execute(
        "UPDATE accounts SET lifecycle_dirty = 1
         WHERE account_id = (SELECT account_id FROM hubs WHERE hub_id = ?1)",
        [hub_id],
    )?;
    tx.commit()?;
    Ok(())
}

pub fn set_ingress(
    conn: &Connection,
    hub_id: &str,
    origin: &str,
    no_tls_verify: bool,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE hubs SET origin = ?2, no_tls_verify = ?3, updated_at = ?4 WHERE hub_id = ?1",
        params![hub_id, origin, no_tls_verify, now()],
    )?;
    Ok(())
}

pub fn key_attempted(conn: &Connection, hub_id: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE hubs SET key_attempted_at = ?2, updated_at = ?2 WHERE hub_id = ?1",
        params![hub_id, now()],
    )?;
    Ok(())
}

/// Every hub with a tunnel gets the status its tunnel has in `statuses`, or NULL when
/// the provider does not list it; all get `checked_at`.
pub fn set_tunnel_statuses(
    conn: &mut Connection,
    statuses: &[(String, String)],
    checked_at: &str,
) -> Result<(), DbError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "UPDATE hubs SET tunnel_status = NULL, checked_at = ?1 WHERE tunnel_id IS NOT NULL",
        [checked_at],
    )?;
    {
        let mut st = tx.prepare("UPDATE hubs SET tunnel_status = ?2 WHERE tunnel_id = ?1")?;
        for (id, status) in statuses {
            st.execute(params![id, status])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub fn bucket_deleted(conn: &Connection, account_id: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE accounts SET bucket_deleted_at = ?2 WHERE account_id = ?1",
        params![account_id, now()],
    )?;
    Ok(())
}

pub fn set_tunnel(
    conn: &Connection,
    hub_id: &str,
    tunnel_id: Option<&str>,
    token: Option<&Secret>,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE hubs SET tunnel_id = ?2, tunnel_token = ?3, updated_at = ?4 WHERE hub_id = ?1",
        params![hub_id, tunnel_id, token.map(Secret::expose), now()],
    )?;
    Ok(())
}

pub fn set_dns_record(
    conn: &Connection,
    hub_id: &str,
    record_id: Option<&str>,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE hubs SET dns_record_id = ?2, updated_at = ?3 WHERE hub_id = ?1",
        params![hub_id, record_id, now()],
    )?;
    Ok(())
}

/// Records the hub's current key (or, with `None`, that it has none).
pub fn set_key(
    conn: &Connection,
    hub_id: &str,
    key: Option<(&str, &str, &Secret)>,
) -> Result<(), DbError> {
    let (id, access, secret) = match key {
        Some((id, access, secret)) => (Some(id), Some(access), Some(secret.expose())),
        None => (None, None, None),
    };
    conn.execute(
        "UPDATE hubs SET key_id = ?2, access_key_id = ?3, secret_access_key = ?4,
            updated_at = ?5 WHERE hub_id = ?1",
        params![hub_id, id, access, secret, now()],
    )?;
    Ok(())
}

/// `None` if the hub has no record (the caller says which hub is missing).
pub fn set_active(conn: &Connection, hub_id: &str) -> Result<Option<HubRow>, DbError> {
    let now = now();
    conn.execute(
        "UPDATE hubs SET state = 'active', enrolled_at = ?2, updated_at = ?2 WHERE hub_id = ?1",
        params![hub_id, now],
    )?;
    get_hub(conn, hub_id)
}

/// Moves a provisioning or active hub to `disabling` with the disable's parameters
/// (a resumed disable takes the latest ones).
pub fn begin_disable(
    conn: &Connection,
    hub_id: &str,
    delete_bucket: bool,
    retention_days: u32,
) -> Result<Option<HubRow>, DbError> {
    conn.execute(
        "UPDATE hubs SET state = 'disabling', delete_bucket = ?2, retention_days = ?3,
            updated_at = ?4 WHERE hub_id = ?1",
        params![hub_id, delete_bucket, retention_days, now()],
    )?;
    get_hub(conn, hub_id)
}

/// The hub is disabled; with `deletion_due`, its backups are deleted then, and the
/// account's bucket rules must gain the Date rule that backs that up.
pub fn finish_disable(
    conn: &mut Connection,
    hub_id: &str,
    deletion_due: Option<&str>,
) -> Result<(), DbError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now();
    tx.execute(
        "UPDATE hubs SET state = 'disabled', disabled_at = ?2, deletion_due = ?3,
            tunnel_status = NULL, updated_at = ?2 WHERE hub_id = ?1",
        params![hub_id, now, deletion_due],
    )?;
    if deletion_due.is_some() {
        tx.execute(
            "UPDATE accounts SET lifecycle_dirty = 1
             WHERE account_id = (SELECT account_id FROM hubs WHERE hub_id = ?1)",
            [hub_id],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Other hubs whose data may be in the account's bucket: every hub not disabled, and
/// disabled hubs that kept their backups or whose deletion is still pending.
pub fn other_bucket_users(
    conn: &Connection,
    account_id: &str,
    hub_id: &str,
) -> Result<i64, DbError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM hubs WHERE account_id = ?1 AND hub_id != ?2
           AND (state != 'disabled' OR delete_bucket = 0 OR deletion_due IS NOT NULL)",
        params![account_id, hub_id],
        |r| r.get(0),
    )?)
}

pub fn log_step(
    conn: &Connection,
    hub_id: &str,
    generation: i64,
    step: &str,
    detail: &str,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO teardown_log (hub_id, generation, step, detail, at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![hub_id, generation, step, detail, now()],
    )?;
    Ok(())
}

/// The recorded teardown steps of one generation of a hub, oldest first.
pub fn teardown_steps(
    conn: &Connection,
    hub_id: &str,
    generation: i64,
) -> Result<Vec<(String, String)>, DbError> {
    let mut st = conn.prepare(
        "SELECT step, detail FROM teardown_log WHERE hub_id = ?1 AND generation = ?2 ORDER BY id",
    )?;
    let rows = st
        .query_map(params![hub_id, generation], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// `false` if the token id is taken.
pub fn add_account_token(
    conn: &Connection,
    token_id: &str,
    account_id: &str,
    sha256: &[u8; 32],
) -> Result<bool, DbError> {
    let n = conn.execute(
        "INSERT INTO account_tokens (token_id, account_id, sha256, created_at)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (token_id) DO NOTHING",
        params![token_id, account_id, &sha256[..], now()],
    )?;
    Ok(n == 1)
}

const TOKEN_COLUMNS: &str = "token_id, account_id, created_at, revoked_at";

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<AccountTokenRow> {
    Ok(AccountTokenRow {
        token_id: r.get(0)?,
        account_id: r.get(1)?,
        created_at: r.get(2)?,
        revoked_at: r.get(3)?,
    })
}

pub fn account_token(
    conn: &Connection,
    sha256: &[u8; 32],
) -> Result<Option<AccountTokenRow>, DbError> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM account_tokens WHERE sha256 = ?1");
    Ok(conn
        .query_row(&sql, [&sha256[..]], token_from_row)
        .optional()?)
}

pub fn account_tokens(
    conn: &Connection,
    account_id: Option<&str>,
) -> Result<Vec<AccountTokenRow>, DbError> {
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM account_tokens WHERE ?1 IS NULL OR account_id = ?1
         ORDER BY account_id, rowid"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st
        .query_map([account_id], token_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Revokes the account's live tokens, or only `token_id`; returns how many.
pub fn revoke_account_tokens(
    conn: &Connection,
    account_id: &str,
    token_id: Option<&str>,
) -> Result<usize, DbError> {
    Ok(conn.execute(
        "UPDATE account_tokens SET revoked_at = ?3
         WHERE account_id = ?1 AND (?2 IS NULL OR token_id = ?2) AND revoked_at IS NULL",
        params![account_id, token_id, now()],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::deletion_due;
    use crate::store::test_support::{go, req};

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        for m in MIGRATIONS {
            c.execute_batch(m).unwrap();
        }
        c
    }

    #[test]
    fn enrollments_allocate_hostnames_buckets_and_generations() {
        let mut c = conn();
        let a = go(begin_enroll(&mut c, &req("h1", "acct", "acme")).unwrap());
        assert_eq!(a.state, HubState::Provisioning);
        assert_eq!(a.hostname, "acme-1.example.com");
        assert_eq!(a.bucket, "hubkeeper-acct");
        assert_eq!(a.generation, 1);
        assert_eq!(a.tunnel_name, "hubkeeper-h1-1");

        let b = go(begin_enroll(&mut c, &req("h2", "acct", "acme")).unwrap());
        assert_eq!(b.hostname, "acme-2.example.com");
        assert_eq!(b.bucket, a.bucket, "one bucket per account");

        let other = go(begin_enroll(&mut c, &req("h3", "ACCT", "x")).unwrap());
        assert_eq!(
            other.bucket, "hubkeeper-acct-2",
            "sanitized alike, still distinct"
        );

        // The same hub again: the same row, nothing new allocated.
        let again = go(begin_enroll(&mut c, &req("h1", "acct", "other")).unwrap());
        assert_eq!(again.hostname, a.hostname);
        assert_eq!(again.generation, 1);
        assert!(matches!(
            begin_enroll(&mut c, &req("h1", "acct-2", "acme")).unwrap(),
            Begin::AccountMismatch
        ));
    }

    #[test]
    fn a_disabled_hub_comes_back_with_a_new_generation_and_its_hostname() {
        let mut c = conn();
        let a = go(begin_enroll(&mut c, &req("h1", "acct", "acme")).unwrap());
        set_tunnel(&c, "h1", Some("t1"), Some(&Secret::new("tok"))).unwrap();
        set_active(&c, "h1").unwrap();
        bucket_ready(&c, "acct").unwrap();
        begin_disable(&c, "h1", true, 30).unwrap();
        assert!(matches!(
            begin_enroll(&mut c, &req("h1", "acct", "acme")).unwrap(),
            Begin::DisableIncomplete
        ));
        finish_disable(&mut c, "h1", Some(&deletion_due(30))).unwrap();
        assert_eq!(pending_deletions(&c, "acct").unwrap().len(), 1);
        assert_eq!(dirty_lifecycles(&c).unwrap().len(), 1, "a Date rule to add");
        bucket_ready(&c, "acct").unwrap();
        let b = go(begin_enroll(&mut c, &req("h1", "acct", "acme")).unwrap());
        assert_eq!(b.generation, 2);
        assert_eq!(b.hostname, a.hostname);
        assert_eq!(b.tunnel_id, None, "a fresh tunnel is provisioned");
        assert_eq!(b.tunnel_name, "hubkeeper-h1-2");
        assert_eq!(b.deletion_due, None, "enrolling again cancels the deletion");
        assert!(b.lifecycle_dirty, "and its Date rule must go");
        assert!(pending_deletions(&c, "acct").unwrap().is_empty());
    }

    #[test]
    fn deletions_fall_due_and_are_recorded_done() {
        let mut c = conn();
        go(begin_enroll(&mut c, &req("h1", "acct", "a")).unwrap());
        begin_disable(&c, "h1", true, 0).unwrap();
        finish_disable(&mut c, "h1", Some("2026-01-01T00:00:00Z")).unwrap();
        assert!(
            due_deletions(&c, "2025-12-31T23:59:59Z")
                .unwrap()
                .is_empty()
        );
        let due = due_deletions(&c, "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(other_bucket_users(&c, "acct", "other").unwrap(), 1);
        backups_deleted(&mut c, "h1").unwrap();
        assert!(
            due_deletions(&c, "2027-01-01T00:00:00Z")
                .unwrap()
                .is_empty()
        );
        assert_eq!(other_bucket_users(&c, "acct", "other").unwrap(), 0);
        assert!(
            get_hub(&c, "h1")
                .unwrap()
                .unwrap()
                .backups_deleted_at
                .is_some()
        );
    }

    #[test]
    fn tunnel_statuses_follow_the_providers_list() {
        let mut c = conn();
        go(begin_enroll(&mut c, &req("h1", "acct", "a")).unwrap());
        go(begin_enroll(&mut c, &req("h2", "acct", "b")).unwrap());
        set_tunnel(&c, "h1", Some("t1"), Some(&Secret::new("x"))).unwrap();
        set_tunnel(&c, "h2", Some("t2"), Some(&Secret::new("y"))).unwrap();
        set_tunnel_statuses(&mut c, &[("t1".into(), "healthy".into())], "T").unwrap();
        let (h1, h2) = (
            get_hub(&c, "h1").unwrap().unwrap(),
            get_hub(&c, "h2").unwrap().unwrap(),
        );
        assert_eq!(h1.tunnel_status.as_deref(), Some("healthy"));
        assert_eq!(h2.tunnel_status, None, "not listed: no status");
        assert_eq!(h2.checked_at.as_deref(), Some("T"));
    }

    #[test]
    fn account_tokens_are_found_by_hash_listed_and_revoked() {
        let c = Connection::open_in_memory().unwrap();
        for m in MIGRATIONS {
            c.execute_batch(m).unwrap();
        }
        let (h1, h2, h3) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        assert!(add_account_token(&c, "hka_00000001", "a", &h1).unwrap());
        assert!(add_account_token(&c, "hka_00000002", "a", &h2).unwrap());
        assert!(
            !add_account_token(&c, "hka_00000001", "b", &h3).unwrap(),
            "id taken"
        );
        assert!(add_account_token(&c, "hka_00000003", "b", &h3).unwrap());

        let t = account_token(&c, &h2).unwrap().unwrap();
        assert_eq!(
            (t.token_id.as_str(), t.account_id.as_str()),
            ("hka_00000002", "a")
        );
        assert_eq!(t.revoked_at, None);
        assert_eq!(account_token(&c, &[9u8; 32]).unwrap(), None);
        assert_eq!(account_tokens(&c, None).unwrap().len(), 3);
        assert_eq!(account_tokens(&c, Some("a")).unwrap().len(), 2);

        assert_eq!(
            revoke_account_tokens(&c, "a", Some("hka_00000001")).unwrap(),
            1
        );
        assert_eq!(
            revoke_account_tokens(&c, "b", Some("hka_00000002")).unwrap(),
            0,
            "not b's"
        );
        assert_eq!(
            revoke_account_tokens(&c, "a", None).unwrap(),
            1,
            "only the live one"
        );
        assert_eq!(revoke_account_tokens(&c, "a", None).unwrap(), 0);
        assert!(
            account_token(&c, &h2)
                .unwrap()
                .unwrap()
                .revoked_at
                .is_some()
        );
        assert_eq!(account_token(&c, &h3).unwrap().unwrap().revoked_at, None);
    }

    #[test]
    fn bucket_users_count_live_and_retained_hubs() {
        let mut c = conn();
        go(begin_enroll(&mut c, &req("h1", "acct", "a")).unwrap());
        go(begin_enroll(&mut c, &req("h2", "acct", "b")).unwrap());
        assert_eq!(other_bucket_users(&c, "acct", "h1").unwrap(), 1);
        begin_disable(&c, "h2", true, 0).unwrap();
        finish_disable(&mut c, "h2", Some("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(
            other_bucket_users(&c, "acct", "h1").unwrap(),
            1,
            "its backups are not deleted yet"
        );
        backups_deleted(&mut c, "h2").unwrap();
        assert_eq!(other_bucket_users(&c, "acct", "h1").unwrap(), 0);
    }
}
