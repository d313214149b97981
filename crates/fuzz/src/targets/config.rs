//! Config text through what `check-config` runs: the daemon's loader
//! (`hubkeeper::config::load::parse`) and the control service's
//! (`hubkeeper_control::config_load::parse`). Inputs start from valid configs and get
//! values replaced (wrong types, huge numbers, absurd durations, hostile strings),
//! keys dropped or added, hostile TOML fragments, then byte damage.
//!
//! Properties: no panic; a refused config has at least one problem and every problem
//! names where it is (a line or a key; except "this is the other program's config",
//! which is about the whole file); no problem quotes a secret file's contents.

use super::Target;
use crate::craft::{self, U};
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// Every secret file the templates name holds a value with this in it.
const SECRET_MARK: &str = "SEKRIT";

const MANAGED: &str = r#"
enabled = true
mode = "managed"
hub_id = "hub-7f3a"
socket = "run/hubkeeper.sock"
socket_mode = "0660"
secrets_dir = "secrets"
log_level = "info"
[managed]
url = "http://127.0.0.1:8787"
token_file = "control-token"
account_id = "acct-123"
license_id = "lic-456"
requested_subdomain = "acme"
request_timeout = "30s"
[tunnel]
cloudflared = "/usr/bin/cloudflared"
origin = "http://127.0.0.1:8080"
no_tls_verify = false
metrics = "127.0.0.1:20241"
grace_period = "30s"
ready_timeout = "60s"
restart_after_failed_probes = 3
backoff_initial = "1s"
backoff_max = "5m"
[r2]
force_path_style = true
[backup]
enabled = true
rustic = "/usr/bin/rustic"
paths = ["/var/lib/hub"]
interval = "24h"
keep_daily = 7
keep_weekly = 4
keep_monthly = 6
timeout = "12h"
nice = 10
io_idle = true
[health]
interval = "60s"
dns_resolver = "system"
[disable]
delete_bucket = false
retention_days = 30
[api]
max_connections = 128
request_timeout = "10s"
"#;

const SELF_MANAGED: &str = r#"
enabled = true
mode = "self_managed"
hub_id = "hub-1"
socket = "run/hubkeeper.sock"
secrets_dir = "secrets"
[self_managed]
api_base = "https://api.cloudflare.com/client/v4"
account_id = "0123abcd"
api_token_file = "cloudflare-token"
zone = "example.com"
hostname = "lp-123.example.com"
tunnel_name = "hubkeeper-hub-1"
[self_managed.r2]
bucket = "hub-backups"
access_key_id_file = "r2-access-key-id"
secret_access_key_file = "r2-secret-key"
endpoint = "https://0123abcd.r2.cloudflarestorage.com"
[tunnel]
origin = "http://127.0.0.1:8080"
[backup]
paths = ["/var/lib/hub", "data"]
"#;

const DISABLED: &str = r#"
enabled = false
mode = "managed"
hub_id = "hub-1"
"#;

const CONTROL: &str = r#"
listen = "127.0.0.1:8787"
token_file = "control-token"
database = "control.db"
zone = "hubs.localhost"
log_level = "info"
max_connections = 64
request_timeout = "10s"
[provisioner]
kind = "local"
[provisioner.local]
s3_endpoint = "http://127.0.0.1:9000"
account_tag = "0000000000000000000000000000dev0"
[[provisioner.local.keys]]
access_key_id_file = "r2-access-key-id"
secret_access_key_file = "r2-secret-key"
[[provisioner.local.keys]]
access_key_id_file = "r2-access-key-id"
secret_access_key_file = "r2-secret-key"
"#;

