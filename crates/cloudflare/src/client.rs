//! The transport every call goes through: the settings, pacing (at most one request
//! per `min_interval`), bounded attempts with jittered backoff, the body cap, and the
//! envelope turned into a result or an [`Error`].

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hubkeeper_base::backoff::{Backoff, jitter};
use hubkeeper_proto::Secret;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use crate::error::{ApiMessage, CONFLICT_CODES, Error, ErrorKind};
use crate::model::ResultInfo;

pub const DEFAULT_API_BASE: &str = "https://api.cloudflare.com/client/v4";

/// Pages beyond this are a broken API, not a big account.
const MAX_PAGES: u64 = 1000;

/// How the client talks to the API. [`Settings::new`] gives the production values.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `https://api.cloudflare.com/client/v4`, or a stand-in's address in tests.
    pub api_base: String,
    pub account_id: String,
    pub token: Secret,
    /// Sent as `cf-r2-jurisdiction` on every R2 call: `default`, `eu` or `fedramp`.
    pub jurisdiction: String,
    /// Attempts per call, at least one.
    pub attempts: u32,
    /// One attempt, from sending the request to the end of the answer's body.
    pub attempt_timeout: Duration,
    pub connect_timeout: Duration,
    /// Requests are at least this far apart (250 ms: 4 per second; the account has
    /// 1,200 per 5 minutes, summed over every client).
    pub min_interval: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// A 429 whose `retry-after` is longer than this is returned at once as
    /// [`ErrorKind::RateLimited`] rather than waited out inside the call.
    pub max_retry_after: Duration,
    /// Answers larger than this are refused ([`ErrorKind::BadAnswer`]).
    pub max_body: usize,
    /// Page size asked for on paged lists.
    pub per_page: u32,
}

impl Settings {
    pub fn new(account_id: impl Into<String>, token: Secret) -> Self {
        Self {
            api_base: DEFAULT_API_BASE.into(),
            account_id: account_id.into(),
            token,
            jurisdiction: "default".into(),
            attempts: 4,
            attempt_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            min_interval: Duration::from_millis(250),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
            max_body: 4 << 20,
            per_page: 50,
        }
    }
}

/// Whether a call may be sent again when its first attempt's fate is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// GET, PUT and DELETE: repeating them does no harm, so 5xx, timeouts and broken
    /// connections are retried.
    Idempotent,
    /// Creates (tunnel, token, DNS record): a timeout or 5xx may hide a success, and a
    /// second create would duplicate it or fail on the name, so only a 429 or a refused
    /// connection (the request surely was not processed) is retried.
    Once,
}

/// A call's identity: its name in errors, the permission it needs, how it retries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call {
    pub name: &'static str,
    pub needs: &'static str,
    pub retry: Retry,
}

/// What the client sends: an R2 call also carries the jurisdiction header.
pub(crate) struct Request<'a> {
    pub method: Method,
    pub url: Url,
    pub body: Option<&'a Value>,
    pub r2: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Envelope {
    pub success: Option<bool>,
    pub errors: Vec<ApiMessage>,
    pub result: Value,
    pub result_info: Option<ResultInfo>,
}

enum Transport {
    Timeout,
    /// No connection was made: the request was not sent.
    Connect(String),
    /// The connection broke after the request may have been sent.
    Broken(String),
    TooLarge,
}

/// A Cloudflare API v4 client for one account and token. Cheap to share behind an
/// `Arc`; its pacing holds across every call made through it.
#[derive(Debug)]
pub struct Client {
    pub(crate) settings: Settings,
    base: Url,
    http: reqwest::Client,
    next_slot: Mutex<Instant>,
    pub(crate) permission_groups: Mutex<Option<Vec<crate::model::PermissionGroup>>>,
}

