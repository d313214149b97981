//! A real S3-compatible server for the tests: `rclone serve s3` on a free loopback
//! port, its buckets being directories of a temp dir, killed when dropped.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEY_ID: &str = "hk-test-key-id";
pub const SECRET: &str = "hk-test-secret-0123456789abcdef";

// Where rclone is and how to pick a port: the same as every other test of the workspace.
pub use testkit::s3::{free_port, rclone};

pub struct Rclone {
    child: Child,
    pub port: u16,
    pub endpoint: String,
    /// rclone's data directory: `data/<bucket>/<key>`.
    pub data: PathBuf,
    dir: tempfile::TempDir,
}

impl Rclone {
    /// Path-style, accepting `KEY_ID`/`SECRET`.
    pub fn start() -> Rclone {
        Rclone::start_with(&[])
    }

    pub fn start_with(extra_args: &[&str]) -> Rclone {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        // Someone may take the port between our probe and rclone's bind: try a few.
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("rclone.log")).unwrap();
            let mut child = Command::new(rclone())
                .args(["serve", "s3", "--addr", &format!("127.0.0.1:{port}")])
                .args(extra_args)
                .arg(&data)
                // Keys in the environment, not argv; no user rclone.conf.
                .env("RCLONE_AUTH_KEY", format!("\"{KEY_ID},{SECRET}\""))
                .env("RCLONE_CONFIG", "/dev/null")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn rclone");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Rclone {
                        child,
                        port,
                        endpoint: format!("http://127.0.0.1:{port}"),
                        data,
                        dir,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // lost the port race (or failed): next port
                }
                assert!(
                    Instant::now() < deadline,
                    "rclone did not listen on {port} within 30 s: {}",
                    self_log(dir.path())
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("rclone would not start: {}", self_log(dir.path()));
    }

    /// Makes `bucket` exist (a directory, for rclone).
    pub fn bucket(&self, bucket: &str) {
        std::fs::create_dir_all(self.data.join(bucket)).unwrap();
    }

    pub fn log(&self) -> String {
        self_log(self.dir.path())
    }
}

fn self_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("rclone.log")).unwrap_or_default()
}

impl Drop for Rclone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
