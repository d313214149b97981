//! The cloudflared stand-in (`crates/cloudflared-standin`) must behave like cloudflared
//! wherever hubkeeper depends on it, because hubkeeper's own tests trust it. Each test
//! runs the real binary in a temp dir with a free loopback port and waits on conditions
//! with deadlines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cloudflared-standin");
const DEADLINE: Duration = Duration::from_secs(15);
const TUNNEL_ID: &str = "6ff42ae2-765d-4adf-8112-31c55c1551ef";
/// A marker inside every secret the tests write; it must never reach the output.
const SECRET_MARKER: &str = "LEAKCHECK";

/// Polls `f` every 20 ms until it returns `Some`; panics naming `what` after the deadline.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port nobody listens on (bound, then released for the stand-in).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A token as Cloudflare issues it: standard base64 of `{"a","t","s"}`.
fn token_json(json: &str) -> String {
    STANDARD.encode(json)
}

fn valid_token() -> String {
    let secret = STANDARD.encode(format!("{SECRET_MARKER}-32-bytes-of-tunnel-secret"));
    token_json(&format!(
        r#"{{"a":"acct-{SECRET_MARKER}","t":"{TUNNEL_ID}","s":"{secret}"}}"#
    ))
}

fn managed_args(metrics: &str, grace: &str, token_file: &Path) -> Vec<String> {
    let mut a: Vec<String> = ["tunnel", "--no-autoupdate", "--metrics", metrics]
        .map(String::from)
        .into();
    a.extend(["--grace-period".into(), grace.into(), "run".into()]);
    a.extend(["--token-file".into(), token_file.display().to_string()]);
    a
}

/// Writes the way tests should: a temp file renamed into place, so the stand-in never
/// reads half a behavior file.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// One HTTP/1.1 GET with `Connection: close`; the whole exchange must finish in `timeout`.
fn http_get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), timeout)?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {raw:?}")))?;
    Ok((status, body.to_owned()))
}

struct Standin {
    child: Child,
    dir: tempfile::TempDir,
    addr: String,
}

impl Standin {
    /// The pinned managed invocation with a valid token and `behavior` (if any).
    fn managed(behavior: Option<&str>) -> Standin {
        Self::managed_with(behavior, "30s", &[])
    }

    fn managed_with(behavior: Option<&str>, grace: &str, env: &[(&str, &str)]) -> Standin {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("tunnel-token");
        std::fs::write(&token, valid_token()).unwrap();
        if let Some(b) = behavior {
            write_atomic(&dir.path().join("behavior"), b);
        }
        let addr = format!("127.0.0.1:{}", free_port());
        let args = managed_args(&addr, grace, &token);
        Self::spawn(dir, addr, &args, env, true)
    }

