//! The managed-mode stack for end-to-end tests: a real S3 store (rclone), the real
//! control service (`hubkeeper-control`, local provisioner), the cloudflared
//! stand-in, and a daemon configured to use them. Plus a scripted HTTP server for
//! control-service misbehaviour (503s, 401, garbage, hangs).

use super::cloudflare::{ACCOUNT_ID, CloudflareApi, MASTER_TOKEN};
use super::s3::{S3Server, free_port};
use super::{BASE, Daemon, open_tempdir, wait_for};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use super::STANDIN;
pub const CONTROL_TOKEN: &str = "ctl-4f1d9c0e7b2a";
pub const S3_KEYS: [(&str, &str); 2] = [
    ("HKAK1", "hk-s3-secret-1-7d2f"),
    ("HKAK2", "hk-s3-secret-2-9a1c"),
];

/// A running `hubkeeper-control` with its own S3 store, and with the Cloudflare API
/// stand-in when it provisions through the Cloudflare provisioner.
pub struct ControlService {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub url: String,
    pub s3: Arc<S3Server>,
    pub log: PathBuf,
    pub cloudflare: Option<CloudflareApi>,
    port: u16,
}

impl ControlService {
    /// With the Cloudflare provisioner (`kind = "cloudflare"`) against the Cloudflare
    /// API stand-in, whose buckets live on the S3 store. `extra` goes into
    /// `[provisioner.cloudflare]`.
    pub fn start_cloudflare(extra: &str) -> ControlService {
        let s3 = Arc::new(S3Server::start(&S3_KEYS));
        let api = CloudflareApi::start(s3.clone(), &S3_KEYS, "hub.test");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("control-token"), CONTROL_TOKEN).unwrap();
        std::fs::write(d.join("cloudflare-token"), MASTER_TOKEN).unwrap();
        let port = free_port();
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\ntoken_file = \"control-token\"\ndatabase = \"state/control.db\"\nzone = \"hub.test\"\nsweep_interval = \"1s\"\n\
             [provisioner]\nkind = \"cloudflare\"\n[provisioner.cloudflare]\napi_base = \"{}\"\naccount_id = \"{ACCOUNT_ID}\"\n\
             api_token_file = \"cloudflare-token\"\nr2_endpoint = \"{}\"\nmax_requests_per_second = 20\n{extra}",
            api.url(),
            s3.endpoint
        );
        std::fs::write(d.join("control.toml"), config).unwrap();
        let log = d.join("control.log");
        let mut cs = ControlService {
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            s3,
            log,
            dir,
            cloudflare: Some(api),
            port,
        };
        cs.resume();
        cs
    }

    /// The Cloudflare API stand-in of a [`ControlService::start_cloudflare`] service.
    pub fn api(&self) -> &CloudflareApi {
        self.cloudflare
            .as_ref()
            .expect("started with start_cloudflare")
    }

    pub fn start() -> ControlService {
        let s3 = Arc::new(S3Server::start(&S3_KEYS));
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("control-token"), CONTROL_TOKEN).unwrap();
        let mut keys = String::new();
        for (i, (ak, sk)) in S3_KEYS.iter().enumerate() {
            std::fs::write(d.join(format!("ak{i}")), ak).unwrap();
            std::fs::write(d.join(format!("sk{i}")), sk).unwrap();
            keys.push_str(&format!(
                "[[provisioner.local.keys]]\naccess_key_id_file = \"ak{i}\"\nsecret_access_key_file = \"sk{i}\"\n"
            ));
        }
        let port = free_port();
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\ntoken_file = \"control-token\"\ndatabase = \"state/control.db\"\nzone = \"hub.test\"\n[provisioner]\nkind = \"local\"\n[provisioner.local]\ns3_endpoint = \"{}\"\naccount_tag = \"0123456789abcdef0123456789abcdef\"\n{keys}",
            s3.endpoint
        );
        std::fs::write(d.join("control.toml"), config).unwrap();
        let log = d.join("control.log");
        let mut cs = ControlService {
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            s3,
            log,
            dir,
            cloudflare: None,
            port,
        };
        cs.resume();
        cs
    }

    /// (Re)starts the process on the same port and database.
    pub fn resume(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&*super::CONTROL_BIN)
            .arg("--config")
            .arg(d.join("control.toml"))
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        wait_for(
            Duration::from_secs(20),
            "the control service to listen",
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
    }

    /// Stops the process (the database stays).
    pub fn pause(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }

    /// One call to the service's API with the operator token.
    pub fn call(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> super::Resp {
        let body = body.map(serde_json::Value::to_string).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: control\r\nAuthorization: Bearer {CONTROL_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        super::tcp(self.port, req.as_bytes()).unwrap()
    }

    /// An enroll of `hub` under `account`, as a daemon sends it.
    pub fn enroll(&self, hub: &str, account: &str) -> super::Resp {
        self.call(
            "POST",
            "/v1/managed-cloudflare/enroll",
            Some(&serde_json::json!({
                "account_id": account, "hub_id": hub, "license_id": "lic-1",
                "requested_subdomain": "acme", "origin": "http://127.0.0.1:8080",
                "no_tls_verify": false
            })),
        )
    }

    pub fn disable(&self, hub: &str, delete_bucket: bool, retention_days: u32) -> super::Resp {
        self.call(
            "POST",
            "/v1/managed-cloudflare/disable",
            Some(&serde_json::json!({
                "hub_id": hub, "delete_bucket": delete_bucket, "retention_days": retention_days
            })),
        )
    }

    /// Kills the process with SIGKILL (no shutdown), as a crash would.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The service's own view of a hub (`GET /v1/managed-cloudflare/status`).
    pub fn hub_status(&self, hub_id: &str) -> serde_json::Value {
        let req = format!(
            "GET /v1/managed-cloudflare/status?hub_id={hub_id} HTTP/1.1\r\nHost: control\r\nAuthorization: Bearer {CONTROL_TOKEN}\r\nConnection: close\r\n\r\n"
        );
        let r = super::tcp(self.port, req.as_bytes()).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ControlService {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The stand-in's control directory: its behavior file and its events log.
pub struct Standin {
    pub dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: String,
    pub fields: Vec<(String, String)>,
    pub line: String,
}

impl Event {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn t_ms(&self) -> u64 {
        self.get("t_ms").and_then(|v| v.parse().ok()).expect("t_ms")
    }
}

impl Standin {
    pub fn behave(&self, text: &str) {
        // Atomic replace: the stand-in re-reads it on every /ready request.
        let tmp = self.dir.join("behavior.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.join("behavior")).unwrap();
    }

    pub fn events(&self) -> Vec<Event> {
        let text = std::fs::read_to_string(self.dir.join("events.log")).unwrap_or_default();
        text.lines()
            .map(|line| {
                let mut parts = line.split(' ');
                let kind = parts.next().unwrap_or_default().to_owned();
                // argv= runs to the next key; keep it whole by splitting on " key=".
                let mut fields = Vec::new();
                let rest = line[kind.len()..].trim();
                let mut cur: Option<(String, String)> = None;
                for tok in rest.split(' ') {
                    match tok.split_once('=') {
                        Some((k, v))
                            if !k.is_empty()
                                && k.chars().all(|c| c.is_ascii_lowercase() || c == '_') =>
                        {
                            if let Some(f) = cur.take() {
                                fields.push(f);
                            }
                            cur = Some((k.to_owned(), v.to_owned()));
                        }
                        _ => {
                            if let Some((_, v)) = cur.as_mut() {
                                v.push(' ');
                                v.push_str(tok);
                            }
                        }
                    }
                }
                fields.extend(cur);
                Event {
                    kind,
                    fields,
                    line: line.to_owned(),
                }
            })
            .collect()
    }

    /// Sets the edge's fault switch (`none`, `502`, `530`, `1016`, `hang`), keeping
    /// where it listens and proxies to.
    pub fn edge_fault(&self, fault: &str) {
        let path = self.dir.join("edge");
        let kept: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("fault"))
            .map(|l| format!("{l}\n"))
            .collect();
        let tmp = self.dir.join("edge.tmp");
        std::fs::write(&tmp, format!("{kept}fault = {fault}\n")).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    pub fn of(&self, kind: &str) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.kind == kind)
            .collect()
    }
}

/// Config for a daemon in managed mode against `url`, running the stand-in. The hub
/// is [`hub_origin`]; the public-path check goes through the stand-in's edge on a port
/// of its own (see [`edge_file`]).
pub fn managed_config(url: &str, metrics_port: u16, extra_tunnel: &str) -> String {
    format!(
        "{BASE}enabled = true\nmode = \"managed\"\nhub_id = \"hub-1\"\n\
[managed]\nurl = \"{url}\"\ntoken_file = \"control-token\"\naccount_id = \"acct-1\"\nlicense_id = \"lic-1\"\nrequested_subdomain = \"acme\"\nrequest_timeout = \"2s\"\n\
[tunnel]\ncloudflared = \"{standin}\"\nmetrics = \"127.0.0.1:{metrics_port}\"\norigin = \"{origin}\"\ngrace_period = \"3s\"\nready_timeout = \"10s\"\nrestart_after_failed_probes = 2\nbackoff_initial = \"200ms\"\nbackoff_max = \"800ms\"\n{extra_tunnel}\
[health]\ninterval = \"1s\"\ndns_resolver = \"{}\"\npublic_url = \"http://127.0.0.1:{edge_port}/\"\n[backup]\nenabled = false\n",
        super::dns::hub_test_zone().addr,
        standin = STANDIN.display(),
        origin = hub_origin().url,
        edge_port = free_port(),
    )
}

/// The stand-in's `edge` file for a config made by [`managed_config`]: the edge listens
/// where `health.public_url` points and proxies to `tunnel.origin`.
pub fn edge_file(config: &str) -> String {
    let value = |key: &str| {
        config
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("no {key} in the config"))
            .to_owned()
    };
    let public = value("public_url");
    let listen = public
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .expect("an http public_url");
    format!("listen = {listen}\norigin = {}\n", value("origin"))
}

/// Writes the edge file into a stand-in directory (see [`edge_file`]).
pub fn write_edge(standin_dir: &Path, config: &str) {
    std::fs::write(standin_dir.join("edge"), edge_file(config)).unwrap();
}

/// A stand-in hub on loopback, shared by the tests of a process: `/` answers 200,
/// anything else 404 (a hub's own "not found" is still a working public path).
pub struct HubOrigin {
    pub url: String,
    pub requests: Arc<Mutex<usize>>,
}

pub fn hub_origin() -> &'static HubOrigin {
    static HUB: std::sync::OnceLock<HubOrigin> = std::sync::OnceLock::new();
    HUB.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(0));
        let count = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let count = count.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                            break;
                        }
                    }
                    *count.lock().unwrap() += 1;
                    let path = line.split(' ').nth(1).unwrap_or("/");
                    let (status, body) = if path == "/" {
                        ("200 OK", "the hub\n")
                    } else {
                        ("404 Not Found", "no such page on the hub\n")
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes());
                });
            }
        });
        HubOrigin { url, requests }
    })
}