impl Client {
    pub fn new(settings: Settings) -> Result<Self, Error> {
        let invalid =
            |what: String| Error::new("set up the Cloudflare client", ErrorKind::Invalid(what));
        let base = Url::parse(&settings.api_base).map_err(|e| {
            invalid(format!(
                "api_base {:?} is not a URL ({e}); use e.g. {DEFAULT_API_BASE}",
                settings.api_base
            ))
        })?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "api_base {:?} must be an http(s) URL such as {DEFAULT_API_BASE}",
                settings.api_base
            )));
        }
        if settings.account_id.is_empty() {
            return Err(invalid(
                "account_id is empty; set the Cloudflare account id".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hubkeeper-cloudflare/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            settings,
            base,
            http,
            next_slot: Mutex::new(Instant::now()),
            permission_groups: Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// `api_base` + the path segments (each percent-encoded) + the query.
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Waits for this request's slot: slots are `min_interval` apart, so calls made at
    /// once from many tasks still leave at the paced rate.
    async fn pace(&self) {
        let slot = {
            let mut next = self
                .next_slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let slot = (*next).max(Instant::now());
            *next = slot + self.settings.min_interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Sends the request (retrying as `call.retry` allows) and returns the envelope of
    /// a successful answer.
    pub(crate) async fn send(&self, call: Call, req: &Request<'_>) -> Result<Envelope, Error> {
        let fail = |kind| Error::new(call.name, kind);
        let attempts = self.settings.attempts.max(1);
        let mut backoff = Backoff::new(self.settings.backoff_initial, self.settings.backoff_max);
        let mut attempt = 1;
        loop {
            let last = attempt >= attempts;
            let may_repeat = call.retry == Retry::Idempotent;
            self.pace().await;
            let answer = tokio::time::timeout(self.settings.attempt_timeout, self.attempt(req))
                .await
                .unwrap_or(Err(Transport::Timeout));
            let (status, retry_after, body) = match answer {
                Ok(a) => a,
                Err(Transport::TooLarge) => {
                    return Err(fail(ErrorKind::BadAnswer(format!(
                        "answer larger than {} bytes",
                        self.settings.max_body
                    ))));
                }
                Err(Transport::Timeout) if last || !may_repeat => {
                    return Err(fail(ErrorKind::Timeout(self.settings.attempt_timeout)));
                }
                Err(Transport::Connect(why)) if last => {
                    return Err(fail(ErrorKind::Unreachable(why)));
                }
                Err(Transport::Broken(why)) if last || !may_repeat => {
                    return Err(fail(ErrorKind::Unreachable(why)));
                }
                Err(_) => {
                    tokio::time::sleep(jitter(backoff.next_delay())).await;
                    attempt += 1;
                    continue;
                }
            };
            if status == StatusCode::TOO_MANY_REQUESTS {
                if last || retry_after.is_some_and(|d| d > self.settings.max_retry_after) {
                    return Err(fail(ErrorKind::RateLimited { retry_after }));
                }
                // retry-after is a floor: never earlier than Cloudflare asked.
                let delay = jitter(backoff.next_delay()).max(retry_after.unwrap_or_default());
                tokio::time::sleep(delay).await;
                attempt += 1;
                continue;
            }
            if status.is_server_error() && may_repeat && !last {
                tokio::time::sleep(jitter(backoff.next_delay())).await;
                attempt += 1;
                continue;
            }
            return self.judge(call, status, &body);
        }
    }

    /// One request and its whole answer (capped): status, `retry-after`, body.
    async fn attempt(
        &self,
        req: &Request<'_>,
    ) -> Result<(StatusCode, Option<Duration>, Vec<u8>), Transport> {
        let mut builder = self
            .http
            .request(req.method.clone(), req.url.clone())
            .bearer_auth(self.settings.token.expose());
        if req.r2 {
            builder = builder.header("cf-r2-jurisdiction", &self.settings.jurisdiction);
        }
        if let Some(body) = req.body {
            builder = builder.json(body);
        }
        let mut response = builder.send().await.map_err(|e| transport(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let limit = self.settings.max_body;
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(Transport::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport(&e))? {
            if body.len() + chunk.len() > limit {
                return Err(Transport::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, retry_after, body))
    }

    /// The answer's envelope, or the error its status and Cloudflare's codes mean.
    fn judge(&self, call: Call, status: StatusCode, body: &[u8]) -> Result<Envelope, Error> {
        let fail = |kind| Error::new(call.name, kind);
        let envelope = serde_json::from_slice::<Envelope>(body);
        let code = status.as_u16();
        if status.is_success() {
            let envelope = envelope.map_err(|e| {
                fail(ErrorKind::BadAnswer(format!(
                    "HTTP {code} without a Cloudflare envelope ({})",
                    shape(&e)
                )))
            })?;
            if envelope.success != Some(false) {
                return Ok(envelope);
            }
            let errors = self.redact(envelope.errors);
            return Err(fail(conflict_or(code, errors, |errors| {
                ErrorKind::Rejected {
                    status: code,
                    errors,
                }
            })));
        }
        let errors = self.redact(envelope.map(|e| e.errors).unwrap_or_default());
        let kind = match code {
            401 | 403 => ErrorKind::Auth {
                status: code,
                needs: call.needs,
                errors,
            },
            404 => ErrorKind::NotFound { errors },
            409 => ErrorKind::Conflict {
                status: code,
                code: errors.first().map(|e| e.code),
                errors,
            },
            500..=599 => ErrorKind::Server {
                status: code,
                errors,
            },
            _ => conflict_or(code, errors, |errors| ErrorKind::Rejected {
                status: code,
                errors,
            }),
        };
        Err(fail(kind))
    }

    /// Cloudflare's messages, with the token cut out should one ever quote it.
    fn redact(&self, mut errors: Vec<ApiMessage>) -> Vec<ApiMessage> {
        let token = self.settings.token.expose();
        if !token.is_empty() {
            for e in &mut errors {
                if e.message.contains(token) {
                    e.message = e.message.replace(token, "<redacted>");
                }
            }
        }
        errors
    }

    /// One call whose `result` is a `T`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        call: Call,
        req: &Request<'_>,
    ) -> Result<T, Error> {
        let envelope = self.send(call, req).await?;
        parse_result(call, envelope.result)
    }

    /// Every item of a paged list: asks for page 1, 2, … until `result_info` says
    /// the last page came (`page >= total_pages`, or a short page when it gives no
    /// total).
    pub(crate) async fn all_pages<T: DeserializeOwned>(
        &self,
        call: Call,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Vec<T>, Error> {
        self.all_pages_of(call, segments, query, self.settings.per_page)
            .await
    }

    /// As `all_pages`, with this page size.
    pub(crate) async fn all_pages_of<T: DeserializeOwned>(
        &self,
        call: Call,
        segments: &[&str],
        query: &[(&str, &str)],
        page_size: u32,
    ) -> Result<Vec<T>, Error> {
        let per_page = page_size.max(1).to_string();
        let mut items = Vec::new();
        let mut page: u64 = 1;
        loop {
            let page_s = page.to_string();
            let mut q = query.to_vec();
            q.push(("page", &page_s));
            q.push(("per_page", &per_page));
            let req = Request {
                method: Method::GET,
                url: self.url(segments, &q),
                body: None,
                r2: false,
            };
            let envelope = self.send(call, &req).await?;
            let batch: Vec<T> = parse_result(call, envelope.result)?;
            let got = batch.len() as u64;
            items.extend(batch);
            let info = envelope.result_info.unwrap_or_default();
            // A server that answers another page than asked (or always the first) would
            // otherwise be followed to MAX_PAGES, collecting duplicates.
            if info.page.is_some_and(|p| p != page) {
                return Err(Error::new(
                    call.name,
                    ErrorKind::BadAnswer(format!(
                        "asked for page {page}, got page {}",
                        info.page.unwrap_or_default()
                    )),
                ));
            }
            let more = match info.total_pages {
                Some(total) => info.page.unwrap_or(page) < total,
                None => {
                    let size = info.per_page.unwrap_or(u64::from(page_size.max(1)));
                    info.count.unwrap_or(got) >= size
                }
            };
            if !more || got == 0 {
                return Ok(items);
            }
            page += 1;
            if page > MAX_PAGES {
                return Err(Error::new(
                    call.name,
                    ErrorKind::BadAnswer(format!("more than {MAX_PAGES} pages")),
                ));
            }
        }
    }
}

fn conflict_or(
    status: u16,
    errors: Vec<ApiMessage>,
    other: impl FnOnce(Vec<ApiMessage>) -> ErrorKind,
) -> ErrorKind {
    match errors.iter().find(|e| CONFLICT_CODES.contains(&e.code)) {
        Some(e) => ErrorKind::Conflict {
            status,
            code: Some(e.code),
            errors,
        },
        None => other(errors),
    }
}

pub(crate) fn parse_result<T: DeserializeOwned>(call: Call, result: Value) -> Result<T, Error> {
    serde_json::from_value(result).map_err(|e| {
        Error::new(
            call.name,
            ErrorKind::BadAnswer(format!(
                "its result is not a {} ({})",
                short_type_name::<T>(),
                shape(&e)
            )),
        )
    })
}

/// What is wrong with a JSON answer, without quoting it: serde's messages can carry
/// the offending value.
fn shape(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax => "not JSON",
        Category::Eof => "truncated JSON",
        Category::Data => "a field is missing or has the wrong type",
        Category::Io => "unreadable",
    }
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::")
        .next()
        .unwrap_or(full)
        .trim_end_matches('>')
}

fn transport(e: &reqwest::Error) -> Transport {
    // A connect timeout is still "not sent": checked first, so creates may retry it.
    if e.is_timeout() && !e.is_connect() {
        return Transport::Timeout;
    }
    // Without the URL (it names the account); the cause chain says what failed.
    let mut why = String::new();
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cause {
        why = c.to_string();
        cause = c.source();
    }
    if why.is_empty() {
        why = "the request failed".into();
    }
    if e.is_connect() {
        Transport::Connect(why)
    } else {
        Transport::Broken(why)
    }
}
