//! The client for the control service (spec §8): reqwest with rustls, connect and
//! total timeouts, and retries with jittered exponential backoff on connect errors,
//! timeouts, 5xx and 429 (honouring `Retry-After`), none on other 4xx.
//!
//! Every failure becomes a [`ControlError`] with a code and a hint for the status.
//! Messages never contain a token or a key: response bodies are only parsed, and only
//! the service's own error message is ever repeated.

use crate::secrets::Secret;
use hubkeeper_base::backoff::{Backoff, jitter};
use hubkeeper_proto::ErrorBody;
use hubkeeper_proto::control::{self as api, Validate};
use hubkeeper_proto::text::shown;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// One attempt: for callers that run their own retry loop and report each failure.
    pub fn once() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("the control token was rejected (401)")]
    Unauthorized,
    #[error("the control service refused the request ({status}, {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the control service failed ({status}): {message}")]
    ServerError {
        status: u16,
        message: String,
        /// Seconds from its `Retry-After`, if it sent one.
        retry_after: Option<u64>,
    },
    #[error("the control service is rate-limiting requests (429)")]
    RateLimited { retry_after: Option<u64> },
    #[error("cannot reach the control service at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the control service did not answer within {0}s")]
    Timeout(u64),
    #[error("the control service's answer is not the expected JSON ({0})")]
    BadAnswer(String),
    #[error(transparent)]
    BadField(#[from] api::BadField),
    #[error("the control service's answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("cannot set up an HTTPS client for the control service: {0}")]
    Setup(String),
}

impl ControlError {
    /// The `errors[].code` this failure is reported under.
    pub fn code(&self) -> &'static str {
        match self {
            ControlError::Unauthorized => "control_unauthorized",
            ControlError::Refused { .. } => "control_refused",
            ControlError::ServerError { .. } => "control_server_error",
            ControlError::RateLimited { .. } => "control_rate_limited",
            ControlError::Unreachable { .. } => "control_unreachable",
            ControlError::Timeout(_) => "control_timeout",
            ControlError::BadAnswer(_)
            | ControlError::BadField(_)
            | ControlError::TooLarge { .. } => "control_bad_answer",
            ControlError::Setup(_) => "control_client_setup",
        }
    }

    /// What an admin should do.
    pub fn hint(&self) -> &'static str {
        match self {
            ControlError::Unauthorized => {
                "the control token was rejected: check managed.token_file (or the control-token credential)"
            }
            ControlError::Refused { .. } => {
                "the control service refused this hub: check managed.account_id, managed.license_id and hub_id, or contact its operator"
            }
            ControlError::ServerError { .. } | ControlError::RateLimited { .. } => {
                "the control service has a problem; hubkeeper keeps retrying with backoff"
            }
            ControlError::Unreachable { .. } | ControlError::Timeout(_) => {
                "check managed.url and this host's network; hubkeeper keeps retrying with backoff"
            }
            ControlError::BadAnswer(_)
            | ControlError::BadField(_)
            | ControlError::TooLarge { .. } => {
                "the control service answered something hubkeeper does not understand: check managed.url points at the control service, or upgrade hubkeeper"
            }
            ControlError::Setup(_) => {
                "this host's TLS setup failed (the log says why); hubkeeper tries again when the config changes or it restarts"
            }
        }
    }

    /// Whether the service certainly did nothing: it answered with a refusal. After a
    /// timeout, a lost connection or an answer we could not read it may have acted.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ControlError::Unauthorized
                | ControlError::Refused { .. }
                | ControlError::RateLimited { .. }
                | ControlError::Setup(_)
        )
    }

    /// How long the service asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ControlError::ServerError { retry_after, .. }
            | ControlError::RateLimited { retry_after } => retry_after.map(Duration::from_secs),
            _ => None,
        }
    }

    /// Whether trying again later can help.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ControlError::ServerError { .. }
                | ControlError::RateLimited { .. }
                | ControlError::Unreachable { .. }
                | ControlError::Timeout(_)
        )
    }
}

/// A connection to one control service with one token.
#[derive(Clone)]
pub struct ControlClient {
    http: reqwest::Client,
    base: url::Url,
    auth: HeaderValue,
    retry: RetryPolicy,
    timeout: Duration,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// The largest answer read from the service: an enroll answer is under 4 KiB.
const MAX_ANSWER: usize = 64 * 1024;
/// How much of the service's own error message is repeated.
const MAX_SERVICE_MESSAGE: usize = 512;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);