/// Starts a daemon in managed mode against `url`; returns it with its stand-in dir.
/// `config` is the full config text (see [`managed_config`]).
pub fn start_managed(config: &str, behavior: &str) -> (Daemon, Standin) {
    let dir = open_tempdir();
    std::fs::write(dir.path().join("control-token"), CONTROL_TOKEN).unwrap();
    let sdir = dir.path().join("standin");
    std::fs::create_dir(&sdir).unwrap();
    let standin = Standin { dir: sdir.clone() };
    standin.behave(behavior);
    if config.contains("public_url = \"http://") {
        write_edge(&sdir, config);
    }
    let d = Daemon::spawn(
        dir,
        config,
        &[("CLOUDFLARED_STANDIN_DIR", sdir.to_str().unwrap())],
    );
    d.wait_serving();
    (d, standin)
}

/// Restarts a daemon that has exited, with the same dir and config.
pub fn restart(mut d: Daemon) -> Daemon {
    let _ = d.child.kill();
    let _ = d.child.wait();
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    let config = d.config.clone();
    drop(d);
    let sdir = dir.path().join("standin");
    let d = Daemon::spawn_at(
        dir,
        config,
        &[("CLOUDFLARED_STANDIN_DIR", sdir.to_str().unwrap())],
    );
    d.wait_serving();
    d
}

