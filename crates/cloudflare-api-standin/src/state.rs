//! The stand-in's account: tunnels, zones and DNS records, R2 buckets and account
//! tokens, with the rules Cloudflare applies to them. Pure data and checks (no I/O), so
//! the HTTP layer decides when to persist and when to talk to the S3 store.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

/// A Cloudflare API error: HTTP status, Cloudflare's error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: u32,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The permission groups the stand-in knows. The two R2 item groups carry Cloudflare's
/// real ids (research §5); the others' ids are the stand-in's own.
pub const PERMISSION_GROUPS: &[(&str, &str)] = &[
    (
        "2efd5506f9c8494dacb1fa10a3e7d5b6",
        "Workers R2 Storage Bucket Item Write",
    ),
    (
        "6a018a9f2fc74eb6b293b0c548f38b39",
        "Workers R2 Storage Bucket Item Read",
    ),
    (
        "bf7481a1826f439697cb59a20b22293e",
        "Workers R2 Storage Write",
    ),
    (
        "c07321b023e944ff818fec44d8203567",
        "Cloudflare Tunnel Write",
    ),
    ("4755a26eedb94da69e1066d98aa820be", "DNS Write"),
    ("5bc3f8b21c554832afc660159ab75fa4", "API Tokens Write"),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tunnel {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub deleted_at: Option<String>,
    /// Standard base64 of the secret, as Cloudflare keeps `tunnel_secret`.
    pub secret: String,
    pub config_src: String,
    pub connected: bool,
    pub conns_active_at: Option<String>,
    pub conns_inactive_at: Option<String>,
    pub config: Option<Value>,
    pub config_version: u64,
    pub config_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Zone {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub zone_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub content: String,
    pub proxied: bool,
    pub ttl: u64,
    pub comment: Option<String>,
    pub created_on: String,
    pub modified_on: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bucket {
    pub name: String,
    pub jurisdiction: String,
    pub location: String,
    pub storage_class: String,
    pub creation_date: String,
    pub lifecycle: Option<Value>,
    /// Set by a test when no S3 store backs the stand-in: the bucket counts as holding
    /// objects, so delete answers 10008.
    pub not_empty: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    pub name: String,
    pub value: String,
    pub status: String,
    pub issued_on: String,
    pub modified_on: String,
    pub policies: Value,
    pub expires_on: Option<String>,
    pub not_before: Option<String>,
    pub condition: Option<Value>,
}

/// Everything the account holds; serialised as the state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Account {
    pub tunnels: Vec<Tunnel>,
    pub zones: Vec<Zone>,
    pub records: Vec<Record>,
    pub buckets: Vec<Bucket>,
    pub tokens: Vec<Token>,
    /// How many account tokens may exist (Cloudflare: 500); `None` is Cloudflare's.
    #[serde(default)]
    pub token_quota: Option<usize>,
}

/// Cloudflare's quota of account API tokens (research §1).
pub const TOKEN_QUOTA: usize = 500;

pub fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// UTC RFC 3339 from Unix seconds (civil-from-days, Howard Hinnant's algorithm), so
/// the stand-in needs no date crate.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Lowercase hex SHA-256: how R2 derives an S3 secret from a token value.
pub fn sha256_hex(value: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn random_secret() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    STANDARD.encode(bytes)
}

fn random_token_value() -> String {
    // Cloudflare's token values are 40 characters of [A-Za-z0-9_-].
    let mut v = new_id();
    v.push_str(&new_id());
    v.truncate(40);
    v
}

pub fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// Valid R2 bucket name: 3–63 of a–z, 0–9 and `-`, alphanumeric at both ends.
pub fn valid_bucket_name(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&name.len())
        && name.chars().all(|c| ok_char(c) || c == '-')
        && name.starts_with(ok_char)
        && name.ends_with(ok_char)
}

fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

impl Tunnel {
    pub fn status(&self) -> &'static str {
        if self.connected {
            "healthy"
        } else if self.conns_active_at.is_some() {
            "down"
        } else {
            "inactive"
        }
    }

    /// `{"a","t","s"}` as standard padded base64: what `cloudflared tunnel run
    /// --token` parses.
    pub fn token(&self, account: &str) -> String {
        let json = json!({"a": account, "t": self.id, "s": self.secret});
        STANDARD.encode(json.to_string())
    }

    pub fn to_json(&self, account: &str) -> Value {
        json!({
            "id": self.id,
            "account_tag": account,
            "created_at": self.created_at,
            "deleted_at": self.deleted_at,
            "name": self.name,
            "connections": [],
            "conns_active_at": self.conns_active_at,
            "conns_inactive_at": self.conns_inactive_at,
            "tun_type": "cfd_tunnel",
            "metadata": {},
            "status": self.status(),
            "remote_config": self.config_src == "cloudflare",
            "config_src": self.config_src,
        })
    }

    pub fn configuration(&self, account: &str) -> Value {
        json!({
            "tunnel_id": self.id,
            "account_id": account,
            "config": self.config,
            "source": self.config_src,
            "version": self.config_version,
            "created_at": self.config_at,
        })
    }

    pub fn connections(&self) -> Value {
        if !self.connected {
            return json!([]);
        }
        // Healthy is four connections to the edge.
        let conns: Vec<Value> = ["lhr01", "lhr02", "ams01", "ams02"]
            .iter()
            .map(|colo| {
                json!({
                    "id": new_id(), "uuid": new_id(), "client_id": self.id,
                    "client_version": "standin", "colo_name": colo,
                    "is_pending_reconnect": false, "opened_at": self.conns_active_at,
                    "origin_ip": "127.0.0.1",
                })
            })
            .collect();
        json!([{
            "id": self.id, "arch": "linux_amd64", "config_version": self.config_version,
            "version": "standin", "run_at": self.conns_active_at, "features": [],
            "conns": conns,
        }])
    }
}

