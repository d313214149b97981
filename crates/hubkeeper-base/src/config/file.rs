//! Where a config's text and its systemd credentials come from.

use super::diagnostic::ConfigError;
use std::path::{Path, PathBuf};

/// Where to look for systemd credentials: `$CREDENTIALS_DIRECTORY`.
pub fn credentials_dir_from_env() -> Option<PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from)
}

/// The text of a config file; `if_missing` is appended to the error when there is no
/// such file, to say how to get one. Shared with the control service's `control.toml`.
pub fn read_config_file(path: &Path, if_missing: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            if_missing
        } else {
            ""
        };
        ConfigError::single(
            path.to_path_buf(),
            format!("cannot read the config file: {e}{hint}"),
        )
    })
}