    fn spawn(
        dir: tempfile::TempDir,
        addr: String,
        args: &[String],
        env: &[(&str, &str)],
        control: bool,
    ) -> Standin {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("CLOUDFLARED_STANDIN_DIR")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
        if control {
            cmd.env("CLOUDFLARED_STANDIN_DIR", dir.path());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn the stand-in");
        Standin { child, dir, addr }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }

    fn events(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("events.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn wait_event(&self, prefix: &str) -> String {
        wait_for(&format!("event `{prefix}`"), || {
            self.events().into_iter().find(|e| e.starts_with(prefix))
        })
    }

    fn set_behavior(&self, text: &str) {
        write_atomic(&self.path("behavior"), text);
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr, path, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("GET {path}: {e}; stderr:\n{}", self.stderr()))
    }

    fn ready(&self) -> (u16, serde_json::Value) {
        let (status, body) = self.get("/ready");
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (status, json)
    }

    /// Waits until the metrics server answers at all.
    fn wait_serving(&mut self) {
        wait_for("the metrics server", || {
            self.assert_alive();
            http_get(&self.addr, "/healthcheck", Duration::from_secs(2)).ok()
        });
    }

    /// Waits until `/ready` says 200; returns its body.
    fn wait_ready(&mut self) -> serde_json::Value {
        self.wait_serving();
        wait_for("/ready 200", || {
            let (status, json) = self.ready();
            (status == 200).then_some(json)
        })
    }

    fn assert_alive(&mut self) {
        if let Some(st) = self.child.try_wait().unwrap() {
            panic!("the stand-in exited ({st}); stderr:\n{}", self.stderr());
        }
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    fn wait_exit(&mut self) -> ExitStatus {
        wait_for("the stand-in to exit", || self.child.try_wait().unwrap())
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an invocation that is expected to end by itself; returns (code, stderr, events).
fn run_to_exit(dir: tempfile::TempDir, args: &[String]) -> (i32, String, Vec<String>) {
    let mut s = Standin::spawn(dir, String::new(), args, &[], true);
    let status = s.wait_exit();
    let code = status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {status}"));
    (code, s.stderr(), s.events())
}

fn assert_no_secret(text: &str, token: &str) {
    assert!(
        !text.contains(SECRET_MARKER) && !text.contains(token.trim()),
        "secret material in output:\n{text}"
    );
}

#[test]
fn start_event_records_the_process_and_its_argv() {
    let mut s = Standin::managed(None);
    s.wait_serving();
    let start = s.wait_event("start ");
    assert!(
        start.contains(&format!(" pid={} ", s.child.id())),
        "{start}"
    );
    assert!(
        start.contains(&format!(" ppid={} ", std::process::id())),
        "{start}"
    );
    assert!(start.contains(" pgid="), "{start}");
    assert!(start.contains(" t_ms="), "{start}");
    assert!(
        start.contains(" notify_socket=absent watchdog=absent "),
        "{start}"
    );
    let token = s.path("tunnel-token");
    let expected = format!(
        " argv=tunnel --no-autoupdate --metrics {} --grace-period 30s run --token-file {}",
        s.addr,
        token.display()
    );
    assert!(
        start.ends_with(&expected),
        "{start}\nexpected end: {expected}"
    );
}

#[test]
fn ready_is_503_until_connected_then_200_with_the_connections() {
    let mut s = Standin::managed(Some("connect_delay = 1h\nready_connections = 3\n"));
    s.wait_serving();
    let (status, before) = s.ready();
    assert_eq!(status, 503, "{before}");
    assert_eq!(before["status"], 503);
    assert_eq!(before["readyConnections"], 0);
    let connector = before["connectorId"].as_str().unwrap().to_owned();
    assert_eq!(connector.len(), 36, "{connector}");
    assert!(
        s.get("/metrics")
            .1
            .contains("\ncloudflared_tunnel_ha_connections 0\n")
    );
    assert!(!s.events().iter().any(|e| e.starts_with("ready ")));

    s.set_behavior("connect_delay = 0s\nready_connections = 3\n");
    let after = s.wait_ready();
    assert_eq!(after["status"], 200);
    assert_eq!(after["readyConnections"], 3);
    assert_eq!(after["connectorId"], connector.as_str());
    s.wait_event("ready connections=3 ");
    assert!(
        s.stderr()
            .contains("INF Registered tunnel connection connIndex=2 "),
        "{}",
        s.stderr()
    );
}

#[test]
fn defaults_connect_four_and_serve_healthcheck_and_metrics() {
    let mut s = Standin::managed(None);
    assert_eq!(s.wait_ready()["readyConnections"], 4);
    assert_eq!(s.get("/healthcheck"), (200, "OK\n".to_owned()));
    let (status, metrics) = s.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("\ncloudflared_tunnel_ha_connections 4\n"),
        "{metrics}"
    );
    assert_eq!(s.get("/nope").0, 404);
}

#[test]
fn without_a_control_dir_it_runs_on_defaults_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("tunnel-token");
    std::fs::write(&token, valid_token()).unwrap();
    // A behavior file that would refuse to start, were it read.
    std::fs::write(dir.path().join("behavior"), "not a behavior\n").unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let args = managed_args(&addr, "30s", &token);
    let mut s = Standin::spawn(dir, addr, &args, &[], false);
    assert_eq!(s.wait_ready()["readyConnections"], 4);
    assert!(!s.path("events.log").exists());
}

#[test]
fn ready_503_can_be_switched_on_while_running() {
    let mut s = Standin::managed(None);
    s.wait_ready();
    s.set_behavior("ready = 503\n");
    let (status, body) = s.ready();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["readyConnections"], 0);
    // Lost connections do not end the process, as with cloudflared.
    assert_eq!(s.get("/healthcheck").0, 200);
    s.set_behavior("ready = ok\n");
    assert_eq!(s.ready().0, 200);
}

#[test]
fn ready_hang_accepts_the_request_and_never_answers() {
    let mut s = Standin::managed(None);
    s.wait_ready();
    s.set_behavior("ready = hang\n");
    let answer = http_get(&s.addr, "/ready", Duration::from_millis(300));
    assert!(answer.is_err(), "a hung /ready answered: {answer:?}");
    s.wait_event("http path=/ready status=hang ");
    // Only /ready hangs: the process and its other endpoints are fine.
    assert_eq!(s.get("/healthcheck").0, 200);
}

#[test]
fn exit_after_crashes_with_the_exit_code() {
    let mut s = Standin::managed(Some("exit_after = 300ms\nexit_code = 7\n"));
    assert_eq!(s.wait_exit().code(), Some(7));
    assert!(s.events().last().unwrap().starts_with("exit code=7 "));
}

#[test]
fn exit_after_0s_exits_right_after_the_start_event() {
    let mut s = Standin::managed(Some("exit_after = 0s\n"));
    assert_eq!(s.wait_exit().code(), Some(1));
    let events = s.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0].starts_with("start "));
    assert!(events[1].starts_with("exit code=1 "));
}

