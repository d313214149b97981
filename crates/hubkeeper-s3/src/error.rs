//! The one error type of this crate: which operation failed on which bucket/key, and
//! why, as a kind a caller can classify (HTTP status with the store's error code,
//! timeout, connection, transport, protocol). Also owns turning transport errors and
//! S3 XML error bodies into kinds, and scrubbing key material out of every string
//! that ends up in an error.

use std::fmt;

/// The longest store-provided message kept in an error: enough for S3's one-line
/// explanations, and bounded whatever a proxy in between sends.
const MESSAGE_LIMIT: usize = 512;

/// An S3 operation that failed.
///
/// Its `Display` names the operation, the bucket and the key; it never holds a URL
/// (presigned URLs carry the signature and the access key id in their query) nor
/// any key material.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {kind}", Location(bucket, key.as_deref()))]
pub struct S3Error {
    /// The S3 API operation, such as `PutObject`.
    pub op: &'static str,
    pub bucket: String,
    pub key: Option<String>,
    pub kind: S3ErrorKind,
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3ErrorKind {
    /// The store answered with a non-success status; `code` and `message` come from
    /// its XML error body when it sent one (HEAD answers have none).
    #[error("the store answered {status}{}{}", Code(code.as_deref()), Message(message.as_deref()))]
    Status {
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    /// No complete answer within the per-attempt limit (or the connect limit).
    #[error("timed out")]
    Timeout,
    /// No connection could be made: DNS, refused, unreachable, TLS handshake.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection broke after it was made, before the answer was complete.
    #[error("the connection broke: {0}")]
    Transport(String),
    /// The answer could not be understood.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The answer's body is larger than the caller allows.
    #[error("the answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The key (or prefix) cannot be addressed safely: empty, or with a `.` or `..`
    /// segment that URL normalisation would resolve to another object.
    #[error("unusable key or prefix: {0}")]
    InvalidKey(&'static str),
    /// The target cannot be used: bad endpoint or bucket name, or the HTTP client
    /// could not be built.
    #[error("unusable target: {0}")]
    Config(String),
}

impl S3Error {
    /// The HTTP status the store answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            S3ErrorKind::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The store's error code, such as `NoSuchKey` or `SignatureDoesNotMatch`.
    pub fn code(&self) -> Option<&str> {
        match &self.kind {
            S3ErrorKind::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The store's own explanation, if it gave one.
    pub fn message(&self) -> Option<&str> {
        match &self.kind {
            S3ErrorKind::Status { message, .. } => message.as_deref(),
            _ => None,
        }
    }
}

impl S3ErrorKind {
    /// Whether another attempt may succeed: server errors and the network, never an
    /// answer the store gave on purpose (4xx).
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            S3ErrorKind::Status { status, .. } => *status >= 500,
            S3ErrorKind::Timeout | S3ErrorKind::Connect(_) | S3ErrorKind::Transport(_) => true,
            S3ErrorKind::Protocol(_)
            | S3ErrorKind::TooLarge { .. }
            | S3ErrorKind::InvalidKey(_)
            | S3ErrorKind::Config(_) => false,
        }
    }

    /// Removes every occurrence of `secrets` and anything that looks like a signed
    /// query from the strings in `self`. Belt and braces: no URL is ever put into an
    /// error, but messages come from the store and from lower layers we do not own.
    pub(crate) fn scrub(self, secrets: &[&str]) -> Self {
        let s = |text: String| scrub(&text, secrets);
        match self {
            S3ErrorKind::Status {
                status,
                code,
                message,
            } => S3ErrorKind::Status {
                status,
                code: code.map(s),
                message: message.map(s),
            },
            S3ErrorKind::Connect(m) => S3ErrorKind::Connect(s(m)),
            S3ErrorKind::Transport(m) => S3ErrorKind::Transport(s(m)),
            S3ErrorKind::Protocol(m) => S3ErrorKind::Protocol(s(m)),
            S3ErrorKind::Config(m) => S3ErrorKind::Config(s(m)),
            other @ (S3ErrorKind::Timeout
            | S3ErrorKind::TooLarge { .. }
            | S3ErrorKind::InvalidKey(_)) => other,
        }
    }

    /// A reqwest failure as a kind. Only the root cause's text is kept: reqwest's own
    /// `Display` includes the request URL, which is presigned.
    pub(crate) fn from_reqwest(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            return S3ErrorKind::Timeout;
        }
        let cause = root_cause(e);
        if e.is_connect() {
            S3ErrorKind::Connect(cause)
        } else if e.is_builder() {
            S3ErrorKind::Config(cause)
        } else if e.is_decode() {
            S3ErrorKind::Protocol(cause)
        } else {
            S3ErrorKind::Transport(cause)
        }
    }
}

/// The innermost source of `e`, or a fixed phrase when reqwest itself is the cause
/// (its `Display` would show the URL).
pub(crate) fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = None;
    let mut next = std::error::Error::source(e);
    while let Some(inner) = next {
        cause = Some(inner);
        next = inner.source();
    }
    match cause {
        Some(c) => c.to_string(),
        None => "the request failed".to_owned(),
    }
}

/// `text` without `secrets`, and with any word that carries a signed query
/// (`X-Amz-Signature`, `X-Amz-Credential`, ...) cut at its `?`.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if word.to_ascii_lowercase().contains("x-amz-") {
            match word.find('?') {
                Some(q) => {
                    out.push_str(&word[..q]);
                    out.push_str("?<redacted>");
                }
                None => out.push_str("<redacted>"),
            }
        } else {
            out.push_str(word);
        }
    }
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret, "<redacted>");
    }
    out
}

