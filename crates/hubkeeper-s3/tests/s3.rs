//! The client against a real S3-compatible server (`rclone serve s3` on loopback),
//! and against loopback sockets that never answer or refuse connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{KEY_ID, Rclone, SECRET};
use hubkeeper_s3::{BucketDeletion, Client, Limits, REGION_AUTO, S3Error, S3ErrorKind, Target};
use std::time::{Duration, Instant};

const MAX: usize = 1024 * 1024;

fn limits() -> Limits {
    Limits {
        connect: Duration::from_secs(2),
        operation: Duration::from_secs(10),
        attempts: 2,
    }
}

fn client_for(endpoint: &str, bucket: &str, key_id: &str, secret: &str) -> Client {
    let target = Target {
        endpoint,
        bucket,
        access_key_id: key_id,
        secret_access_key: secret,
        region: REGION_AUTO,
        path_style: true,
    };
    Client::new(&target, limits(), None).unwrap()
}

fn client(s3: &Rclone, bucket: &str) -> Client {
    client_for(&s3.endpoint, bucket, KEY_ID, SECRET)
}

/// No key material or signed URL in what an error shows.
fn assert_clean(e: &S3Error) {
    let shown = format!("{e} {e:?}");
    for bad in [SECRET, KEY_ID, "X-Amz-", "Signature="] {
        assert!(!shown.contains(bad), "error shows {bad:?}: {shown}");
    }
}

#[tokio::test]
async fn put_get_delete_round_trip() {
    let s3 = Rclone::start();
    let c = client(&s3, "hub-1");
    c.create_bucket().await.unwrap();
    // Twice: an existing bucket of ours is fine.
    c.create_bucket().await.unwrap();

    // rclone (a file system underneath) refuses keys with a leading `/`.
    for key in ["health/check-1", "odd keys/a+b&c=d?e#f%20ü;x=y,z(1)"] {
        let body = format!("hubkeeper health check for {key}\n");
        c.put_object(key, body.clone()).await.unwrap();
        let got = c.get_object(key, MAX).await.unwrap();
        assert_eq!(got, body.as_bytes(), "{key}");
        c.delete_object(key).await.unwrap();
        let e = c.get_object(key, MAX).await.unwrap_err();
        assert_eq!(e.status(), Some(404), "{e}");
        assert_eq!(e.code(), Some("NoSuchKey"), "{e}");
        assert_eq!(e.op, "GetObject");
        assert_eq!(e.key.as_deref(), Some(key));
        assert_clean(&e);
    }
    // Deleting what is already gone is fine.
    c.delete_object("health/check-1").await.unwrap();
    // An empty object is an object too.
    c.put_object("empty", Vec::new()).await.unwrap();
    assert!(c.get_object("empty", MAX).await.unwrap().is_empty());
}

