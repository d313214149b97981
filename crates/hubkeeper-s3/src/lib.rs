//! hubkeeper's one S3 client (Cloudflare R2 or any S3-compatible store): built from
//! explicit settings only, signed with rusty-s3 (SigV4, unsigned payload, no flexible
//! checksums), sent through reqwest, every attempt bounded in time and every body in
//! size, with failures as one typed error that never carries key material.
//!
//! Requests are presigned (SigV4 in the query string) because that is all rusty-s3
//! signs; R2 accepts presigned GET, HEAD, PUT and DELETE, which is every method used
//! here. The URLs stay inside this crate: they are never logged or put into errors.

mod error;

pub use error::{S3Error, S3ErrorKind};

use bytes::{Bytes, BytesMut};
use reqwest::header::CONTENT_LENGTH;
use reqwest::{Method, RequestBuilder};
use rusty_s3::actions::ListObjectsV2;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// The region R2 expects requests to be signed for; S3-compatible stores that do not
/// care about regions accept it too.
pub const REGION_AUTO: &str = "auto";

/// Keys per ListObjectsV2 page unless [`Client::with_page_size`] says otherwise: the
/// S3 maximum, so big prefixes take few round trips.
pub const DEFAULT_PAGE_SIZE: u16 = 1000;

/// How long a signature stays valid. Each attempt is signed afresh, so this only
/// needs to cover one request plus clock skew; 15 minutes is the skew S3 tolerates
/// for header signatures too.
const SIGNATURE_TTL: Duration = Duration::from_secs(15 * 60);

/// Error bodies kept for their code and message; the rest is dropped.
const ERROR_BODY_LIMIT: usize = 16 * 1024;

/// A ListObjectsV2 page: 1000 keys of the maximum 1024 bytes, URL-encoded, still fit.
const LIST_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// How to reach a bucket. Borrowed: the client copies what it needs, so the caller
/// keeps the only long-lived copy of the secret where it already is.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// `https://<account>.r2.cloudflarestorage.com`, or any `http(s)` S3 endpoint;
    /// without credentials or a query in it.
    pub endpoint: &'a str,
    pub bucket: &'a str,
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    /// The region signatures are scoped to: [`REGION_AUTO`] for R2; AWS and some
    /// other stores want their real one.
    pub region: &'a str,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`.
    pub path_style: bool,
}

impl fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No key material, not even the key id: it travels in every presigned URL.
        f.debug_struct("Target")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

/// Timeouts and retries: bounded, so a hung store costs one operation, never the
/// daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Establishing a connection (TCP and TLS). Only applies to the HTTP client
    /// [`Client::new`] builds itself; a shared one keeps its own.
    pub connect: Duration,
    /// One attempt, from sending the request to the end of the answer's body.
    pub operation: Duration,
    /// Attempts per operation (at least one); only server errors (5xx), timeouts
    /// and broken connections are tried again.
    pub attempts: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            operation: Duration::from_secs(20),
            attempts: 2,
        }
    }
}

/// What [`Client::delete_bucket`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketDeletion {
    Deleted,
    /// There was no such bucket.
    NotFound,
    /// The bucket still holds objects, so it was kept.
    NotEmpty,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub keys: Vec<String>,
    /// Pass to [`Client::list_page`] for the next page; `None` on the last one.
    pub next: Option<String>,
}