/// A valid tunnel token in cloudflared's format.
pub fn fake_token() -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let json = format!(
        "{{\"a\":\"0123456789abcdef0123456789abcdef\",\"t\":\"6ff42ae2-765d-4adf-8112-31c55c1551ef\",\"s\":\"{}\"}}",
        b64.encode([7u8; 32])
    );
    b64.encode(json)
}

pub fn enroll_json() -> String {
    format!(
        "{{\"tunnel_id\":\"6ff42ae2-765d-4adf-8112-31c55c1551ef\",\"tunnel_token\":\"{}\",\"hostname\":\"acme-1.hub.test\",\"r2_endpoint\":\"http://127.0.0.1:9\",\"r2_bucket\":\"acct-1\",\"r2_access_key_id\":\"AK\",\"r2_secret_access_key\":\"scripted-secret-55ab\"}}",
        fake_token()
    )
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Answer {
    Json(u16, String),
    WithHeader(u16, &'static str, &'static str, String),
    Raw(u16, &'static str),
    /// Accept the request and never answer.
    Hang,
    /// 200 with a JSON-looking body of this many bytes and no Content-Length (it ends
    /// when the connection closes): a client must stop reading on its own.
    Flood(usize),
}

/// A real HTTP server on loopback that answers from a script (the last answer
/// repeats), recording each request as its request line, a space, and its body.
pub struct ScriptedServer {
    pub url: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl ScriptedServer {
    pub fn start(script: Vec<Answer>) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reqs = requests.clone();
        std::thread::spawn(move || {
            let mut n = 0usize;
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let answer = script[n.min(script.len() - 1)].clone();
                n += 1;
                let reqs = reqs.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let mut len = 0;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    let _ = reader.read_exact(&mut body);
                    reqs.lock().unwrap().push(format!(
                        "{} {}",
                        line.trim(),
                        String::from_utf8_lossy(&body)
                    ));
                    let (status, extra, body) = match answer {
                        Answer::Json(s, b) => (s, String::new(), b),
                        Answer::WithHeader(s, k, v, b) => (s, format!("{k}: {v}\r\n"), b),
                        Answer::Raw(s, b) => (s, String::new(), b.to_owned()),
                        Answer::Hang => {
                            std::thread::sleep(Duration::from_secs(3600));
                            return;
                        }
                        Answer::Flood(n) => {
                            let head = "HTTP/1.1 200 X\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"tunnel_id\":\"";
                            if conn.write_all(head.as_bytes()).is_err() {
                                return;
                            }
                            let chunk = vec![b'a'; 64 * 1024];
                            let mut left = n;
                            while left > 0 {
                                let k = left.min(chunk.len());
                                if conn.write_all(&chunk[..k]).is_err() {
                                    return;
                                }
                                left -= k;
                            }
                            return;
                        }
                    };
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes());
                });
            }
        });
        ScriptedServer { url, requests }
    }

    /// The recorded requests whose line or body contains `part`.
    pub fn matching(&self, part: &str) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.contains(part))
            .cloned()
            .collect()
    }

    pub fn count(&self, path_part: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.contains(path_part))
            .count()
    }
}

/// Whether a process exists.
pub fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
}

pub fn secrets(d: &Daemon) -> PathBuf {
    d.dir.path().join("state/secrets")
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