impl Record {
    pub fn to_json(&self, zone_name: &str) -> Value {
        json!({
            "id": self.id,
            "zone_id": self.zone_id,
            "zone_name": zone_name,
            "type": self.kind,
            "name": self.name,
            "content": self.content,
            "proxied": self.proxied,
            "proxiable": true,
            "ttl": self.ttl,
            "comment": self.comment,
            "tags": [],
            "created_on": self.created_on,
            "modified_on": self.modified_on,
            "meta": {},
            "settings": {},
        })
    }
}

impl Bucket {
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "creation_date": self.creation_date,
            "location": self.location,
            "jurisdiction": self.jurisdiction,
            "storage_class": self.storage_class,
        })
    }
}

impl Token {
    /// Without `value`: Cloudflare shows it only on create and roll.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "issued_on": self.issued_on,
            "modified_on": self.modified_on,
            "policies": self.policies,
            "expires_on": self.expires_on,
            "not_before": self.not_before,
            "condition": self.condition,
        })
    }
}

fn is_address_type(kind: &str) -> bool {
    matches!(kind, "CNAME" | "A" | "AAAA")
}

impl Account {
    // --- tunnels ---

    pub fn tunnel(&self, id: &str) -> ApiResult<&Tunnel> {
        self.tunnels
            .iter()
            .find(|t| t.id == id)
            .ok_or_else(tunnel_not_found)
    }

    fn tunnel_mut(&mut self, id: &str) -> ApiResult<&mut Tunnel> {
        self.tunnels
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(tunnel_not_found)
    }

    fn live_tunnel_mut(&mut self, id: &str) -> ApiResult<&mut Tunnel> {
        let t = self.tunnel_mut(id)?;
        if t.deleted_at.is_some() {
            return Err(tunnel_not_found());
        }
        Ok(t)
    }

    pub fn create_tunnel(&mut self, body: &Value) -> ApiResult<&Tunnel> {
        let name = str_field(body, "name").unwrap_or("").trim().to_owned();
        if name.is_empty() {
            return Err(ApiError::new(400, 1003, "Tunnel name is required"));
        }
        if is_uuid(&name) {
            return Err(ApiError::new(400, 1003, "Tunnel name cannot be a UUID"));
        }
        if self
            .tunnels
            .iter()
            .any(|t| t.deleted_at.is_none() && t.name == name)
        {
            return Err(ApiError::new(
                409,
                1013,
                "You already have a tunnel with this name. Delete the existing tunnel, \
                 or choose a different name for your new tunnel",
            ));
        }
        let secret = match str_field(body, "tunnel_secret") {
            Some(s) => check_secret(s)?,
            None => random_secret(),
        };
        let config_src = str_field(body, "config_src").unwrap_or("local").to_owned();
        if config_src != "local" && config_src != "cloudflare" {
            return Err(ApiError::new(
                400,
                1003,
                "config_src must be \"local\" or \"cloudflare\"",
            ));
        }
        self.tunnels.push(Tunnel {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            created_at: now(),
            deleted_at: None,
            secret,
            config_src,
            connected: false,
            conns_active_at: None,
            conns_inactive_at: None,
            config: None,
            config_version: 0,
            config_at: None,
        });
        self.tunnels.last().ok_or_else(tunnel_not_found)
    }