/// Hostile TOML, spliced in as text.
const FRAGMENTS: &[&str] = &[
    "\n[managed]\n",
    "\n[[backup]]\n",
    "\n[backup.paths]\n",
    "\nhub_id = \"dup\"\n",
    "\n[tunnel]\n[tunnel]\n",
    "\na.b.c.d.e = 1\n",
    "\n\"\" = 1\n",
    "\nx = '''\n",
    "\nx = \"\"\"\\\n",
    "\nx = 1979-05-27T07:32:00Z\n",
    "\nx = 1979-05-27\n",
    "\nx = 07:32:00\n",
    "\nx = {a = 1, a = 2}\n",
    "\nx = [1, \"a\", {b = 2}]\n",
    "\ninterval = \"10000y\"\n",
    "\n[backup]\ninterval = \"300000000000y\"\n",
    "\n[tunnel]\nready_timeout = \"300000000000y\"\n",
    "\n[disable]\nretention_days = 4294967295\n",
    "\n[tunnel]\nmetrics = \"127.0.0.1:0\"\n",
    "\n[managed]\nurl = \"ftp://x\"\n",
    "\n\u{feff}\n",
    "\r\n",
    "\\",
];

pub struct ConfigTarget {
    dir: tempfile::TempDir,
}

impl ConfigTarget {
    pub fn new() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary dir: {e}"))?;
        for (name, value) in [
            ("control-token", "SEKRIT-control-token"),
            ("cloudflare-token", "SEKRIT-cloudflare-token"),
            ("r2-access-key-id", "SEKRIT-access-key-id"),
            ("r2-secret-key", "SEKRIT-secret-key"),
        ] {
            std::fs::write(dir.path().join(name), value)
                .map_err(|e| format!("cannot write {name}: {e}"))?;
        }
        Ok(Self { dir })
    }
}

/// Every key path in `t`, tables included.
fn paths(t: &Table, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (k, v) in t {
        prefix.push(k.clone());
        out.push(prefix.clone());
        if let Value::Table(inner) = v {
            paths(inner, prefix, out);
        }
        prefix.pop();
    }
}

fn table_at<'t>(t: &'t mut Table, path: &[String]) -> Option<&'t mut Table> {
    let mut cur = t;
    for k in path {
        cur = cur.get_mut(k)?.as_table_mut()?;
    }
    Some(cur)
}

fn value(u: U, depth: u32) -> arbitrary::Result<Value> {
    Ok(match u.int_in_range(0..=11u8)? {
        0..=2 => Value::String(craft::text(u)?),
        3 => Value::String((*u.choose(craft::DURATIONS)?).to_owned()),
        4 => Value::Integer(*u.choose(&[
            0,
            -1,
            1,
            255,
            256,
            65535,
            65536,
            i64::from(u32::MAX),
            i64::from(u32::MAX) + 1,
            i64::MAX,
            i64::MIN,
        ])?),
        5 => Value::Integer(u.arbitrary()?),
        6 => Value::Float(*u.choose(&[
            0.0,
            -0.0,
            0.5,
            1e19,
            1e308,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ])?),
        7 => Value::Boolean(u.arbitrary()?),
        8 if depth < 3 => {
            let n = u.int_in_range(0..=3u8)?;
            let mut a = Vec::new();
            for _ in 0..n {
                a.push(value(u, depth + 1)?);
            }
            Value::Array(a)
        }
        9 if depth < 3 => {
            let mut t = Table::new();
            let n = u.int_in_range(0..=2u8)?;
            for _ in 0..n {
                t.insert(craft::text(u)?, value(u, depth + 1)?);
            }
            Value::Table(t)
        }
        10 => Value::String(
            (*u.choose(&[
                "managed",
                "self_managed",
                "disabled",
                "",
                "Managed",
                "trace",
            ])?)
            .to_owned(),
        ),
        _ => Value::String(
            (*u.choose(&[
                "127.0.0.1:0",
                "127.0.0.1:65535",
                "127.0.0.1:65536",
                "[::1]:1",
                "0.0.0.0:80",
                "localhost:1",
                "http://127.0.0.1:8080",
                "https://[::1]/",
                "unix:/x",
                "control-token",
                "missing-file",
                ".",
                "0777",
                "7777",
                "0o660",
            ])?)
            .to_owned(),
        ),
    })
}

