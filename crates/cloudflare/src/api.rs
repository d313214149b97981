//! The endpoints: one method per Cloudflare call, each with its name for errors, the
//! permission it needs, and whether it may be retried (creates are not, see
//! [`Retry::Once`]).

use hubkeeper_proto::Secret;
use reqwest::Method;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use crate::client::{Call, Client, Request, Retry, parse_result};
use crate::error::{Error, ErrorKind};
use crate::model::{
    ApiToken, Bucket, ConfigSrc, CreatedToken, DnsRecord, Lifecycle, NewDnsRecord, PermissionGroup,
    TokenStatus, Tunnel, TunnelConfig, TunnelConfiguration, Zone,
};

const TUNNEL: &str = "Account › Cloudflare Tunnel Edit";
const DNS: &str = "Zone › DNS Edit";
const ZONE: &str = "Zone › Zone Read (or DNS Edit) on the zone";
const R2: &str = "Account › Workers R2 Storage Write";
const TOKENS: &str = "Account › Account API Tokens Write";
const VERIFY: &str = "to be valid and active";

const fn idem(name: &'static str, needs: &'static str) -> Call {
    Call {
        name,
        needs,
        retry: Retry::Idempotent,
    }
}

const fn once(name: &'static str, needs: &'static str) -> Call {
    Call {
        name,
        needs,
        retry: Retry::Once,
    }
}

/// What an R2 token may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum R2Scope<'a> {
    /// One bucket, in the client's jurisdiction.
    Bucket(&'a str),
    /// Every bucket of the account.
    AllBuckets,
}

/// The answer of a create-tunnel call; `token` is what `cloudflared --token` takes.
#[derive(Debug, Clone)]
pub struct CreatedTunnel {
    pub tunnel: Tunnel,
    pub token: Option<Secret>,
}

#[derive(Deserialize)]
struct CreatedTunnelWire {
    #[serde(flatten)]
    tunnel: Tunnel,
    #[serde(default)]
    token: Option<String>,
}

#[derive(Deserialize)]
struct CreatedTokenWire {
    #[serde(flatten)]
    token: ApiToken,
    #[serde(default)]
    value: Option<String>,
}

impl Client {
    fn acct(&self) -> &str {
        &self.settings.account_id
    }

    async fn go<T: serde::de::DeserializeOwned>(
        &self,
        call: Call,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
        r2: bool,
    ) -> Result<T, Error> {
        let req = Request {
            method,
            url: self.url(segments, &[]),
            body,
            r2,
        };
        self.call(call, &req).await
    }

    // ---- Tunnels ----------------------------------------------------------------

    /// `POST /accounts/{acct}/cfd_tunnel`. Not retried after a timeout or 5xx: on
    /// doubt, list by name and adopt. A name already taken is `Conflict` (1013).
    /// `secret` is the base64 of at least 32 random bytes.
    pub async fn create_tunnel(
        &self,
        name: &str,
        config_src: ConfigSrc,
        secret: Option<&Secret>,
    ) -> Result<CreatedTunnel, Error> {
        let mut body = json!({ "name": name, "config_src": config_src });
        if let Some(secret) = secret {
            body["tunnel_secret"] = Value::String(secret.expose().to_owned());
        }
        let wire: CreatedTunnelWire = self
            .go(
                once("create tunnel", TUNNEL),
                Method::POST,
                &["accounts", self.acct(), "cfd_tunnel"],
                Some(&body),
                false,
            )
            .await?;
        Ok(CreatedTunnel {
            tunnel: wire.tunnel,
            token: wire.token.map(Secret::new),
        })
    }

    /// `GET /accounts/{acct}/cfd_tunnel?is_deleted=false[&name=]`, every page.
    pub async fn list_tunnels(&self, name: Option<&str>) -> Result<Vec<Tunnel>, Error> {
        self.list_tunnels_by(name, self.settings.per_page).await
    }

    /// As [`Client::list_tunnels`], asking for `per_page` a page: listing every tunnel
    /// of a large account takes a call per thousand tunnels (the most Cloudflare
    /// serves a page) rather than per fifty.
    pub async fn list_tunnels_by(
        &self,
        name: Option<&str>,
        per_page: u32,
    ) -> Result<Vec<Tunnel>, Error> {
        let mut query = vec![("is_deleted", "false")];
        if let Some(name) = name {
            query.push(("name", name));
        }
        self.all_pages_of(
            idem("list tunnels", TUNNEL),
            &["accounts", self.acct(), "cfd_tunnel"],
            &query,
            per_page,
        )
        .await
    }

    /// `GET /accounts/{acct}/cfd_tunnel/{id}` (a deleted tunnel has `deleted_at`).
    pub async fn get_tunnel(&self, id: &str) -> Result<Tunnel, Error> {
        self.go(
            idem("get tunnel", TUNNEL),
            Method::GET,
            &["accounts", self.acct(), "cfd_tunnel", id],
            None,
            false,
        )
        .await
    }

