//! The SQLite file: opening it (WAL, private file mode, one service per file, admin
//! commands alongside it),
//! per-component schema migrations, and running blocking queries off the async workers.
//! The service's store (`queries`) and the local provisioner's private tables share
//! this one connection, each migrated under its own component name.

use nix::fcntl::{Flock, FlockArg};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open the database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the database {} is readable by other users (mode {mode:04o}) and holds tunnel and R2 secrets: chmod 600 it",
        path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error(
        "the database {} is in use by another control service (lock file {}): stop it first, or set a different database",
        path.display(),
        lock.display()
    )]
    InUse { path: PathBuf, lock: PathBuf },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("a database task failed: {0}")]
    Task(String),
}

/// A shared handle to the one connection. Queries run on tokio's blocking pool, one
/// at a time: the service's per-hub locks already serialize the work that matters, a
/// single connection keeps transactions simple, and a control service's load is a few
/// requests per hub per day.
#[derive(Debug, Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    /// The service holds it for the life of the process: a second service on the
    /// same file would defeat the in-process per-hub serialization. `None` for an
    /// admin command, which opens alongside the service (see [`Db::open_alongside`]).
    _lock: Option<Arc<Flock<File>>>,
}

impl Db {
    /// Opens (creating if needed) the database at `path` for the service, refusing a
    /// file another service has open. Blocking: call at start-up.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        Self::open_with(path, true)
    }

    /// Opens (creating if needed) the database at `path` for an admin command, also
    /// while a service has it: the service's lock keeps out a second service, whose
    /// per-hub locks would race this one's, but an admin command's few short writes
    /// touch no hub and are serialized by SQLite's own locking and busy timeout.
    pub fn open_alongside(path: &Path) -> Result<Db, DbError> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, exclusive: bool) -> Result<Db, DbError> {
        let open_err = |source| DbError::Open {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let lock = if exclusive {
            Some(Arc::new(lock_exclusively(path)?))
        } else {
            None
        };
        // Created 0600 before SQLite touches it; SQLite gives its -wal and -shm files
        // the database file's mode.
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(open_err)?;
        let mode = file.metadata().map_err(open_err)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(DbError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
        drop(file);

        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let journal: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !journal.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                journal,
                "SQLite refused WAL mode; continuing with this journal mode"
            );
        }
        // FULL: an answer is sent only after what it reports is on disk.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_versions (
                component TEXT PRIMARY KEY,
                version INTEGER NOT NULL
            );",
        )?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            _lock: lock,
        })
    }

    /// Brings `component`'s tables up to date: runs the steps after the recorded
    /// version, all in one transaction. `steps[i]` migrates version `i` to `i + 1`.
    /// Blocking: call at start-up.
    pub fn migrate(&self, component: &str, steps: &[&str]) -> Result<(), DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx
            .query_row(
                "SELECT version FROM schema_versions WHERE component = ?1",
                [component],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let current = usize::try_from(current).unwrap_or(usize::MAX);
        if current > steps.len() {
            return Err(DbError::Task(format!(
                "the database's {component} schema is version {current}, newer than this build knows ({}): use a newer hubkeeper",
                steps.len()
            )));
        }
        for step in &steps[current..] {
            tx.execute_batch(step)?;
        }
        tx.execute(
            "INSERT INTO schema_versions (component, version) VALUES (?1, ?2)
             ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            rusqlite::params![component, steps.len() as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<R, F>(&self, f: F) -> Result<R, DbError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, DbError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic in another query cannot leave the connection mid-transaction:
        // rusqlite rolls back a dropped transaction.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Takes the sidecar lock file `<database>.lock`, or says who holds it.
fn lock_exclusively(path: &Path) -> Result<Flock<File>, DbError> {
    let lock_path = lock_path(path);
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|source| DbError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|_| DbError::InUse {
        path: path.to_path_buf(),
        lock: lock_path,
    })
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    db.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_once_and_in_order() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("c.db");
        let steps = [
            "CREATE TABLE t (a INTEGER);",
            "ALTER TABLE t ADD COLUMN b TEXT;",
        ];
        {
            let db = Db::open(&path).unwrap();
            db.migrate("x", &steps[..1]).unwrap();
            db.migrate("x", &steps).unwrap();
            db.migrate("x", &steps).unwrap();
            db.lock()
                .execute("INSERT INTO t (a, b) VALUES (1, 'b')", [])
                .unwrap();
        }
        let db = Db::open(&path).unwrap();
        let err = db.migrate("x", &steps[..1]).unwrap_err().to_string();
        assert!(err.contains("newer than this build"), "{err}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_second_opener_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("c.db");
        let _first = Db::open(&path).unwrap();
        let err = Db::open(&path).unwrap_err().to_string();
        assert!(err.contains("in use by another control service"), "{err}");
    }

    #[test]
    fn an_admin_command_opens_alongside_the_service_and_does_not_lock_it_out() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("c.db");
        let admin = Db::open_alongside(&path).unwrap();
        let service = Db::open(&path).unwrap();
        let second_admin = Db::open_alongside(&path).unwrap();
        admin
            .migrate("x", &["CREATE TABLE t (a INTEGER);"])
            .unwrap();
        second_admin
            .lock()
            .execute("INSERT INTO t (a) VALUES (1)", [])
            .unwrap();
        let n: i64 = service
            .lock()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "the service sees the admin command's write");
        assert!(
            Db::open(&path).is_err(),
            "a second service is still refused"
        );
    }

    #[test]
    fn a_world_readable_database_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("c.db");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Db::open(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