    pub fn patch_tunnel(&mut self, id: &str, body: &Value) -> ApiResult<&Tunnel> {
        let new_name = str_field(body, "name").map(str::to_owned);
        if let Some(n) = &new_name
            && self
                .tunnels
                .iter()
                .any(|t| t.deleted_at.is_none() && t.name == *n && t.id != id)
        {
            return Err(ApiError::new(
                409,
                1013,
                "You already have a tunnel with this name",
            ));
        }
        let secret = str_field(body, "tunnel_secret")
            .map(check_secret)
            .transpose()?;
        let t = self.live_tunnel_mut(id)?;
        if let Some(n) = new_name {
            t.name = n;
        }
        if let Some(s) = secret {
            t.secret = s;
        }
        Ok(t)
    }

    pub fn tunnel_token(&mut self, id: &str, account: &str) -> ApiResult<String> {
        Ok(self.live_tunnel_mut(id)?.token(account))
    }

    pub fn put_configuration(&mut self, id: &str, body: &Value) -> ApiResult<&Tunnel> {
        let config = body
            .get("config")
            .filter(|c| c.is_object())
            .ok_or_else(|| ApiError::new(400, 1055, "Missing the \"config\" object"))?;
        let ingress = config
            .get("ingress")
            .and_then(Value::as_array)
            .filter(|i| !i.is_empty())
            .ok_or_else(|| ApiError::new(400, 1055, "config.ingress must be a non-empty list"))?;
        let catch_all = ingress.last().is_some_and(|r| {
            r.get("hostname")
                .is_none_or(|h| h.as_str().is_some_and(str::is_empty) || h.is_null())
                && r.get("path").is_none_or(Value::is_null)
                && r.get("service").and_then(Value::as_str).is_some()
        });
        if !catch_all {
            return Err(ApiError::new(
                400,
                1055,
                "Validation failed: The last ingress rule must match all URLs \
                 (i.e. it should not have a hostname or path filter)",
            ));
        }
        let config = config.clone();
        let t = self.live_tunnel_mut(id)?;
        t.config = Some(config);
        t.config_version += 1;
        t.config_at = Some(now());
        Ok(t)
    }

    pub fn set_connected(&mut self, id: &str, connected: bool) -> ApiResult<()> {
        let t = self.live_tunnel_mut(id)?;
        if connected && !t.connected {
            t.conns_active_at = Some(now());
        }
        if !connected && t.connected {
            t.conns_inactive_at = Some(now());
        }
        t.connected = connected;
        Ok(())
    }

    pub fn delete_tunnel(&mut self, id: &str, cascade: bool) -> ApiResult<&Tunnel> {
        let t = self.tunnel_mut(id)?;
        if t.deleted_at.is_none() {
            if t.connected && !cascade {
                return Err(ApiError::new(
                    400,
                    1022,
                    "Cannot delete tunnel because it has active connections",
                ));
            }
            if t.connected {
                t.connected = false;
                t.conns_inactive_at = Some(now());
            }
            t.deleted_at = Some(now());
        }
        Ok(t)
    }

    // --- DNS ---

    pub fn zone(&self, id: &str) -> ApiResult<&Zone> {
        self.zones.iter().find(|z| z.id == id).ok_or_else(|| {
            ApiError::new(
                404,
                7003,
                "Could not route to /zones/..., perhaps your object identifier is invalid?",
            )
        })
    }

    pub fn create_record(&mut self, zone_id: &str, body: &Value) -> ApiResult<&Record> {
        let zone = self.zone(zone_id)?.name.clone();
        let record = self.record_from(zone_id, &zone, body, None)?;
        self.records.push(record);
        self.records.last().ok_or_else(record_not_found)
    }

    pub fn update_record(&mut self, zone_id: &str, id: &str, body: &Value) -> ApiResult<&Record> {
        let zone = self.zone(zone_id)?.name.clone();
        let pos = self
            .records
            .iter()
            .position(|r| r.id == id && r.zone_id == zone_id)
            .ok_or_else(record_not_found)?;
        let mut record = self.record_from(zone_id, &zone, body, Some(id))?;
        record.id = id.to_owned();
        record.created_on = self.records[pos].created_on.clone();
        self.records[pos] = record;
        Ok(&self.records[pos])
    }