#[tokio::test]
async fn missing_key_is_404_no_such_key() {
    let s3 = Rclone::start();
    s3.bucket("hub-1");
    // Signed for another region than `auto`, as the control service may be set up.
    let target = Target {
        endpoint: &s3.endpoint,
        bucket: "hub-1",
        access_key_id: KEY_ID,
        secret_access_key: SECRET,
        region: "eu-central-1",
        path_style: true,
    };
    let e = Client::new(&target, limits(), None)
        .unwrap()
        .get_object("never-written", MAX)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    assert_eq!(e.code(), Some("NoSuchKey"), "{e}");
    assert!(
        e.to_string().starts_with("GetObject hub-1/never-written: "),
        "{e}"
    );
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused() {
    let s3 = Rclone::start();
    s3.bucket("hub-1");
    let c = client(&s3, "hub-1");
    c.put_object("big", vec![7u8; 4096]).await.unwrap();
    let e = c.get_object("big", 4095).await.unwrap_err();
    assert_eq!(e.kind, S3ErrorKind::TooLarge { limit: 4095 }, "{e}");
    assert_eq!(c.get_object("big", 4096).await.unwrap().len(), 4096);
}

#[tokio::test]
async fn wrong_secret_is_signature_does_not_match() {
    let s3 = Rclone::start();
    s3.bucket("hub-1");
    let wrong = "not-the-secret-at-all-0000";
    let c = client_for(&s3.endpoint, "hub-1", KEY_ID, wrong);
    let e = c.put_object("k", "x").await.unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    assert_eq!(e.code(), Some("SignatureDoesNotMatch"), "{e}");
    assert_clean(&e);
    assert!(!format!("{e} {e:?}").contains(wrong));
}

#[tokio::test]
async fn unknown_key_id_is_invalid_access_key_id() {
    let s3 = Rclone::start();
    s3.bucket("hub-1");
    let c = client_for(&s3.endpoint, "hub-1", "no-such-key-id", SECRET);
    let e = c.get_object("k", MAX).await.unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    assert_eq!(e.code(), Some("InvalidAccessKeyId"), "{e}");
    assert_clean(&e);
    assert!(!format!("{e} {e:?}").contains("no-such-key-id"));
}

#[tokio::test]
async fn missing_bucket_is_no_such_bucket() {
    let s3 = Rclone::start();
    let c = client(&s3, "no-such-bucket");
    let e = c.put_object("k", "x").await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    assert_eq!(e.code(), Some("NoSuchBucket"), "{e}");
    let e = c.list_keys("p/").await.unwrap_err();
    assert_eq!(e.code(), Some("NoSuchBucket"), "{e}");
    // Nothing to delete in a bucket that is not there.
    assert_eq!(c.delete_prefix("p/").await.unwrap(), 0);
}

#[tokio::test]
async fn list_and_delete_prefix_over_several_pages() {
    let s3 = Rclone::start();
    s3.bucket("hub-1");
    let c = client(&s3, "hub-1").with_page_size(10);
    let mut want = Vec::new();
    for i in 0..30 {
        let key = format!("hub/data/{i:02} x");
        c.put_object(&key, format!("object {i}")).await.unwrap();
        want.push(key);
    }
    for i in 0..5 {
        c.put_object(&format!("hubby/{i}"), "other hub")
            .await
            .unwrap();
    }
    want.sort();

    // More than one page: the first holds only ten.
    let first = c.list_page("hub/", None).await.unwrap();
    assert_eq!(first.keys.len(), 10);
    assert!(first.next.is_some());
    assert_eq!(c.list_keys("hub/").await.unwrap(), want);

    assert_eq!(c.delete_prefix("hub/").await.unwrap(), 30);
    assert!(c.list_keys("hub/").await.unwrap().is_empty());
    // The neighbouring prefix is untouched.
    assert_eq!(c.list_keys("hubby/").await.unwrap().len(), 5);

    let e = c.delete_prefix("").await.unwrap_err();
    assert!(matches!(e.kind, S3ErrorKind::InvalidKey(_)), "{e}");
}

#[tokio::test]
async fn delete_bucket_outcomes() {
    let s3 = Rclone::start();
    let missing = client(&s3, "never-created");
    assert_eq!(
        missing.delete_bucket().await.unwrap(),
        BucketDeletion::NotFound
    );

    let c = client(&s3, "hub-2");
    c.create_bucket().await.unwrap();
    c.put_object("keep/me", "data").await.unwrap();
    assert_eq!(c.delete_bucket().await.unwrap(), BucketDeletion::NotEmpty);
    assert_eq!(
        c.get_object("keep/me", MAX).await.unwrap(),
        "data".as_bytes()
    );

    c.delete_prefix("keep/").await.unwrap();
    assert_eq!(c.delete_bucket().await.unwrap(), BucketDeletion::Deleted);
    assert_eq!(c.delete_bucket().await.unwrap(), BucketDeletion::NotFound);
}

#[tokio::test]
async fn for_bucket_shares_the_store() {
    let s3 = Rclone::start();
    let a = client(&s3, "bucket-a");
    let b = a.for_bucket("bucket-b").unwrap();
    a.create_bucket().await.unwrap();
    b.create_bucket().await.unwrap();
    b.put_object("k", "in b").await.unwrap();
    assert_eq!(b.bucket(), "bucket-b");
    assert_eq!(b.get_object("k", MAX).await.unwrap(), "in b".as_bytes());
    assert_eq!(
        a.get_object("k", MAX).await.unwrap_err().status(),
        Some(404)
    );
}

/// Virtual-host style through a shared reqwest client that resolves the bucket's
/// host name to loopback (no DNS involved).
#[tokio::test]
async fn virtual_host_style_with_a_shared_http_client() {
    let s3 = Rclone::start_with(&["--force-path-style=false"]);
    s3.bucket("vhost");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], s3.port));
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .resolve("vhost.localhost", addr)
        .build()
        .unwrap();
    let endpoint = format!("http://localhost:{}", s3.port);
    let target = Target {
        endpoint: &endpoint,
        bucket: "vhost",
        access_key_id: KEY_ID,
        secret_access_key: SECRET,
        region: REGION_AUTO,
        path_style: false,
    };
    let c = Client::new(&target, limits(), Some(http)).unwrap();
    c.put_object("v/k", "virtual").await.unwrap();
    assert_eq!(
        c.get_object("v/k", MAX).await.unwrap(),
        "virtual".as_bytes()
    );
    assert!(s3.data.join("vhost/v/k").exists(), "{}", s3.log());
    assert_eq!(c.list_keys("v/").await.unwrap(), ["v/k"]);
}

