//! `hubkeeper-control` as a real process against a real S3 server
//! (`rclone serve s3`): authentication, enroll and its idempotency under races and
//! restarts, buckets per account, key rotation with keys that work, disable and
//! re-enroll, HTTP error shapes, config errors, and no secret in the log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use support::Resp;
use support::s3::{S3Server, free_port};
use testkit as support;

const BIN: &str = env!("CARGO_BIN_EXE_hubkeeper-control");

/// The control API's body limit.
const BODY_LIMIT: usize = 64 * 1024;
const TOKEN: &str = "ctl-token-7b1e9d0c4f2a";
const KEYS: [(&str, &str); 2] = [
    ("AKIDLOCAL0001", "sk-local-one-5f0d2c7e9a"),
    ("AKIDLOCAL0002", "sk-local-two-81b3e6d4c0"),
];

/// A control service process with its config, token and key files in a temp dir.
struct Control {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    config: PathBuf,
    log: PathBuf,
}

fn config_text(port: u16, s3: &S3Server, extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:{port}\"\ntoken_file = \"control-token\"\n\
         database = \"state/control.db\"\nzone = \"hubs.test\"\nlog_level = \"debug\"\n\
         sweep_interval = \"1s\"\n{extra}\
         [provisioner]\nkind = \"local\"\n[provisioner.local]\n\
         s3_endpoint = \"{}\"\nr2_endpoint = \"https://acct.r2.example\"\naccount_tag = \"tag-123\"\n\
         [[provisioner.local.keys]]\naccess_key_id_file = \"ak1\"\nsecret_access_key_file = \"sk1\"\n\
         [[provisioner.local.keys]]\naccess_key_id_file = \"ak2\"\nsecret_access_key_file = \"sk2\"\n",
        s3.endpoint
    )
}

impl Control {
    fn start(s3: &S3Server) -> Control {
        Self::start_with(s3, "")
    }

    /// `extra` goes among the top-level keys.
    fn start_with(s3: &S3Server, extra: &str) -> Control {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("control-token", &format!("{TOKEN}\n"));
        write("ak1", KEYS[0].0);
        write("sk1", KEYS[0].1);
        write("ak2", KEYS[1].0);
        write("sk2", KEYS[1].1);
        let port = free_port();
        let config = dir.path().join("control.toml");
        write("control.toml", &config_text(port, s3, extra));
        let log = dir.path().join("control.log");
        let child = spawn(&config, &log);
        let c = Control {
            child,
            dir,
            port,
            config,
            log,
        };
        c.wait_serving();
        c
    }