    pub fn delete_record(&mut self, zone_id: &str, id: &str) -> ApiResult<()> {
        self.zone(zone_id)?;
        let pos = self
            .records
            .iter()
            .position(|r| r.id == id && r.zone_id == zone_id)
            .ok_or_else(record_not_found)?;
        self.records.remove(pos);
        Ok(())
    }

    fn record_from(
        &self,
        zone_id: &str,
        zone: &str,
        body: &Value,
        replacing: Option<&str>,
    ) -> ApiResult<Record> {
        let invalid = |m: &str| ApiError::new(400, 9000, format!("DNS Validation Error: {m}"));
        let kind = str_field(body, "type")
            .ok_or_else(|| invalid("type is required"))?
            .to_ascii_uppercase();
        if !matches!(
            kind.as_str(),
            "A" | "AAAA" | "CNAME" | "TXT" | "MX" | "NS" | "SRV" | "CAA"
        ) {
            return Err(invalid("unsupported record type"));
        }
        let name = str_field(body, "name")
            .ok_or_else(|| invalid("name is required"))?
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let name = if name == "@" {
            zone.to_owned()
        } else if name == zone || name.ends_with(&format!(".{zone}")) {
            name
        } else {
            format!("{name}.{zone}")
        };
        let content = str_field(body, "content")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| invalid("content is required"))?
            .to_owned();
        let others = self
            .records
            .iter()
            .filter(|r| r.zone_id == zone_id && Some(r.id.as_str()) != replacing)
            .filter(|r| r.name == name);
        for other in others {
            if is_address_type(&kind) && is_address_type(&other.kind) {
                return Err(ApiError::new(
                    400,
                    81053,
                    "An A, AAAA, or CNAME record with that host already exists.",
                ));
            }
            if other.kind == kind && other.content == content {
                return Err(ApiError::new(400, 81057, "Record already exists."));
            }
        }
        let ts = now();
        Ok(Record {
            id: new_id(),
            zone_id: zone_id.to_owned(),
            kind,
            name,
            content,
            proxied: body
                .get("proxied")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            ttl: body.get("ttl").and_then(Value::as_u64).unwrap_or(1),
            comment: str_field(body, "comment").map(str::to_owned),
            created_on: ts.clone(),
            modified_on: ts,
        })
    }

    // --- R2 ---

    pub fn bucket(&self, jurisdiction: &str, name: &str) -> ApiResult<&Bucket> {
        self.buckets
            .iter()
            .find(|b| b.name == name && b.jurisdiction == jurisdiction)
            .ok_or_else(no_such_bucket)
    }

    pub fn bucket_mut(&mut self, jurisdiction: &str, name: &str) -> ApiResult<&mut Bucket> {
        self.buckets
            .iter_mut()
            .find(|b| b.name == name && b.jurisdiction == jurisdiction)
            .ok_or_else(no_such_bucket)
    }

    pub fn create_bucket(&mut self, jurisdiction: &str, body: &Value) -> ApiResult<&Bucket> {
        let name = str_field(body, "name").unwrap_or("");
        if !valid_bucket_name(name) {
            return Err(ApiError::new(
                400,
                10005,
                "The specified bucket name is not valid.",
            ));
        }
        if self.bucket(jurisdiction, name).is_ok() {
            return Err(ApiError::new(
                409,
                10004,
                "The bucket you tried to create already exists, and you own it.",
            ));
        }
        let location = str_field(body, "locationHint")
            .unwrap_or("enam")
            .to_ascii_uppercase();
        self.buckets.push(Bucket {
            name: name.to_owned(),
            jurisdiction: jurisdiction.to_owned(),
            location,
            storage_class: str_field(body, "storageClass")
                .unwrap_or("Standard")
                .to_owned(),
            creation_date: now(),
            lifecycle: None,
            not_empty: false,
        });
        self.buckets.last().ok_or_else(no_such_bucket)
    }

    pub fn remove_bucket(&mut self, jurisdiction: &str, name: &str) {
        self.buckets
            .retain(|b| !(b.name == name && b.jurisdiction == jurisdiction));
    }

    // --- tokens ---

    pub fn token(&self, id: &str) -> ApiResult<&Token> {
        self.tokens
            .iter()
            .find(|t| t.id == id)
            .ok_or_else(token_not_found)
    }

    fn token_mut(&mut self, id: &str) -> ApiResult<&mut Token> {
        self.tokens
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(token_not_found)
    }

    pub fn create_token(&mut self, body: &Value) -> ApiResult<&Token> {
        let name = str_field(body, "name").unwrap_or("").trim().to_owned();
        if name.is_empty() {
            return Err(ApiError::new(400, 1001, "Token name is required"));
        }
        let policies = check_policies(body)?;
        let quota = self.token_quota.unwrap_or(TOKEN_QUOTA);
        if self.tokens.len() >= quota {
            // Cloudflare's code for this is not documented: 1002 is the stand-in's own.
            return Err(ApiError::new(
                400,
                1002,
                format!(
                    "You have reached the maximum number of API tokens ({quota}) for this account"
                ),
            ));
        }
        let ts = now();
        self.tokens.push(Token {
            id: new_id(),
            name,
            value: random_token_value(),
            status: "active".into(),
            issued_on: ts.clone(),
            modified_on: ts,
            policies,
            expires_on: str_field(body, "expires_on").map(str::to_owned),
            not_before: str_field(body, "not_before").map(str::to_owned),
            condition: body.get("condition").cloned(),
        });
        self.tokens.last().ok_or_else(token_not_found)
    }

    pub fn update_token(&mut self, id: &str, body: &Value) -> ApiResult<&Token> {
        let policies = check_policies(body)?;
        let name = str_field(body, "name").unwrap_or("").trim().to_owned();
        if name.is_empty() {
            return Err(ApiError::new(400, 1001, "Token name is required"));
        }
        let status = str_field(body, "status").unwrap_or("active").to_owned();
        if !matches!(status.as_str(), "active" | "disabled" | "expired") {
            return Err(ApiError::new(
                400,
                1001,
                "status must be active, disabled or expired",
            ));
        }
        let t = self.token_mut(id)?;
        t.name = name;
        t.policies = policies;
        t.status = status;
        t.modified_on = now();
        Ok(t)
    }

    pub fn roll_token(&mut self, id: &str) -> ApiResult<String> {
        let t = self.token_mut(id)?;
        t.value = random_token_value();
        t.modified_on = now();
        Ok(t.value.clone())
    }

    pub fn delete_token(&mut self, id: &str) -> ApiResult<()> {
        let pos = self
            .tokens
            .iter()
            .position(|t| t.id == id)
            .ok_or_else(token_not_found)?;
        self.tokens.remove(pos);
        Ok(())
    }

    pub fn token_by_value(&self, value: &str) -> Option<&Token> {
        self.tokens
            .iter()
            .find(|t| t.value == value && t.status == "active")
    }
}

