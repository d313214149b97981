//! Reads `control.toml` into a [`LoadedControlConfig`], or into every problem it has,
//! each as `file:line:col: key: message` (the daemon's config format, see
//! `config/load.rs`): syntax errors from toml's recovering parser, then serde errors
//! one at a time (dropping the offending key and retrying, so every wrong key shows in
//! one run), then the cross-field rules, then the secret files.

use super::config::{ControlConfig, endpoint_text, validate};
use super::provision::local::{KeyPair, LocalSettings};
use crate::config::diagnostic::{ConfigError, Diagnostic};
use crate::secrets::{Secret, source};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A valid config with the secrets it names, read (a bad secret file is a config
/// error, reported before anything starts).
#[derive(Debug, Clone)]
pub struct LoadedControlConfig {
    pub path: PathBuf,
    pub config: ControlConfig,
    pub token: Secret,
    /// `[provisioner.local]` ready to use, when that is the kind.
    pub local: Option<LocalSettings>,
}

pub fn load(
    path: &Path,
    credentials_dir: Option<&Path>,
) -> Result<LoadedControlConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            "; create it (see control.example.toml) or pass --config / HUBKEEPER_CONTROL_CONFIG"
        } else {
            ""
        };
        ConfigError::single(
            path.to_path_buf(),
            format!("cannot read the config file: {e}{hint}"),
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, path, base, credentials_dir)
}

pub fn parse(
    text: &str,
    path: &Path,
    base: &Path,
    credentials_dir: Option<&Path>,
) -> Result<LoadedControlConfig, ConfigError> {
    let fail = |mut problems: Vec<Diagnostic>| {
        problems.sort_by_key(|d| d.location.unwrap_or((usize::MAX, 0)));
        ConfigError {
            path: path.to_path_buf(),
            problems,
        }
    };
    let (mut table, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return Err(fail(
            syntax
                .iter()
                .map(|e| Diagnostic::new(None, e.message().trim()).at(text, e.span()))
                .collect(),
        ));
    }
    table.get_mut().make_owned();
    let index = SpanIndex::build(table.get_ref());

    let mut problems = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    let parsed = loop {
        match ControlConfig::deserialize(toml::de::Deserializer::from(table.clone())) {
            Ok(cfg) => break Some(cfg),
            Err(e) => {
                let key = e.span().and_then(|s| index.deepest_at(s.start));
                problems.push(Diagnostic::new(key.clone(), e.message().trim()).at(text, e.span()));
                // A wrong array entry (not a table) goes with its whole array.
                let key = key.map(|k| match k.strip_suffix(']') {
                    Some(rest) => rest[..rest.rfind('[').unwrap_or(rest.len())].to_owned(),
                    None => k,
                });
                match key {
                    Some(k) if remove_key(table.get_mut(), &k) => removed.push(k),
                    _ => break None,
                }
            }
        }
    };
    let Some(mut cfg) = parsed else {
        return Err(fail(problems));
    };
    resolve_paths(&mut cfg, base);
    for (key, message) in validate(&cfg) {
        let under_removed = removed
            .iter()
            .any(|r| key == *r || key.starts_with(&format!("{r}.")));
        if !under_removed {
            let span = index.key_span(&key);
            problems.push(Diagnostic::new(Some(key), message).at(text, span));
        }
    }
    if !problems.is_empty() {
        return Err(fail(problems));
    }

    let mut secret_problems = Vec::new();
    let mut take = |key: String, r: Result<Secret, source::SourceError>| match r {
        Ok(s) => Some(s),
        Err(e) => {
            let span = index.key_span(&key);
            secret_problems.push(Diagnostic::new(Some(key), e.to_string()).at(text, span));
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
                // Array entries have no key of their own in the span index: point at
                // the array.
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
    if !secret_problems.is_empty() {
        return Err(fail(secret_problems));
    }
    let local = local.map(|(l, keys)| LocalSettings {
        s3_endpoint: endpoint_text(&l.s3_endpoint),
        r2_endpoint: endpoint_text(l.r2_endpoint.as_ref().unwrap_or(&l.s3_endpoint)),
        region: l.region.as_str().to_owned(),
        account_tag: l.account_tag.as_str().to_owned(),
        keys: keys.into_iter().flatten().collect(),
    });
    Ok(LoadedControlConfig {
        path: path.to_path_buf(),
        config: cfg,
        token: token.expect("no problems means the token was read"),
        local,
    })
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
    if let Some(l) = &mut cfg.provisioner.local {
        for k in &mut l.keys {
            fix(&mut k.access_key_id_file);
            fix(&mut k.secret_access_key_file);
        }
    }
}

/// Byte spans of every key and value by dotted path (array-of-tables entries as
/// `key[i]`), to turn serde's byte offsets into key names and to place rule violations.
struct SpanIndex {
    entries: BTreeMap<String, (Range<usize>, Range<usize>)>,
}

impl SpanIndex {
    fn build(root: &DeTable<'_>) -> Self {
        fn walk_value(
            v: &Spanned<DeValue<'_>>,
            path: &str,
            out: &mut BTreeMap<String, (Range<usize>, Range<usize>)>,
        ) {
            match v.get_ref() {
                DeValue::Table(inner) => walk(inner, path, out),
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let p = format!("{path}[{i}]");
                        out.insert(p.clone(), (item.span(), item.span()));
                        walk_value(item, &p, out);
                    }
                }
                _ => {}
            }
        }
        fn walk(
            t: &DeTable<'_>,
            prefix: &str,
            out: &mut BTreeMap<String, (Range<usize>, Range<usize>)>,
        ) {
            for (k, v) in t.iter() {
                let path = if prefix.is_empty() {
                    k.get_ref().to_string()
                } else {
                    format!("{prefix}.{}", k.get_ref())
                };
                out.insert(path.clone(), (k.span(), v.span()));
                walk_value(v, &path, out);
            }
        }
        let mut entries = BTreeMap::new();
        walk(root, "", &mut entries);
        Self { entries }
    }

    /// The deepest key whose key or value contains byte `pos`.
    fn deepest_at(&self, pos: usize) -> Option<String> {
        self.entries
            .iter()
            .filter(|(_, (k, v))| k.contains(&pos) || v.contains(&pos) || v.start == pos)
            .max_by_key(|(path, _)| path.matches(['.', '[']).count())
            .map(|(path, _)| path.clone())
    }

    /// The span of `key`, or of its closest parent present in the file.
    fn key_span(&self, key: &str) -> Option<Range<usize>> {
        let mut k = key;
        loop {
            if let Some((span, _)) = self.entries.get(k) {
                return Some(span.clone());
            }
            k = &k[..k.rfind(['.', '['])?];
        }
    }
}

