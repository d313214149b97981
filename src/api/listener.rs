//! Binding the status socket: parent directory, stale sockets, mode and group, and
//! removing the socket on exit.

use nix::unistd::{Gid, Group, chown};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot create the socket directory {}: {source}; create it, or set socket to a path in a writable directory", dir.display())]
    CreateDir { dir: PathBuf, source: io::Error },
    #[error("{} is in use by a running daemon (it accepted a connection): stop that daemon first, or set a different socket", path.display())]
    InUse { path: PathBuf },
    #[error("{} exists and is not a socket: remove it, or set a different socket", path.display())]
    NotASocket { path: PathBuf },
    #[error("cannot tell whether {} is in use ({source}): remove it if no daemon is running", path.display())]
    Unknown { path: PathBuf, source: io::Error },
    #[error(
        "socket_group \"{0}\" does not exist: create the group (e.g. with sysusers.d) or fix socket_group"
    )]
    NoSuchGroup(String),
    #[error("cannot bind {}: {source}", path.display())]
    Bind { path: PathBuf, source: io::Error },
    #[error("cannot set mode or group of {}: {source}{}", path.display(), group_hint(source))]
    Permissions { path: PathBuf, source: io::Error },
}

fn group_hint(e: &io::Error) -> &'static str {
    if e.raw_os_error() == Some(libc::EPERM) {
        "; to hand the socket to socket_group, hubkeeper's user must be a member of that group (SupplementaryGroups= in a unit drop-in)"
    } else {
        ""
    }
}

/// Removes the socket when dropped, unless another process has since replaced it.
#[derive(Debug)]
pub struct SocketGuard {
    path: PathBuf,
    ino: u64,
    dev: u64,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if let Ok(m) = fs::symlink_metadata(&self.path)
            && m.ino() == self.ino
            && m.dev() == self.dev
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The group a socket will be given: the configured one, or the daemon's own.
pub fn resolve_group(name: Option<&str>) -> Result<Gid, BindError> {
    match name {
        None => Ok(nix::unistd::getegid()),
        Some(n) => match Group::from_name(n) {
            Ok(Some(g)) => Ok(g.gid),
            _ => Err(BindError::NoSuchGroup(n.to_owned())),
        },
    }
}

/// Binds `path` with `mode` and group `gid`.
///
/// The socket is bound under a temporary name, given its mode and group, then renamed
/// into place: there is no instant at which the final path accepts connections with
/// the wrong permissions.
pub fn bind(path: &Path, mode: u32, gid: Gid) -> Result<(UnixListener, SocketGuard), BindError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(|source| BindError::CreateDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    clear_stale(path)?;

    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.bind", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(|source| BindError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    let perms = (|| {
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
        if gid != nix::unistd::getegid() {
            chown(&tmp, None, Some(gid)).map_err(io::Error::from)?;
        }
        fs::rename(&tmp, path)
    })();
    if let Err(source) = perms {
        let _ = fs::remove_file(&tmp);
        return Err(BindError::Permissions {
            path: path.to_path_buf(),
            source,
        });
    }
    listener
        .set_nonblocking(true)
        .map_err(|source| BindError::Bind {
            path: path.to_path_buf(),
            source,
        })?;
    let meta = fs::symlink_metadata(path).map_err(|source| BindError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    let guard = SocketGuard {
        path: path.to_path_buf(),
        ino: meta.ino(),
        dev: meta.dev(),
    };
    Ok((listener, guard))
}

/// A leftover socket is removed only if nothing answers on it.
fn clear_stale(path: &Path) -> Result<(), BindError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(BindError::Unknown {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(BindError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(BindError::InUse {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "removing a stale socket left by a previous run");
            fs::remove_file(path).map_err(|source| BindError::Unknown {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(BindError::Unknown {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_socket_is_replaced_and_live_one_refused() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("run/hk.sock");
        let gid = nix::unistd::getegid();
        let (l, g) = bind(&p, 0o660, gid).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o660);
        assert!(matches!(bind(&p, 0o660, gid), Err(BindError::InUse { .. })));
        // A dead socket: the listener is closed but the file stays.
        drop(l);
        std::mem::forget(g);
        let (_l2, _g2) = bind(&p, 0o600, gid).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_regular_file_is_not_removed() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("hk.sock");
        fs::write(&p, "data").unwrap();
        assert!(matches!(
            bind(&p, 0o660, nix::unistd::getegid()),
            Err(BindError::NotASocket { .. })
        ));
        assert_eq!(fs::read(&p).unwrap(), b"data");
    }

    #[test]
    fn guard_removes_only_its_own_socket() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("hk.sock");
        let (_l, g) = bind(&p, 0o660, nix::unistd::getegid()).unwrap();
        drop(g);
        assert!(!p.exists());
    }
}
