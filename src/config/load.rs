//! Reads a config file and turns it into a [`LoadedConfig`], or into every problem it has,
//! each with `file:line:col`: syntax and type errors (all at once, see `located.rs`),
//! then the cross-field rules, then the secret files the chosen mode needs.

use super::model::{Config, Mode};
use super::plan::{Plan, PlanSecrets, plan};
use super::validate::validate;
use crate::secrets::{Secret, source};
use hubkeeper_base::config::checked::ConfigText;
use hubkeeper_base::config::located::ArrayPaths;
use hubkeeper_base::config::{ConfigError, Diagnostic, credentials_dir_from_env, read_config_file};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Top-level keys only the control service's config has.
const CONTROL_ONLY_KEYS: &[&str] = &["listen", "database", "provisioner", "zone", "token_file"];

/// A valid config: the file's settings, and the plan they make (with the secrets the
/// plan needs, read at load time so a bad secret file is a config error).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub config: Config,
    pub plan: Plan,
}

/// Loads `path`, taking credentials from `$CREDENTIALS_DIRECTORY`.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    load_with(path, credentials_dir_from_env().as_deref())
}

pub fn load_with(path: &Path, credentials_dir: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    let text = read_config_file(
        path,
        "; create it (see config.example.toml) or pass --config / HUBKEEPER_CONFIG",
    )?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, path, base, credentials_dir)
}

/// Only the `socket` key, for clients (`hubkeeper status`): they may run as a user
/// who cannot read the secrets the full config names, and must not fail because of a
/// problem that only the daemon cares about.
pub fn socket_only(path: &Path) -> Result<PathBuf, ConfigError> {
    #[derive(Deserialize)]
    struct SocketOnly {
        socket: Option<PathBuf>,
    }
    let text = read_config_file(path, "")?;
    let parsed: SocketOnly = toml::from_str(&text).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        problems: vec![Diagnostic::new(None, e.message().trim()).at(&text, e.span())],
    })?;
    let mut socket = parsed.socket.unwrap_or_else(Config::default_socket);
    if socket.is_relative() {
        socket = path.parent().unwrap_or(Path::new(".")).join(socket);
    }
    Ok(socket)
}

/// Parses config text. Relative paths in it are taken relative to `base` (the
/// directory of the config file).
pub fn parse(
    text: &str,
    path: &Path,
    base: &Path,
    credentials_dir: Option<&Path>,
) -> Result<LoadedConfig, ConfigError> {
    let file = ConfigText {
        path,
        text,
        arrays: ArrayPaths::Whole,
        foreign_keys: CONTROL_ONLY_KEYS,
        other_program: "the control service",
        other_command: "hubkeeper-control --config PATH",
    };
    // A missing key has no place in the file; point at what required it.
    let checked =
        file.check::<Config>(|c| resolve_paths(c, base), validate, &["mode", "enabled"])?;
    let cfg = &checked.value;
    let secrets = read_secrets(cfg, credentials_dir).map_err(|errs| checked.error(errs))?;
    let plan = plan(cfg, secrets)
        .map_err(|u| checked.error(vec![(u.key.to_owned(), u.message.to_owned())]))?;
    let cfg = checked.value;
    Ok(LoadedConfig {
        path: path.to_path_buf(),
        config: cfg,
        plan,
    })
}

/// Relative paths are relative to the config file's directory, so a dev config can
/// keep its socket and secrets under the checkout.
fn resolve_paths(cfg: &mut Config, base: &Path) {
    let fix = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    fix(&mut cfg.socket);
    fix(&mut cfg.secrets_dir);
    fix(&mut cfg.tunnel.cloudflared);
    fix(&mut cfg.backup.rustic);
    cfg.backup.paths.iter_mut().for_each(fix);
    if let Some(m) = &mut cfg.managed {
        m.token_file.as_mut().map(fix);
    }
    if let Some(sm) = &mut cfg.self_managed {
        sm.api_token_file.as_mut().map(fix);
        if let Some(r2) = &mut sm.r2 {
            fix(&mut r2.access_key_id_file);
            fix(&mut r2.secret_access_key_file);
        }
    }
}