#[test]
fn sigterm_drains_and_exits_0_without_logging_secrets() {
    let mut s = Standin::managed(None);
    s.wait_ready();
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0));
    let events = s.events();
    let term = events
        .iter()
        .position(|e| e.starts_with("sigterm n=1 action=graceful "));
    let exit = events.iter().position(|e| e.starts_with("exit code=0 "));
    assert!(term.is_some() && term < exit, "{events:?}");
    let stderr = s.stderr();
    assert!(
        stderr.contains("INF Initiating graceful shutdown due to signal terminated ..."),
        "{stderr}"
    );
    assert_no_secret(&stderr, &valid_token());
    assert_no_secret(&events.join("\n"), &valid_token());
}

#[test]
fn during_the_drain_ready_is_503_and_a_second_sigterm_kills() {
    let mut s = Standin::managed_with(Some("drain = 1h\n"), "3m", &[]);
    s.wait_ready();
    s.signal(Signal::SIGTERM);
    s.wait_event("sigterm n=1 action=graceful ");
    assert_eq!(s.ready().0, 503);
    s.assert_alive();
    s.signal(Signal::SIGTERM);
    let status = s.wait_exit();
    // cloudflared's handler is gone after the first signal: the second one kills it.
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
    s.wait_event("sigterm n=2 action=die ");
    s.wait_event(&format!("exit signal={} ", libc::SIGTERM));
}

#[test]
fn the_drain_never_outlasts_the_grace_period() {
    let mut s = Standin::managed_with(Some("drain = 1h\n"), "200ms", &[]);
    s.wait_ready();
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0));
}

#[test]
fn on_sigterm_ignore_keeps_running_until_sigkill() {
    let mut s = Standin::managed_with(Some("on_sigterm = ignore\n"), "1m30s", &[]);
    s.wait_ready();
    s.signal(Signal::SIGTERM);
    s.wait_event("sigterm n=1 action=ignore ");
    assert_eq!(s.get("/healthcheck").0, 200);
    s.assert_alive();
    s.signal(Signal::SIGKILL);
    assert_eq!(s.wait_exit().signal(), Some(libc::SIGKILL));
}

