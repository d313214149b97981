//! The secrets store: the one owner of `secrets_dir` (spec §4).
//!
//! The directory is `0700` and owned by the daemon's user; every file is `0600`, written
//! atomically (temp file in the same directory, fsync, rename, fsync of the directory),
//! so a crash at any instant leaves the complete old or the complete new file.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Temp files are named `.<name>.tmp-<pid>-<n>`; a crash can leave one behind, and
/// `open` removes them.
const TEMP_MARKER: &str = ".tmp-";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create secrets directory {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot inspect secrets directory {}: {source}", path.display())]
    Inspect { path: PathBuf, source: io::Error },
    #[error("{} is not a directory (a symlink or a file is refused): remove it or point secrets_dir elsewhere", path.display())]
    NotADirectory { path: PathBuf },
    #[error("secrets directory {} has mode {mode:04o}; it must not be readable by group or others: chmod 700 {}", path.display(), path.display())]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("secrets directory {} is owned by uid {owner}, but hubkeeper runs as uid {me}: chown {me} {} (or fix User= in the unit)", path.display(), path.display())]
    WrongOwner { path: PathBuf, owner: u32, me: u32 },
    #[error("invalid secrets file name \"{0}\"")]
    BadName(String),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot remove {}: {source}", path.display())]
    Remove { path: PathBuf, source: io::Error },
    #[error("cannot encode {name}: {message}")]
    Encode { name: String, message: String },
}

/// Handle on `secrets_dir`. Cheap to clone; all methods are blocking file I/O (small
/// files), so async callers use `spawn_blocking` or accept the short block.
#[derive(Debug, Clone)]
pub struct SecretsStore {
    dir: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl SecretsStore {
    /// Creates `dir` (0700) if missing, or checks that it is a private directory of
    /// ours, then removes temp files a crash left behind.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        ensure_private_dir(dir)?;
        let store = Self {
            dir: dir.to_path_buf(),
        };
        store.remove_stale_temp_files(dir);
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The absolute path of a file in the store (`rel` like `rustic/password`).
    pub fn path(&self, rel: &str) -> Result<PathBuf, StoreError> {
        let rel_path = Path::new(rel);
        let ok = !rel.is_empty()
            && rel_path
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
            && !rel_path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains(TEMP_MARKER));
        if !ok {
            return Err(StoreError::BadName(rel.to_owned()));
        }
        Ok(self.dir.join(rel_path))
    }

    /// The path of one of hubkeeper's own files (a constant like `tunnel-token`), for
    /// handing to a child process. Only for names `path()` accepts: a test checks each.
    pub fn file(&self, name: &'static str) -> PathBuf {
        debug_assert!(self.path(name).is_ok(), "{name} is not a store name");
        self.dir.join(name)
    }

    /// Atomically replaces `rel` with `contents` (mode 0600).
    pub fn write(&self, rel: &str, contents: &[u8]) -> Result<(), StoreError> {
        let path = self.path(rel)?;
        // path() accepted only plain names under the store, so both exist.
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(StoreError::BadName(rel.to_owned()));
        };
        let (parent, name) = (parent.to_path_buf(), name.to_string_lossy().into_owned());
        if parent != self.dir {
            ensure_private_dir(&parent)?;
        }
        let wrap = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        let tmp = parent.join(format!(
            ".{name}{TEMP_MARKER}{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(contents)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)?;
            File::open(&parent)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(wrap)
    }

    /// Writes `value` as pretty JSON (one trailing newline) if it changed.
    pub fn write_json_if_changed<T: serde::Serialize>(
        &self,
        rel: &str,
        value: &T,
    ) -> Result<bool, StoreError> {
        let mut json = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Encode {
            name: rel.to_owned(),
            message: e.to_string(),
        })?;
        json.push(b'\n');
        self.write_if_changed(rel, &json)
    }

    /// Writes only when the content differs, so unchanged files keep their mtime and
    /// readers (and restarts keyed on them) are not disturbed. Returns whether it wrote.
    pub fn write_if_changed(&self, rel: &str, contents: &[u8]) -> Result<bool, StoreError> {
        if self.read(rel)?.as_deref() == Some(contents) {
            return Ok(false);
        }
        self.write(rel, contents)?;
        Ok(true)
    }

