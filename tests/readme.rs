//! README.md shows what the binaries print. Every sample block in it is marked with
//! `<!-- sample: ID -->` on the line before its fence; this test produces each one by
//! running the real binaries (a disabled daemon, a self-managed one, a managed hub with
//! the control service, the rclone S3 store, the cloudflared stand-in and the real
//! rustic), normalises what legitimately varies (see [`Rules`]), and compares.
//!
//! `HUBKEEPER_README_BLESS=1` rewrites the marked blocks with what the binaries print
//! (and nothing else in the file) instead of failing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use hubkeeper_proto::time::{parse_rfc3339, rfc3339};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::s3::free_port;
use support::stack::*;
use support::*;
use testkit as support;

const MARK: &str = "<!-- sample: ";
const BLESS: &str = "HUBKEEPER_README_BLESS";
const FIX: &str =
    "update the README sample, or run with HUBKEEPER_README_BLESS=1 to rewrite the marked blocks";

/// Fences without a marker may only hold what is not output: commands and files.
const UNMARKED_OK: [&str; 3] = ["sh", "ini", "toml"];

/// Backups run real rustic: on a loaded two-core machine they take minutes.
const BACKUP_WAIT: Duration = Duration::from_secs(180);

fn readme_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")
}

// ---------------------------------------------------------------------------------
// Finding the marked blocks.

/// One marked block of README.md.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    id: String,
    /// 1-based line of the fence that opens it.
    line: usize,
    /// Indentation of the fence (blocks inside list items are indented).
    indent: String,
    /// Byte range of the lines between the fences (each with its indentation).
    range: std::ops::Range<usize>,
    /// Those lines without the indentation, each ending in a newline.
    body: String,
}

/// The marked blocks, or what is wrong with the file's markers and fences.
fn parse(text: &str) -> Result<Vec<Sample>, Vec<String>> {
    let mut lines = Vec::new();
    let mut at = 0;
    for l in text.split_inclusive('\n') {
        lines.push((at, l));
        at += l.len();
    }
    let mut samples = Vec::new();
    let mut problems = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].1.trim();
        let id = trimmed
            .strip_prefix(MARK)
            .and_then(|r| r.strip_suffix("-->"))
            .map(|r| r.trim().to_owned());
        let fence = trimmed.starts_with("```");
        if id.is_none() && !fence {
            i += 1;
            continue;
        }
        let (open, id) = match id {
            Some(id) => (i + 1, Some(id)),
            None => (i, None),
        };
        let Some(&(_, fence_line)) = lines.get(open).filter(|(_, l)| l.trim().starts_with("```"))
        else {
            problems.push(format!(
                "README.md:{}: a sample marker must be followed by a fence",
                i + 1
            ));
            i += 1;
            continue;
        };
        let indent: String = fence_line
            .chars()
            .take_while(|c| *c == ' ')
            .collect::<String>();
        let info = fence_line.trim().trim_start_matches('`').trim();
        let Some(close) = (open + 1..lines.len()).find(|&j| lines[j].1.trim() == "```") else {
            problems.push(format!("README.md:{}: a fence is never closed", open + 1));
            break;
        };
        match id {
            Some(id) => {
                let start = lines[open + 1].0;
                let end = lines[close].0;
                let body: String = lines[open + 1..close]
                    .iter()
                    .map(|(_, l)| l.strip_prefix(indent.as_str()).unwrap_or(l.trim_start()))
                    .collect();
                if samples.iter().any(|s: &Sample| s.id == id) {
                    problems.push(format!(
                        "README.md:{}: sample `{id}` is marked twice",
                        i + 1
                    ));
                }
                samples.push(Sample {
                    id,
                    line: open + 1,
                    indent,
                    range: start..end,
                    body,
                });
            }
            None if !UNMARKED_OK.contains(&info) => problems.push(format!(
                "README.md:{}: a ```{info} block without a `{MARK}ID -->` marker: output shown in \
                 the README must be a tested sample (mark it and add it to tests/readme.rs, or \
                 remove it); commands and files use ```sh, ```ini or ```toml",
                open + 1
            )),
            None => {}
        }
        i = close + 1;
    }
    if problems.is_empty() {
        Ok(samples)
    } else {
        Err(problems)
    }
}

