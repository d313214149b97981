//! Account tokens through the real binaries: `hubkeeper-control account add|list|revoke`
//! on the database of a running service (the testkit's, with its local provisioner and
//! an rclone S3 store), requests made with those tokens over real HTTP, and where a
//! token must never appear (the database file, the log, `account list`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use testkit::stack::{CONTROL_TOKEN, ControlService};
use testkit::{Resp, is_root, open_tempdir};

const BIN: &str = env!("CARGO_BIN_EXE_hubkeeper-control");
const ENROLL: &str = "/v1/managed-cloudflare/enroll";
const ROTATE: &str = "/v1/managed-cloudflare/rotate-keys";
const DISABLE: &str = "/v1/managed-cloudflare/disable";

/// What a command printed, and how it exited.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `hubkeeper-control --config <config> <args>`, optionally as another uid.
fn control_cmd(config: &Path, args: &[&str], uid: Option<u32>) -> Out {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("HUBKEEPER_CONTROL_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("RUST_LOG");
    if let Some(u) = uid {
        cmd.uid(u).gid(u);
    }
    let out = cmd.output().expect("run hubkeeper-control");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The running service and the commands and requests the tests make on it.
struct Svc {
    cs: ControlService,
}

impl Svc {
    fn start() -> Svc {
        Svc {
            cs: ControlService::start(),
        }
    }

    fn config(&self) -> std::path::PathBuf {
        self.cs.dir.path().join("control.toml")
    }

    fn account(&self, args: &[&str]) -> Out {
        let mut all = vec!["account"];
        all.extend_from_slice(args);
        control_cmd(&self.config(), &all, None)
    }

    /// `account add`, which must succeed: the token it printed.
    fn add(&self, account: &str) -> String {
        let out = self.account(&["add", account]);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        out.stdout.trim_end().to_owned()
    }

    fn port(&self) -> u16 {
        self.cs.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn call(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> Resp {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: control\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        testkit::tcp(self.port(), req.as_bytes()).unwrap()
    }

    fn enroll(&self, token: &str, hub: &str, account: &str, license: &str) -> Resp {
        self.call(
            token,
            "POST",
            ENROLL,
            Some(json!({"account_id": account, "hub_id": hub, "license_id": license})),
        )
    }

    fn status(&self, token: &str, hub: &str) -> Resp {
        let path = format!("/v1/managed-cloudflare/status?hub_id={hub}");
        self.call(token, "GET", &path, None)
    }

    fn post(&self, token: &str, path: &str, body: Value) -> Resp {
        self.call(token, "POST", path, Some(body))
    }

    /// The recorded (state, license_id, key_id) of a hub.
    fn recorded(&self, hub: &str) -> (String, String, Option<String>) {
        self.db()
            .query_row(
                "SELECT state, license_id, key_id FROM hubs WHERE hub_id = ?1",
                [hub],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.cs.dir.path().join("state/control.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }

    /// Every byte of the database: the file and SQLite's side files.
    fn db_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.cs.dir.path().join("state")).unwrap() {
            all.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        all
    }
}

fn ok(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn code(r: &Resp) -> String {
    r.json()["error"]["code"].as_str().unwrap().to_owned()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn tokens_added_while_the_service_runs_work_at_once_until_revoked() {
    let s = Svc::start();
    let out = s.account(&["add", "acct-a"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // Alone on stdout, with a line on stderr that says it is shown once.
    let first = out.stdout.strip_suffix('\n').unwrap().to_owned();
    assert!(
        first.starts_with("hka_") && !first.contains(char::is_whitespace),
        "{first:?}"
    );
    let first_id = &first[..12];
    assert!(
        out.stderr.contains(first_id) && out.stderr.contains("shown only this once"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(&first), "the token is printed once");

    ok(&s.enroll(&first, "hub-a1", "acct-a", "lic-a"));
    let second = s.add("acct-a");
    assert_ne!(first, second);
    ok(&s.status(&second, "hub-a1"));

    let list = s.account(&["list"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(
        list.stdout.starts_with("acct-a: 2 live tokens\n") && list.stdout.contains(first_id),
        "{}",
        list.stdout
    );

    // Roll: the old one revoked alone, the new one still works.
    let out = s.account(&["revoke", "acct-a", "--token", first_id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("revoked token {first_id}")),
        "{}",
        out.stdout
    );
    let r = s.status(&first, "hub-a1");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(code(&r), "unauthorized");
    ok(&s.status(&second, "hub-a1"));

    let out = s.account(&["revoke", "acct-a"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("revoked 1 token of account acct-a"),
        "{}",
        out.stdout
    );
    for t in [&first, &second] {
        assert_eq!(s.status(t, "hub-a1").status, 401);
        assert_eq!(s.enroll(t, "hub-a1", "acct-a", "lic-a").status, 401);
    }
    let again = s.account(&["revoke", "acct-a"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("nothing to revoke"),
        "{}",
        again.stdout
    );
    let list = s.account(&["list", "acct-a"]);
    assert!(
        list.stdout.starts_with("acct-a: 0 live tokens\n"),
        "{}",
        list.stdout
    );
    assert_eq!(
        list.stdout.matches("revoked 20").count(),
        2,
        "{}",
        list.stdout
    );

    // The operator's token is unchanged by all this.
    ok(&s.status(CONTROL_TOKEN, "hub-a1"));
    // Tokens that were never issued, or that only look like one, are refused alike.
    let forged = format!("{}{}", &second[..second.len() - 1], "x");
    for t in [forged.as_str(), "hka_", "acct-a"] {
        assert_eq!(s.status(t, "hub-a1").status, 401, "{t}");
    }
}

#[test]
fn the_commands_say_what_is_wrong() {
    let s = Svc::start();
    let token = s.add("acct-b");

    let out = s.account(&["revoke", "acct-none"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("account acct-none has no tokens"),
        "{}",
        out.stderr
    );

    let out = s.account(&["revoke", "acct-b", "--token", "hka_00000000"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("has no token hka_00000000")
            && out.stderr.contains("account list acct-b"),
        "{}",
        out.stderr
    );
    // A whole token on the command line is refused without being repeated.
    let out = s.account(&["revoke", "acct-b", "--token", &token]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("not the whole token"), "{}", out.stderr);
    assert!(!out.stderr.contains(&token) && !out.stdout.contains(&token));
    // Refused revokes revoked nothing.
    ok(&s.enroll(&token, "hub-b1", "acct-b", "lic-b"));

    let out = s.account(&["add", "bad account"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("invalid account_id"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    let list = s.account(&["list", "acct-none"]);
    assert_eq!(list.code, 0);
    assert!(
        list.stdout.contains("account acct-none has no tokens"),
        "{}",
        list.stdout
    );

    // A bad config is a config error (78), as for the service.
    let cfg = s.cs.dir.path().join("broken.toml");
    std::fs::write(&cfg, "database = 5\n").unwrap();
    let out = control_cmd(&cfg, &["account", "list"], None);
    assert_eq!(out.code, 78, "{}", out.stderr);
    assert!(out.stderr.contains("broken.toml:1:"), "{}", out.stderr);
}

/// The commands read no secret: outside the service's unit its credentials (here the
/// token file) are not there, and the database is all they need.
#[test]
fn the_commands_need_no_secret_of_the_service() {
    let s = Svc::start();
    std::fs::remove_file(s.cs.dir.path().join("control-token")).unwrap();
    let token = s.add("acct-c");
    ok(&s.enroll(&token, "hub-c1", "acct-c", "lic-c"));
}

#[test]
fn no_token_in_the_database_the_log_or_the_list() {
    let mut s = Svc::start();
    let tokens: Vec<String> = ["acct-d", "acct-d", "acct-e"]
        .iter()
        .map(|a| s.add(a))
        .collect();
    ok(&s.enroll(&tokens[0], "hub-d1", "acct-d", "lic-d"));
    ok(&s.status(&tokens[1], "hub-d1"));
    s.account(&["revoke", "acct-d", "--token", &tokens[1][..12]]);
    assert_eq!(s.status(&tokens[1], "hub-d1").status, 401);
    let list = s.account(&["list"]);
    s.cs.pause();

    let db = s.db_bytes();
    let log = s.cs.log_text();
    for t in &tokens {
        assert!(!contains(&db, t.as_bytes()), "a token is in the database");
        assert!(!log.contains(t.as_str()), "a token is in the log:\n{log}");
        assert!(!list.stdout.contains(t.as_str()), "{}", list.stdout);
        // Only the hash is kept, and only its hash is kept.
        let hash = hubkeeper_control::accounts::sha256(t.as_bytes());
        let stored: i64 = s
            .db()
            .query_row(
                "SELECT COUNT(*) FROM account_tokens WHERE sha256 = ?1 AND token_id = ?2",
                rusqlite::params![&hash[..], &t[..12]],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stored, 1);
    }
    // The log names who called (account and token id), and the refused revoked token.
    assert!(
        log.contains(&format!("caller=\"account:acct-d/{}\"", &tokens[0][..12])),
        "{log}"
    );
    assert!(
        log.contains("a revoked account token was presented"),
        "{log}"
    );
}

/// SQLite creates its side files as whoever opens the database first: the commands
/// refuse to run as anyone but the database's owner, and say how to.
#[test]
fn the_commands_run_only_as_the_databases_owner() {
    if !is_root() {
        eprintln!("skipped: needs root to run the command as another user");
        return;
    }
    let dir = open_tempdir();
    let nobody = 65534;
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(nobody), Some(nobody)).unwrap();
    std::fs::write(
        dir.path().join("control.toml"),
        "token_file = \"control-token\"\ndatabase = \"state/control.db\"\nzone = \"hub.test\"\n\
         [provisioner]\nkind = \"local\"\n[provisioner.local]\ns3_endpoint = \"http://127.0.0.1:9\"\n\
         account_tag = \"tag\"\n[[provisioner.local.keys]]\naccess_key_id_file = \"ak\"\n\
         secret_access_key_file = \"sk\"\n",
    )
    .unwrap();
    let cfg = dir.path().join("control.toml");

    let out = control_cmd(&cfg, &["account", "add", "acct-f"], None);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("belongs to nobody") && out.stderr.contains("sudo -u nobody"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
    assert!(!state.join("control.db").exists(), "nothing was created");

    let out = control_cmd(&cfg, &["account", "add", "acct-f"], Some(nobody));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = control_cmd(&cfg, &["account", "list"], Some(nobody));
    assert!(
        out.stdout.starts_with("acct-f: 1 live token\n"),
        "{}",
        out.stdout
    );
    let meta = std::fs::metadata(state.join("control.db")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), nobody);
}

/// The hole this closes (issue 9 item 7): with one shared token, any hub could read,
/// rotate, disable or re-enroll another's and get its tunnel token and R2 secret. With
/// account A's token, account B's hubs are answered exactly as unknown ones, and
/// nothing of them changes.
#[test]
fn an_accounts_token_reaches_only_its_own_hubs() {
    let s = Svc::start();
    let (ta, tb) = (s.add("acct-a"), s.add("acct-b"));
    ok(&s.enroll(&ta, "hub-a", "acct-a", "lic-a"));
    let b = ok(&s.enroll(&tb, "hub-b", "acct-b", "lic-b"));
    ok(&s.enroll(&tb, "hub-b-gone", "acct-b", "lic-b"));
    ok(&s.post(
        &tb,
        DISABLE,
        json!({"hub_id": "hub-b-gone", "delete_bucket": false, "retention_days": 30}),
    ));
    let b_status = ok(&s.status(&tb, "hub-b"));
    let b_recorded = s.recorded("hub-b");
    let gone_recorded = s.recorded("hub-b-gone");

    // Another account's hub gets what a hub that never enrolled gets.
    let as_unknown = |r: Resp, unknown: Resp, hub: &str| {
        assert_eq!(r.status, unknown.status, "{hub}: {}", r.text());
        assert_eq!(r.text(), unknown.text().replace("hub-nope", hub), "{hub}");
    };
    for hub in ["hub-b", "hub-b-gone"] {
        as_unknown(s.status(&ta, hub), s.status(&ta, "hub-nope"), hub);
        let rotate = |h: &str| s.post(&ta, ROTATE, json!({"hub_id": h}));
        as_unknown(rotate(hub), rotate("hub-nope"), hub);
        let disable = |h: &str| {
            s.post(
                &ta,
                DISABLE,
                json!({"hub_id": h, "delete_bucket": true, "retention_days": 0}),
            )
        };
        as_unknown(disable(hub), disable("hub-nope"), hub);
        // Enrolling it under A's own account_id: 404 as well, not "taken".
        let r = s.enroll(&ta, hub, "acct-a", "lic-a");
        assert_eq!(r.status, 404, "{hub}: {}", r.text());
        assert_eq!(code(&r), "unknown_hub");
    }
    assert_eq!(s.status(&ta, "hub-nope").status, 404);
    assert_eq!(code(&s.status(&ta, "hub-b")), "unknown_hub");

    // B's account_id with A's token: 403, for B's hub and for a new one alike.
    for hub in ["hub-b", "hub-new"] {
        let r = s.enroll(&ta, hub, "acct-b", "lic-b");
        assert_eq!(r.status, 403, "{hub}: {}", r.text());
        assert_eq!(code(&r), "account_mismatch");
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains("send account_id \"acct-a\""), "{msg}");
    }
    assert_eq!(
        s.status(CONTROL_TOKEN, "hub-new").status,
        404,
        "nothing was created"
    );

    // Nothing of B's changed: same record, same answer, same keys and license.
    assert_eq!(s.recorded("hub-b"), b_recorded);
    assert_eq!(s.recorded("hub-b-gone"), gone_recorded);
    assert_eq!(ok(&s.status(&tb, "hub-b")), b_status);
    assert_eq!(ok(&s.enroll(&tb, "hub-b", "acct-b", "lic-b")), b);
    // A's token still does everything to A's own hub; the operator's reaches both.
    ok(&s.post(&ta, ROTATE, json!({"hub_id": "hub-a"})));
    ok(&s.status(CONTROL_TOKEN, "hub-b"));
    ok(&s.status(CONTROL_TOKEN, "hub-a"));
    let log = s.cs.log_text();
    assert!(log.contains("another account's hub asked for"), "{log}");
}

/// Re-enrolling never changes a hub's license silently: an account's token is refused
/// (409, saying what to do), the operator's may, and that is logged with both ids.
#[test]
fn a_license_changes_only_with_the_operators_token() {
    let s = Svc::start();
    let t = s.add("acct-l");
    let first = ok(&s.enroll(&t, "hub-l", "acct-l", "lic-1"));

    let r = s.enroll(&t, "hub-l", "acct-l", "lic-2");
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(code(&r), "license_mismatch");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("\"lic-1\"") && msg.contains("operator"),
        "{msg}"
    );
    assert_eq!(s.recorded("hub-l").1, "lic-1");

    assert_eq!(
        ok(&s.enroll(CONTROL_TOKEN, "hub-l", "acct-l", "lic-2")),
        first
    );
    assert_eq!(s.recorded("hub-l").1, "lic-2");
    let log = s.cs.log_text();
    assert!(
        log.contains("old_license_id=lic-1") && log.contains("new_license_id=lic-2"),
        "{log}"
    );
    // The account's hubs go on with the new license.
    assert_eq!(ok(&s.enroll(&t, "hub-l", "acct-l", "lic-2")), first);
}
