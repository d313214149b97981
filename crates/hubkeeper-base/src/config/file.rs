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

/// The top-level keys of `text` that are among `foreign`: keys only the other
/// binary's config has. A config handed to the wrong program is then named as such,
/// before its unknown keys are listed one by one.
fn foreign_keys<'a>(text: &str, foreign: &[&'a str]) -> Vec<&'a str> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    foreign
        .iter()
        .copied()
        .filter(|k| table.contains_key(*k))
        .collect()
}

/// The first problem of a config that looks like the other program's (at least two of
/// its keys): which program it belongs to and how to run that one.
pub fn wrong_program(
    text: &str,
    foreign: &[&str],
    other_program: &str,
    other_command: &str,
) -> Option<super::Diagnostic> {
    let found = foreign_keys(text, foreign);
    (found.len() >= 2).then(|| {
        super::Diagnostic::new(
            None,
            format!(
                "this looks like a config for {other_program} (it has {}): run `{other_command}` with it, or pass this program its own config",
                found.join(", ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_with_two_foreign_keys_is_named() {
        let text = "listen = \"127.0.0.1:1\"\ndatabase = \"x\"\nenabled = true\n";
        let d = wrong_program(
            text,
            &["listen", "database", "zone"],
            "hubkeeper-control",
            "hubkeeper-control --config PATH",
        )
        .unwrap();
        assert!(d.message.contains("listen, database"), "{}", d.message);
        assert!(d.message.contains("`hubkeeper-control --config PATH`"));
        assert!(wrong_program("listen = 1\n", &["listen", "database"], "x", "x").is_none());
        assert!(wrong_program("not toml [", &["listen"], "x", "x").is_none());
    }
}