/// A server that accepts connections and never answers: every attempt times out,
/// and the operation as a whole stays within attempts × operation (+ backoff).
#[tokio::test]
async fn silent_server_times_out_within_the_limits() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = accepted.clone();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(sock);
        }
    });
    let target = Target {
        endpoint: &format!("http://127.0.0.1:{port}"),
        bucket: "hub-1",
        access_key_id: KEY_ID,
        secret_access_key: SECRET,
        region: REGION_AUTO,
        path_style: true,
    };
    let limits = Limits {
        connect: Duration::from_secs(1),
        operation: Duration::from_millis(300),
        attempts: 2,
    };
    let c = Client::new(&target, limits, None).unwrap();
    let started = Instant::now();
    let e = c.put_object("k", "x").await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.kind, S3ErrorKind::Timeout, "{e}");
    assert_eq!(e.op, "PutObject");
    assert_clean(&e);
    // Two attempts of 300 ms and a 200 ms pause; generous slack for a busy machine.
    assert!(took >= Duration::from_millis(800), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    hold.abort();
}

#[tokio::test]
async fn closed_port_is_connect() {
    // Bound then released: nothing listens there now.
    let port = common::free_port();
    let c = client_for(&format!("http://127.0.0.1:{port}"), "hub-1", KEY_ID, SECRET);
    let started = Instant::now();
    let e = c.get_object("k", MAX).await.unwrap_err();
    assert!(matches!(e.kind, S3ErrorKind::Connect(_)), "{e}");
    assert_clean(&e);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(e.to_string().contains("refused"), "{e}");
}

/// A scripted HTTP server on loopback: answers the n-th request with the n-th of
/// `answers` (the last one repeats) and records every request's head.
struct Scripted {
    endpoint: String,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    async fn start(answers: &[(u16, &str)]) -> Scripted {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let answers: Vec<(u16, String)> =
            answers.iter().map(|(s, b)| (*s, (*b).to_owned())).collect();
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // The head, then as much body as it announces.
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "client hung up mid-request");
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "client hung up mid-body");
                    buf.extend_from_slice(&chunk[..n]);
                }
                let n = {
                    let mut heads = seen.lock().unwrap();
                    heads.push(head);
                    heads.len()
                };
                let (status, body) = &answers[(n - 1).min(answers.len() - 1)];
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                sock.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        Scripted {
            endpoint,
            heads,
            task,
        }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const SLOW_DOWN: &str =
    "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