    /// `GET /accounts/{acct}/cfd_tunnel/{id}/token`: the token `cloudflared` runs with.
    pub async fn tunnel_token(&self, id: &str) -> Result<Secret, Error> {
        let token: String = self
            .go(
                idem("get tunnel token", TUNNEL),
                Method::GET,
                &["accounts", self.acct(), "cfd_tunnel", id, "token"],
                None,
                false,
            )
            .await?;
        if token.is_empty() {
            return Err(Error::new(
                "get tunnel token",
                ErrorKind::BadAnswer("the token is empty".into()),
            ));
        }
        Ok(Secret::new(token))
    }

    /// `PUT /accounts/{acct}/cfd_tunnel/{id}/configurations`: replaces the ingress.
    /// The last rule must be a catch-all (no hostname); checked before sending.
    pub async fn put_tunnel_configuration(
        &self,
        id: &str,
        config: &TunnelConfig,
    ) -> Result<TunnelConfiguration, Error> {
        const CALL: &str = "put tunnel configuration";
        match config.ingress.last() {
            Some(rule) if rule.hostname.is_none() && !rule.service.is_empty() => {}
            _ => {
                return Err(Error::new(
                    CALL,
                    ErrorKind::Invalid(
                        "the last ingress rule must be a catch-all without a hostname, \
                         e.g. service \"http_status:404\""
                            .into(),
                    ),
                ));
            }
        }
        let body = json!({ "config": config });
        self.go(
            idem(CALL, TUNNEL),
            Method::PUT,
            &["accounts", self.acct(), "cfd_tunnel", id, "configurations"],
            Some(&body),
            false,
        )
        .await
    }

    /// `GET /accounts/{acct}/cfd_tunnel/{id}/configurations`.
    pub async fn get_tunnel_configuration(&self, id: &str) -> Result<TunnelConfiguration, Error> {
        self.go(
            idem("get tunnel configuration", TUNNEL),
            Method::GET,
            &["accounts", self.acct(), "cfd_tunnel", id, "configurations"],
            None,
            false,
        )
        .await
    }

    /// `DELETE /accounts/{acct}/cfd_tunnel/{id}/connections`: drops its (stale)
    /// connections, which otherwise block deleting the tunnel.
    pub async fn delete_tunnel_connections(&self, id: &str) -> Result<(), Error> {
        let _: IgnoredAny = self
            .go(
                idem("delete tunnel connections", TUNNEL),
                Method::DELETE,
                &["accounts", self.acct(), "cfd_tunnel", id, "connections"],
                None,
                false,
            )
            .await?;
        Ok(())
    }

    /// `DELETE /accounts/{acct}/cfd_tunnel/{id}`; live connections make it a
    /// `Conflict` (1022).
    pub async fn delete_tunnel(&self, id: &str) -> Result<(), Error> {
        let _: IgnoredAny = self
            .go(
                idem("delete tunnel", TUNNEL),
                Method::DELETE,
                &["accounts", self.acct(), "cfd_tunnel", id],
                None,
                false,
            )
            .await?;
        Ok(())
    }

    // ---- Zones and DNS ----------------------------------------------------------

    /// `GET /zones?name={name}`: the zone of exactly that name, if the token sees one.
    pub async fn zone_by_name(&self, name: &str) -> Result<Option<Zone>, Error> {
        let call = idem("find zone", ZONE);
        let zones: Vec<Zone> = self.all_pages(call, &["zones"], &[("name", name)]).await?;
        let mut found = zones
            .into_iter()
            .filter(|z| z.name.eq_ignore_ascii_case(name));
        let zone = found.next();
        if found.next().is_some() {
            return Err(Error::new(
                call.name,
                ErrorKind::BadAnswer(format!("more than one zone named {name}")),
            ));
        }
        Ok(zone)
    }

    /// `GET /zones/{zone}/dns_records?type={type}&name={name}`, every page.
    pub async fn list_dns_records(
        &self,
        zone_id: &str,
        record_type: &str,
        name: &str,
    ) -> Result<Vec<DnsRecord>, Error> {
        self.all_pages(
            idem("list DNS records", DNS),
            &["zones", zone_id, "dns_records"],
            &[("type", record_type), ("name", name)],
        )
        .await
    }

    /// `POST /zones/{zone}/dns_records`. Not retried after a timeout or 5xx (list
    /// and adopt). A name taken by another record is `Conflict` (81053).
    pub async fn create_dns_record(
        &self,
        zone_id: &str,
        record: &NewDnsRecord,
    ) -> Result<DnsRecord, Error> {
        let body = to_value(record);
        self.go(
            once("create DNS record", DNS),
            Method::POST,
            &["zones", zone_id, "dns_records"],
            Some(&body),
            false,
        )
        .await
    }

