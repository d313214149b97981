//! The one error shape of both HTTP APIs, `{"error":{"code":"...","message":"..."}}`
//! (the `ErrorBody` wire type of `control::api`), and the JSON answers built on it.
//! The headers an error implies (`Allow`, `WWW-Authenticate`, `Connection: close`)
//! are set here so that no route can forget them.

use bytes::Bytes;
use http_body_util::Full;
use hubkeeper_proto::{ErrorBody, ErrorDetail};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// For 405: the methods the endpoint accepts (sent as `Allow`).
    pub allow: Option<&'static str>,
    /// For 401: the challenge (sent as `WWW-Authenticate`).
    pub challenge: Option<&'static str>,
    /// For 429 and 503: seconds until a retry may succeed (sent as `Retry-After`).
    pub retry_after: Option<u64>,
}

impl HttpError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            allow: None,
            challenge: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such endpoint: {path}"),
        )
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("this endpoint accepts {allow}"),
            )
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// The JSON body, newline-terminated like every other answer.
    pub fn body(&self) -> Bytes {
        to_json(&ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
            },
        })
    }

    pub fn response(&self) -> Response<Full<Bytes>> {
        let mut r = json_bytes(self.status, self.body());
        let h = r.headers_mut();
        if let Some(allow) = self.allow {
            h.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.challenge {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE
            || self.status == StatusCode::REQUEST_TIMEOUT
        {
            // The rest of the body is unread: the connection cannot be reused.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

/// `value` as a JSON answer.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    json_bytes(status, to_json(value))
}

/// An answer whose body is already JSON (the daemon keeps its status pre-rendered).
pub fn json_bytes(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Marks an answer as not for any cache or content sniffer: answers carry tunnel
/// tokens, keys and the daemon's state, and are only ever meant as JSON or metrics.
pub fn no_store<B>(r: &mut Response<B>) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

fn to_json<T: Serialize>(value: &T) -> Bytes {
    // Our wire types are plain structs of strings and numbers: serializing them cannot
    // fail, but if a future one could, the client still gets valid JSON.
    let mut v = serde_json::to_vec(value).unwrap_or_else(|_| {
        br#"{"error":{"code":"internal_error","message":"the answer could not be encoded"}}"#
            .to_vec()
    });
    v.push(b'\n');
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn shape_is_error_code_message() {
        let e = HttpError::not_found("/x");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(v["error"]["message"], "no such endpoint: /x");
        assert_eq!(v.as_object().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn headers_follow_the_error() {
        let r = HttpError::method_not_allowed("GET, HEAD").response();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert!(r.headers().get(header::CONNECTION).is_none());
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert!(body.ends_with(b"\n"));

        let r = HttpError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", "slow").response();
        assert_eq!(r.headers()[header::CONNECTION], "close");
    }
}