/// Removes the key at a dotted path (with `[i]` array steps before the last key) from
/// the parsed document.
fn remove_key(root: &mut DeTable<'_>, path: &str) -> bool {
    let mut steps: Vec<(&str, Option<usize>)> = Vec::new();
    for part in path.split('.') {
        match part.split_once('[') {
            Some((name, idx)) => {
                let Ok(i) = idx.trim_end_matches(']').parse() else {
                    return false;
                };
                steps.push((name, Some(i)));
            }
            None => steps.push((part, None)),
        }
    }
    let Some((last, None)) = steps.pop() else {
        return false;
    };
    let mut t = root;
    for (name, idx) in steps {
        let Some(v) = t.get_mut(name).map(Spanned::get_mut) else {
            return false;
        };
        let v = match (v, idx) {
            (v, None) => v,
            (DeValue::Array(items), Some(i)) => match items.get_mut(i) {
                Some(item) => item.get_mut(),
                None => return false,
            },
            _ => return false,
        };
        match v {
            DeValue::Table(inner) => t = inner,
            _ => return false,
        }
    }
    t.remove(last).is_some()
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
        let l = c.local.unwrap();
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
        let text = include_str!("../../control.example.toml")
            .replace("/etc/hubkeeper/", &format!("{}/", d.path().display()));
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
        let (el, ml) = (example.local.unwrap(), defaults.local.unwrap());
        assert_eq!(el.r2_endpoint, ml.r2_endpoint);
        assert_eq!(el.region, ml.region);
        assert_eq!(el.keys.len(), 2);
    }
}