    /// `PUT /zones/{zone}/dns_records/{id}`: replaces the record whole.
    pub async fn update_dns_record(
        &self,
        zone_id: &str,
        id: &str,
        record: &NewDnsRecord,
    ) -> Result<DnsRecord, Error> {
        let body = to_value(record);
        self.go(
            idem("update DNS record", DNS),
            Method::PUT,
            &["zones", zone_id, "dns_records", id],
            Some(&body),
            false,
        )
        .await
    }

    /// `DELETE /zones/{zone}/dns_records/{id}`; a record already gone is success.
    pub async fn delete_dns_record(&self, zone_id: &str, id: &str) -> Result<(), Error> {
        let result: Result<IgnoredAny, Error> = self
            .go(
                idem("delete DNS record", DNS),
                Method::DELETE,
                &["zones", zone_id, "dns_records", id],
                None,
                false,
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ---- R2 buckets (each with the cf-r2-jurisdiction header) ---------------------

    /// `POST /accounts/{acct}/r2/buckets`. An existing bucket is `Conflict` (409):
    /// confirm with [`Client::get_bucket`]. Idempotent in effect, so retried.
    pub async fn create_bucket(
        &self,
        name: &str,
        location_hint: Option<&str>,
    ) -> Result<Bucket, Error> {
        let mut body = json!({ "name": name });
        if let Some(hint) = location_hint {
            body["locationHint"] = Value::String(hint.to_owned());
        }
        self.go(
            idem("create bucket", R2),
            Method::POST,
            &["accounts", self.acct(), "r2", "buckets"],
            Some(&body),
            true,
        )
        .await
    }

    /// `GET /accounts/{acct}/r2/buckets/{name}`.
    pub async fn get_bucket(&self, name: &str) -> Result<Bucket, Error> {
        self.go(
            idem("get bucket", R2),
            Method::GET,
            &["accounts", self.acct(), "r2", "buckets", name],
            None,
            true,
        )
        .await
    }

    /// `DELETE /accounts/{acct}/r2/buckets/{name}`; a bucket with objects is
    /// `Conflict` (10008).
    pub async fn delete_bucket(&self, name: &str) -> Result<(), Error> {
        let _: IgnoredAny = self
            .go(
                idem("delete bucket", R2),
                Method::DELETE,
                &["accounts", self.acct(), "r2", "buckets", name],
                None,
                true,
            )
            .await?;
        Ok(())
    }

    /// `PUT /accounts/{acct}/r2/buckets/{name}/lifecycle`: replaces every rule.
    pub async fn put_bucket_lifecycle(&self, name: &str, rules: &Lifecycle) -> Result<(), Error> {
        let body = to_value(rules);
        let _: IgnoredAny = self
            .go(
                idem("put bucket lifecycle", R2),
                Method::PUT,
                &["accounts", self.acct(), "r2", "buckets", name, "lifecycle"],
                Some(&body),
                true,
            )
            .await?;
        Ok(())
    }

    /// `GET /accounts/{acct}/r2/buckets/{name}/lifecycle`.
    pub async fn get_bucket_lifecycle(&self, name: &str) -> Result<Lifecycle, Error> {
        self.go(
            idem("get bucket lifecycle", R2),
            Method::GET,
            &["accounts", self.acct(), "r2", "buckets", name, "lifecycle"],
            None,
            true,
        )
        .await
    }

    // ---- Account API tokens -----------------------------------------------------

    /// `GET /accounts/{acct}/tokens/permission_groups`, every page; asked once per
    /// client, then served from memory.
    pub async fn permission_groups(&self) -> Result<Vec<PermissionGroup>, Error> {
        if let Some(groups) = self
            .permission_groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        {
            return Ok(groups);
        }
        let groups: Vec<PermissionGroup> = self
            .all_pages(
                idem("list permission groups", TOKENS),
                &["accounts", self.acct(), "tokens", "permission_groups"],
                &[],
            )
            .await?;
        *self
            .permission_groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(groups.clone());
        Ok(groups)
    }

    /// `POST /accounts/{acct}/tokens`: a token allowed only on `bucket` (in the
    /// client's jurisdiction), with the permission groups of these names (e.g.
    /// "Workers R2 Storage Bucket Item Write"). Not retried after a timeout or 5xx:
    /// list by name and roll. The value is in the answer only this once.
    pub async fn create_bucket_token(
        &self,
        name: &str,
        bucket: &str,
        permission_group_names: &[&str],
    ) -> Result<CreatedToken, Error> {
        self.create_r2_token(name, R2Scope::Bucket(bucket), permission_group_names)
            .await
    }

    /// `POST /accounts/{acct}/tokens` for R2: as [`Client::create_bucket_token`], with
    /// the scope given (one bucket, or every bucket of the account).
    pub async fn create_r2_token(
        &self,
        name: &str,
        scope: R2Scope<'_>,
        permission_group_names: &[&str],
    ) -> Result<CreatedToken, Error> {
        const CALL: &str = "create bucket token";
        let groups = self.permission_groups().await?;
        let mut ids = Vec::new();
        for wanted in permission_group_names {
            match groups.iter().find(|g| g.name == *wanted) {
                Some(g) => ids.push(json!({ "id": g.id })),
                None => {
                    return Err(Error::new(
                        CALL,
                        ErrorKind::Invalid(format!(
                            "Cloudflare has no permission group named {wanted:?}; \
                             check the name against /tokens/permission_groups"
                        )),
                    ));
                }
            }
        }
        let resources = match scope {
            R2Scope::Bucket(bucket) => {
                let resource = format!(
                    "com.cloudflare.edge.r2.bucket.{}_{}_{}",
                    self.acct(),
                    self.settings.jurisdiction,
                    bucket
                );
                json!({ resource: "*" })
            }
            R2Scope::AllBuckets => {
                let account = format!("com.cloudflare.api.account.{}", self.acct());
                json!({ account: { "com.cloudflare.edge.r2.bucket.*": "*" } })
            }
        };
        let body = json!({
            "name": name,
            "policies": [{
                "effect": "allow",
                "resources": resources,
                "permission_groups": ids,
            }],
        });
        let wire: CreatedTokenWire = self
            .go(
                once(CALL, TOKENS),
                Method::POST,
                &["accounts", self.acct(), "tokens"],
                Some(&body),
                false,
            )
            .await?;
        match wire.value {
            Some(value) if !value.is_empty() => Ok(CreatedToken {
                token: wire.token,
                value: Secret::new(value),
            }),
            _ => Err(Error::new(
                CALL,
                ErrorKind::BadAnswer("the new token has no value".into()),
            )),
        }
    }

    /// `GET /accounts/{acct}/tokens/{id}` (never the value).
    pub async fn get_token(&self, id: &str) -> Result<ApiToken, Error> {
        self.go(
            idem("get token", TOKENS),
            Method::GET,
            &["accounts", self.acct(), "tokens", id],
            None,
            false,
        )
        .await
    }

    /// `GET /accounts/{acct}/tokens`, every page (Cloudflare has no name filter).
    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>, Error> {
        self.all_pages(
            idem("list tokens", TOKENS),
            &["accounts", self.acct(), "tokens"],
            &[],
        )
        .await
    }

    /// `PUT /accounts/{acct}/tokens/{id}/value`: a new value for the same token (the
    /// old one stops working at once).
    pub async fn roll_token(&self, id: &str) -> Result<Secret, Error> {
        let value: String = self
            .go(
                idem("roll token", TOKENS),
                Method::PUT,
                &["accounts", self.acct(), "tokens", id, "value"],
                Some(&json!({})),
                false,
            )
            .await?;
        if value.is_empty() {
            return Err(Error::new(
                "roll token",
                ErrorKind::BadAnswer("the new value is empty".into()),
            ));
        }
        Ok(Secret::new(value))
    }

    /// `DELETE /accounts/{acct}/tokens/{id}`.
    pub async fn delete_token(&self, id: &str) -> Result<(), Error> {
        let _: IgnoredAny = self
            .go(
                idem("delete token", TOKENS),
                Method::DELETE,
                &["accounts", self.acct(), "tokens", id],
                None,
                false,
            )
            .await?;
        Ok(())
    }

    /// `GET /accounts/{acct}/tokens/verify`, and `GET /user/tokens/verify` when the
    /// account endpoint refuses the token (a user token is verified there).
    pub async fn verify_token(&self) -> Result<TokenStatus, Error> {
        let call = idem("verify token", VERIFY);
        let account = self
            .go::<Value>(
                call,
                Method::GET,
                &["accounts", self.acct(), "tokens", "verify"],
                None,
                false,
            )
            .await;
        let result = match account {
            Ok(result) => result,
            Err(Error {
                kind:
                    ErrorKind::Auth { .. } | ErrorKind::NotFound { .. } | ErrorKind::Rejected { .. },
                ..
            }) => {
                self.go::<Value>(
                    call,
                    Method::GET,
                    &["user", "tokens", "verify"],
                    None,
                    false,
                )
                .await?
            }
            Err(e) => return Err(e),
        };
        parse_result(call, result)
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    // Our own request types always serialize; Null would make the API say what is wrong.
    serde_json::to_value(v).unwrap_or(Value::Null)
}