    /// The file's content, or `None` if it does not exist.
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(rel)?;
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Read { path, source }),
        }
    }

    /// Removes `rel` if present (and makes the removal durable).
    pub fn remove(&self, rel: &str) -> Result<(), StoreError> {
        let path = self.path(rel)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(parent) = path.parent() {
                    let _ = File::open(parent).and_then(|d| d.sync_all());
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Remove { path, source }),
        }
    }

    fn remove_stale_temp_files(&self, dir: &Path) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                self.remove_stale_temp_files(&entry.path());
            } else if name.starts_with('.') && name.contains(TEMP_MARKER) {
                tracing::info!(file = %entry.path().display(), "removing a temp file left by an interrupted write");
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn ensure_private_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                fs::create_dir_all(parent).map_err(|source| StoreError::Create {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|source| StoreError::Create {
                    path: dir.to_path_buf(),
                    source,
                })?;
            // The umask may have narrowed the mode further; that is fine, but make sure
            // the owner can use it.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
                StoreError::Create {
                    path: dir.to_path_buf(),
                    source,
                }
            })?;
            Ok(())
        }
        Err(source) => Err(StoreError::Inspect {
            path: dir.to_path_buf(),
            source,
        }),
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(StoreError::NotADirectory {
                    path: dir.to_path_buf(),
                });
            }
            let me = nix::unistd::geteuid().as_raw();
            if meta.uid() != me {
                return Err(StoreError::WrongOwner {
                    path: dir.to_path_buf(),
                    owner: meta.uid(),
                    me,
                });
            }
            let mode = meta.mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(StoreError::TooOpen {
                    path: dir.to_path_buf(),
                    mode,
                });
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hubkeepers_own_file_names_are_store_names() {
        let t = tempfile::tempdir().unwrap();
        let store = SecretsStore::open(&t.path().join("s")).unwrap();
        for name in [
            crate::enrollment::ENROLLMENT,
            crate::enrollment::TUNNEL_TOKEN,
            crate::enrollment::STATE,
            crate::backup::profile::PROFILE,
            crate::backup::profile::PASSWORD,
        ] {
            assert_eq!(store.path(name).unwrap(), store.file(name), "{name}");
        }
    }

    #[test]
    fn creates_a_private_dir_and_0600_files() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a/secrets");
        let s = SecretsStore::open(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        s.write("rustic/password", b"pw").unwrap();
        assert_eq!(
            fs::metadata(dir.join("rustic")).unwrap().mode() & 0o777,
            0o700
        );
        assert_eq!(
            fs::metadata(dir.join("rustic/password")).unwrap().mode() & 0o777,
            0o600
        );
        assert_eq!(s.read("rustic/password").unwrap().unwrap(), b"pw");
        assert!(!s.write_if_changed("rustic/password", b"pw").unwrap());
        assert!(s.write_if_changed("rustic/password", b"pw2").unwrap());
        s.remove("rustic/password").unwrap();
        assert!(s.read("rustic/password").unwrap().is_none());
        s.remove("rustic/password").unwrap();
    }

    #[test]
    fn refuses_a_dir_readable_by_others() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("s");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let e = SecretsStore::open(&dir).unwrap_err().to_string();
        assert!(e.contains("mode 0755") && e.contains("chmod 700"), "{e}");
    }

    #[test]
    fn refuses_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(
            SecretsStore::open(&link),
            Err(StoreError::NotADirectory { .. })
        ));
    }

    #[test]
    fn refuses_names_that_escape_the_dir() {
        let t = tempfile::tempdir().unwrap();
        let s = SecretsStore::open(&t.path().join("s")).unwrap();
        for bad in ["../x", "/etc/passwd", "", "a/../../b", ".x.tmp-1-2"] {
            assert!(s.write(bad, b"x").is_err(), "{bad}");
        }
    }

    #[test]
    fn stale_temp_files_are_removed_on_open() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("s");
        let s = SecretsStore::open(&dir).unwrap();
        s.write("rustic/password", b"pw").unwrap();
        fs::write(dir.join(".tunnel-token.tmp-1-1"), b"partial").unwrap();
        fs::write(dir.join("rustic/.password.tmp-9-9"), b"partial").unwrap();
        SecretsStore::open(&dir).unwrap();
        assert!(!dir.join(".tunnel-token.tmp-1-1").exists());
        assert!(!dir.join("rustic/.password.tmp-9-9").exists());
        assert!(dir.join("rustic/password").exists());
    }
}
