//! A real S3-compatible server for tests: `rclone serve s3` on a free loopback port,
//! its data in a temp dir (each bucket is a directory there), and signed requests to it
//! through the daemon's own S3 client.

use super::workspace_root;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The rclone that `./dev/test` installs.
pub fn rclone() -> PathBuf {
    let path = std::env::var_os("HUBKEEPER_TEST_RCLONE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/tools/venv/bin/rclone"));
    if !path.exists() {
        panic!(
            "rclone not found at {}: run ./dev/test (it installs rclone into target/tools)",
            path.display()
        );
    }
    path
}

/// The real rustic that `./dev/test` builds into target/tools (or
/// `HUBKEEPER_TEST_RUSTIC`).
pub fn rustic() -> PathBuf {
    let path = std::env::var_os("HUBKEEPER_TEST_RUSTIC")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/tools/bin/rustic"));
    assert!(
        path.exists(),
        "rustic not found at {}: run ./dev/test (it builds rustic into target/tools)",
        path.display()
    );
    path
}

/// A loopback port that was free a moment ago (bind to port 0, then release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct S3Server {
    child: std::sync::Mutex<Child>,
    /// Where rclone itself listens (behind the shim).
    port: u16,
    dir_path: PathBuf,
    shim: Child,
    pub endpoint: String,
    /// rclone's data directory: `data/<bucket>/<key>`.
    pub data: PathBuf,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts `rclone serve s3` accepting each (access key id, secret key) pair.
    pub fn start(keys: &[(&str, &str)]) -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let log = dir.path().join("rclone.log");
        let keys: Vec<(String, String)> = keys
            .iter()
            .map(|(a, s)| ((*a).to_owned(), (*s).to_owned()))
            .collect();
        // A port picked this way can be taken by someone else before rclone binds it:
        // try a few.
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = spawn_rclone(dir.path(), port, &keys) {
                let (public, shim) = dir_marker_shim(port);
                return S3Server {
                    child: std::sync::Mutex::new(child),
                    port,
                    dir_path: dir.path().to_owned(),
                    shim,
                    endpoint: format!("http://127.0.0.1:{public}"),
                    data,
                    log,
                    _dir: dir,
                };
            }
        }
        panic!(
            "rclone serve s3 failed to start; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Restarts rclone (same port, same data) accepting these key pairs instead: how
    /// keys minted by the Cloudflare stand-in come to work here, a moment after they
    /// were minted, much as R2 keys take a while to work everywhere.
    pub fn set_keys(&self, keys: &[(String, String)]) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        // The port was ours a moment ago; retry while the kernel lets it go.
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = spawn_rclone(&self.dir_path, self.port, keys) {
                *child = c;
                return;
            }
            assert!(
                Instant::now() < end,
                "rclone did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// True if the store has the bucket (rclone keeps one directory per bucket).
    pub fn has_bucket(&self, name: &str) -> bool {
        self.data.join(name).is_dir()
    }

    /// A client signing with these keys, as a hub would use them.
    pub fn client(&self, access_key_id: &str, secret_access_key: &str) -> S3Client {
        S3Client {
            endpoint: self.endpoint.clone(),
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }
}

impl S3Server {
    /// Sends `sig` to rclone: SIGSTOP makes a hung store (connections accepted, no
    /// answers), SIGCONT revives it.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = self.child.lock().unwrap().id();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.shim.kill();
        let _ = self.shim.wait();
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A blocking wrapper over the daemon's own S3 client for the few calls tests make.
pub struct S3Client {
    endpoint: String,
    access_key_id: String,
    secret_access_key: String,
    rt: tokio::runtime::Runtime,
}

impl S3Client {
    fn bucket(&self, bucket: &str) -> Result<hubkeeper_s3::Client, String> {
        let target = hubkeeper_s3::Target {
            endpoint: &self.endpoint,
            bucket,
            access_key_id: &self.access_key_id,
            secret_access_key: &self.secret_access_key,
            region: hubkeeper_s3::REGION_AUTO,
            path_style: true,
        };
        hubkeeper_s3::Client::new(&target, hubkeeper_s3::Limits::default(), None)
            .map_err(|e| e.to_string())
    }

    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) -> Result<(), String> {
        let client = self.bucket(bucket)?;
        self.rt
            .block_on(client.put_object(key, body.to_vec()))
            .map_err(|e| e.to_string())
    }

    pub fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
        let client = self.bucket(bucket)?;
        self.rt
            .block_on(client.get_object(key, 64 << 20))
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string())
    }
}

/// Starts `s3-dirmarker-proxy` in front of rclone (see that program: R2 accepts the
/// directory markers rustic writes, rclone does not). Returns its port and process.
/// rclone on `port` with these keys, once it listens; `None` if it exited (the port
/// was taken).
fn spawn_rclone(dir: &std::path::Path, port: u16, keys: &[(String, String)]) -> Option<Child> {
    let log = dir.join("rclone.log");
    let mut cmd = Command::new(rclone());
    cmd.args(["serve", "s3", "--addr", &format!("127.0.0.1:{port}")]);
    // Keys go in the environment (CSV of quoted "id,secret" pairs), not argv: tests
    // scan every process's argv for secrets.
    let csv: Vec<String> = keys
        .iter()
        .map(|(ak, sk)| format!("\"{ak},{sk}\""))
        .collect();
    cmd.env("RCLONE_AUTH_KEY", csv.join(","));
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    cmd.arg(dir.join("data"))
        // No user rclone.conf: the test sees only what it set.
        .env("RCLONE_CONFIG", dir.join("rclone.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let mut child = cmd.spawn().expect("spawn rclone");
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(child);
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "rclone did not listen within 20s; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn dir_marker_shim(upstream: u16) -> (u16, Child) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new(&*super::S3_PROXY)
            .arg(format!("127.0.0.1:{port}"))
            .arg(format!("127.0.0.1:{upstream}"))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn s3-dirmarker-proxy");
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (port, child);
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("s3-dirmarker-proxy did not start");
}
