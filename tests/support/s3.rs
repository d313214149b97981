//! A real S3-compatible server for tests: `rclone serve s3` on a free loopback port,
//! its data in a temp dir (each bucket is a directory there), and signed requests to it
//! through aws-sdk-s3.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The rclone that `./dev/test` installs.
pub fn rclone() -> PathBuf {
    let path = std::env::var_os("HUBKEEPER_TEST_RCLONE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/venv/bin/rclone")
        });
    if !path.exists() {
        panic!(
            "rclone not found at {}: run ./dev/test (it installs rclone into target/tools)",
            path.display()
        );
    }
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
    child: Child,
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
        // A port picked this way can be taken by someone else before rclone binds it:
        // try a few.
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(rclone());
            cmd.args(["serve", "s3", "--addr", &format!("127.0.0.1:{port}")]);
            let port_inner = port;
            // Keys go in the environment (CSV of quoted "id,secret" pairs), not argv:
            // tests scan every process's argv for secrets.
            let csv: Vec<String> = keys
                .iter()
                .map(|(ak, sk)| format!("\"{ak},{sk}\""))
                .collect();
            cmd.env("RCLONE_AUTH_KEY", csv.join(","));
            cmd.arg(&data)
                // No user rclone.conf: the test sees only what it set.
                .env("RCLONE_CONFIG", dir.path().join("rclone.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            let mut child = cmd.spawn().expect("spawn rclone");
            let end = Instant::now() + Duration::from_secs(20);
            loop {
                if TcpStream::connect(("127.0.0.1", port_inner)).is_ok() {
                    let public = dir_marker_shim(port_inner);
                    return S3Server {
                        child,
                        endpoint: format!("http://127.0.0.1:{public}"),
                        data,
                        log,
                        _dir: dir,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
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
        panic!(
            "rclone serve s3 failed to start; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// True if the store has the bucket (rclone keeps one directory per bucket).
    pub fn has_bucket(&self, name: &str) -> bool {
        self.data.join(name).is_dir()
    }

    /// A client signing with these keys, as a hub would use them.
    pub fn client(&self, access_key_id: &str, secret_access_key: &str) -> S3Client {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new("auto"))
            .credentials_provider(Credentials::new(
                access_key_id,
                secret_access_key,
                None,
                None,
                "test",
            ))
            .force_path_style(true)
            .build();
        S3Client {
            client: aws_sdk_s3::Client::from_conf(conf),
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
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking wrapper over aws-sdk-s3 for the few calls tests make.
pub struct S3Client {
    client: aws_sdk_s3::Client,
    rt: tokio::runtime::Runtime,
}

impl S3Client {
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) -> Result<(), String> {
        let req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.to_vec().into());
        self.rt
            .block_on(req.send())
            .map(|_| ())
            .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())
    }

    pub fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
        self.rt.block_on(async {
            let out = self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())?;
            let bytes = out.body.collect().await.map_err(|e| e.to_string())?;
            Ok(bytes.into_bytes().to_vec())
        })
    }
}

/// R2, like S3, stores the empty `key/` objects that opendal (and so rustic) writes as
/// directory markers when it initialises a repository; `rclone serve s3` refuses them
/// ("you can't create empty folders under other folders", HTTP 500). This shim makes
/// the stand-in behave like R2 there: it answers such PUTs itself (200, empty ETag) and
/// forwards every other request to rclone unchanged, Host header included, so
/// signatures are still verified by rclone. Returns the port clients should use.
fn dir_marker_shim(upstream: u16) -> u16 {
    use http_body_util::{BodyExt, Empty, Full};
    use hyper::body::Incoming;
    use hyper::{Method, Request, Response};
    use hyper_util::rt::TokioIo;

    type Body = http_body_util::combinators::BoxBody<bytes::Bytes, hyper::Error>;

    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = std_listener.local_addr().unwrap().port();
    std_listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let Ok((sender, conn)) =
                        hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(up))
                            .await
                    else {
                        return;
                    };
                    tokio::spawn(conn);
                    let sender = std::sync::Arc::new(tokio::sync::Mutex::new(sender));
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let sender = sender.clone();
                        async move {
                            let path = req.uri().path();
                            // "/bucket/some/dir/": a key below a bucket, ending in '/'.
                            let key = path
                                .trim_start_matches('/')
                                .split_once('/')
                                .map(|(_, k)| k)
                                .unwrap_or("");
                            if req.method() == Method::PUT && !key.is_empty() && key.ends_with('/')
                            {
                                let resp = Response::builder()
                                    .header("ETag", "\"d41d8cd98f00b204e9800998ecf8427e\"")
                                    .body(Empty::new().map_err(|never| match never {}).boxed())
                                    .unwrap();
                                return Ok::<Response<Body>, hyper::Error>(resp);
                            }
                            let resp = sender.lock().await.send_request(req).await;
                            match resp {
                                Ok(r) => Ok(r.map(|b| b.boxed())),
                                Err(_) => Ok(Response::builder()
                                    .status(502)
                                    .body(
                                        Full::new(bytes::Bytes::from_static(b"upstream failed"))
                                            .map_err(|never| match never {})
                                            .boxed(),
                                    )
                                    .unwrap()),
                            }
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(client), service)
                        .await;
                });
            }
        });
    });
    port
}