#[test]
fn usage_errors_exit_255() {
    let bad: [&[&str]; 5] = [
        &["tunnel", "--bogus", "--metrics", "127.0.0.1:1", "run"],
        &["tunnel", "--metrics", "127.0.0.1:1", "run", "--token-file"],
        &[
            "tunnel",
            "--metrics",
            "127.0.0.1:1",
            "--token-file",
            "/t",
            "run",
        ],
        &[
            "tunnel",
            "--metrics",
            "127.0.0.1:1",
            "--grace-period",
            "30",
            "run",
            "--token-file",
            "/t",
        ],
        &["tunnel", "--metrics", "127.0.0.1:1", "run"],
    ];
    for args in bad {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (code, stderr, events) = run_to_exit(tempfile::tempdir().unwrap(), &args);
        assert_eq!(code, 255, "{args:?}: {stderr}");
        assert!(!stderr.trim().is_empty(), "{args:?}: no usage message");
        assert!(events.last().unwrap().starts_with("exit code=255 "));
    }
}

#[test]
fn invalid_tokens_exit_255_without_showing_them() {
    let secret = STANDARD.encode(format!("{SECRET_MARKER}-secret"));
    let bad = [
        format!("{SECRET_MARKER} is not base64"),
        token_json(&format!("{SECRET_MARKER} is not JSON")),
        token_json(&format!(r#"{{"a":"{SECRET_MARKER}","t":"{TUNNEL_ID}"}}"#)),
        token_json(&format!(
            r#"{{"a":"{SECRET_MARKER}","t":"not-a-uuid","s":"{secret}"}}"#
        )),
        token_json(&format!(r#"{{"a":"","t":"{TUNNEL_ID}","s":"{secret}"}}"#)),
        token_json(&format!(
            r#"{{"a":"{SECRET_MARKER}","t":"{TUNNEL_ID}","s":"{SECRET_MARKER}!"}}"#
        )),
    ];
    for token in bad {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tunnel-token");
        std::fs::write(&file, &token).unwrap();
        let args = managed_args(&format!("127.0.0.1:{}", free_port()), "30s", &file);
        let (code, stderr, events) = run_to_exit(dir, &args);
        assert_eq!(code, 255, "{token}: {stderr}");
        assert!(
            stderr.contains("Provided Tunnel token is not valid."),
            "{stderr}"
        );
        assert_no_secret(&stderr, &token);
        assert_no_secret(&events.join("\n"), &token);
    }

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-token");
    let args = managed_args("127.0.0.1:1", "30s", &missing);
    let (code, stderr, _) = run_to_exit(dir, &args);
    assert_eq!(code, 255, "{stderr}");
    assert!(stderr.contains("Failed to read token file"), "{stderr}");
}

#[test]
fn a_grace_period_over_3m_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("tunnel-token");
    std::fs::write(&token, valid_token()).unwrap();
    let args = managed_args(&format!("127.0.0.1:{}", free_port()), "3m1s", &token);
    let (code, stderr, _) = run_to_exit(dir, &args);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("grace-period must be equal or less than 3m0s"),
        "{stderr}"
    );
}

#[test]
fn an_unbindable_metrics_address_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("tunnel-token");
    std::fs::write(&token, valid_token()).unwrap();
    let (code, stderr, _) = run_to_exit(dir, &managed_args(&addr, "30s", &token));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("Error opening metrics server listener"),
        "{stderr}"
    );
}

#[test]
fn notify_socket_and_watchdog_are_reported_and_ready_1_is_sent_like_cloudflared() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let sock_env = sock_path.display().to_string();
    // The temp dir above only holds the socket; the stand-in gets its own.
    let mut s = Standin::managed_with(
        None,
        "30s",
        &[("NOTIFY_SOCKET", &sock_env), ("WATCHDOG_USEC", "1000000")],
    );
    let start = s.wait_event("start ");
    assert!(
        start.contains(" notify_socket=present watchdog=present "),
        "{start}"
    );
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("READY=1 from the stand-in");
    assert_eq!(&buf[..n], b"READY=1");
    s.wait_ready();
}