/// A client for one bucket. Cheap to clone: clones share the connection pool and the
/// credentials.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: Url,
    style: UrlStyle,
    bucket: Bucket,
    credentials: Arc<Credentials>,
    limits: Limits,
    page_size: u16,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint.as_str())
            .field("bucket", &self.bucket.name())
            .field("region", &self.bucket.region())
            .field("path_style", &matches!(self.style, UrlStyle::Path))
            .field("limits", &self.limits)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The only way to build a client: from `target` and `limits`, never from the
    /// environment, `~/.aws` or a system proxy.
    ///
    /// Pass `http` to share one connection pool between clients (build it with
    /// [`http_client`], or at least without proxies and redirects: its own settings
    /// apply). Without it, one is built with [`http_client`].
    pub fn new(
        target: &Target<'_>,
        limits: Limits,
        http: Option<reqwest::Client>,
    ) -> Result<Client, S3Error> {
        let config = |detail: String| S3Error {
            op: "NewClient",
            bucket: target.bucket.to_owned(),
            key: None,
            kind: S3ErrorKind::Config(detail)
                .scrub(&[target.access_key_id, target.secret_access_key]),
        };
        let endpoint = Url::parse(target.endpoint)
            .map_err(|e| config(format!("the endpoint is not a URL: {e}")))?;
        if !endpoint.username().is_empty()
            || endpoint.password().is_some()
            || endpoint.query().is_some()
        {
            return Err(config(
                "the endpoint must not carry credentials or a query".to_owned(),
            ));
        }
        let style = if target.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        if target.region.is_empty() {
            return Err(config("the region is empty".to_owned()));
        }
        let bucket = Bucket::new(
            endpoint.clone(),
            style,
            target.bucket.to_owned(),
            target.region.to_owned(),
        )
        .map_err(|e| config(format!("cannot address bucket: {e}")))?;
        let http = match http {
            Some(http) => http,
            None => http_client(&limits).map_err(|mut e| {
                e.bucket = target.bucket.to_owned();
                e
            })?,
        };
        Ok(Client {
            http,
            endpoint,
            style,
            bucket,
            credentials: Arc::new(Credentials::new(
                target.access_key_id,
                target.secret_access_key,
            )),
            limits,
            page_size: DEFAULT_PAGE_SIZE,
        })
    }

    /// The same store, credentials and connection pool, another bucket: for the
    /// control service, which provisions many.
    pub fn for_bucket(&self, bucket: &str) -> Result<Client, S3Error> {
        let b = Bucket::new(
            self.endpoint.clone(),
            self.style,
            bucket.to_owned(),
            self.bucket.region().to_owned(),
        )
        .map_err(|e| S3Error {
            op: "NewClient",
            bucket: bucket.to_owned(),
            key: None,
            kind: S3ErrorKind::Config(format!("cannot address bucket: {e}")),
        })?;
        Ok(Client {
            bucket: b,
            ..self.clone()
        })
    }

    /// Keys per ListObjectsV2 page (1 to 1000).
    #[must_use]
    pub fn with_page_size(mut self, keys: u16) -> Client {
        self.page_size = keys.clamp(1, 1000);
        self
    }

    pub fn bucket(&self) -> &str {
        self.bucket.name()
    }

    pub async fn put_object(&self, key: &str, body: impl Into<Bytes>) -> Result<(), S3Error> {
        const OP: &str = "PutObject";
        check_key(key).map_err(|k| self.error(OP, Some(key), k))?;
        let body = body.into();
        let sign = || {
            self.bucket
                .put_object(Some(&self.credentials), key)
                .sign(SIGNATURE_TTL)
        };
        self.execute(OP, Some(key), Method::PUT, sign, Some(&body), Read::Drain)
            .await
            .map(drop)
    }

    /// The object's content, refused with [`S3ErrorKind::TooLarge`] if it is longer
    /// than `max_len` bytes: nothing here reads an unbounded body.
    pub async fn get_object(&self, key: &str, max_len: usize) -> Result<Bytes, S3Error> {
        const OP: &str = "GetObject";
        check_key(key).map_err(|k| self.error(OP, Some(key), k))?;
        let sign = || {
            self.bucket
                .get_object(Some(&self.credentials), key)
                .sign(SIGNATURE_TTL)
        };
        self.execute(OP, Some(key), Method::GET, sign, None, Read::Keep(max_len))
            .await
    }

    /// Deletes `key`; a key that is already gone is fine.
    pub async fn delete_object(&self, key: &str) -> Result<(), S3Error> {
        const OP: &str = "DeleteObject";
        check_key(key).map_err(|k| self.error(OP, Some(key), k))?;
        let sign = || {
            self.bucket
                .delete_object(Some(&self.credentials), key)
                .sign(SIGNATURE_TTL)
        };
        match self
            .execute(OP, Some(key), Method::DELETE, sign, None, Read::Drain)
            .await
        {
            Ok(_) => Ok(()),
            // S3 answers 204 either way; some compatible stores say 404 NoSuchKey.
            Err(e) if e.code() == Some("NoSuchKey") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates the bucket; one that already exists and is ours is fine.
    pub async fn create_bucket(&self) -> Result<(), S3Error> {
        const OP: &str = "CreateBucket";
        // No CreateBucketConfiguration body: R2 picks the location itself, and
        // `auto` is not a location constraint every store accepts.
        let sign = || {
            self.bucket
                .create_bucket(&self.credentials)
                .sign(SIGNATURE_TTL)
        };
        let empty = Bytes::new();
        let created = self
            .execute(OP, None, Method::PUT, sign, Some(&empty), Read::Drain)
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            // "Exists" may mean someone else's, but some stores (MinIO, rclone) say
            // it for ours too: it is ours if we may use it.
            Err(e) if e.code() == Some("BucketAlreadyExists") || e.status() == Some(409) => {
                match self.head_bucket().await {
                    Ok(()) => Ok(()),
                    Err(head) if head.status().is_some() => Err(e),
                    Err(head) => Err(head),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes the bucket if it is empty.
    pub async fn delete_bucket(&self) -> Result<BucketDeletion, S3Error> {
        const OP: &str = "DeleteBucket";
        let sign = || {
            self.bucket
                .delete_bucket(&self.credentials)
                .sign(SIGNATURE_TTL)
        };
        match self
            .execute(OP, None, Method::DELETE, sign, None, Read::Drain)
            .await
        {
            Ok(_) => Ok(BucketDeletion::Deleted),
            Err(e) if e.code() == Some("NoSuchBucket") => Ok(BucketDeletion::NotFound),
            Err(e) if e.status() == Some(404) && e.code().is_none() => Ok(BucketDeletion::NotFound),
            Err(e) if e.code() == Some("BucketNotEmpty") => Ok(BucketDeletion::NotEmpty),
            Err(e) => Err(e),
        }
    }

    /// One page of the keys starting with `prefix`, from `continuation` (the `next`
    /// of the previous page) or from the start.
    pub async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
    ) -> Result<ListPage, S3Error> {
        const OP: &str = "ListObjectsV2";
        let sign = || {
            let mut list = self.bucket.list_objects_v2(Some(&self.credentials));
            list.with_prefix(prefix);
            list.with_max_keys(usize::from(self.page_size));
            if let Some(token) = continuation {
                list.with_continuation_token(token);
            }
            list.sign(SIGNATURE_TTL)
        };
        let key = (!prefix.is_empty()).then_some(prefix);
        let body = self
            .execute(
                OP,
                key,
                Method::GET,
                sign,
                None,
                Read::Keep(LIST_BODY_LIMIT),
            )
            .await?;
        let protocol = |detail: String| self.error(OP, key, S3ErrorKind::Protocol(detail));
        let text = std::str::from_utf8(&body)
            .map_err(|_| protocol("the listing is not UTF-8".to_owned()))?;
        let page = ListObjectsV2::parse_response(text)
            .map_err(|e| protocol(format!("cannot parse the listing: {e}")))?;
        // A store handing back the token it was given would have us loop forever.
        if page.next_continuation_token.is_some()
            && page.next_continuation_token.as_deref() == continuation
        {
            return Err(protocol("the listing did not advance".to_owned()));
        }
        Ok(ListPage {
            keys: page.contents.into_iter().map(|o| o.key).collect(),
            next: page.next_continuation_token,
        })
    }

    /// Every key starting with `prefix`, following continuation tokens. Holds them
    /// all in memory: for prefixes that may be large, walk [`Client::list_page`].
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, S3Error> {
        let mut keys = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self.list_page(prefix, next.as_deref()).await?;
            keys.extend(page.keys);
            match page.next {
                Some(token) => next = Some(token),
                None => return Ok(keys),
            }
        }
    }

    /// Deletes every object whose key starts with `prefix` (which must not be empty:
    /// that would be the whole bucket) and returns how many there were. A missing
    /// bucket holds nothing, so that is 0, not an error.
    ///
    /// One DeleteObject per key rather than DeleteObjects batches: a batch is a POST,
    /// which R2 does not take presigned, and it needs a Content-MD5 that not every
    /// S3-compatible store checks the same way.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, S3Error> {
        if prefix.is_empty() {
            return Err(self.error(
                "DeleteObject",
                None,
                S3ErrorKind::InvalidKey("an empty prefix would delete the whole bucket"),
            ));
        }
        let mut deleted = 0;
        let mut next: Option<String> = None;
        loop {
            let page = match self.list_page(prefix, next.as_deref()).await {
                Ok(page) => page,
                Err(e) if e.code() == Some("NoSuchBucket") => return Ok(deleted),
                Err(e) => return Err(e),
            };
            for key in &page.keys {
                self.delete_object(key).await?;
                deleted += 1;
            }
            match page.next {
                Some(token) => next = Some(token),
                None => return Ok(deleted),
            }
        }
    }

    /// Whether the bucket exists and these credentials may use it.
    async fn head_bucket(&self) -> Result<(), S3Error> {
        let sign = || {
            self.bucket
                .head_bucket(Some(&self.credentials))
                .sign(SIGNATURE_TTL)
        };
        self.execute("HeadBucket", None, Method::HEAD, sign, None, Read::Drain)
            .await
            .map(drop)
    }

    /// Sends the request built from `sign` (signed afresh for every attempt) until it
    /// succeeds, fails for good, or the attempts are used up; returns the success
    /// body as `read` says.
    async fn execute(
        &self,
        op: &'static str,
        key: Option<&str>,
        method: Method,
        sign: impl Fn() -> Url,
        body: Option<&Bytes>,
        read: Read,
    ) -> Result<Bytes, S3Error> {
        let attempts = self.limits.attempts.max(1);
        let mut attempt = 1;
        loop {
            let mut request = self.http.request(method.clone(), sign());
            if let Some(body) = body {
                // Explicit, because reqwest leaves it out for empty bodies and S3
                // answers a PUT without one with 411.
                request = request
                    .header(CONTENT_LENGTH, body.len())
                    .body(body.clone());
            }
            let result = tokio::time::timeout(self.limits.operation, send(request, read))
                .await
                .unwrap_or(Err(S3ErrorKind::Timeout));
            match result {
                Ok(bytes) => return Ok(bytes),
                Err(kind) if attempt < attempts && kind.is_retryable() => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(kind) => return Err(self.error(op, key, kind)),
            }
        }
    }

    fn error(&self, op: &'static str, key: Option<&str>, kind: S3ErrorKind) -> S3Error {
        S3Error {
            op,
            bucket: self.bucket.name().to_owned(),
            key: key.map(str::to_owned),
            kind: kind.scrub(&[self.credentials.key(), self.credentials.secret()]),
        }
    }
}

/// The HTTP client [`Client::new`] builds when given none: `limits.connect` to
/// connect, no proxy (never taken from the environment), no redirects (one would
/// replay the presigned query elsewhere), HTTP/1.1. Build one and hand it to every
/// [`Client`] to share a connection pool.
pub fn http_client(limits: &Limits) -> Result<reqwest::Client, S3Error> {
    reqwest::Client::builder()
        .connect_timeout(limits.connect)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("hubkeeper-s3/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| S3Error {
            op: "NewClient",
            bucket: String::new(),
            key: None,
            kind: S3ErrorKind::Config(format!(
                "cannot build the HTTP client: {}",
                error::root_cause(&e)
            )),
        })
}

