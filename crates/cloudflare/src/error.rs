//! The one error type of the client: which call failed, and how, in variants callers
//! match on. Messages carry Cloudflare's codes and messages, never a token or a body.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// One entry of the envelope's `errors[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ApiMessage {
    pub code: u64,
    pub message: String,
}

/// A failed call: `call` names it ("create tunnel"), `kind` says what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{call}: {kind}")]
pub struct Error {
    pub call: &'static str,
    pub kind: ErrorKind,
}

impl Error {
    pub fn new(call: &'static str, kind: ErrorKind) -> Self {
        Self { call, kind }
    }

    /// Cloudflare's error codes in this answer, if any.
    pub fn codes(&self) -> Vec<u64> {
        self.kind.errors().iter().map(|e| e.code).collect()
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, ErrorKind::NotFound { .. })
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self.kind, ErrorKind::Conflict { .. })
    }
}

/// What went wrong. `errors` are Cloudflare's own, from the answer's envelope.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// HTTP 404 (the tunnel, zone, bucket or token does not exist).
    #[error("not found (HTTP 404{})", Codes(errors))]
    NotFound { errors: Vec<ApiMessage> },
    /// HTTP 409, or a 400 whose code Cloudflare uses for "already exists" or "in use"
    /// (see [`CONFLICT_CODES`]). `code` is Cloudflare's first code.
    #[error("conflict (HTTP {status}{})", Codes(errors))]
    Conflict {
        status: u16,
        code: Option<u64>,
        errors: Vec<ApiMessage>,
    },
    /// HTTP 429 on every attempt, or a `retry-after` longer than the client waits.
    #[error("rate limited by Cloudflare{}; try again later", RetryAfter(*retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// HTTP 401/403: the token is wrong, expired, or lacks a permission.
    #[error(
        "Cloudflare refused the API token (HTTP {status}{}); the token needs {needs}",
        Codes(errors)
    )]
    Auth {
        status: u16,
        needs: &'static str,
        errors: Vec<ApiMessage>,
    },
    /// Any other 4xx, or a 2xx envelope with `success: false`.
    #[error("Cloudflare rejected the request (HTTP {status}{})", Codes(errors))]
    Rejected {
        status: u16,
        errors: Vec<ApiMessage>,
    },
    /// HTTP 5xx on the last attempt.
    #[error("Cloudflare server error (HTTP {status}{})", Codes(errors))]
    Server {
        status: u16,
        errors: Vec<ApiMessage>,
    },
    /// No complete answer within the per-attempt time limit.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The API could not be reached (connection refused or reset, DNS, TLS).
    #[error("cannot reach the Cloudflare API: {0}")]
    Unreachable(String),
    /// The answer is not what the API documents; says what is wrong with its shape
    /// and never quotes the body.
    #[error("unexpected answer: {0}")]
    BadAnswer(String),
    /// The caller's input cannot be sent (checked before any request).
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Cloudflare codes meaning "exists already" or "still in use", which come with
/// HTTP 400 rather than 409: 1013 tunnel name taken, 1022 tunnel has connections,
/// 81053/81054/81057 DNS record exists, 10004/10073 bucket exists, 10008 bucket not
/// empty.
pub const CONFLICT_CODES: &[u64] = &[1013, 1022, 81053, 81054, 81057, 10004, 10073, 10008];

impl ErrorKind {
    pub fn errors(&self) -> &[ApiMessage] {
        match self {
            Self::NotFound { errors }
            | Self::Conflict { errors, .. }
            | Self::Auth { errors, .. }
            | Self::Rejected { errors, .. }
            | Self::Server { errors, .. } => errors,
            _ => &[],
        }
    }
}

struct Codes<'a>(&'a [ApiMessage]);

impl fmt::Display for Codes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            let sep = if i == 0 { ", " } else { "; " };
            write!(f, "{sep}code {}: {}", e.code, e.message)?;
        }
        Ok(())
    }
}

struct RetryAfter(Option<Duration>);

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, " (retry-after {} s)", d.as_secs()),
            None => Ok(()),
        }
    }
}
