//! Watches the config file for changes with inotify (the `notify` crate).
//!
//! The directory is watched, not the file: editors save by writing a new file and
//! renaming it over the old one, and deployments swap symlinks; both replace the inode
//! a file watch would be attached to. If the config is a symlink, the directory of its
//! target is watched as well. Every event only says "look again": the daemon debounces
//! and re-reads, and applies nothing if the content is unchanged.
//!
//! Events about other regular files in the directory are ignored: a log file or a
//! socket next to the config must not cause reloads (at trace level, each reload's
//! log line would cause the next). Symlinks and directories count, because swapping
//! one (`..data` style deployments) changes what the config path resolves to.

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

pub struct ConfigWatcher {
    _watcher: RecommendedWatcher,
    dirs: Vec<PathBuf>,
    pub events: mpsc::Receiver<()>,
}

impl std::fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("dirs", &self.dirs)
            .finish()
    }
}

/// The directories whose changes can change what `config` reads as.
pub fn dirs_for(config: &Path) -> Vec<PathBuf> {
    let parent = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut dirs = vec![parent(config)];
    if let Ok(target) = std::fs::canonicalize(config) {
        let d = parent(&target);
        if !dirs.contains(&d) && std::fs::canonicalize(&dirs[0]).ok() != Some(d.clone()) {
            dirs.push(d);
        }
    }
    dirs
}

/// The file names under which the config can change: its own, and its target's.
fn config_names(config: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = config
        .file_name()
        .map(|n| n.to_owned())
        .into_iter()
        .collect();
    if let Some(n) = std::fs::canonicalize(config)
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_owned()))
        && !names.contains(&n)
    {
        names.push(n);
    }
    names
}

fn relevant(path: &Path, names: &[OsString]) -> bool {
    if path
        .file_name()
        .is_some_and(|n| names.iter().any(|c| c == n))
    {
        return true;
    }
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink() || m.is_dir())
}

impl ConfigWatcher {
    pub fn new(config: &Path) -> notify::Result<Self> {
        // Capacity 1 and try_send: a burst of events collapses into one wake-up.
        let (tx, rx) = mpsc::channel(1);
        let names = config_names(config);
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res {
                    let wanted = !matches!(ev.kind, EventKind::Access(_))
                        && ev.paths.iter().any(|p| relevant(p, &names));
                    if wanted {
                        let _ = tx.try_send(());
                    }
                }
            })?;
        let dirs = dirs_for(config);
        for d in &dirs {
            watcher.watch(d, RecursiveMode::NonRecursive)?;
        }
        Ok(Self {
            _watcher: watcher,
            dirs,
            events: rx,
        })
    }

    /// Whether the set of watched directories is still the right one for `config`
    /// (a symlink may now point somewhere else).
    pub fn still_covers(&self, config: &Path) -> bool {
        dirs_for(config) == self.dirs
    }
}
