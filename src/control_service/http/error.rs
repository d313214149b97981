//! The one error shape of the control API, `{"error":{"code":"...","message":"..."}}`
//! (the `ErrorBody` wire type of `control::api`), and how service errors map to it:
//! 4xx for what the caller must change, 5xx for what is worth retrying.

use crate::control::api::{ErrorBody, ErrorDetail};
use crate::control_service::provision::ProvisionError;
use crate::control_service::service::ServiceError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// For 405: the methods the endpoint accepts (sent as `Allow`).
    pub allow: Option<&'static str>,
}

impl HttpError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            allow: None,
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token: send Authorization: Bearer <the shared control token>",
        )
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

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the control service failed; its log says why",
        )
    }

    pub fn response(&self) -> Response<Full<Bytes>> {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
            },
        };
        let mut r = super::routes::json(self.status, &body);
        let h = r.headers_mut();
        if let Some(allow) = self.allow {
            h.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"hubkeeper-control\""),
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

impl From<ServiceError> for HttpError {
    fn from(e: ServiceError) -> Self {
        let msg = e.to_string();
        match e {
            ServiceError::Invalid(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_request", msg),
            ServiceError::UnknownHub(_) => Self::new(StatusCode::NOT_FOUND, "unknown_hub", msg),
            ServiceError::AccountMismatch(_) => {
                Self::new(StatusCode::CONFLICT, "hub_account_mismatch", msg)
            }
            ServiceError::NotEnrolled { .. } => {
                Self::new(StatusCode::CONFLICT, "hub_not_enrolled", msg)
            }
            ServiceError::DisableIncomplete(_) => {
                Self::new(StatusCode::CONFLICT, "disable_incomplete", msg)
            }
            ServiceError::Provision(ProvisionError::Unsupported(_)) => {
                Self::new(StatusCode::CONFLICT, "not_supported", msg)
            }
            ServiceError::Provision(ProvisionError::Upstream { .. }) => {
                Self::new(StatusCode::BAD_GATEWAY, "provisioning_failed", msg)
            }
            // Our own bookkeeping: the details stay in the log.
            ServiceError::Provision(ProvisionError::Internal { .. })
            | ServiceError::Db(_)
            | ServiceError::Corrupt(_) => Self::internal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn the_shape_is_the_control_apis_error_body() {
        let r = HttpError::unauthorized().response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            r.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let parsed: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed.error.code, "unauthorized");
    }
}
