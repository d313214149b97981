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
use crate::store::{Begin, HubRow, HubState, NewEnrollment, now};
use hubkeeper_proto::Secret;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

pub const COMPONENT: &str = "control";

/// Each entry migrates the schema one version up; never edit a released entry.
pub const MIGRATIONS: &[&str] = &["
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
"];

const HUB_COLUMNS: &str = "h.hub_id, h.account_id, h.license_id, h.state, h.generation,
    h.subdomain, h.zone, h.hostname, a.bucket, a.bucket_deleted_at IS NOT NULL,
    h.tunnel_name, h.tunnel_id, h.tunnel_token, h.dns_record_id, h.key_name, h.key_id,
    h.access_key_id, h.secret_access_key, h.enrolled_at, h.disabled_at, h.delete_bucket,
    h.retention_days, h.retain_until";

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

pub fn bucket_present(conn: &Connection, account_id: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE accounts SET bucket_deleted_at = NULL WHERE account_id = ?1",
        [account_id],
    )?;
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

pub fn finish_disable(
    conn: &Connection,
    hub_id: &str,
    retain_until: Option<&str>,
) -> Result<(), DbError> {
    let now = now();
    conn.execute(
        "UPDATE hubs SET state = 'disabled', disabled_at = ?2, retain_until = ?3,
            updated_at = ?2 WHERE hub_id = ?1",
        params![hub_id, now, retain_until],
    )?;
    Ok(())
}

/// Other hubs whose data may be in the account's bucket: every hub not disabled, and
/// disabled hubs that kept their backups.
pub fn other_bucket_users(
    conn: &Connection,
    account_id: &str,
    hub_id: &str,
) -> Result<i64, DbError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM hubs WHERE account_id = ?1 AND hub_id != ?2
           AND (state != 'disabled' OR delete_bucket = 0)",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::retain_until;
    use crate::store::test_support::{go, req};

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
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
        begin_disable(&c, "h1", false, 30).unwrap();
        assert!(matches!(
            begin_enroll(&mut c, &req("h1", "acct", "acme")).unwrap(),
            Begin::DisableIncomplete
        ));
        finish_disable(&c, "h1", Some(&retain_until(30))).unwrap();
        let b = go(begin_enroll(&mut c, &req("h1", "acct", "acme")).unwrap());
        assert_eq!(b.generation, 2);
        assert_eq!(b.hostname, a.hostname);
        assert_eq!(b.tunnel_id, None, "a fresh tunnel is provisioned");
        assert_eq!(b.tunnel_name, "hubkeeper-h1-2");
        assert_eq!(b.retain_until, None);
    }

    #[test]
    fn bucket_users_count_live_and_retained_hubs() {
        let mut c = conn();
        go(begin_enroll(&mut c, &req("h1", "acct", "a")).unwrap());
        go(begin_enroll(&mut c, &req("h2", "acct", "b")).unwrap());
        assert_eq!(other_bucket_users(&c, "acct", "h1").unwrap(), 1);
        begin_disable(&c, "h2", true, 0).unwrap();
        finish_disable(&c, "h2", None).unwrap();
        assert_eq!(other_bucket_users(&c, "acct", "h1").unwrap(), 0);
    }
}
