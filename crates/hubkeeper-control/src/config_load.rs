//! Reads `control.toml` into a [`LoadedControlConfig`], or into every problem it has,
//! each as `file:line:col: key: message`, as for the daemon's config: syntax and type
//! errors (all at once, see `config/located.rs`), then the cross-field rules, then the
//! secret files.

use super::config::{ControlConfig, ProvisionerKind, default_r2_endpoint, endpoint_text, validate};
use super::provision::cloudflare::CloudflareSettings;
use super::provision::local::{KeyPair, LocalSettings};
use hubkeeper_base::config::ConfigError;
use hubkeeper_base::config::checked::ConfigText;
use hubkeeper_base::config::located::ArrayPaths;
use hubkeeper_base::config::read_config_file;
use hubkeeper_base::secret_source as source;
use hubkeeper_proto::Secret;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A valid config with the secrets it names, read (a bad secret file is a config
/// error, reported before anything starts).
#[derive(Debug, Clone)]
pub struct LoadedControlConfig {
    pub path: PathBuf,
    pub config: ControlConfig,
    pub token: Secret,
    /// The provisioner the config names, with its settings ready to use.
    pub provisioner: ProvisionerPlan,
}

/// One variant per `[provisioner] kind`, each with what it needs.
#[derive(Debug, Clone)]
pub enum ProvisionerPlan {
    Local(LocalSettings),
    Cloudflare(CloudflareSettings),
}

/// Top-level keys only the hub daemon's config has.
const DAEMON_ONLY_KEYS: &[&str] = &[
    "enabled",
    "mode",
    "hub_id",
    "socket",
    "secrets_dir",
    "managed",
    "self_managed",
    "tunnel",
    "backup",
];

const MISSING_HINT: &str =
    "; create it (see control.example.toml) or pass --config / HUBKEEPER_CONTROL_CONFIG";

pub fn load(
    path: &Path,
    credentials_dir: Option<&Path>,
) -> Result<LoadedControlConfig, ConfigError> {
    let text = read_config_file(path, MISSING_HINT)?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, path, base, credentials_dir)
}

/// The checked config without reading a secret: what the `account` commands need (the
/// database), so they run outside the service's unit, without its credentials.
pub fn load_without_secrets(path: &Path) -> Result<ControlConfig, ConfigError> {
    let text = read_config_file(path, MISSING_HINT)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let checked = config_text(path, &text).check::<ControlConfig>(
        |c| resolve_paths(c, base),
        validate,
        &[],
    )?;
    Ok(checked.value)
}

fn config_text<'a>(path: &'a Path, text: &'a str) -> ConfigText<'a> {
    ConfigText {
        path,
        text,
        arrays: ArrayPaths::Indexed,
        foreign_keys: DAEMON_ONLY_KEYS,
        other_program: "the hub daemon",
        other_command: "hubkeeper run --config PATH",
    }
}

