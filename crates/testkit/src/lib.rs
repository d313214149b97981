//! What tests and benches share: spawn the real `hubkeeper` binary in a temp dir, talk HTTP to it over
//! its socket (raw bytes, so malformed requests can be sent too), and wait on
//! conditions with deadlines instead of sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cloudflare;
pub mod dns;
pub mod fault;
pub mod procfs;
pub mod s3;
pub mod stack;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// The hub daemon's binary.
pub static BIN: LazyLock<PathBuf> = LazyLock::new(|| workspace_bin("hubkeeper"));
/// The control service's binary.
pub static CONTROL_BIN: LazyLock<PathBuf> = LazyLock::new(|| workspace_bin("hubkeeper-control"));
/// The cloudflared stand-in.
pub static STANDIN: LazyLock<PathBuf> = LazyLock::new(|| workspace_bin("cloudflared-standin"));
/// The R2 directory-marker proxy in front of rclone.
pub static S3_PROXY: LazyLock<PathBuf> = LazyLock::new(|| workspace_bin("s3-dirmarker-proxy"));

/// The workspace's root directory (where `target/tools` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testkit sits two levels below the workspace root")
        .to_path_buf()
}

/// A binary of this workspace, built beside the running test or bench (cargo puts
/// them in `target/<profile>/deps/`, binaries one level up). Cargo only hands a test
/// the binaries of its own package (`CARGO_BIN_EXE_*`), and these come from several,
/// so `./dev/test` builds the whole workspace (`cargo test --workspace`) first.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("a test binary lives in target/<profile>/deps");
    let bin = profile_dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace`, or run the tests with ./dev/test)",
        bin.display()
    );
    bin
}

/// Socket and secrets live in the test's temp dir; relative paths follow the config.
pub const BASE: &str = "socket = \"run/hk.sock\"\nsecrets_dir = \"state/secrets\"\n";

/// Polls `f` every 20 ms until it holds; panics naming `what` after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// A temp dir that other users can traverse (tests run some clients as `nobody`).
pub fn open_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// Replaces a file the way editors do: write a new file, rename it over the old one.
pub fn save_like_an_editor(path: &Path, text: &str) {
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Sets `key = value` on the first line of the config at `path` that sets `key` (so
/// the top-level `enabled` before `[backup] enabled`), as an admin's editor would.
pub fn set_config_key(path: &Path, key: &str, value: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let prefix = format!("{key} = ");
    let mut done = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if !done && l.starts_with(&prefix) {
                done = true;
                format!("{key} = {value}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(done, "no {key} in {}", path.display());
    save_like_an_editor(path, &(lines.join("\n") + "\n"));
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Parses one HTTP/1.1 response from raw bytes.
pub fn parse_response(raw: &[u8]) -> Option<Resp> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        if body.len() < len {
            return None;
        }
        body.truncate(len);
    }
    Some(Resp {
        status,
        headers,
        body,
    })
}

/// Sends raw bytes over the daemon's socket and reads one response.
pub fn raw(socket: &Path, request: &[u8]) -> std::io::Result<Resp> {
    let s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    exchange(s, request)
}

/// Sends raw bytes over TCP to a loopback port and reads one response.
pub fn tcp(port: u16, request: &[u8]) -> std::io::Result<Resp> {
    let s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    exchange(s, request)
}

/// Writes `request`, then reads until one response is complete or the peer closes.
fn exchange(mut s: impl Read + Write, request: &[u8]) -> std::io::Result<Resp> {
    s.write_all(request)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(r) = parse_response(&buf) {
            return Ok(r);
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return parse_response(&buf).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed without a full response",
                )
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub fn request(socket: &Path, method: &str, path: &str, extra_headers: &str) -> Resp {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: hubkeeper\r\nContent-Length: 0\r\n{extra_headers}\r\n"
    );
    raw(socket, req.as_bytes()).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn get(socket: &Path, path: &str) -> Resp {
    request(socket, "GET", path, "")
}

pub fn post(socket: &Path, path: &str) -> Resp {
    request(socket, "POST", path, "")
}

/// A `hubkeeper run` process with its own temp dir.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Writes `BASE + extra` as the config and starts the daemon; waits until it serves.
    pub fn start(extra: &str) -> Daemon {
        let d = Self::spawn(open_tempdir(), &format!("{BASE}{extra}"), &[]);
        d.wait_serving();
        d
    }

    /// Like [`Daemon::start`], with `files` (relative name, content) written first.
    pub fn start_with_files(extra: &str, files: &[(&str, &str)]) -> Daemon {
        let dir = open_tempdir();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let d = Self::spawn(dir, &format!("{BASE}{extra}"), &[]);
        d.wait_serving();
        d
    }

    /// Starts the daemon without waiting; `config` is written as is.
    pub fn spawn(dir: tempfile::TempDir, config: &str, env: &[(&str, &str)]) -> Daemon {
        let cfg = dir.path().join("hk.toml");
        std::fs::write(&cfg, config).unwrap();
        Self::spawn_at(dir, cfg, env)
    }

    /// Starts the daemon on an existing config path (a file or a symlink).
    pub fn spawn_at(dir: tempfile::TempDir, cfg: PathBuf, env: &[(&str, &str)]) -> Daemon {
        Self::spawn_as(dir, cfg, env, None)
    }

    /// Like [`Daemon::spawn_at`], optionally as another user (uid = gid).
    pub fn spawn_as(
        dir: tempfile::TempDir,
        cfg: PathBuf,
        env: &[(&str, &str)],
        uid: Option<u32>,
    ) -> Daemon {
        let log = dir.path().join("daemon.log");
        let mut cmd = Command::new(&*BIN);
        cmd.arg("run")
            .arg("--config")
            .arg(&cfg)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .env_remove("RUST_LOG")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("daemon.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(u) = uid {
            use std::os::unix::process::CommandExt;
            cmd.uid(u).gid(u);
        }
        let child = cmd.spawn().expect("spawn hubkeeper");
        let socket = dir.path().join("run/hk.sock");
        Daemon {
            child,
            config: cfg,
            socket,
            log,
            dir,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `GET /v1/status` answers; panics with the log if the daemon exits.
    pub fn wait_serving(&self) {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if raw(&self.socket, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n").is_ok() {
                return;
            }
            if let Ok(Some(st)) =
                nix::sys::wait::waitpid(self.pid(), Some(nix::sys::wait::WaitPidFlag::WNOHANG)).map(
                    |s| match s {
                        nix::sys::wait::WaitStatus::StillAlive => None,
                        other => Some(other),
                    },
                )
            {
                panic!(
                    "daemon exited before serving ({st:?}); log:\n{}",
                    self.log()
                );
            }
            if Instant::now() > end {
                panic!("daemon did not serve within 15s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn status(&self) -> serde_json::Value {
        let r = get(&self.socket, "/v1/status");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// Waits (up to 10 s) until the status satisfies `f`.
    pub fn wait_status(
        &self,
        what: &str,
        f: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.wait_status_within(Duration::from_secs(10), what, f)
    }

    /// Waits up to `limit` until the status satisfies `f` (backups on a busy machine
    /// need minutes, not seconds).
    pub fn wait_status_within(
        &self,
        limit: Duration,
        what: &str,
        mut f: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        let end = Instant::now() + limit;
        while Instant::now() < end {
            last = self.status();
            if f(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "timed out waiting for status: {what}; last status:\n{last:#}\nlog:\n{}",
            self.log()
        );
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap();
    }

    /// Waits for the process to exit (deadline 15 s).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > end {
                panic!("daemon did not exit within 15s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `hubkeeper` CLI and returns (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    cli_as(args, None)
}

/// Like [`cli`], optionally as another uid/gid (the tests run as root).
pub fn cli_as(args: &[&str], uid: Option<u32>) -> (i32, String, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(&*BIN);
    cmd.args(args)
        .env_remove("HUBKEEPER_CONFIG")
        .env_remove("HUBKEEPER_SOCKET")
        .env_remove("CREDENTIALS_DIRECTORY");
    if let Some(u) = uid {
        // std drops supplementary groups when changing uid as root.
        cmd.uid(u).gid(u);
    }
    let out = cmd.output().expect("run hubkeeper");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