    fn wait_serving(&self) {
        let end = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > end {
                panic!("the control service did not listen; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) -> ExitStatus {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > end {
                panic!("no exit within 20s of SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then start again on the same config (and port), appending to the log.
    fn restart(&mut self) {
        let st = self.stop();
        assert!(st.success(), "{st:?}; log:\n{}", self.log());
        self.child = spawn_appending(&self.config, &self.log);
        self.wait_serving();
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.dir.path().join("state/control.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }

    fn raw(&self, request: &[u8]) -> Resp {
        support::tcp(self.port, request).unwrap_or_else(|e| panic!("request failed: {e}"))
    }

    /// A request with the right token unless `token` says otherwise.
    fn call_as(&self, token: Option<&str>, method: &str, path: &str, body: Option<&str>) -> Resp {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: control\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        self.raw(req.as_bytes())
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        self.call_as(Some(TOKEN), method, path, body)
    }

    fn post_ok(&self, path: &str, body: Value) -> Value {
        let r = self.call("POST", path, Some(&body.to_string()));
        assert_eq!(r.status, 200, "{path}: {}; log:\n{}", r.text(), self.log());
        r.json()
    }

    fn enroll(&self, hub: &str, account: &str) -> Value {
        self.post_ok(
            "/v1/managed-cloudflare/enroll",
            json!({"account_id": account, "hub_id": hub, "license_id": "lic-1", "requested_subdomain": "Acme Labs"}),
        )
    }

    fn status(&self, hub: &str) -> Resp {
        self.call(
            "GET",
            &format!("/v1/managed-cloudflare/status?hub_id={hub}"),
            None,
        )
    }

    fn rotate(&self, hub: &str) -> Resp {
        self.call(
            "POST",
            "/v1/managed-cloudflare/rotate-keys",
            Some(&json!({"hub_id": hub}).to_string()),
        )
    }

    fn disable(&self, hub: &str, delete_bucket: bool) -> Value {
        self.disable_for(hub, delete_bucket, 30)
    }

    fn disable_for(&self, hub: &str, delete_bucket: bool, retention_days: u32) -> Value {
        self.post_ok(
            "/v1/managed-cloudflare/disable",
            json!({"hub_id": hub, "delete_bucket": delete_bucket, "retention_days": retention_days}),
        )
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(config: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .env_remove("HUBKEEPER_CONTROL_CONFIG")
        .stdin(Stdio::null());
    cmd
}

fn spawn(config: &Path, log: &Path) -> Child {
    command(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn hubkeeper-control")
}

fn spawn_appending(config: &Path, log: &Path) -> Child {
    let f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    command(config)
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .expect("spawn hubkeeper-control")
}

fn s3() -> S3Server {
    S3Server::start(&KEYS)
}

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key} in {v}"))
        .to_owned()
}

fn error_code(r: &Resp) -> String {
    let v = r.json();
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    s(&v["error"], "code")
}

#[test]
fn requests_without_the_right_token_get_401_and_never_see_it() {
    let s3 = s3();
    let c = Control::start(&s3);
    let body = json!({"hub_id": "hub-a"}).to_string();
    for token in [None, Some("guess-91c2f"), Some(&TOKEN[..TOKEN.len() - 1])] {
        for (method, path) in [
            ("POST", "/v1/managed-cloudflare/enroll"),
            ("GET", "/v1/managed-cloudflare/status?hub_id=hub-a"),
            ("POST", "/v1/managed-cloudflare/rotate-keys"),
            ("POST", "/v1/managed-cloudflare/disable"),
            ("GET", "/nowhere"),
        ] {
            let r = c.call_as(token, method, path, Some(&body));
            assert_eq!(r.status, 401, "{method} {path} {token:?}: {}", r.text());
            assert_eq!(error_code(&r), "unauthorized");
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer")),
                "{:?}",
                r.headers
            );
            assert!(!r.text().contains(TOKEN), "{}", r.text());
            if let Some(t) = token {
                assert!(!r.text().contains(t), "the presented token is echoed");
            }
        }
    }
    // Another scheme carrying the right value is still refused.
    let r = c.raw(
        format!("GET /v1/managed-cloudflare/status?hub_id=x HTTP/1.1\r\nHost: c\r\nAuthorization: Basic {TOKEN}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 401);
}

#[test]
fn enroll_returns_every_field_and_a_cloudflared_token() {
    let s3 = s3();
    let c = Control::start(&s3);
    let e = c.enroll("hub-a", "acct-1");
    for key in [
        "tunnel_id",
        "tunnel_token",
        "hostname",
        "r2_endpoint",
        "r2_bucket",
        "r2_access_key_id",
        "r2_secret_access_key",
    ] {
        assert!(!s(&e, key).is_empty(), "{key} empty in {e}");
    }
    let tunnel_id = s(&e, "tunnel_id");
    assert!(uuid::Uuid::parse_str(&tunnel_id).is_ok(), "{tunnel_id}");
    let raw = STANDARD
        .decode(s(&e, "tunnel_token"))
        .expect("standard base64");
    let t: Value = serde_json::from_slice(&raw).expect("JSON inside the token");
    assert_eq!(t.as_object().unwrap().len(), 3, "{t}");
    assert_eq!(t["a"], "tag-123");
    assert_eq!(t["t"], tunnel_id.as_str());
    let secret = STANDARD.decode(s(&t, "s")).unwrap();
    assert_eq!(secret.len(), 32);

    let hostname = s(&e, "hostname");
    assert!(
        hostname.starts_with("acme-labs-") && hostname.ends_with(".hubs.test"),
        "{hostname}"
    );
    assert_eq!(s(&e, "r2_endpoint"), "https://acct.r2.example");
    let bucket = s(&e, "r2_bucket");
    assert!(
        s3.has_bucket(&bucket),
        "bucket {bucket} is not on the store"
    );
    // The keys work on that bucket.
    let client = s3.client(&s(&e, "r2_access_key_id"), &s(&e, "r2_secret_access_key"));
    client.put(&bucket, "hubkeeper/hub-a/probe", b"hi").unwrap();
    assert_eq!(client.get(&bucket, "hubkeeper/hub-a/probe").unwrap(), b"hi");

    // Status agrees; unknown hubs are 404.
    let st = c.status("hub-a");
    assert_eq!(st.status, 200, "{}", st.text());
    let st = st.json();
    assert_eq!(st["enabled"], true);
    assert_eq!(st["hostname"], hostname.as_str());
    assert_eq!(st["tunnel_id"], tunnel_id.as_str());
    assert_eq!(st["r2_bucket"], bucket.as_str());
    assert_eq!(st["errors"], json!([]));
    assert!(st.as_object().unwrap().contains_key("last_health_check"));
    let r = c.status("hub-zzz");
    assert_eq!(r.status, 404);
    assert_eq!(error_code(&r), "unknown_hub");
    // A route record exists for the hostname, pointing at the tunnel.
    let content: String = c
        .db()
        .query_row(
            "SELECT content FROM local_dns_records WHERE name = ?1 AND type = 'CNAME'",
            [&hostname],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(content, format!("{tunnel_id}.cfargotunnel.com"));
}

#[test]
fn enroll_is_idempotent_and_survives_a_restart() {
    let s3 = s3();
    let mut c = Control::start(&s3);
    let a = c.enroll("hub-a", "acct-1");
    let b = c.enroll("hub-b", "acct-1");
    assert_eq!(c.enroll("hub-a", "acct-1"), a, "same hub, same answer");
    assert_ne!(a["tunnel_id"], b["tunnel_id"]);
    assert_ne!(a["hostname"], b["hostname"]);
    let status_before = c.status("hub-a").json();

    c.restart();
    assert_eq!(c.enroll("hub-a", "acct-1"), a, "after a restart");
    assert_eq!(c.enroll("hub-b", "acct-1"), b, "after a restart");
    assert_eq!(c.status("hub-a").json(), status_before);
    // Enrolled again under another account: refused, not silently moved.
    let r = c.call(
        "POST",
        "/v1/managed-cloudflare/enroll",
        Some(&json!({"account_id": "acct-2", "hub_id": "hub-a", "license_id": "l"}).to_string()),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(error_code(&r), "hub_account_mismatch");
}

#[test]
fn racing_enrolls_for_one_hub_make_one_tunnel() {
    let s3 = s3();
    let c = Control::start(&s3);
    let n = 8;
    let barrier = std::sync::Barrier::new(n);
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    c.enroll("hub-race", "acct-r")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for a in &answers {
        assert_eq!(a, &answers[0]);
    }
    let db = c.db();
    let tunnels: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM local_tunnels WHERE name LIKE 'hubkeeper-hub-race-%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tunnels, 1, "one tunnel was created");
    let keys: i64 = db
        .query_row("SELECT COUNT(*) FROM local_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keys, 1, "one key was minted");
}

#[test]
fn one_bucket_per_account_and_it_really_exists() {
    let s3 = s3();
    let c = Control::start(&s3);
    let a1 = c.enroll("hub-1", "acct-x");
    let a2 = c.enroll("hub-2", "acct-x");
    let b1 = c.enroll("hub-3", "acct-y");
    assert_eq!(a1["r2_bucket"], a2["r2_bucket"]);
    assert_ne!(a1["r2_bucket"], b1["r2_bucket"]);
    for e in [&a1, &b1] {
        let bucket = s(e, "r2_bucket");
        assert!(s3.has_bucket(&bucket), "{bucket} missing on the store");
        let client = s3.client(&s(e, "r2_access_key_id"), &s(e, "r2_secret_access_key"));
        client.put(&bucket, "probe", b"x").unwrap();
    }
}

#[test]
fn rotated_keys_differ_and_work() {
    let s3 = s3();
    let c = Control::start(&s3);
    let e = c.enroll("hub-k", "acct-k");
    let bucket = s(&e, "r2_bucket");
    let r = c.rotate("hub-k");
    assert_eq!(r.status, 200, "{}", r.text());
    let k = r.json();
    assert_ne!(k["r2_access_key_id"], e["r2_access_key_id"]);
    assert_ne!(k["r2_secret_access_key"], e["r2_secret_access_key"]);
    let client = s3.client(&s(&k, "r2_access_key_id"), &s(&k, "r2_secret_access_key"));
    client
        .put(&bucket, "hubkeeper/hub-k/after", b"new")
        .unwrap();
    assert_eq!(
        client.get(&bucket, "hubkeeper/hub-k/after").unwrap(),
        b"new"
    );
    // Enroll now answers with the rotated keys; a wrong secret really fails.
    let again = c.enroll("hub-k", "acct-k");
    assert_eq!(again["r2_access_key_id"], k["r2_access_key_id"]);
    assert_eq!(again["r2_secret_access_key"], k["r2_secret_access_key"]);
    assert_eq!(again["tunnel_id"], e["tunnel_id"]);
    let bad = s3.client(&s(&k, "r2_access_key_id"), "not-the-secret");
    assert!(bad.put(&bucket, "x", b"x").is_err());

    let r = c.rotate("hub-unknown");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(error_code(&r), "unknown_hub");
    c.disable("hub-k", false);
    let r = c.rotate("hub-k");
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(error_code(&r), "hub_not_enrolled");
}

#[test]
fn disable_keeps_or_deletes_backups_and_reenroll_gets_a_new_tunnel() {
    let s3 = s3();
    let c = Control::start(&s3);
    let first = c.enroll("hub-d", "acct-d");
    c.enroll("hub-o", "acct-d");
    let bucket = s(&first, "r2_bucket");
    let client = s3.client(
        &s(&first, "r2_access_key_id"),
        &s(&first, "r2_secret_access_key"),
    );
    client.put(&bucket, "hubkeeper/hub-d/snap", b"d").unwrap();
    client.put(&bucket, "hubkeeper/hub-o/snap", b"o").unwrap();

    // Kept: the bucket and the hub's backups stay, the retention is recorded.
    assert_eq!(c.disable("hub-d", false), json!({"ok": true}));
    assert_eq!(c.disable("hub-d", false), json!({"ok": true}), "idempotent");
    assert_eq!(
        c.disable("hub-never", true),
        json!({"ok": true}),
        "unknown hub"
    );
    let st = c.status("hub-d").json();
    assert_eq!(st["enabled"], false);
    assert_eq!(st["tunnel_id"], Value::Null);
    assert_eq!(st["r2_bucket"], bucket.as_str());
    assert_eq!(client.get(&bucket, "hubkeeper/hub-d/snap").unwrap(), b"d");
    let db = c.db();
    let steps: Vec<String> = db
        .prepare("SELECT step FROM teardown_log WHERE hub_id = 'hub-d' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        steps,
        [
            "connections_deleted",
            "tunnel_deleted",
            "dns_record_deleted",
            "key_revoked",
            "backups_kept"
        ]
    );
    assert_eq!(st["deletion_due"], Value::Null, "kept means kept");

    // Back again: a fresh tunnel, the same hostname and bucket, the backups still there.
    let second = c.enroll("hub-d", "acct-d");
    assert_ne!(second["tunnel_id"], first["tunnel_id"]);
    assert_eq!(second["hostname"], first["hostname"]);
    assert_eq!(second["r2_bucket"], first["r2_bucket"]);
    assert_eq!(c.status("hub-d").json()["enabled"], true);
    assert_eq!(client.get(&bucket, "hubkeeper/hub-d/snap").unwrap(), b"d");

    // delete_bucket with 30 days: kept until the deadline, which the status shows.
    c.disable_for("hub-d", true, 30);
    let st = c.status("hub-d").json();
    let due = st["deletion_due"].as_str().expect("a deadline").to_owned();
    assert!(due.as_str() > "2026-01-01T00:00:00Z", "{due}");
    assert_eq!(
        st["r2_bucket"],
        bucket.as_str(),
        "still there to restore from"
    );
    // Enrolling again before the deadline cancels the deletion.
    c.enroll("hub-d", "acct-d");
    assert_eq!(c.status("hub-d").json()["deletion_due"], Value::Null);
    c.disable_for("hub-d", true, 30);
    assert_eq!(client.get(&bucket, "hubkeeper/hub-d/snap").unwrap(), b"d");
    // The deadline passes (moved into the past, as a month would): the sweep deletes
    // the hub's backups, and only the hub's.
    rusqlite::Connection::open(c.dir.path().join("state/control.db"))
        .unwrap()
        .execute(
            "UPDATE hubs SET deletion_due = '2026-01-01T00:00:00Z' WHERE hub_id = 'hub-d'",
            [],
        )
        .unwrap();
    support::wait_for(
        Duration::from_secs(20),
        "the sweep to delete hub-d's backups",
        || client.get(&bucket, "hubkeeper/hub-d/snap").is_err(),
    );
    assert_eq!(client.get(&bucket, "hubkeeper/hub-o/snap").unwrap(), b"o");
    assert!(s3.has_bucket(&bucket), "hub-o still uses it");
    let st = c.status("hub-d").json();
    assert_eq!(st["r2_bucket"], Value::Null);
    assert_eq!(st["deletion_due"], Value::Null);

    // retention_days = 0: the next sweep; the last hub of the account takes the bucket.
    client.put(&bucket, "hubkeeper/hub-o/snap2", b"o2").unwrap();
    c.disable_for("hub-o", true, 0);
    support::wait_for(
        Duration::from_secs(20),
        "the sweep to delete the bucket",
        || !s3.has_bucket(&bucket),
    );
    // An enroll after that recreates it.
    let third = c.enroll("hub-o", "acct-d");
    assert!(s3.has_bucket(&s(&third, "r2_bucket")));
}

#[test]
fn http_errors_are_json() {
    let s3 = s3();
    let c = Control::start(&s3);
    let big = format!("{{\"hub_id\":\"{}\"}}", "a".repeat(BODY_LIMIT + 10));
    let r = c.call("POST", "/v1/managed-cloudflare/enroll", Some(&big));
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(error_code(&r), "body_too_large");

    let r = c.call(
        "POST",
        "/v1/managed-cloudflare/enroll",
        Some(r#"{"account_id":"a","hub_id":"h","license_id":"l","colour":"red"}"#),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(error_code(&r), "bad_request");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );

    let r = c.call(
        "POST",
        "/v1/managed-cloudflare/disable",
        Some(r#"{"hub_id":"h"}"#),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("delete_bucket"), "{}", r.text());

    let r = c.call("POST", "/v1/managed-cloudflare/enroll", Some("not json"));
    assert_eq!(r.status, 400);

    let r = c.call(
        "POST",
        "/v1/managed-cloudflare/enroll",
        Some(r#"{"account_id":"a","hub_id":"Not_A_Hub","license_id":"l"}"#),
    );
    assert_eq!(r.status, 400);
    assert_eq!(error_code(&r), "invalid_request");

    let r = c.call(
        "GET",
        "/v1/managed-cloudflare/status?hub_id=h&extra=1",
        None,
    );
    assert_eq!(r.status, 400);
    let r = c.call("GET", "/v1/managed-cloudflare/status", None);
    assert_eq!(r.status, 400);

    let r = c.call("GET", "/v1/nothing-here", None);
    assert_eq!(r.status, 404);
    assert_eq!(error_code(&r), "not_found");

    let r = c.call("GET", "/v1/managed-cloudflare/enroll", None);
    assert_eq!(r.status, 405);
    assert_eq!(error_code(&r), "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"));
    let r = c.call("POST", "/v1/managed-cloudflare/status?hub_id=h", Some("{}"));
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

#[test]
fn a_client_that_sends_half_a_request_is_dropped() {
    let s3 = s3();
    let c = Control::start_with(&s3, "request_timeout = \"1s\"\n");
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.write_all(b"GET /v1/managed-cloudflare/status?hub_id=h HTTP/1.1\r\nHost: c\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = Vec::new();
    // The server closes the connection (perhaps after a bare 408): read to EOF.
    let _ = s.read_to_end(&mut buf);
    assert!(
        buf.is_empty() || String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    // The service still serves others.
    assert_eq!(c.status("h").status, 404);
}

#[test]
fn an_invalid_config_exits_78_with_file_line_col() {
    let s3 = s3();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("control-token"), TOKEN).unwrap();
    let cfg = dir.path().join("control.toml");
    let text = config_text(free_port(), &s3, "max_connection = 5\n");
    std::fs::write(&cfg, &text).unwrap();
    let out = command(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    let at = format!(
        "{}:7:1: max_connection: unknown field `max_connection`",
        cfg.display()
    );
    assert!(err.contains(&at), "{err}");
    // The key files are missing too: reported once the keys are right.
    let text = config_text(free_port(), &s3, "");
    std::fs::write(&cfg, &text).unwrap();
    let out = command(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("provisioner.local.keys[0].access_key_id_file: cannot read"),
        "{err}"
    );
    assert!(err.contains("problems in"), "{err}");
    // The path comes from the environment too.
    let out = Command::new(BIN)
        .env("HUBKEEPER_CONTROL_CONFIG", dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml: cannot read"));
}

#[test]
fn no_secret_reaches_the_log() {
    let s3 = s3();
    let mut c = Control::start(&s3);
    let mut secrets = vec![TOKEN.to_owned(), KEYS[0].1.to_owned(), KEYS[1].1.to_owned()];
    for hub in ["hub-s1", "hub-s2"] {
        let e = c.enroll(hub, "acct-s");
        let token = s(&e, "tunnel_token");
        let inner: Value = serde_json::from_slice(&STANDARD.decode(&token).unwrap()).unwrap();
        secrets.push(token);
        secrets.push(s(&inner, "s"));
        secrets.push(s(&e, "r2_secret_access_key"));
    }
    let k = c.rotate("hub-s1").json();
    secrets.push(s(&k, "r2_secret_access_key"));
    c.disable("hub-s2", true);
    let _ = c.call_as(
        Some("guess-token"),
        "GET",
        "/v1/managed-cloudflare/status?hub_id=hub-s1",
        None,
    );
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", c.child.id())).unwrap();
    c.stop();
    let log = c.log();
    // The log has the request lines, with hub ids and statuses.
    assert!(
        log.contains("hub-s1") && log.contains("status=200"),
        "{log}"
    );
    assert!(log.contains("status=401"), "{log}");
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a secret is in the log:\n{log}"
        );
        assert!(!String::from_utf8_lossy(&cmdline).contains(secret.as_str()));
    }
    assert!(!log.contains("guess-token"), "{log}");
}

/// The hub daemon's config handed to the control service: the first line names the
/// right program.
#[test]
fn the_daemons_config_names_hubkeeper_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hubkeeper.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.example.toml"),
        &cfg,
    )
    .unwrap();
    let out = command(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    let first = err.lines().next().unwrap();
    assert!(
        first.contains("config for the hub daemon")
            && first.contains("`hubkeeper run --config PATH`"),
        "{err}"
    );
}

#[test]
fn an_absurd_retention_is_refused_and_a_sane_one_then_completes_the_disable() {
    let s3 = s3();
    let c = Control::start(&s3);
    c.enroll("hub-r", "acct-r");
    let r = c.call(
        "POST",
        "/v1/managed-cloudflare/disable",
        Some(
            &json!({"hub_id": "hub-r", "delete_bucket": false, "retention_days": 4294967295u32})
                .to_string(),
        ),
    );
    assert_eq!(r.status, 400, "{}; log:\n{}", r.text(), c.log());
    assert_eq!(error_code(&r), "invalid_request");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retention_days must be at most 3650"),
        "{}",
        r.text()
    );
    assert_eq!(
        c.status("hub-r").json()["enabled"],
        true,
        "nothing was torn down"
    );
    // The admin fixes the value: the disable goes through.
    let r = c.call(
        "POST",
        "/v1/managed-cloudflare/disable",
        Some(
            &json!({"hub_id": "hub-r", "delete_bucket": false, "retention_days": 3650}).to_string(),
        ),
    );
    assert_eq!(r.status, 200, "{}; log:\n{}", r.text(), c.log());
    assert_eq!(c.status("hub-r").json()["enabled"], false);
}

/// A TCP connection to the service from `source` (another loopback address is
/// another peer).
fn connect_from(source: [u8; 4], port: u16) -> TcpStream {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    let [a, b, c, d] = source;
    bind(fd.as_raw_fd(), &SockaddrIn::new(a, b, c, d, 0)).unwrap();
    connect(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port)).unwrap();
    TcpStream::from(fd)
}

#[test]
fn an_unauthenticated_peer_that_never_reads_cannot_starve_others() {
    let s3 = s3();
    let c = Control::start_with(&s3, "max_connections = 4\nrequest_timeout = \"2s\"\n");
    // 127.0.0.2 takes every permit, pipelining requests without a token and never
    // reading the 401s. The writer threads end when the service closes them.
    let hostile: Vec<_> = (0..4)
        .map(|_| {
            let mut s = connect_from([127, 0, 0, 2], c.port);
            std::thread::spawn(move || {
                let chunk =
                    b"GET /v1/managed-cloudflare/status?hub_id=h HTTP/1.1\r\nHost: c\r\n\r\n"
                        .repeat(200);
                while s.write_all(&chunk).is_ok() {}
            })
        })
        .collect();
    // An authorised call from 127.0.0.1 is answered, well before the 2 s in which
    // the stalled ones are cut off.
    let started = Instant::now();
    let mut honest = connect_from([127, 0, 0, 1], c.port);
    honest
        .set_read_timeout(Some(Duration::from_secs(2 + 3)))
        .unwrap();
    honest
        .write_all(
            format!(
                "GET /v1/managed-cloudflare/status?hub_id=h HTTP/1.1\r\nHost: c\r\n\
                 Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let mut got = Vec::new();
    let _ = honest.read_to_end(&mut got);
    let r = support::parse_response(&got).unwrap_or_else(|| {
        panic!(
            "no answer within {:?} while an unauthenticated peer holds the permits; log:\n{}",
            started.elapsed(),
            c.log()
        )
    });
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(error_code(&r), "unknown_hub");
    support::wait_for(
        Duration::from_secs(10),
        "the service to close every connection of the peer that does not read",
        || hostile.iter().all(std::thread::JoinHandle::is_finished),
    );
}

/// Runs the service on `cfg`, killing it if it has not exited within 10 s (a read
/// that blocks on a FIFO would hang the test): (exit code, stderr).
fn run_within_deadline(cfg: &Path) -> (Option<i32>, String) {
    let mut child = command(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hubkeeper-control did not exit within 10s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

#[test]
fn a_fifo_config_or_token_file_exits_78_at_once() {
    let s3 = s3();
    let dir = tempfile::tempdir().unwrap();
    let fifo = |p: &Path| {
        nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    };
    let cfg = dir.path().join("control.toml");
    fifo(&cfg);
    let (code, err) = run_within_deadline(&cfg);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("is a FIFO, not a regular file"), "{err}");

    std::fs::remove_file(&cfg).unwrap();
    std::fs::write(&cfg, config_text(free_port(), &s3, "")).unwrap();
    fifo(&dir.path().join("control-token"));
    let (code, err) = run_within_deadline(&cfg);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("token_file") && err.contains("is a FIFO, not a regular file"),
        "{err}"
    );
}

#[test]
fn enroll_takes_the_hubs_origin_and_refuses_one_that_is_not_a_url() {
    let s3 = s3();
    let c = Control::start(&s3);
    let ok = c.call(
        "POST",
        "/v1/managed-cloudflare/enroll",
        Some(
            &json!({"account_id": "acct-o", "hub_id": "hub-o1", "license_id": "lic-1",
            "origin": "http://127.0.0.1:8080", "no_tls_verify": false})
            .to_string(),
        ),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    let bad = c.call(
        "POST",
        "/v1/managed-cloudflare/enroll",
        Some(
            &json!({"account_id": "acct-o", "hub_id": "hub-o2", "license_id": "lic-1",
            "origin": "ftp://x"})
            .to_string(),
        ),
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("invalid origin"), "{}", bad.text());
}