pub fn parse(
    text: &str,
    path: &Path,
    base: &Path,
    credentials_dir: Option<&Path>,
) -> Result<LoadedControlConfig, ConfigError> {
    let file = config_text(path, text);
    let checked = file.check::<ControlConfig>(|c| resolve_paths(c, base), validate, &[])?;
    let cfg = &checked.value;

    let mut secret_problems = Vec::new();
    let mut take = |key: String, r: Result<Secret, source::SourceError>| match r {
        Ok(s) => Some(s),
        Err(e) => {
            secret_problems.push((key, e.to_string()));
            None
        }
    };
    let token = take(
        "token_file".into(),
        source::read_secret(cfg.token_file.as_deref(), "control-token", credentials_dir),
    );
    let local = cfg.provisioner.local.as_ref().map(|l| {
        let keys: Vec<Option<KeyPair>> = l
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                // Named as the span index names array entries, so that a problem
                // points at its own key in its `[[provisioner.local.keys]]` entry.
                let at = "provisioner.local.keys";
                let id = take(
                    format!("{at}[{i}].access_key_id_file"),
                    source::read_secret_file(&k.access_key_id_file),
                );
                let secret = take(
                    format!("{at}[{i}].secret_access_key_file"),
                    source::read_secret_file(&k.secret_access_key_file),
                );
                Some(KeyPair {
                    access_key_id: id?.expose().to_owned(),
                    secret_access_key: secret?,
                })
            })
            .collect();
        (l, keys)
    });
    let local = local.map(|(l, keys)| LocalSettings {
        s3_endpoint: endpoint_text(&l.s3_endpoint),
        r2_endpoint: endpoint_text(l.r2_endpoint.as_ref().unwrap_or(&l.s3_endpoint)),
        region: l.region.as_str().to_owned(),
        account_tag: l.account_tag.as_str().to_owned(),
        keys: keys.into_iter().flatten().collect(),
    });
    let cloudflare = cfg.provisioner.cloudflare.as_ref().and_then(|c| {
        let token = take(
            "provisioner.cloudflare.api_token_file".into(),
            source::read_secret(
                c.api_token_file.as_deref(),
                "cloudflare-token",
                credentials_dir,
            ),
        )?;
        let account_id = c.account_id.as_str().to_owned();
        Some(CloudflareSettings {
            api_base: c.api_base.0.as_str().trim_end_matches('/').to_owned(),
            r2_endpoint: c.r2_endpoint.as_ref().map_or_else(
                || default_r2_endpoint(&account_id, c.jurisdiction),
                endpoint_text,
            ),
            account_id,
            token,
            zone: cfg.zone.clone(),
            jurisdiction: c.jurisdiction.as_str().to_owned(),
            location_hint: c.location_hint.as_ref().map(|h| h.as_str().to_owned()),
            min_interval: Duration::from_millis(1000 / u64::from(c.max_requests_per_second.max(1))),
            request_timeout: c.request_timeout.get(),
        })
    });
    let provisioner = match cfg.provisioner.kind {
        ProvisionerKind::Local => local.map(ProvisionerPlan::Local),
        ProvisionerKind::Cloudflare => cloudflare.map(ProvisionerPlan::Cloudflare),
    };
    match (token, provisioner) {
        (Some(token), Some(provisioner)) if secret_problems.is_empty() => Ok(LoadedControlConfig {
            path: path.to_path_buf(),
            config: checked.value,
            token,
            provisioner,
        }),
        (_, provisioner) => {
            if provisioner.is_none() {
                // validate() requires the section for the kind; this is a missing rule.
                secret_problems.push((
                    "provisioner".into(),
                    "the provisioner's settings are incomplete".into(),
                ));
            }
            Err(checked.error(secret_problems))
        }
    }
}

