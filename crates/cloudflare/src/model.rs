//! The JSON shapes of the answers and requests, as the API documents them. Answers
//! tolerate added fields (no `deny_unknown_fields`) and missing ones (`#[serde(default)]`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `result_info`: where a page sits in a paged list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResultInfo {
    pub page: Option<u64>,
    pub per_page: Option<u64>,
    pub count: Option<u64>,
    pub total_count: Option<u64>,
    pub total_pages: Option<u64>,
}

/// A Cloudflare Tunnel (`cfd_tunnel`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Tunnel {
    pub id: String,
    pub name: String,
    pub account_tag: String,
    pub created_at: Option<String>,
    /// Set once the tunnel is (soft-)deleted.
    pub deleted_at: Option<String>,
    /// `inactive`, `degraded`, `healthy` or `down`.
    pub status: Option<String>,
    pub config_src: Option<String>,
    pub remote_config: Option<bool>,
    pub conns_active_at: Option<String>,
    pub conns_inactive_at: Option<String>,
}

/// Where a new tunnel's ingress lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigSrc {
    /// Remotely managed: ingress set through the configurations endpoint.
    Cloudflare,
    /// Locally managed: ingress in cloudflared's `config.yml`.
    Local,
}

/// One ingress rule. The last rule of a configuration must be a catch-all (no hostname).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngressRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub service: String,
    #[serde(rename = "originRequest", skip_serializing_if = "Option::is_none")]
    pub origin_request: Option<OriginRequest>,
}

/// The `originRequest` options this client sets; others Cloudflare returns are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OriginRequest {
    #[serde(rename = "noTLSVerify", skip_serializing_if = "Option::is_none")]
    pub no_tls_verify: Option<bool>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// A remotely managed tunnel's configuration (`config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TunnelConfig {
    pub ingress: Vec<IngressRule>,
}

/// The answer of the configurations endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TunnelConfiguration {
    pub tunnel_id: String,
    pub config: Option<TunnelConfig>,
    pub version: Option<u64>,
    pub source: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ZoneAccount {
    pub id: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Zone {
    pub id: String,
    pub name: String,
    pub status: Option<String>,
    pub account: Option<ZoneAccount>,
}

/// A DNS record as Cloudflare returns it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DnsRecord {
    pub id: String,
    #[serde(rename = "type")]
    pub record_type: String,
    pub name: String,
    pub content: String,
    pub proxied: Option<bool>,
    pub ttl: Option<u64>,
    pub comment: Option<String>,
}

/// A DNS record to create or to put in place of one (PUT replaces it whole).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewDnsRecord {
    #[serde(rename = "type")]
    pub record_type: String,
    pub name: String,
    pub content: String,
    pub proxied: bool,
    /// 1 = automatic.
    pub ttl: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl NewDnsRecord {
    /// A proxied CNAME `name → <tunnel_id>.cfargotunnel.com`, TTL automatic.
    pub fn tunnel_cname(name: &str, tunnel_id: &str, comment: Option<String>) -> Self {
        Self {
            record_type: "CNAME".into(),
            name: name.into(),
            content: format!("{tunnel_id}.cfargotunnel.com"),
            proxied: true,
            ttl: 1,
            comment,
        }
    }
}

/// An R2 bucket.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Bucket {
    pub name: String,
    pub creation_date: Option<String>,
    pub location: Option<String>,
    pub jurisdiction: Option<String>,
    pub storage_class: Option<String>,
}

/// A bucket's lifecycle rules (PUT replaces all of them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lifecycle {
    pub rules: Vec<LifecycleRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LifecycleRule {
    pub id: String,
    pub enabled: bool,
    pub conditions: LifecycleConditions,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_objects_transition: Option<Transition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort_multipart_uploads_transition: Option<Transition>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LifecycleConditions {
    pub prefix: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Transition {
    pub condition: TransitionCondition,
}

/// `{"type":"Age","maxAge":seconds}` or `{"type":"Date","date":"<RFC 3339>"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TransitionCondition {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
}

impl TransitionCondition {
    pub fn age(seconds: u64) -> Self {
        Self {
            kind: "Age".into(),
            max_age: Some(seconds),
            date: None,
        }
    }

    pub fn date(rfc3339: impl Into<String>) -> Self {
        Self {
            kind: "Date".into(),
            max_age: None,
            date: Some(rfc3339.into()),
        }
    }
}

/// An account API token (never with its value: that comes only from create and roll).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    /// `active`, `disabled` or `expired`.
    pub status: Option<String>,
    pub issued_on: Option<String>,
    pub modified_on: Option<String>,
    pub expires_on: Option<String>,
    pub policies: Vec<Value>,
}

/// A token just created: its id and its value, shown this once.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub token: ApiToken,
    pub value: hubkeeper_proto::Secret,
}

/// A permission group (e.g. "Workers R2 Storage Bucket Item Write").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PermissionGroup {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
}

/// What token verify says about the client's own token.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TokenStatus {
    pub id: String,
    /// `active`, `disabled` or `expired`.
    pub status: String,
    pub expires_on: Option<String>,
}