/// `text` with each marked block's lines replaced by `new[id]` (indented like its fence).
fn bless(text: &str, samples: &[Sample], new: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    let mut ordered: Vec<&Sample> = samples.iter().collect();
    ordered.sort_by_key(|s| std::cmp::Reverse(s.range.start));
    for s in ordered {
        if let Some(body) = new.get(&s.id) {
            let indented: String = body
                .split_inclusive('\n')
                .map(|l| {
                    if l.trim().is_empty() {
                        l.to_owned()
                    } else {
                        format!("{}{l}", s.indent)
                    }
                })
                .collect();
            out.replace_range(s.range.clone(), &indented);
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// Normalising what varies from run to run.

/// What a sample's output is normalised with before it is compared, in this order:
///
/// 1. `literal`: what the test chose, as the README shows it on a real host: each temp
///    path (longest first), e.g. `<tmp>/hk.toml` → `/etc/hubkeeper/hubkeeper.toml`, and
///    each loopback port it picked, e.g. `127.0.0.1:<port>` → `127.0.0.1:20241`;
/// 2. RFC 3339 timestamps: the earliest one in the sample becomes
///    `2026-11-23T10:00:00Z`, every other one that plus its distance from the earliest,
///    rounded to whole hours (so "next backup in 24h" stays visible);
/// 3. process ids: `pid N`, `"pid": N`, `pid=N`, `pgid=N` → 4242, `ppid=N` → 4100;
/// 4. the stand-in's event times `t_ms=N` → the first timestamp's, 1795428000000;
/// 5. durations `(N ms)` → `(3 ms)`;
/// 6. rustic snapshot ids `(snapshot 1a2b3c4d)` → `(snapshot 5e1f3b2a)`;
/// 7. UUIDs → `6ff42ae2-765d-4adf-8112-31c55c1551ef`.
///
/// Each rule maps its own output to itself, so normalising a README block changes
/// nothing: the README shows exactly the normalised output.
#[derive(Debug, Default, Clone)]
struct Rules {
    literal: Vec<(String, String)>,
}

const BASE_TIME: &str = "2026-11-23T10:00:00Z";
const PID: &str = "4242";
const PPID: &str = "4100";
const MILLIS: &str = "3";
const SNAPSHOT: &str = "5e1f3b2a";
const UUID: &str = "6ff42ae2-765d-4adf-8112-31c55c1551ef";

impl Rules {
    fn path(self, from: &Path, to: &str) -> Rules {
        self.literal(&from.display().to_string(), to)
    }

    fn port(self, port: u16, to: u16) -> Rules {
        self.literal(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{to}"))
    }

    fn literal(mut self, from: &str, to: &str) -> Rules {
        self.literal.push((from.to_owned(), to.to_owned()));
        self
    }

    fn apply(&self, text: &str) -> String {
        let mut literal = self.literal.clone();
        literal.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        let mut t = text.to_owned();
        for (from, to) in &literal {
            t = t.replace(from.as_str(), to);
        }
        let t = timestamps(&t);
        let t = replace_each(&t, pid_at, |_| PID.to_owned());
        let t = replace_each(&t, |t, i| digits_after(t, i, "ppid="), |_| PPID.to_owned());
        let base_ms = parse_rfc3339(BASE_TIME)
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            .to_string();
        let t = replace_each(&t, |t, i| digits_after(t, i, "t_ms="), |_| base_ms.clone());
        let t = replace_each(&t, millis_at, |_| MILLIS.to_owned());
        let t = replace_each(&t, snapshot_at, |_| SNAPSHOT.to_owned());
        replace_each(&t, uuid_at, |_| UUID.to_owned())
    }
}

/// Replaces every match: `find(text, i)` gives the byte range of a match starting its
/// search at `i` (the part to replace may be inside what was recognised).
fn replace_each(
    text: &str,
    find: impl Fn(&str, usize) -> Option<std::ops::Range<usize>>,
    mut with: impl FnMut(&str) -> String,
) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < text.len() {
        if text.is_char_boundary(i)
            && let Some(r) = find(text, i)
        {
            out.push_str(&text[i..r.start]);
            out.push_str(&with(&text[r.clone()]));
            i = r.end;
            continue;
        }
        let ch = text[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The digits right after `prefix` at `i`, if `prefix` starts a word there and is
/// followed by some.
fn digits_after(text: &str, i: usize, prefix: &str) -> Option<std::ops::Range<usize>> {
    let word_start = text[..i]
        .chars()
        .next_back()
        .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
    let rest = text[i..].strip_prefix(prefix).filter(|_| word_start)?;
    let n = rest.bytes().take_while(u8::is_ascii_digit).count();
    let start = i + prefix.len();
    (n > 0).then_some(start..start + n)
}

fn pid_at(text: &str, i: usize) -> Option<std::ops::Range<usize>> {
    ["pid ", "\"pid\": ", "pid=", "pgid="]
        .iter()
        .find_map(|p| digits_after(text, i, p))
}

fn millis_at(text: &str, i: usize) -> Option<std::ops::Range<usize>> {
    let r = digits_after(text, i, "(")?;
    text[r.end..].starts_with(" ms)").then_some(r)
}

fn snapshot_at(text: &str, i: usize) -> Option<std::ops::Range<usize>> {
    let rest = text[i..].strip_prefix("(snapshot ")?;
    let n = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
    let start = i + "(snapshot ".len();
    (n == 8 && rest[n..].starts_with(')')).then_some(start..start + n)
}

fn uuid_at(text: &str, i: usize) -> Option<std::ops::Range<usize>> {
    let b = text.as_bytes().get(i..i + 36)?;
    let shape = b.iter().enumerate().all(|(k, c)| match k {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    });
    let boundary = |c: Option<&u8>| c.is_none_or(|c| !c.is_ascii_alphanumeric());
    (shape
        && boundary(text.as_bytes().get(i + 36))
        && (i == 0 || boundary(text.as_bytes().get(i - 1))))
    .then_some(i..i + 36)
}

/// `2026-11-23T10:00:00Z`, optionally with a fraction: the length of one at `i`.
fn timestamp_at(text: &str, i: usize) -> Option<std::ops::Range<usize>> {
    let b = text.as_bytes().get(i..)?;
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if b.len() < shape.len() + 1 {
        return None;
    }
    let ok = shape.iter().zip(b).all(|(s, c)| match s {
        b'd' => c.is_ascii_digit(),
        other => other == c,
    });
    if !ok {
        return None;
    }
    let mut n = shape.len();
    if b[n] == b'.' {
        n += 1 + b[n + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
    }
    (b.get(n) == Some(&b'Z')).then_some(i..i + n + 1)
}

fn timestamps(text: &str) -> String {
    let mut found = Vec::new();
    let _ = replace_each(text, timestamp_at, |t| {
        found.push(parse_rfc3339(t).unwrap_or_else(|| panic!("bad timestamp {t}")));
        String::new()
    });
    let Some(earliest) = found.iter().min().copied() else {
        return text.to_owned();
    };
    let base = parse_rfc3339(BASE_TIME).unwrap();
    replace_each(text, timestamp_at, |t| {
        let d = parse_rfc3339(t).unwrap().duration_since(earliest).unwrap();
        let hours = (d.as_secs() + 1800) / 3600;
        rfc3339(base + Duration::from_secs(hours * 3600))
    })
}

// ---------------------------------------------------------------------------------
// Producing the samples with the real binaries.

/// A produced sample: the command line as the README shows it, and its output.
struct Produced {
    text: String,
}

/// Runs `program args` with `env`, checks its exit code, and returns
/// `$ <shown> ...` followed by its stdout and stderr, normalised by `rules`.
fn run(
    program: &Path,
    shown: &str,
    args: &[&str],
    env: &[(&str, &Path)],
    want_code: i32,
    rules: &Rules,
) -> Produced {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("HUBKEEPER_CONFIG")
        .env_remove("HUBKEEPER_SOCKET")
        .env_remove("HUBKEEPER_CONTROL_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(want_code),
        "{shown} {args:?}: stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let mut line = format!("$ {shown}");
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let mut text = format!("{line}\n{stdout}{stderr}");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Produced {
        text: rules.apply(&text),
    }
}

/// `hubkeeper <args>` with the config at `config` standing in for the default
/// `/etc/hubkeeper/hubkeeper.toml` (through `HUBKEEPER_CONFIG`).
fn hubkeeper(config: &Path, args: &[&str], want_code: i32, rules: &Rules) -> Produced {
    run(
        &BIN,
        "hubkeeper",
        args,
        &[("HUBKEEPER_CONFIG", config)],
        want_code,
        rules,
    )
}

/// The paths of a testkit daemon's temp dir, as the README shows them on a real host.
fn daemon_rules(d: &Daemon) -> Rules {
    let dir = d.dir.path();
    let mut rules = Rules::default();
    // The public-path check goes to the stand-in's edge on a loopback port; in
    // production it is the default, the hub's hostname.
    let config = std::fs::read_to_string(&d.config).unwrap_or_default();
    if let Some(url) = config.lines().find_map(|l| {
        l.strip_prefix("public_url = \"")
            .and_then(|v| v.strip_suffix('"'))
    }) {
        rules = rules.literal(url, "https://acme-1.hub.test/");
    }
    rules
        .path(&d.config, "/etc/hubkeeper/hubkeeper.toml")
        .path(&d.socket, "/run/hubkeeper/hubkeeper.sock")
        .path(&dir.join("state/secrets"), "/var/lib/hubkeeper/secrets")
        .path(dir, "/etc/hubkeeper")
}

/// The daemon's status as `hubkeeper status` prints it, once `ok` holds for the
/// printed text (the status can move between a wait and the CLI call).
fn status_when(d: &Daemon, json: bool, what: &str, ok: impl Fn(&str) -> bool) -> Produced {
    let args: &[&str] = if json {
        &["status", "--json"]
    } else {
        &["status"]
    };
    let end = Instant::now() + BACKUP_WAIT;
    loop {
        let p = hubkeeper(&d.config, args, 0, &daemon_rules(d));
        if ok(&p.text) {
            return p;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for `hubkeeper status` to show {what}; last:\n{}\nlog:\n{}",
            p.text,
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The packaged config (`enabled = false`), socket and secrets in the temp dir.
fn packaged() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/hubkeeper.toml"))
        .unwrap()
}

fn command_line_samples(out: &mut BTreeMap<String, Produced>) {
    let dir = open_tempdir();
    let cfg = dir.path().join("hubkeeper.toml");
    let rules = Rules::default()
        .path(&cfg, "/etc/hubkeeper/hubkeeper.toml")
        .path(dir.path(), "/etc/hubkeeper");

    out.insert(
        "help".into(),
        run(&BIN, "hubkeeper", &["--help"], &[], 0, &rules),
    );

    std::fs::write(dir.path().join("control-token"), "t0k3n").unwrap();
    std::fs::write(
        &cfg,
        "enabled = true\nmode = \"managed\"\nhub_id = \"hub-7f3a\"\n\n[managed]\n\
         url = \"https://managed-cf.example.com\"\ntoken_file = \"control-token\"\n\
         account_id = \"acct-123\"\nlicense_id = \"lic-456\"\n",
    )
    .unwrap();
    out.insert(
        "check-config-ok".into(),
        hubkeeper(&cfg, &["check-config"], 0, &rules),
    );

    std::fs::write(
        &cfg,
        "enabled = false\n\n[tunnel]\nmetrics_port = 20241\n\n[health]\ninterval = \"often\"\n",
    )
    .unwrap();
    out.insert(
        "check-config-invalid".into(),
        hubkeeper(&cfg, &["check-config"], 78, &rules),
    );

    std::fs::write(
        &cfg,
        "enabled = true\nmode = \"managed\"\nhub_id = \"hub-7f3a\"\n",
    )
    .unwrap();
    let shown_cfg = cfg.to_str().unwrap();
    out.insert(
        "control-given-the-daemon-config".into(),
        run(
            &CONTROL_BIN,
            "hubkeeper-control",
            &["--config", shown_cfg],
            &[],
            78,
            &rules,
        ),
    );
}

/// What the README shows for a token and its id: a token's shape, not a real one.
const SHOWN_TOKEN: &str = "hka_3f9c2a71_q7Xv0Lr2m9TtZcN4bW8yKp1sH6dJfG3aE5uR0iOlVxM";
const SHOWN_OLD_ID: &str = "hka_0b1d2e3f";

/// A token roll with the `account` commands on a control service's database: an old
/// token, a new one (shown), the old one revoked by id, the list. Token values and ids
/// are random: each is replaced by the README's.
fn control_account_samples(out: &mut BTreeMap<String, Produced>) {
    let dir = open_tempdir();
    let cfg = dir.path().join("control.toml");
    std::fs::write(
        &cfg,
        "token_file = \"control-token\"\ndatabase = \"state/control.db\"\nzone = \"example.com\"\n\
         [provisioner]\nkind = \"local\"\n[provisioner.local]\ns3_endpoint = \"http://127.0.0.1:9000\"\n\
         account_tag = \"tag\"\n[[provisioner.local.keys]]\naccess_key_id_file = \"ak\"\n\
         secret_access_key_file = \"sk\"\n",
    )
    .unwrap();
    let rules = Rules::default();
    let env = [("HUBKEEPER_CONTROL_CONFIG", cfg.as_path())];
    let control = |args: &[&str]| run(&CONTROL_BIN, "hubkeeper-control", args, &env, 0, &rules);
    let token_in = |p: &Produced| p.text.lines().nth(1).unwrap().to_owned();

    let old = token_in(&control(&["account", "add", "acct-123"]));
    let new = control(&["account", "add", "acct-123"]);
    let new_token = token_in(&new);
    let (old_id, new_id) = (&old[..12], &new_token[..12]);
    let revoke = control(&["account", "revoke", "acct-123", "--token", old_id]);
    let list = control(&["account", "list"]);
    let text = [new.text, revoke.text, list.text]
        .concat()
        .replace(&new_token, SHOWN_TOKEN)
        .replace(new_id, &SHOWN_TOKEN[..12])
        .replace(old_id, SHOWN_OLD_ID);
    assert!(!text.contains(&old), "{text}");
    out.insert("control-account-roll".into(), Produced { text });
}

fn disabled_samples(out: &mut BTreeMap<String, Produced>) {
    let d = Daemon::start(&packaged());
    out.insert(
        "status-disabled".into(),
        status_when(&d, false, "DISABLED", |t| t.contains("hubkeeper DISABLED")),
    );
    out.insert(
        "status-json-disabled".into(),
        status_when(&d, true, "disabled", |t| {
            t.contains("\"state\": \"disabled\"")
        }),
    );
}

fn self_managed_samples(out: &mut BTreeMap<String, Produced>) {
    let d = Daemon::start_with_files(
        "enabled = true\nmode = \"self-managed\"\nhub_id = \"hub-7f3a\"\n\n[self_managed]\n\
         account_id = \"0123abcd\"\napi_token_file = \"cloudflare-token\"\nzone = \"example.com\"\n\
         hostname = \"hub-7f3a.example.com\"\n",
        &[("cloudflare-token", "cf-t0k3n")],
    );
    out.insert(
        "status-self-managed".into(),
        status_when(&d, false, "ERROR", |t| t.contains("hubkeeper ERROR")),
    );
}

/// A managed hub with the control service, the S3 store, the stand-in and rustic:
/// ready with its first backup done, then disabled.
fn managed_samples(out: &mut BTreeMap<String, Produced>) {
    let rustic = testkit::s3::rustic();
    let cs = ControlService::start();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("notes.txt"), "hub data\n").unwrap();
    let backup = format!(
        "[backup]\nrustic = \"{}\"\npaths = [\"{}\"]\n",
        rustic.display(),
        data.path().display()
    );
    let cfg =
        managed_config(&cs.url, free_port(), "").replace("[backup]\nenabled = false\n", &backup);
    let (d, _standin) = start_managed(&cfg, "");
    // The first verify follows the first backup at once: the sample shows it done.
    d.wait_status_within(BACKUP_WAIT, "ready with its first backup verified", |s| {
        s["state"] == "ready"
            && s["backup"]["last_success"].is_string()
            && s["backup"]["verify_state"] == "idle"
            && s["backup"]["last_verified"].is_string()
    });
    out.insert(
        "status-ready".into(),
        status_when(&d, false, "READY after a backup", |t| {
            t.contains("hubkeeper READY") && t.contains("last success")
        }),
    );

    save_like_an_editor(&d.config, &cfg.replace("enabled = true", "enabled = false"));
    let done = |s: &serde_json::Value| {
        s["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("disabled "))
    };
    d.wait_status_within(BACKUP_WAIT, "the disable done", |s| {
        s["state"] == "disabled" && done(s)
    });
    out.insert(
        "status-disabled-after-disable".into(),
        status_when(&d, false, "the disable note", |t| {
            t.contains("  note    disabled ")
        }),
    );
}

/// The stand-in run the way hubkeeper runs it (argv, own process group), with a
/// `NOTIFY_SOCKET` as a leaking supervisor would pass it: `/ready` asked once before it
/// connects and once after (the request that re-reads the behavior file connects
/// it), then one SIGTERM. Its `events.log` is the sample.
fn standin_samples(out: &mut BTreeMap<String, Produced>) {
    use std::os::unix::process::CommandExt;
    let dir = open_tempdir();
    let control = dir.path().join("standin");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&control).unwrap();
    std::fs::create_dir(&secrets).unwrap();
    let token = secrets.join("tunnel-token");
    std::fs::write(&token, fake_token()).unwrap();
    let notify = dir.path().join("notify");
    let _listener = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    let standin = Standin {
        dir: control.clone(),
    };
    standin.behave("connect_delay = 1h\n");
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let mut child = Command::new(&*STANDIN)
        .args(["tunnel", "--no-autoupdate", "--metrics", &metrics])
        .args(["--grace-period", "30s", "run", "--token-file"])
        .arg(&token)
        .env("CLOUDFLARED_STANDIN_DIR", &control)
        .env("NOTIFY_SOCKET", &notify)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = || {
        tcp(
            port,
            b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .map(|r| r.status)
    };
    wait_for(
        Duration::from_secs(20),
        "the stand-in's metrics server",
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    assert_eq!(ready().unwrap(), 503);
    // Read again on this request: it connects, then answers.
    standin.behave("connect_delay = 0s\n");
    assert_eq!(ready().unwrap(), 200);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let rules = Rules::default()
        .path(&secrets, "/var/lib/hubkeeper/secrets")
        .port(port, 20241);
    let events = std::fs::read_to_string(control.join("events.log")).unwrap();
    out.insert(
        "standin-events".into(),
        Produced {
            text: rules.apply(&events),
        },
    );
}

// ---------------------------------------------------------------------------------
// Comparing.

/// A line diff (longest common subsequence): ` ` both, `-` README, `+` binaries.
fn diff(readme: &str, actual: &str) -> String {
    let a: Vec<&str> = readme.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("      {}\n", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("    + {}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("    - {}\n", a[i]));
            i += 1;
        }
    }
    out
}

#[test]
fn readme_samples_are_what_the_binaries_print() {
    let path = readme_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let samples = parse(&text).unwrap_or_else(|p| panic!("README.md:\n{}", p.join("\n")));

    let mut produced = BTreeMap::new();
    std::thread::scope(|s| {
        let managed = s.spawn(|| {
            let mut m = BTreeMap::new();
            managed_samples(&mut m);
            m
        });
        command_line_samples(&mut produced);
        control_account_samples(&mut produced);
        standin_samples(&mut produced);
        disabled_samples(&mut produced);
        self_managed_samples(&mut produced);
        produced.extend(managed.join().unwrap());
    });
    let produced: BTreeMap<String, String> =
        produced.into_iter().map(|(k, p)| (k, p.text)).collect();

    let mut problems = Vec::new();
    for s in &samples {
        match produced.get(&s.id) {
            None => problems.push(format!(
                "README.md:{}: sample `{}` is not produced by tests/readme.rs: add it there, \
                 or remove the block",
                s.line, s.id
            )),
            Some(actual) if *actual != s.body => problems.push(format!(
                "README.md:{}: sample `{}` is not what the binaries print \
                 (- README, + binaries, after normalising):\n{}",
                s.line,
                s.id,
                diff(&s.body, actual)
            )),
            Some(_) => {}
        }
    }
    for id in produced.keys() {
        if !samples.iter().any(|s| &s.id == id) {
            problems.push(format!(
                "tests/readme.rs produces sample `{id}`, but README.md has no \
                 `{MARK}{id} -->` block: put it back, or drop it from the test"
            ));
        }
    }
    if problems.is_empty() {
        return;
    }
    if std::env::var_os(BLESS).is_some_and(|v| v == "1") {
        std::fs::write(&path, bless(&text, &samples, &produced)).unwrap();
        eprintln!(
            "{BLESS}=1: rewrote the marked blocks of {}; left:\n{}",
            path.display(),
            problems.join("\n\n")
        );
        // Unknown or missing ids cannot be blessed: they still fail.
        let unfixable: Vec<&String> = problems
            .iter()
            .filter(|p| !p.contains("is not what the binaries print"))
            .collect();
        assert!(unfixable.is_empty(), "{}", problems.join("\n\n"));
        return;
    }
    panic!("{}\n\nfix: {FIX}", problems.join("\n\n"));
}

/// The "Code layout" table of README.md names, in its first column, exactly the crates
/// under `crates/` and the entries of `src/` (folders as `src/x/`, files as `src/x.rs`).
#[test]
fn the_code_layout_names_every_crate_and_src_entry() {
    let text = std::fs::read_to_string(readme_path()).unwrap();
    let start = text
        .find("\n## Code layout\n")
        .expect("README.md has a \"## Code layout\" section");
    let section = &text[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |e| e + 1)];
    let listed: std::collections::BTreeSet<String> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            let cell = l.split('|').nth(1).unwrap_or_default();
            cell.split(',')
                .map(|p| p.trim().trim_matches('`').to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut actual = std::collections::BTreeSet::new();
    for (dir, folder_suffix) in [("src", "/"), ("crates", "")] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                actual.insert(format!("{dir}/{name}{folder_suffix}"));
            } else if dir == "src" && name.ends_with(".rs") {
                actual.insert(format!("{dir}/{name}"));
            }
        }
    }
    let missing: Vec<&String> = actual.difference(&listed).collect();
    let extra: Vec<&String> = listed.difference(&actual).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README.md's \"Code layout\" table does not match the tree: add a line for \
         {missing:?}, remove {extra:?} (say what each owns, after its `//!` header)"
    );
}

// ---------------------------------------------------------------------------------
// The machinery itself, without processes.

const DOC: &str = "# t\n\n<!-- sample: a -->\n```\n$ x\nold a\n```\n\nprose\n\n```sh\n./dev/up\n```\n\n- item:\n\n  <!-- sample: b -->\n  ```json\n  {\"b\": 1}\n  ```\nend\n";

#[test]
fn markers_find_their_blocks_and_bless_rewrites_only_them() {
    let samples = parse(DOC).unwrap();
    let ids: Vec<&str> = samples.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(samples[0].body, "$ x\nold a\n");
    assert_eq!(samples[0].line, 4);
    assert_eq!(samples[1].body, "{\"b\": 1}\n");
    let new = BTreeMap::from([
        ("a".to_owned(), "$ x\nnew a\nmore\n".to_owned()),
        ("b".to_owned(), "{\"b\": 2}\n".to_owned()),
    ]);
    let blessed = bless(DOC, &samples, &new);
    assert_eq!(
        blessed,
        DOC.replace("old a\n", "new a\nmore\n")
            .replace("  {\"b\": 1}", "  {\"b\": 2}")
    );
    // Blessing what is already there changes nothing.
    let again = parse(&blessed).unwrap();
    let same: BTreeMap<String, String> = again
        .iter()
        .map(|s| (s.id.clone(), s.body.clone()))
        .collect();
    assert_eq!(bless(&blessed, &again, &same), blessed);
}

#[test]
fn an_unmarked_output_block_or_a_dangling_marker_is_refused() {
    let e = parse("```\nhubkeeper READY\n```\n").unwrap_err();
    assert!(e[0].contains("README.md:1: a ``` block without"), "{e:?}");
    let e = parse("<!-- sample: x -->\nprose\n").unwrap_err();
    assert!(e[0].contains("must be followed by a fence"), "{e:?}");
    let e =
        parse("<!-- sample: x -->\n```\na\n```\n<!-- sample: x -->\n```\nb\n```\n").unwrap_err();
    assert!(e[0].contains("marked twice"), "{e:?}");
}

#[test]
fn normalising_maps_what_varies_and_is_idempotent() {
    let rules = Rules::default()
        .path(
            Path::new("/tmp/.tmpAb12/hk.toml"),
            "/etc/hubkeeper/hubkeeper.toml",
        )
        .path(Path::new("/tmp/.tmpAb12"), "/etc/hubkeeper")
        .port(40123, 20241);
    let raw = "/tmp/.tmpAb12/hk.toml /tmp/.tmpAb12/x 127.0.0.1:40123\n\
               tunnel  running, pid 81234, since 2031-02-03T04:05:06Z\n\
               backup  idle, last success 2031-02-03T04:05:09Z (snapshot 0a1b2c3d), next 2031-02-04T04:05:50Z\n\
               \"pid\": 77, resolves to 127.0.0.1 (12 ms) 0f8fad5b-d9cb-469f-a165-70867728950e\n\
               start pid=9 pgid=9 ppid=8 t_ms=1700000000123 argv=x\n";
    let want = "/etc/hubkeeper/hubkeeper.toml /etc/hubkeeper/x 127.0.0.1:20241\n\
                tunnel  running, pid 4242, since 2026-11-23T10:00:00Z\n\
                backup  idle, last success 2026-11-23T10:00:00Z (snapshot 5e1f3b2a), next 2026-11-24T10:00:00Z\n\
                \"pid\": 4242, resolves to 127.0.0.1 (3 ms) 6ff42ae2-765d-4adf-8112-31c55c1551ef\n\
                start pid=4242 pgid=4242 ppid=4100 t_ms=1795428000000 argv=x\n";
    assert_eq!(rules.apply(raw), want);
    assert_eq!(rules.apply(want), want);
    // Nothing else is touched.
    let plain = "hub-7f3a 20241 pid: x rapid=3 (snapshot xyz) 2026-11-23 10:00 (5 s)\n";
    assert_eq!(rules.apply(plain), plain);
}