/// The `Code` and `Message` of an S3 XML error body. Hand-rolled rather than a full
/// XML parse: the body may be truncated at our cap, come from a proxy, or carry a
/// namespace some stores add, and these two elements are all that is needed.
pub(crate) fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    let text = String::from_utf8_lossy(body);
    (element(&text, "Code"), element(&text, "Message"))
}

fn element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    let value = unescape(text[start..end].trim());
    if value.is_empty() {
        return None;
    }
    Some(truncate(value, MESSAGE_LIMIT))
}

/// The XML entities S3 error bodies use: the five named ones and character
/// references such as `&#34;`. Anything else is kept as it is.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').and_then(|semi| {
            let c = match &rest[1..semi] {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                e => e
                    .strip_prefix("#x")
                    .map(|hex| u32::from_str_radix(hex, 16))
                    .or_else(|| e.strip_prefix('#').map(str::parse))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, semi))
        });
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn truncate(mut s: String, limit: usize) -> String {
    if s.len() > limit {
        let mut end = limit;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

struct Location<'a>(&'a str, Option<&'a str>);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(key) => write!(f, "{}/{key}", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

struct Code<'a>(Option<&'a str>);

impl fmt::Display for Code<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(code) => write!(f, " {code}"),
            None => Ok(()),
        }
    }
}

struct Message<'a>(Option<&'a str>);

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(message) => write!(f, ": {message}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_code_and_message() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchKey</Code><Message>The specified key &quot;a&amp;b&#34;&#x21; &amp;lt; &bogus does not exist.</Message><Key>a&amp;b</Key></Error>"#;
        let (code, message) = parse_error_body(body);
        assert_eq!(code.as_deref(), Some("NoSuchKey"));
        assert_eq!(
            message.as_deref(),
            Some("The specified key \"a&b\"! &lt; &bogus does not exist.")
        );
    }

    #[test]
    fn tolerates_bodies_that_are_not_s3_errors() {
        assert_eq!(parse_error_body(b""), (None, None));
        assert_eq!(
            parse_error_body(b"<html><body>Bad gateway</body></html>"),
            (None, None)
        );
        assert_eq!(parse_error_body(b"<Error><Code>Cut off"), (None, None));
    }

    #[test]
    fn long_messages_are_capped() {
        let body = format!("<Error><Message>{}</Message></Error>", "é".repeat(2000));
        let (_, message) = parse_error_body(body.as_bytes());
        let message = message.unwrap_or_default();
        assert!(message.len() <= MESSAGE_LIMIT + '…'.len_utf8());
    }

    #[test]
    fn scrub_removes_secrets_and_signed_queries() {
        let text = "error sending request for url (http://h/b/k?X-Amz-Credential=AKID%2F&X-Amz-Signature=abc) with AKID and s3cr3t";
        let out = scrub(text, &["AKID", "s3cr3t"]);
        assert!(!out.contains("X-Amz-Signature"), "{out}");
        assert!(!out.contains("AKID"), "{out}");
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(out.contains("(http://h/b/k?<redacted>"), "{out}");
    }

    #[test]
    fn display_names_operation_bucket_and_key() {
        let e = S3Error {
            op: "GetObject",
            bucket: "hub-1".into(),
            key: Some("health/x".into()),
            kind: S3ErrorKind::Status {
                status: 404,
                code: Some("NoSuchKey".into()),
                message: Some("gone".into()),
            },
        };
        assert_eq!(
            e.to_string(),
            "GetObject hub-1/health/x: the store answered 404 NoSuchKey: gone"
        );
        assert_eq!(e.status(), Some(404));
        assert_eq!(e.code(), Some("NoSuchKey"));
    }
}
