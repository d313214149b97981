//! The control API's own errors in the shared shape of `hubkeeper_base::http::error`
//! (`{"error":{"code":"...","message":"..."}}`, the `ErrorBody` wire type), and how service errors map to it: 4xx for what the caller must
//! change, 5xx for what is worth retrying.

use crate::provision::ProvisionError;
use crate::service::ServiceError;
use hyper::StatusCode;

pub use hubkeeper_base::http::HttpError;

// Constructors live with the API whose wording they carry.
pub fn unauthorized() -> HttpError {
    HttpError {
        challenge: Some("Bearer realm=\"hubkeeper-control\""),
        ..HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing, wrong or revoked bearer token: send Authorization: Bearer <your account's token, or the operator's>",
        )
    }
}

pub fn internal() -> HttpError {
    HttpError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "the control service failed; its log says why",
    )
}

impl From<ServiceError> for HttpError {
    fn from(e: ServiceError) -> Self {
        let msg = e.to_string();
        match e {
            ServiceError::Invalid(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_request", msg),
            ServiceError::UnknownHub(_) | ServiceError::ForeignHub(_) => {
                Self::new(StatusCode::NOT_FOUND, "unknown_hub", msg)
            }
            ServiceError::WrongAccount { .. } => {
                Self::new(StatusCode::FORBIDDEN, "account_mismatch", msg)
            }
            ServiceError::LicenseChange { .. } => {
                Self::new(StatusCode::CONFLICT, "license_mismatch", msg)
            }
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
            ServiceError::Provision(ProvisionError::RateLimited {
                retry_after_secs, ..
            }) => Self {
                retry_after: Some(retry_after_secs),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", msg)
            },
            ServiceError::Provision(ProvisionError::Conflict(_)) => {
                Self::new(StatusCode::CONFLICT, "provisioning_conflict", msg)
            }
            // Our own bookkeeping: the details stay in the log. A store that is
            // unavailable (`StoreError::Unavailable`) lands here too, as it always has:
            // a 500, which the daemon's client retries like any 5xx.
            ServiceError::Provision(ProvisionError::Internal { .. })
            | ServiceError::Store(_)
            | ServiceError::Corrupt(_) => internal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hubkeeper_proto::ErrorBody;
    use hyper::header;

    #[tokio::test]
    async fn the_shape_is_the_control_apis_error_body() {
        let r = unauthorized().response();
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

    /// Today every store failure is a 500 (retried by the daemon like any 5xx);
    /// "unavailable" is a distinct `StoreError` so it can get its own answer.
    #[test]
    fn store_failures_are_internal_errors() {
        use crate::store::StoreError;
        for e in [
            StoreError::Unavailable("database is locked".into()),
            StoreError::MissingHub("h".into()),
            StoreError::Failed("x".into()),
        ] {
            let mapped = HttpError::from(ServiceError::Store(e));
            assert_eq!(mapped.status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(mapped.code, "internal_error");
        }
    }
}
