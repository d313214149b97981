//! The control service API (spec §8), shared by the daemon's client and the service:
//! requests, responses and the error body. Paths are under `/v1/managed-cloudflare/`.
//!
//! Requests are parsed strictly (`deny_unknown_fields`) by the service. Responses are
//! parsed leniently by the client (a newer service may add fields), and then checked:
//! a missing or empty field is an error naming the field, never printing a value.

use crate::error::ErrorDetail;
use crate::secret::{Secret, exposed};
use serde::{Deserialize, Serialize};

pub const ENROLL: &str = "/v1/managed-cloudflare/enroll";
pub const STATUS: &str = "/v1/managed-cloudflare/status";
pub const ROTATE_KEYS: &str = "/v1/managed-cloudflare/rotate-keys";
pub const DISABLE: &str = "/v1/managed-cloudflare/disable";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub account_id: String,
    pub hub_id: String,
    pub license_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_subdomain: Option<String>,
    /// Where the hub listens (`tunnel.origin`): the tunnel's ingress points there.
    /// Optional for daemons that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// `originRequest.noTLSVerify` for an https origin (`tunnel.no_tls_verify`).
    #[serde(default)]
    pub no_tls_verify: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub tunnel_id: String,
    #[serde(with = "exposed")]
    pub tunnel_token: Secret,
    pub hostname: String,
    pub r2_endpoint: String,
    pub r2_bucket: String,
    pub r2_access_key_id: String,
    #[serde(with = "exposed")]
    pub r2_secret_access_key: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubRequest {
    pub hub_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RotateKeysResponse {
    pub r2_access_key_id: String,
    #[serde(with = "exposed")]
    pub r2_secret_access_key: Secret,
}

/// The longest retention a disable may ask for: ten years. Past it a date stops being a
/// plan and starts overflowing calendars, so both ends refuse it.
pub const MAX_RETENTION_DAYS: u32 = 3650;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    pub hub_id: String,
    pub delete_bucket: bool,
    pub retention_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisableResponse {
    pub ok: bool,
}

/// `GET /v1/managed-cloudflare/status?hub_id=...`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub enabled: bool,
    pub hostname: Option<String>,
    pub tunnel_id: Option<String>,
    pub r2_bucket: Option<String>,
    pub last_health_check: Option<String>,
    pub errors: Vec<ErrorDetail>,
    /// The tunnel as Cloudflare sees it: `healthy`, `degraded`, `down`, `inactive`, or
    /// null when the service has not looked (or its provider cannot tell).
    #[serde(default)]
    pub tunnel_status: Option<String>,
    /// When the service last looked at the tunnel (RFC 3339).
    #[serde(default)]
    pub checked_at: Option<String>,
    /// When the hub's retained backups will be deleted (RFC 3339), or null.
    #[serde(default)]
    pub deletion_due: Option<String>,
}

/// A response field that is missing, empty or malformed. Names the field and what is
/// wrong, never its value (it may be a secret, or hostile text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadField {
    #[error("the control service's answer has no {0}")]
    Missing(&'static str),
    #[error("the control service's answer has an invalid {field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: &'static str,
    },
}

/// Checks that every field a response must carry is present, non-empty and well formed.
pub trait Validate {
    fn validate(&self) -> Result<(), BadField>;
}

/// Longest id, key id or bucket name accepted from the service (Cloudflare's are far
/// shorter).
const MAX_TOKENISH: usize = 256;

fn need(name: &'static str, v: &str) -> Result<(), BadField> {
    if v.trim().is_empty() {
        Err(BadField::Missing(name))
    } else {
        Ok(())
    }
}

/// Ids, key ids and bucket names: one visible ASCII word.
fn word(name: &'static str, v: &str) -> Result<(), BadField> {
    need(name, v)?;
    if v.len() > MAX_TOKENISH || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(BadField::Invalid {
            field: name,
            problem: "not a single word of visible ASCII characters",
        });
    }
    Ok(())
}

fn hostname(name: &'static str, v: &str) -> Result<(), BadField> {
    need(name, v)?;
    if !crate::text::is_hostname(v) {
        return Err(BadField::Invalid {
            field: name,
            problem: "not a DNS hostname",
        });
    }
    Ok(())
}

fn endpoint(name: &'static str, v: &str) -> Result<(), BadField> {
    word(name, v)?;
    if !(v.starts_with("https://") || v.starts_with("http://")) {
        return Err(BadField::Invalid {
            field: name,
            problem: "not an http(s) URL",
        });
    }
    Ok(())
}

impl Validate for EnrollResponse {
    fn validate(&self) -> Result<(), BadField> {
        word("tunnel_id", &self.tunnel_id)?;
        need("tunnel_token", self.tunnel_token.expose())?;
        hostname("hostname", &self.hostname)?;
        endpoint("r2_endpoint", &self.r2_endpoint)?;
        word("r2_bucket", &self.r2_bucket)?;
        word("r2_access_key_id", &self.r2_access_key_id)?;
        need("r2_secret_access_key", self.r2_secret_access_key.expose())
    }
}

impl Validate for RotateKeysResponse {
    fn validate(&self) -> Result<(), BadField> {
        word("r2_access_key_id", &self.r2_access_key_id)?;
        need("r2_secret_access_key", self.r2_secret_access_key.expose())
    }
}

impl Validate for DisableResponse {
    fn validate(&self) -> Result<(), BadField> {
        if self.ok {
            Ok(())
        } else {
            Err(BadField::Missing("ok = true"))
        }
    }
}

impl Validate for ServiceStatus {
    fn validate(&self) -> Result<(), BadField> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enroll_response_round_trips_and_validates() {
        let json = r#"{"tunnel_id":"t","tunnel_token":"tok","hostname":"h","r2_endpoint":"http://e",
            "r2_bucket":"b","r2_access_key_id":"k","r2_secret_access_key":"s","extra":1}"#;
        let r: EnrollResponse = serde_json::from_str(json).unwrap();
        assert!(r.validate().is_ok());
        assert!(
            !format!("{r:?}").contains("tok\""),
            "Debug must redact the token"
        );
        let mut r2 = r.clone();
        r2.hostname = " ".into();
        assert_eq!(r2.validate(), Err(BadField::Missing("hostname")));
        for hostile in ["a\x1b[2J.b", "acme.b\nERROR", "a b"] {
            r2.hostname = hostile.into();
            assert_eq!(
                r2.validate(),
                Err(BadField::Invalid {
                    field: "hostname",
                    problem: "not a DNS hostname"
                })
            );
        }
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["tunnel_token"], "tok");
    }

    #[test]
    fn requests_refuse_unknown_fields() {
        assert!(serde_json::from_str::<HubRequest>(r#"{"hub_id":"h","x":1}"#).is_err());
        let e: EnrollRequest =
            serde_json::from_str(r#"{"account_id":"a","hub_id":"h","license_id":"l"}"#).unwrap();
        assert_eq!(e.requested_subdomain, None);
    }
}