/// One structural edit of `t`.
fn edit(u: U, t: &mut Table) -> arbitrary::Result<()> {
    let mut all = Vec::new();
    paths(t, &mut Vec::new(), &mut all);
    if all.is_empty() {
        t.insert(craft::text(u)?, value(u, 0)?);
        return Ok(());
    }
    let path = u.choose(&all)?.clone();
    let (last, parent) = path.split_last().ok_or(arbitrary::Error::NotEnoughData)?;
    let Some(table) = table_at(t, parent) else {
        return Ok(());
    };
    match u.int_in_range(0..=5u8)? {
        0..=2 => {
            table.insert(last.clone(), value(u, 0)?);
        }
        3 => {
            table.remove(last);
        }
        4 => {
            let key = if u.arbitrary()? {
                format!("{last}_extra")
            } else {
                craft::text(u)?
            };
            table.insert(key, value(u, 0)?);
        }
        _ => {
            if let Some(v) = table.remove(last) {
                table.insert(craft::text(u)?, v);
            }
        }
    }
    Ok(())
}

impl Target for ConfigTarget {
    fn generate(&self, u: U) -> arbitrary::Result<Vec<u8>> {
        let which = u.int_in_range(0..=3u8)?;
        let template = [MANAGED, SELF_MANAGED, DISABLED, CONTROL][usize::from(which)];
        let mut text = match template.parse::<Table>() {
            Ok(mut t) => {
                for _ in 0..u.int_in_range(0..=4u8)? {
                    edit(u, &mut t)?;
                }
                toml::to_string(&t).unwrap_or_else(|_| template.to_owned())
            }
            Err(_) => template.to_owned(),
        };
        if u.int_in_range(0..=3u8)? == 0 {
            let at = floor_boundary(&text, u.int_in_range(0..=text.len())?);
            let frag = match u.int_in_range(0..=4u8)? {
                0 => {
                    let n = *u.choose(&[64usize, 1000, 10_000, 100_000])?;
                    let (open, close) = *u.choose(&[("[", "]"), ("{a=", "}")])?;
                    format!("\ndeep = {}1{}\n", open.repeat(n), close.repeat(n))
                }
                1 => format!(
                    "\n[{}]\n",
                    "a.".repeat(*u.choose(&[64usize, 1000, 10_000])?) + "b"
                ),
                _ => (*u.choose(FRAGMENTS)?).to_owned(),
            };
            text.insert_str(at, &frag);
        }
        let mut bytes = text.into_bytes();
        if u.int_in_range(0..=3u8)? == 0 {
            craft::mutate(u, &mut bytes)?;
        }
        bytes.insert(0, which);
        Ok(bytes)
    }

    fn run(&mut self, input: &[u8]) -> Result<(), String> {
        let Some((&which, rest)) = input.split_first() else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(rest);
        let base = self.dir.path();
        let path: PathBuf = base.join("fuzz.toml");
        let result = if which == 3 {
            hubkeeper_control::config_load::parse(&text, &path, base, None).map(|_| ())
        } else {
            hubkeeper::config::load::parse(&text, &path, base, None).map(|_| ())
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => check_error(&e, &path),
        }
    }
}

fn check_error(e: &hubkeeper::config::ConfigError, path: &Path) -> Result<(), String> {
    if e.problems.is_empty() {
        return Err("a refused config has no problems listed".into());
    }
    if e.path != path {
        return Err(format!(
            "the error names {} instead of the file",
            e.path.display()
        ));
    }
    for p in &e.problems {
        // The one whole-file problem: a config for the other program (its keys
        // follow, each placed).
        let whole_file = p.message.starts_with("this looks like a config for");
        if p.location.is_none() && p.key.is_none() && !whole_file {
            return Err(format!("a problem names no place: {}", p.message));
        }
        if p.message.contains(SECRET_MARK) {
            return Err(format!("a problem quotes a secret: {}", p.message));
        }
    }
    Ok(())
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