/// What to do with a success body.
#[derive(Debug, Clone, Copy)]
enum Read {
    /// Keep it, refusing more than this many bytes.
    Keep(usize),
    /// Read a little of it so the connection can be reused, and drop it.
    Drain,
}

/// One attempt: the request, its status and its (capped) body.
async fn send(request: RequestBuilder, read: Read) -> Result<Bytes, S3ErrorKind> {
    let response = request
        .send()
        .await
        .map_err(|e| S3ErrorKind::from_reqwest(&e))?;
    let status = response.status();
    if status.is_success() {
        return match read {
            Read::Keep(limit) => read_body(response, limit, true).await,
            Read::Drain => read_body(response, ERROR_BODY_LIMIT, false)
                .await
                .map(|_| Bytes::new()),
        };
    }
    // The status is the answer: a body that breaks off only costs its code.
    let body = read_body(response, ERROR_BODY_LIMIT, false)
        .await
        .unwrap_or_default();
    let (code, message) = error::parse_error_body(&body);
    Err(S3ErrorKind::Status {
        status: status.as_u16(),
        code,
        message,
    })
}

/// At most `limit` bytes of the body: longer is an error if `strict`, else cut off.
async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
    strict: bool,
) -> Result<Bytes, S3ErrorKind> {
    let too_large = S3ErrorKind::TooLarge { limit };
    let announced = response.content_length().unwrap_or(0);
    if strict && announced > limit as u64 {
        return Err(too_large);
    }
    let mut buf = BytesMut::with_capacity(usize::try_from(announced).unwrap_or(0).min(limit));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| S3ErrorKind::from_reqwest(&e))?
    {
        let room = limit - buf.len();
        if chunk.len() > room {
            if strict {
                return Err(too_large);
            }
            buf.extend_from_slice(&chunk[..room]);
            break;
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// 200 ms, 400 ms, 800 ms, ... up to 2 s: short, since `attempts` is small and an
/// operation's time is already bounded per attempt.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64 << attempt.saturating_sub(1).min(4)).min(Duration::from_secs(2))
}

/// Rejects keys the URL would not carry faithfully: an empty key addresses the
/// bucket, and `.`/`..` segments are resolved away by URL normalisation, so
/// `a/../b` would act on `b`.
fn check_key(key: &str) -> Result<(), S3ErrorKind> {
    if key.is_empty() {
        return Err(S3ErrorKind::InvalidKey("empty key"));
    }
    if key.split('/').any(|s| s == "." || s == "..") {
        return Err(S3ErrorKind::InvalidKey("a key segment is `.` or `..`"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const KEY_ID: &str = "AKIDHUBKEEPER0001";
    const SECRET: &str = "hk-secret-value-0123456789";

    fn target() -> Target<'static> {
        Target {
            endpoint: "https://account.r2.example.com",
            bucket: "hub-1",
            access_key_id: KEY_ID,
            secret_access_key: SECRET,
            region: REGION_AUTO,
            path_style: true,
        }
    }

    fn assert_clean(what: &str, text: &str) {
        assert!(!text.contains(SECRET), "{what} shows the secret: {text}");
        assert!(!text.contains(KEY_ID), "{what} shows the key id: {text}");
        assert!(
            !text.contains("X-Amz-"),
            "{what} shows a signed URL: {text}"
        );
    }

    #[test]
    fn no_key_material_in_debug_or_display() {
        let t = target();
        assert_clean("Target", &format!("{t:?} {t:#?}"));
        let client = Client::new(&t, Limits::default(), None).unwrap();
        assert_clean("Client", &format!("{client:?} {client:#?}"));

        // Every kind, with the secrets planted where lower layers or a store could
        // put them.
        let planted =
            format!("{SECRET} {KEY_ID} http://h/b/k?X-Amz-Signature=00&X-Amz-Credential={KEY_ID}");
        let kinds = [
            S3ErrorKind::Status {
                status: 403,
                code: Some(format!("SignatureDoesNotMatch {SECRET}")),
                message: Some(planted.clone()),
            },
            S3ErrorKind::Timeout,
            S3ErrorKind::Connect(planted.clone()),
            S3ErrorKind::Transport(planted.clone()),
            S3ErrorKind::Protocol(planted.clone()),
            S3ErrorKind::TooLarge { limit: 1 },
            S3ErrorKind::InvalidKey("empty key"),
            S3ErrorKind::Config(planted.clone()),
        ];
        for kind in kinds {
            let e = client.error("PutObject", Some("k"), kind);
            assert_clean("S3Error", &format!("{e} {e:?} {e:#?}"));
        }

        // A bad endpoint names neither.
        let bad = Target {
            endpoint: "not a url",
            ..target()
        };
        let e = Client::new(&bad, Limits::default(), None).unwrap_err();
        assert_clean("S3Error", &format!("{e} {e:?}"));
        let with_userinfo = Target {
            endpoint: "https://user:pw@account.r2.example.com",
            ..target()
        };
        let e = Client::new(&with_userinfo, Limits::default(), None).unwrap_err();
        assert!(matches!(e.kind, S3ErrorKind::Config(_)), "{e}");
        let no_region = Target {
            region: "",
            ..target()
        };
        let e = Client::new(&no_region, Limits::default(), None).unwrap_err();
        assert!(matches!(e.kind, S3ErrorKind::Config(_)), "{e}");
    }

    #[test]
    fn keys_that_urls_would_rewrite_are_refused() {
        assert!(check_key("").is_err());
        assert!(check_key("a/../b").is_err());
        assert!(check_key("./a").is_err());
        assert!(check_key("a/..").is_err());
        assert!(check_key("a/..b/c.d").is_ok());
        assert!(check_key("a b/%2e%2e/é").is_ok());
    }

    #[test]
    fn only_server_and_network_failures_are_retried() {
        let status = |status| S3ErrorKind::Status {
            status,
            code: None,
            message: None,
        };
        assert!(status(500).is_retryable());
        assert!(status(503).is_retryable());
        assert!(!status(403).is_retryable());
        assert!(!status(404).is_retryable());
        assert!(S3ErrorKind::Timeout.is_retryable());
        assert!(S3ErrorKind::Connect(String::new()).is_retryable());
        assert!(!S3ErrorKind::Protocol(String::new()).is_retryable());
    }

    #[test]
    fn backoff_is_short_and_bounded() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(30), Duration::from_secs(2));
    }

    #[test]
    fn virtual_host_style_needs_a_host_name() {
        let t = Target {
            endpoint: "http://127.0.0.1:9000",
            path_style: false,
            ..target()
        };
        let e = Client::new(&t, Limits::default(), None).unwrap_err();
        assert!(matches!(e.kind, S3ErrorKind::Config(_)), "{e}");
    }
}