fn check_secret(s: &str) -> ApiResult<String> {
    match STANDARD.decode(s) {
        Ok(bytes) if bytes.len() >= 32 => Ok(s.to_owned()),
        _ => Err(ApiError::new(
            400,
            1003,
            "tunnel_secret must be base64 of at least 32 bytes",
        )),
    }
}

fn check_policies(body: &Value) -> ApiResult<Value> {
    let invalid = |m: &str| ApiError::new(400, 1001, format!("Invalid policies: {m}"));
    let policies = body
        .get("policies")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| invalid("a non-empty list is required"))?;
    for p in policies {
        let groups = p
            .get("permission_groups")
            .and_then(Value::as_array)
            .filter(|g| !g.is_empty())
            .ok_or_else(|| invalid("each policy needs permission_groups"))?;
        for g in groups {
            let id = g.get("id").and_then(Value::as_str).unwrap_or("");
            if !PERMISSION_GROUPS.iter().any(|(gid, _)| *gid == id) {
                return Err(invalid(&format!("unknown permission group id {id:?}")));
            }
        }
        if p.get("resources").is_none_or(|r| !r.is_object()) {
            return Err(invalid("each policy needs a resources object"));
        }
    }
    Ok(Value::Array(policies.clone()))
}

fn tunnel_not_found() -> ApiError {
    ApiError::new(404, 1002, "Tunnel not found")
}

fn record_not_found() -> ApiError {
    ApiError::new(404, 81044, "Record does not exist.")
}

fn no_such_bucket() -> ApiError {
    ApiError::new(404, 10006, "The specified bucket does not exist.")
}

fn token_not_found() -> ApiError {
    ApiError::new(404, 1003, "Token not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_547_200 + 3661), "2025-12-01T01:01:01Z");
    }

    #[test]
    fn bucket_names() {
        assert!(valid_bucket_name("hub-1"));
        assert!(!valid_bucket_name("ab"));
        assert!(!valid_bucket_name("-ab"));
        assert!(!valid_bucket_name("Abc"));
        assert!(!valid_bucket_name("a_b"));
    }
}