/// Relative paths are relative to the config file's directory.
fn resolve_paths(cfg: &mut ControlConfig, base: &Path) {
    let fix = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    fix(&mut cfg.database);
    cfg.token_file.as_mut().map(fix);
    if let Some(c) = &mut cfg.provisioner.cloudflare {
        c.api_token_file.as_mut().map(fix);
    }
    if let Some(l) = &mut cfg.provisioner.local {
        for k in &mut l.keys {
            fix(&mut k.access_key_id_file);
            fix(&mut k.secret_access_key_file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn valid(dir: &Path) -> String {
        write(dir, "token", "tok\n");
        write(dir, "ak1", "AK1\n");
        write(dir, "sk1", "SK1\n");
        "token_file = \"token\"\ndatabase = \"state/c.db\"\nzone = \"example.com\"\n\
         [provisioner]\nkind = \"local\"\n[provisioner.local]\n\
         s3_endpoint = \"http://127.0.0.1:9000/\"\naccount_tag = \"tag\"\n\
         [[provisioner.local.keys]]\naccess_key_id_file = \"ak1\"\nsecret_access_key_file = \"sk1\"\n"
            .into()
    }

    fn run(dir: &Path, text: &str) -> Result<LoadedControlConfig, ConfigError> {
        parse(text, &dir.join("control.toml"), dir, None)
    }

    #[test]
    fn a_minimal_config_gets_its_defaults() {
        let d = tempfile::tempdir().unwrap();
        let text = valid(d.path());
        let c = run(d.path(), &text).unwrap();
        assert_eq!(c.config.listen.to_string(), "127.0.0.1:8787");
        assert_eq!(c.config.database, d.path().join("state/c.db"));
        assert_eq!(c.token.expose(), "tok");
        let ProvisionerPlan::Local(l) = c.provisioner else {
            panic!("a local config")
        };
        assert_eq!(l.s3_endpoint, "http://127.0.0.1:9000");
        assert_eq!(l.r2_endpoint, l.s3_endpoint);
        assert_eq!(l.region, "auto");
        assert_eq!(l.keys.len(), 1);
        assert_eq!(l.keys[0].access_key_id, "AK1");
        assert_eq!(l.keys[0].secret_access_key.expose(), "SK1");
    }

    #[test]
    fn every_problem_has_file_line_col_and_key() {
        let d = tempfile::tempdir().unwrap();
        let text = valid(d.path())
            .replace(
                "zone = \"example.com\"",
                "zone = \"Example..com\"\nbogus = 1",
            )
            .replace("account_tag = \"tag\"", "account_tag = \"\"\nregion = 5");
        let e = run(d.path(), &text).unwrap_err();
        let lines = e.lines();
        let f = d.path().join("control.toml");
        let f = f.display();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{f}:4:1: bogus: unknown field `bogus`"))),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains(":9:15: provisioner.local.account_tag: must not be empty")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains(":10:10: provisioner.local.region: invalid type")),
            "{lines:#?}"
        );
        // Rules run once the types are right: the zone is reported on the next run.
        let text = valid(d.path()).replace("example.com", "Example..com");
        let lines = run(d.path(), &text).unwrap_err().lines();
        assert!(lines[0].contains(":3:1: zone: invalid zone"), "{lines:#?}");
    }

    #[test]
    fn a_bad_key_inside_a_key_pair_is_located() {
        let d = tempfile::tempdir().unwrap();
        let text = valid(d.path()).replace("secret_access_key_file", "secret_file");
        let lines = run(d.path(), &text).unwrap_err().lines();
        assert!(
            lines
                .iter()
                .any(|l| l.contains(":11:1: provisioner.local.keys[0].secret_file: unknown field")),
            "{lines:#?}"
        );
    }

    #[test]
    fn missing_secrets_are_config_errors_naming_the_key_not_the_value() {
        let d = tempfile::tempdir().unwrap();
        let text = valid(d.path());
        std::fs::remove_file(d.path().join("sk1")).unwrap();
        std::fs::remove_file(d.path().join("token")).unwrap();
        let lines = run(d.path(), &text).unwrap_err().lines();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].contains(":1:1: token_file: cannot read"),
            "{lines:#?}"
        );
        assert!(
            lines[1].contains("provisioner.local.keys[0].secret_access_key_file: cannot read"),
            "{lines:#?}"
        );
        let no_token = text.replace("token_file = \"token\"\n", "");
        let lines = run(d.path(), &no_token).unwrap_err().lines();
        assert!(
            lines
                .iter()
                .any(|l| l
                    .contains("token_file: not set, and no systemd credential \"control-token\"")),
            "{lines:#?}"
        );
    }

    #[test]
    fn local_needs_its_section_and_a_key_pair() {
        let d = tempfile::tempdir().unwrap();
        let text = valid(d.path());
        let cut = &text[..text.find("[provisioner.local]").unwrap()];
        let lines = run(d.path(), cut).unwrap_err().lines();
        assert!(
            lines[0].contains(
                "provisioner.local: kind = \"local\" needs a [provisioner.local] section"
            ),
            "{lines:#?}"
        );
        let cut = &text[..text.find("[[provisioner.local.keys]]").unwrap()];
        let lines = run(d.path(), cut).unwrap_err().lines();
        assert!(lines[0].contains("needs at least one"), "{lines:#?}");
    }

    /// control.example.toml parses, and the defaults it documents are the real ones.
    #[test]
    fn the_example_config_is_valid_and_documents_true_defaults() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("control-s3")).unwrap();
        for f in [
            "control-token",
            "control-s3/access-key-id-1",
            "control-s3/secret-access-key-1",
            "control-s3/access-key-id-2",
            "control-s3/secret-access-key-2",
        ] {
            write(d.path(), f, "x\n");
        }
        let text = include_str!("../control.example.toml").replace(
            "/etc/hubkeeper-control/",
            &format!("{}/", d.path().display()),
        );
        let example = run(d.path(), &text).unwrap_or_else(|e| panic!("{e}"));
        let defaulted_keys = [
            "listen =",
            "log_level =",
            "max_connections =",
            "request_timeout =",
            "r2_endpoint =",
            "region =",
        ];
        let stripped: String = text
            .lines()
            .filter(|l| !defaulted_keys.iter().any(|k| l.starts_with(k)))
            .map(|l| format!("{l}\n"))
            .collect();
        let defaults = run(d.path(), &stripped).unwrap();
        let (e, m) = (&example.config, &defaults.config);
        assert_eq!(e.listen, m.listen);
        assert_eq!(e.log_level, m.log_level);
        assert_eq!(e.max_connections, m.max_connections);
        assert_eq!(e.request_timeout, m.request_timeout);
        let (ProvisionerPlan::Local(el), ProvisionerPlan::Local(ml)) =
            (example.provisioner, defaults.provisioner)
        else {
            panic!("the example uses the local provisioner")
        };
        assert_eq!(el.r2_endpoint, ml.r2_endpoint);
        assert_eq!(el.region, ml.region);
        assert_eq!(el.keys.len(), 2);
    }

    fn cloudflare(dir: &Path, section: &str) -> String {
        write(dir, "token", "tok\n");
        write(dir, "cf-token", "cf-secret\n");
        format!(
            "token_file = \"token\"\ndatabase = \"c.db\"\nzone = \"example.com\"\n\
             [provisioner]\nkind = \"cloudflare\"\n{section}"
        )
    }

    #[test]
    fn a_cloudflare_provisioner_gets_its_defaults() {
        let d = tempfile::tempdir().unwrap();
        let text = cloudflare(
            d.path(),
            "[provisioner.cloudflare]\naccount_id = \"acct\"\napi_token_file = \"cf-token\"\n",
        );
        let c = run(d.path(), &text).unwrap();
        let ProvisionerPlan::Cloudflare(cf) = c.provisioner else {
            panic!("a Cloudflare config")
        };
        assert_eq!(cf.api_base, "https://api.cloudflare.com/client/v4");
        assert_eq!(cf.r2_endpoint, "https://acct.r2.cloudflarestorage.com");
        assert_eq!(cf.jurisdiction, "default");
        assert_eq!(cf.token.expose(), "cf-secret");
        assert_eq!(cf.zone, "example.com");
        assert_eq!(
            cf.min_interval,
            Duration::from_millis(250),
            "4 calls a second"
        );
        assert_eq!(cf.request_timeout, Duration::from_secs(30));
        assert_eq!(c.config.sweep_interval.get(), Duration::from_secs(60));

        let eu = cloudflare(
            d.path(),
            "[provisioner.cloudflare]\naccount_id = \"acct\"\napi_token_file = \"cf-token\"\njurisdiction = \"eu\"\n",
        );
        let ProvisionerPlan::Cloudflare(cf) = run(d.path(), &eu).unwrap().provisioner else {
            panic!("a Cloudflare config")
        };
        assert_eq!(cf.r2_endpoint, "https://acct.eu.r2.cloudflarestorage.com");
    }

    #[test]
    fn a_cloudflare_config_with_problems_names_each() {
        let d = tempfile::tempdir().unwrap();
        let missing = cloudflare(d.path(), "");
        let e = run(d.path(), &missing).unwrap_err().to_string();
        assert!(
            e.contains("needs a [provisioner.cloudflare] section"),
            "{e}"
        );

        let bad = cloudflare(
            d.path(),
            "[provisioner.cloudflare]\naccount_id = \"acct\"\napi_token_file = \"nope\"\n\
             location_hint = \"mars\"\nmax_requests_per_second = 50\n",
        )
        .replace("zone = ", "sweep_interval = \"5m\"\nzone = ");
        let e = run(d.path(), &bad).unwrap_err().to_string();
        for want in [
            "location_hint: must be one of",
            "max_requests_per_second: must be between 1 and 20",
            "sweep_interval: must be between 1s and 1m",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
        assert!(!e.contains("cf-secret"));
    }
}
