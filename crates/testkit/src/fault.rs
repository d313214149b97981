//! Faults a test inflicts on the filesystem under a daemon: a directory made read-only
//! while the daemon runs, and a small filesystem that fills up (ENOSPC).
//!
//! As root (CI runs as root) both are real mounts: a read-only bind mount and a tmpfs
//! of a given size; root ignores file modes, so `chmod` would prove nothing. Without
//! root the read-only case falls back to `chmod 0500`, and the full-disk case cannot be
//! made: [`SmallDisk::mount`] returns `None` and the test says it was skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `path` made read-only until dropped (or [`ReadOnly::undo`]).
pub struct ReadOnly {
    path: PathBuf,
    mounted: bool,
    undone: bool,
}

impl ReadOnly {
    pub fn make(path: &Path) -> ReadOnly {
        let mounted = is_root();
        if mounted {
            run(Command::new("mount").arg("--bind").arg(path).arg(path));
            run(Command::new("mount")
                .args(["-o", "remount,bind,ro"])
                .arg(path));
        } else {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o500)).unwrap();
        }
        ReadOnly {
            path: path.to_owned(),
            mounted,
            undone: false,
        }
    }

    /// Writable again.
    pub fn undo(mut self) {
        self.restore();
    }

    fn restore(&mut self) {
        if self.undone {
            return;
        }
        self.undone = true;
        if self.mounted {
            let _ = Command::new("umount").arg(&self.path).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o700));
        }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        self.restore();
    }
}

/// A tmpfs of a fixed size mounted at a directory, unmounted when dropped.
pub struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    /// `None` without root: there is no way to get a real ENOSPC then.
    pub fn mount(path: &Path, bytes: u64) -> Option<SmallDisk> {
        if !is_root() {
            eprintln!("skipped: mounting a small tmpfs needs root");
            return None;
        }
        std::fs::create_dir_all(path).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0700"))
            .arg("tmpfs")
            .arg(path));
        Some(SmallDisk {
            path: path.to_owned(),
        })
    }

    /// Fills the disk with a ballast file until writes fail; returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let p = self.path.join(".ballast");
        let mut f = std::fs::File::create(&p).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        p
    }

    /// Frees the ballast: writes work again.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.path.join(".ballast"));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
