//! The rustic profile (spec §6) and the repository password, in the secrets store.
//!
//! The profile is written with the TOML serializer (never by pasting strings, so no
//! value can break out of its quotes) and rewritten atomically only when its content
//! changes. The password is generated once and never overwritten: without it the
//! repository's backups cannot be restored.

use crate::config::Config;
use crate::health::r2::Target;
use crate::secrets::{SecretsStore, StoreError};
use base64::Engine;
use serde::Serialize;
use std::path::PathBuf;

pub const PROFILE: &str = "rustic/profile.toml";
pub const PASSWORD: &str = "rustic/password";

#[derive(Serialize)]
struct Profile<'a> {
    repository: Repository<'a>,
    backup: BackupSection<'a>,
    forget: Forget,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Repository<'a> {
    repository: &'static str,
    password_file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_dir: Option<String>,
    options: Options<'a>,
}

/// opendal's S3 options: every value a string, as rustic requires.
#[derive(Serialize)]
struct Options<'a> {
    endpoint: &'a str,
    region: &'static str,
    bucket: &'a str,
    root: String,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_virtual_host_style: Option<&'static str>,
}

#[derive(Serialize)]
struct BackupSection<'a> {
    host: &'a str,
    snapshots: Vec<Snapshot>,
}

#[derive(Serialize)]
struct Snapshot {
    sources: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Forget {
    keep_daily: u32,
    keep_weekly: u32,
    keep_monthly: u32,
    prune: bool,
}

/// The profile's text for this config and bucket.
pub fn render(
    cfg: &Config,
    hub_id: &str,
    target: &Target,
    store: &SecretsStore,
) -> Result<String, StoreError> {
    let password = store.file(PASSWORD);
    // Under systemd, CacheDirectory= gives rustic a writable cache outside the state.
    let cache_dir = std::env::var_os("CACHE_DIRECTORY")
        .map(|d| PathBuf::from(d).join("rustic").display().to_string());
    let b = &cfg.backup;
    let profile = Profile {
        repository: Repository {
            repository: "opendal:s3",
            password_file: password.display().to_string(),
            cache_dir,
            options: Options {
                endpoint: &target.endpoint,
                region: "auto",
                bucket: &target.bucket,
                root: format!("/hubkeeper/{hub_id}"),
                access_key_id: &target.access_key_id,
                secret_access_key: target.secret_access_key.expose(),
                enable_virtual_host_style: (!target.path_style).then_some("true"),
            },
        },
        backup: BackupSection {
            host: hub_id,
            snapshots: vec![Snapshot {
                sources: b.paths.iter().map(|p| p.display().to_string()).collect(),
            }],
        },
        forget: Forget {
            keep_daily: b.keep_daily,
            keep_weekly: b.keep_weekly,
            keep_monthly: b.keep_monthly,
            prune: true,
        },
    };
    toml::to_string(&profile).map_err(|e| StoreError::Encode {
        name: PROFILE.to_owned(),
        message: e.to_string(),
    })
}

/// Writes the profile if it changed, and the password if there is none.
/// Returns the profile's path without `.toml` (how `rustic -P` wants it).
pub fn write(
    cfg: &Config,
    hub_id: &str,
    target: &Target,
    store: &SecretsStore,
) -> Result<PathBuf, StoreError> {
    ensure_password(store)?;
    if store.write_if_changed(PROFILE, render(cfg, hub_id, target, store)?.as_bytes())? {
        tracing::info!(profile = %store.path(PROFILE)?.display(), "rustic profile written");
    }
    store.path("rustic/profile")
}

/// 32 random bytes, base64url: generated once, never overwritten.
pub fn ensure_password(store: &SecretsStore) -> Result<(), StoreError> {
    if store.read(PASSWORD)?.is_some() {
        return Ok(());
    }
    let bytes: [u8; 32] = rand::random();
    let pw = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    store.write(PASSWORD, pw.as_bytes())?;
    tracing::info!(
        "generated the backup repository password (secrets_dir/rustic/password): keep a copy somewhere safe"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;

    fn target(path_style: bool) -> Target {
        Target {
            endpoint: "https://acct.r2.cloudflarestorage.com".into(),
            bucket: "b\"ucket".into(),
            access_key_id: "AK".into(),
            secret_access_key: Secret::new("S\"K'\n"),
            path_style,
        }
    }

    #[test]
    fn profile_has_the_pinned_shape_and_quotes_safely() {
        let t = tempfile::tempdir().unwrap();
        let store = SecretsStore::open(&t.path().join("s")).unwrap();
        let cfg: Config =
            toml::from_str("[backup]\npaths = [\"/var/lib/hub\", \"/etc/hub\"]\nkeep_daily = 3\n")
                .unwrap();
        let text = render(&cfg, "hub-1", &target(true), &store).unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["repository"]["repository"].as_str(), Some("opendal:s3"));
        assert!(
            v["repository"]["password-file"]
                .as_str()
                .unwrap()
                .ends_with("rustic/password")
        );
        let o = &v["repository"]["options"];
        assert_eq!(o["region"].as_str(), Some("auto"));
        assert_eq!(o["root"].as_str(), Some("/hubkeeper/hub-1"));
        assert_eq!(o["bucket"].as_str(), Some("b\"ucket"));
        assert_eq!(o["secret_access_key"].as_str(), Some("S\"K'\n"));
        assert!(o.get("enable_virtual_host_style").is_none());
        assert_eq!(v["backup"]["host"].as_str(), Some("hub-1"));
        assert_eq!(
            v["backup"]["snapshots"][0]["sources"][1].as_str(),
            Some("/etc/hub")
        );
        assert_eq!(v["forget"]["keep-daily"].as_integer(), Some(3));
        assert_eq!(v["forget"]["prune"].as_bool(), Some(true));
        let vh: toml::Value =
            toml::from_str(&render(&cfg, "hub-1", &target(false), &store).unwrap()).unwrap();
        assert_eq!(
            vh["repository"]["options"]["enable_virtual_host_style"].as_str(),
            Some("true")
        );
    }

    #[test]
    fn password_is_generated_once() {
        let t = tempfile::tempdir().unwrap();
        let store = SecretsStore::open(&t.path().join("s")).unwrap();
        ensure_password(&store).unwrap();
        let first = store.read(PASSWORD).unwrap().unwrap();
        assert_eq!(first.len(), 43);
        ensure_password(&store).unwrap();
        assert_eq!(store.read(PASSWORD).unwrap().unwrap(), first);
    }
}