#[test]
fn self_managed_config_runs_and_bad_configs_fail_like_cloudflared() {
    let secret = STANDARD.encode(format!("{SECRET_MARKER}-32-bytes-of-tunnel-secret"));
    let good_creds =
        format!(r#"{{"AccountTag":"acct","TunnelSecret":"{secret}","TunnelID":"{TUNNEL_ID}"}}"#);
    let config = |creds: &Path, last_rule: &str| {
        format!(
            "tunnel: \"{TUNNEL_ID}\"\ncredentials-file: \"{}\"\ningress:\n  \
             - hostname: \"hub.example.com\"\n    service: \"http://127.0.0.1:8080\"\n  {last_rule}\n",
            creds.display()
        )
    };
    let start = |creds_json: Option<&str>, last_rule: &str| {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials.json");
        if let Some(c) = creds_json {
            std::fs::write(&creds, c).unwrap();
        }
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config(&creds, last_rule)).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let args: Vec<String> = [
            "tunnel",
            "--no-autoupdate",
            "--metrics",
            &addr,
            "--grace-period",
            "30s",
            "--config",
            &cfg.display().to_string(),
            "run",
        ]
        .map(String::from)
        .into();
        Standin::spawn(dir, addr, &args, &[], true)
    };

    let mut s = start(Some(&good_creds), "- service: http_status:404");
    assert_eq!(s.wait_ready()["readyConnections"], 4);
    assert!(
        s.stderr()
            .contains(&format!("INF Starting tunnel tunnelID={TUNNEL_ID}"))
    );
    drop(s);

    let failures = [
        (None, "- service: http_status:404", "doesn't exist"),
        (
            Some(format!(
                r#"{{"AccountTag":"acct","TunnelID":"{TUNNEL_ID}"}}"#
            )),
            "- service: http_status:404",
            "TunnelSecret",
        ),
        (
            Some(format!("{{\"TunnelSecret\": \"{secret}\"")),
            "- service: http_status:404",
            "invalid JSON",
        ),
        (
            Some(good_creds.clone()),
            "- hostname: other.example.com\n    service: http_status:404",
            "The last ingress rule must match all URLs",
        ),
    ];
    for (creds, last_rule, message) in failures {
        let mut s = start(creds.as_deref(), last_rule);
        assert_eq!(s.wait_exit().code(), Some(1), "{}", s.stderr());
        let stderr = s.stderr();
        assert!(stderr.contains(message), "wanted {message:?} in:\n{stderr}");
        assert_no_secret(&stderr, &secret);
    }
}

#[test]
fn hang_start_never_binds_the_metrics_address() {
    // Bounded negative check: during its whole (short) life nothing ever listens.
    let mut s = Standin::managed(Some("hang_start = true\nexit_after = 1s\nexit_code = 3\n"));
    s.wait_event("start ");
    let status = wait_for("the stand-in to exit", || {
        assert!(
            TcpStream::connect(&s.addr).is_err(),
            "a hung start is listening on {}",
            s.addr
        );
        s.child.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(3));
    assert!(!s.events().iter().any(|e| e.starts_with("ready ")));
}

#[test]
fn a_bad_behavior_file_is_refused_at_start_and_kept_out_later() {
    let mut s = Standin::managed(Some("conect_delay = 1s\n"));
    assert_eq!(s.wait_exit().code(), Some(2));
    assert!(s.stderr().contains("unknown key `conect_delay`"));

    let mut s = Standin::managed(Some("ready_connections = 2\n"));
    assert_eq!(s.wait_ready()["readyConnections"], 2);
    s.set_behavior("ready = sometimes\n");
    // The last good behavior stays in force.
    let (status, body) = s.ready();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["readyConnections"], 2);
    s.wait_event("behavior_error ");
}

#[test]
fn version_prints_a_cloudflared_style_line() {
    let out = Command::new(BIN)
        .arg("--version")
        .env_remove("CLOUDFLARED_STANDIN_DIR")
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with("cloudflared version "), "{line}");
    assert!(line.contains("stand-in"), "{line}");
}