const DENIED: &str = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";

#[tokio::test]
async fn server_errors_are_retried_up_to_attempts() {
    let server = Scripted::start(&[(503, SLOW_DOWN), (200, "")]).await;
    let c = client_for(&server.endpoint, "hub-1", KEY_ID, SECRET);
    c.put_object("k", "x").await.unwrap();
    assert_eq!(server.heads().len(), 2);

    // Attempts used up: the last answer is the error.
    let server = Scripted::start(&[(503, SLOW_DOWN)]).await;
    let c = client_for(&server.endpoint, "hub-1", KEY_ID, SECRET);
    let e = c.put_object("k", "x").await.unwrap_err();
    assert_eq!(e.status(), Some(503), "{e}");
    assert_eq!(e.code(), Some("SlowDown"), "{e}");
    assert_eq!(server.heads().len(), 2);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = Scripted::start(&[(403, DENIED), (200, "")]).await;
    let c = client_for(&server.endpoint, "hub-1", KEY_ID, SECRET);
    let e = c.put_object("k", "x").await.unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    assert_eq!(e.code(), Some("AccessDenied"), "{e}");
    assert_eq!(e.message(), Some("Access Denied"));
    assert_eq!(server.heads().len(), 1);
}

/// Plain SigV4, nothing of the flexible-checksum protocol that R2 and other stores
/// reject, and a Content-Length even on empty bodies.
#[tokio::test]
async fn requests_carry_no_checksum_headers() {
    let server = Scripted::start(&[(200, "")]).await;
    let c = client_for(&server.endpoint, "hub-1", KEY_ID, SECRET);
    c.put_object("a/b", "payload").await.unwrap();
    c.create_bucket().await.unwrap();
    let heads = server.heads();
    assert_eq!(heads.len(), 2);
    for head in &heads {
        let lower = head.to_ascii_lowercase();
        assert!(lower.starts_with("put /hub-1/"), "{head}");
        assert!(lower.contains("x-amz-algorithm=aws4-hmac-sha256"), "{head}");
        assert!(!lower.contains("checksum"), "{head}");
        assert!(!lower.contains("content-md5"), "{head}");
        assert!(!lower.contains("\r\nauthorization:"), "{head}");
        assert!(!lower.contains("\r\nx-amz-"), "{head}");
        assert!(!head.contains(SECRET), "{head}");
    }
    assert!(heads[0].to_ascii_lowercase().contains("content-length: 7"));
    assert!(heads[1].to_ascii_lowercase().contains("content-length: 0"));
}

#[tokio::test]
async fn create_bucket_tells_ours_from_someone_elses() {
    const OWNED: &str = "<Error><Code>BucketAlreadyOwnedByYou</Code></Error>";
    const EXISTS: &str = "<Error><Code>BucketAlreadyExists</Code></Error>";

    // Ours, said plainly: no second request.
    let server = Scripted::start(&[(409, OWNED)]).await;
    let c = client_for(&server.endpoint, "hub-1", KEY_ID, SECRET);
    c.create_bucket().await.unwrap();
    assert_eq!(server.heads().len(), 1);

    // "Exists", and we may use it: ours.
    let server = Scripted::start(&[(409, EXISTS), (200, "")]).await;
    let c = client_for(&server.endpoint, "hub-1", KEY_ID, SECRET);
    c.create_bucket().await.unwrap();
    let heads = server.heads();
    assert!(heads[1].starts_with("HEAD /hub-1/"), "{heads:?}");

    // "Exists", and we may not: someone else's, reported as the 409.
    let server = Scripted::start(&[(409, EXISTS), (403, "")]).await;
    let c = client_for(&server.endpoint, "hub-1", KEY_ID, SECRET);
    let e = c.create_bucket().await.unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    assert_eq!(e.code(), Some("BucketAlreadyExists"), "{e}");
    assert_eq!(e.op, "CreateBucket");
}