/// Reads the secrets the chosen mode needs. Problems are (key, message).
fn read_secrets(cfg: &Config, creds: Option<&Path>) -> Result<PlanSecrets, Vec<(String, String)>> {
    let mut out = PlanSecrets::default();
    let mut errs = Vec::new();
    let mut take = |key: &str, r: Result<Secret, source::SourceError>| match r {
        Ok(s) => Some(s),
        Err(e) => {
            errs.push((key.to_owned(), e.to_string()));
            None
        }
    };
    match cfg.mode {
        Some(Mode::Managed) => {
            if let Some(m) = &cfg.managed {
                out.control_token = take(
                    "managed.token_file",
                    source::read_secret(m.token_file.as_deref(), "control-token", creds),
                );
            }
        }
        Some(Mode::SelfManaged) => {
            if let Some(sm) = &cfg.self_managed {
                out.cloudflare_token = take(
                    "self_managed.api_token_file",
                    source::read_secret(sm.api_token_file.as_deref(), "cloudflare-token", creds),
                );
                if let Some(r2) = &sm.r2 {
                    out.r2_access_key_id = take(
                        "self_managed.r2.access_key_id_file",
                        source::read_secret_file(&r2.access_key_id_file),
                    );
                    out.r2_secret_access_key = take(
                        "self_managed.r2.secret_access_key_file",
                        source::read_secret_file(&r2.secret_access_key_file),
                    );
                }
            }
        }
        None => {}
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<LoadedConfig, ConfigError> {
        parse(text, Path::new("/etc/hk.toml"), Path::new("/etc"), None)
    }

    fn lines(text: &str) -> Vec<String> {
        parse_str(text).unwrap_err().lines()
    }

    #[test]
    fn empty_config_is_valid_and_disabled() {
        let c = parse_str("").unwrap();
        assert!(!c.config.enabled);
        assert_eq!(
            c.config.socket,
            PathBuf::from("/run/hubkeeper/hubkeeper.sock")
        );
        assert_eq!(c.config.socket_mode.0, 0o660);
    }

    #[test]
    fn unknown_key_is_reported_with_line_and_column() {
        let l = lines("enabled = false\nbogus = 1\n");
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(
            l[0].starts_with("/etc/hk.toml:2:1: bogus: unknown field `bogus`"),
            "{l:?}"
        );
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let text = "enabled = \"yes\"\n[tunnel]\ngrace_period = \"30x\"\nfoo = 1\n[health]\ninterval = 5\n";
        let l = lines(text);
        assert_eq!(l.len(), 4, "{l:#?}");
        assert!(l[0].contains(":1:11: enabled: invalid type"), "{l:?}");
        assert!(
            l.iter()
                .any(|x| x.contains(":3:16: tunnel.grace_period: invalid duration \"30x\"")),
            "{l:?}"
        );
        assert!(
            l.iter()
                .any(|x| x.contains(":4:1: tunnel.foo: unknown field `foo`")),
            "{l:?}"
        );
        assert!(
            l.iter()
                .any(|x| x.contains(":6:12: health.interval: invalid type: integer")),
            "{l:?}"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let l = lines("enabled = \nmode = 'x\n");
        assert!(!l.is_empty());
        assert!(l[0].starts_with("/etc/hk.toml:1:"), "{l:?}");
    }

    #[test]
    fn missing_section_for_mode_is_reported_at_mode() {
        let l = lines("enabled = true\nhub_id = \"h1\"\nmode = \"managed\"\n");
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(
            l[0].contains(":3:1: managed: mode = \"managed\" needs a [managed] section")
                || l[0].contains("managed: mode = \"managed\" needs a [managed] section"),
            "{l:?}"
        );
    }

    #[test]
    fn missing_field_in_a_section_does_not_hide_later_sections() {
        let text = "mode = \"managed\"\n[managed]\nurl = \"https://x.example\"\n[health]\ninterval = \"1x\"\n";
        let l = lines(text);
        assert!(
            l.iter()
                .any(|x| x.contains("managed: missing field `account_id`")),
            "{l:?}"
        );
        assert!(
            l.iter()
                .any(|x| x.contains("health.interval: invalid duration")),
            "{l:?}"
        );
        assert!(
            !l.iter().any(|x| x.contains("needs a [managed] section")),
            "{l:?}"
        );
    }

    #[test]
    fn enabled_needs_mode_and_hub_id() {
        let l = lines("enabled = true\n");
        assert!(
            l.iter()
                .any(|x| x.contains("mode: enabled = true needs mode")),
            "{l:?}"
        );
        assert!(
            l.iter()
                .any(|x| x.contains("hub_id: enabled = true needs hub_id")),
            "{l:?}"
        );
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let c = parse(
            "socket = \"run/hk.sock\"\n",
            Path::new("/srv/dev/hk.toml"),
            Path::new("/srv/dev"),
            None,
        )
        .unwrap();
        assert_eq!(c.config.socket, PathBuf::from("/srv/dev/run/hk.sock"));
    }

    #[test]
    fn bad_values_of_every_custom_type_are_explained() {
        let l = lines(
            "hub_id = \"Hub_1\"\nsocket_mode = \"999\"\n[health]\ndns_resolver = \"8.8.8.8\"\n[tunnel]\norigin = \"ftp://x\"\n",
        );
        assert_eq!(l.len(), 4, "{l:#?}");
        assert!(l[0].contains("hub_id: invalid hub_id"), "{l:?}");
        assert!(l[1].contains("socket_mode: invalid mode \"999\""), "{l:?}");
        assert!(
            l.iter()
                .any(|x| x.contains("health.dns_resolver: invalid dns_resolver")),
            "{l:?}"
        );
        assert!(
            l.iter()
                .any(|x| x.contains("tunnel.origin: \"ftp://x\" is not an http")),
            "{l:?}"
        );
    }

    #[test]
    fn missing_control_token_is_a_config_error_naming_the_key() {
        let text = "mode = \"managed\"\n[managed]\nurl = \"https://cs.example\"\naccount_id = \"a\"\nlicense_id = \"l\"\n";
        let l = lines(text);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(
            l[0].contains(
                "managed.token_file: not set, and no systemd credential \"control-token\""
            ),
            "{l:?}"
        );
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;
    use crate::config::model::{Api, Backup, Disable, Health, R2, Tunnel};

    /// config.example.toml parses, and the defaults it documents are the real ones.
    #[test]
    fn the_example_config_is_valid_and_documents_true_defaults() {
        let text = include_str!("../../config.example.toml");
        let creds = tempfile::tempdir().unwrap();
        let cfg_dir = tempfile::tempdir().unwrap();
        let token = cfg_dir.path().join("control-token");
        std::fs::write(&token, "t").unwrap();
        let text = text.replace("/etc/hubkeeper/control-token", token.to_str().unwrap());
        let loaded = parse(
            &text,
            Path::new("config.example.toml"),
            Path::new("/"),
            Some(creds.path()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let c = loaded.config;
        assert!(!c.enabled);
        assert_eq!(c.tunnel, Tunnel::default());
        assert_eq!(c.r2, R2::default());
        assert_eq!(c.backup, Backup::default());
        assert_eq!(c.health, Health::default());
        assert_eq!(c.disable, Disable::default());
        assert_eq!(c.api, Api::default());
        let empty = parse("", Path::new("x"), Path::new("/"), None)
            .unwrap()
            .config;
        assert_eq!(c.socket, empty.socket);
        assert_eq!(c.socket_mode, empty.socket_mode);
        assert_eq!(c.secrets_dir, empty.secrets_dir);
        assert_eq!(c.log_level, empty.log_level);
    }
}