impl ControlClient {
    pub fn new(base: url::Url, token: &Secret, retry: RetryPolicy) -> Result<Self, ControlError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid-token-characters"));
        // Keeps it out of reqwest's and hyper's debug output.
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("hubkeeper/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ControlError::Setup(hubkeeper_base::cause::root_cause(&e)))?;
        Ok(Self {
            http,
            base,
            auth,
            retry,
            timeout: TOTAL_TIMEOUT,
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Overrides the per-request total timeout.
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub async fn enroll(
        &self,
        req: &api::EnrollRequest,
    ) -> Result<api::EnrollResponse, ControlError> {
        self.call(Method::POST, api::ENROLL, Some(req)).await
    }

    pub async fn rotate_keys(&self, hub_id: &str) -> Result<api::RotateKeysResponse, ControlError> {
        let req = api::HubRequest {
            hub_id: hub_id.to_owned(),
        };
        self.call(Method::POST, api::ROTATE_KEYS, Some(&req)).await
    }

    pub async fn disable(
        &self,
        req: &api::DisableRequest,
    ) -> Result<api::DisableResponse, ControlError> {
        self.call(Method::POST, api::DISABLE, Some(req)).await
    }

    pub async fn status(&self, hub_id: &str) -> Result<api::ServiceStatus, ControlError> {
        let path = format!("{}?hub_id={}", api::STATUS, urlencode(hub_id));
        self.call::<(), _>(Method::GET, &path, None).await
    }

    async fn call<B: Serialize, T: DeserializeOwned + Validate>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ControlError> {
        let mut backoff = Backoff::new(self.retry.initial, self.retry.max);
        let mut attempt = 1;
        loop {
            match self.once(method.clone(), path, body).await {
                Ok(v) => return Ok(v),
                Err(e) if e.retryable() && attempt < self.retry.attempts => {
                    // Retry-After is a floor, never a licence to hammer: a broken
                    // service answering `Retry-After: 0` still gets our backoff.
                    let step = jitter(backoff.next_delay());
                    let wait = e
                        .retry_after()
                        .map_or(step, |d| d.min(self.retry.max).max(step));
                    tracing::debug!(
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "control service: {e}; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One request.
    async fn once<B: Serialize, T: DeserializeOwned + Validate>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ControlError> {
        let url = self.url(path);
        let mut req = self
            .http
            .request(method, url.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .timeout(self.timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = self.body(resp).await?;
        if status.is_success() {
            let value: T = serde_json::from_slice(&bytes)
                .map_err(|e| ControlError::BadAnswer(shape_only(&e)))?;
            value.validate().map_err(ControlError::BadField)?;
            return Ok(value);
        }
        let err = match status {
            StatusCode::UNAUTHORIZED => ControlError::Unauthorized,
            StatusCode::TOO_MANY_REQUESTS => ControlError::RateLimited { retry_after },
            s if s.is_server_error() => ControlError::ServerError {
                status: s.as_u16(),
                message: service_message(&bytes).map_or_else(|| s.to_string(), |(_, m)| m),
                retry_after,
            },
            s => {
                let (code, message) =
                    service_message(&bytes).unwrap_or_else(|| ("unknown".into(), s.to_string()));
                ControlError::Refused {
                    status: s.as_u16(),
                    code,
                    message,
                }
            }
        };
        Err(err)
    }

    /// The answer's body, refused past [`MAX_ANSWER`]: a hostile or broken service must
    /// not be able to grow the daemon's memory.
    async fn body(&self, mut resp: reqwest::Response) -> Result<Vec<u8>, ControlError> {
        let too_large = ControlError::TooLarge { limit: MAX_ANSWER };
        if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
            return Err(too_large);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(&e))? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    fn transport_error(&self, e: &reqwest::Error) -> ControlError {
        if e.is_timeout() {
            ControlError::Timeout(self.timeout.as_secs().max(1))
        } else {
            ControlError::Unreachable {
                url: self.base.to_string(),
                reason: hubkeeper_base::cause::root_cause(e),
            }
        }
    }
}

/// The `{"error":{"code","message"}}` of a non-2xx answer, if it has that shape; both
/// escaped and capped, since they end up in logs and the status.
fn service_message(body: &[u8]) -> Option<(String, String)> {
    let b: ErrorBody = serde_json::from_slice(body).ok()?;
    Some((
        shown(&b.error.code, 64),
        shown(&b.error.message, MAX_SERVICE_MESSAGE),
    ))
}

/// A serde error's category and position, without the input it quotes (which could
/// be a secret from the response).
fn shape_only(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Data => {
            let msg = e.to_string();
            // "missing field `x`" names a field, not a value: keep it.
            if let Some(i) = msg.find("missing field `") {
                let rest = &msg[i..];
                let end = rest.find(" at line").unwrap_or(rest.len());
                return rest[..end].to_owned();
            }
            format!(
                "a field has the wrong type (line {}, column {})",
                e.line(),
                e.column()
            )
        }
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not JSON".into(),
        serde_json::error::Category::Io => "unreadable".into(),
    }
}

/// `Retry-After` in seconds (HTTP dates are rare from APIs; they are ignored).
fn parse_retry_after(v: &str) -> Option<u64> {
    v.trim().parse::<u64>().ok()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after("3"), Some(3));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn json_errors_never_quote_values() {
        let e = serde_json::from_str::<api::EnrollResponse>(
            r#"{"tunnel_id": 5, "tunnel_token":"SECRET-T"}"#,
        )
        .unwrap_err();
        let s = shape_only(&e);
        assert!(!s.contains("SECRET"), "{s}");
        let e = serde_json::from_str::<api::EnrollResponse>(r#"{"tunnel_token":"SECRET-T"}"#)
            .unwrap_err();
        assert_eq!(shape_only(&e), "missing field `tunnel_id`");
        let e = serde_json::from_str::<api::EnrollResponse>("<html>").unwrap_err();
        assert_eq!(shape_only(&e), "not JSON");
    }

    #[test]
    fn hints_and_retryability() {
        assert!(
            ControlError::Unauthorized
                .hint()
                .contains("managed.token_file")
        );
        assert!(!ControlError::Unauthorized.retryable());
        assert!(ControlError::RateLimited { retry_after: None }.retryable());
        assert!(ControlError::Timeout(5).retryable());
        assert!(!ControlError::BadField(api::BadField::Missing("hostname")).retryable());
        assert_eq!(
            ControlError::BadField(api::BadField::Missing("hostname")).to_string(),
            "the control service's answer has no hostname"
        );
    }
}
