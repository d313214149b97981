//! The Cloudflare provisioner (spec §11): per hub a remotely managed tunnel with its
//! ingress, a proxied CNAME carrying an ownership comment, and a token scoped to the
//! account's bucket; per account a bucket with its lifecycle rules. Every call goes
//! through `cloudflare_api`, which paces and retries; this module decides what each
//! answer means for a resumable enroll (adopt, never duplicate) and holds the one
//! credential the service keeps for itself: an R2 token its retention sweep deletes
//! backups with.

use super::s3::{S3Store, StoreSettings};
use super::tunnel_token;
use super::{BucketDeletion, Expiry, Ingress, ProvisionError, Provisioner, R2Key, Tunnel};
use crate::store::now;
use crate::store::sqlite::{Db, DbError};
use cloudflare_api::{
    Client, ConfigSrc, Error as CfError, ErrorKind, IngressRule, Lifecycle, LifecycleConditions,
    LifecycleRule, OriginRequest, R2Scope, RouteError, Secret, Settings, Transition,
    TransitionCondition, TunnelConfig, s3_credentials,
};
use hubkeeper_proto::time::{parse_rfc3339, rfc3339};
use rusqlite::{OptionalExtension, params};
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::OnceCell;

pub const COMPONENT: &str = "cloudflare-provisioner";

/// `cloudflare_tokens`: tokens the service minted for its own use, by purpose. A row
/// with `attempted_at` and no value means a create was sent whose answer may have been
/// lost: the next attempt finds the token by name and rolls it.
pub const MIGRATIONS: &[&str] = &["
    CREATE TABLE cloudflare_tokens (
        purpose TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        token_id TEXT,
        token_value TEXT,
        attempted_at TEXT NOT NULL
    );
"];

/// What hub tokens and the sweep's token may do: read, write, list and delete objects.
const OBJECT_WRITE: &[&str] = &["Workers R2 Storage Bucket Item Write"];

/// The sweep's token, one per service database.
const SWEEPER: &str = "sweeper";
const SWEEPER_NAME: &str = "hubkeeper-control-sweeper";

/// Tunnels a page when the sweep looks at all of them: the most Cloudflare serves, so
/// 5,000 hubs cost 5 calls a sweep.
const STATUS_PAGE: u32 = 1000;

/// The longest `retry-after` a call waits out itself.
const MAX_HELD_RETRY_AFTER: Duration = Duration::from_secs(5);

const ABORT_RULE: &str = "hubkeeper-abort-multipart";
const DELETE_RULE_PREFIX: &str = "hubkeeper-delete-";

#[derive(Debug, Clone)]
pub struct CloudflareSettings {
    pub api_base: String,
    pub account_id: String,
    pub token: Secret,
    /// The zone hub hostnames live in (the service's top-level `zone`).
    pub zone: String,
    /// What enroll answers as `r2_endpoint`, and where the sweep's S3 calls go.
    pub r2_endpoint: String,
    /// `default`, `eu` or `fedramp`.
    pub jurisdiction: String,
    pub location_hint: Option<String>,
    /// Requests at least this far apart (Cloudflare allows 1,200 per 5 minutes).
    pub min_interval: Duration,
    /// One attempt of one call.
    pub request_timeout: Duration,
}

#[derive(Debug)]
pub struct CloudflareProvisioner {
    api: Client,
    db: Db,
    zone: String,
    zone_id: OnceCell<String>,
    r2_endpoint: String,
    location_hint: Option<String>,
    sweeper: OnceCell<S3Store>,
}

/// What the ownership comment on a hub's DNS record says; only records carrying it
/// (or pointing at the hub's own tunnel) are ever updated or deleted.
pub fn owner_comment(owner: &str) -> String {
    format!("managed by hubkeeper-control for hub {owner}")
}

impl CloudflareProvisioner {
    /// `db` must have been migrated with [`MIGRATIONS`] under [`COMPONENT`].
    pub fn new(db: Db, s: CloudflareSettings) -> Result<Self, ProvisionError> {
        let mut settings = Settings::new(s.account_id, s.token);
        settings.api_base = s.api_base;
        settings.jurisdiction = s.jurisdiction;
        settings.min_interval = s.min_interval;
        settings.attempt_timeout = s.request_timeout;
        // A hub waiting on its enroll is better told "429, retry after N" than held
        // for a minute: longer waits come back as ProvisionError::RateLimited.
        settings.max_retry_after = MAX_HELD_RETRY_AFTER;
        let api = Client::new(settings).map_err(|e| ProvisionError::Internal {
            op: "set up the Cloudflare client",
            detail: e.to_string(),
        })?;
        Ok(Self {
            api,
            db,
            zone: s.zone,
            zone_id: OnceCell::new(),
            r2_endpoint: s.r2_endpoint,
            location_hint: s.location_hint,
            sweeper: OnceCell::new(),
        })
    }

    async fn verify(&self) -> Result<(), ProvisionError> {
        let status = self
            .api
            .verify_token()
            .await
            .map_err(|e| cf("verify the API token", e))?;
        if status.status != "active" {
            return Err(ProvisionError::Upstream {
                op: "verify the API token",
                detail: format!(
                    "the token is {}: create an active one and put it in api_token_file",
                    status.status
                ),
            });
        }
        self.zone_id().await.map(|_| ())
    }

    async fn zone_id(&self) -> Result<&str, ProvisionError> {
        self.zone_id
            .get_or_try_init(|| async {
                match self.api.zone_by_name(&self.zone).await {
                    Ok(Some(z)) => Ok(z.id),
                    Ok(None) => Err(ProvisionError::Upstream {
                        op: "find the zone",
                        detail: format!(
                            "the zone {} is not in the account, or the token cannot see it: \
                             add the zone to the account, or give the token Zone › DNS Edit on it",
                            self.zone
                        ),
                    }),
                    Err(e) => Err(cf("find the zone", e)),
                }
            })
            .await
            .map(String::as_str)
    }

    fn key_from(&self, id: String, value: &Secret) -> R2Key {
        let creds = s3_credentials(&id, value);
        R2Key {
            id,
            access_key_id: creds.access_key_id,
            secret_access_key: creds.secret_access_key,
        }
    }

    async fn db<R, F>(&self, op: &'static str, f: F) -> Result<R, ProvisionError>
    where
        R: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<R, DbError> + Send + 'static,
    {
        self.db.call(f).await.map_err(|e| ProvisionError::Internal {
            op,
            detail: e.to_string(),
        })
    }

    /// The sweep's S3 access: the token the service minted for itself (minting it on
    /// first use, recorded before the create so a lost answer is rolled, not repeated).
    async fn sweeper(&self) -> Result<&S3Store, ProvisionError> {
        self.sweeper
            .get_or_try_init(|| async {
                let (id, value) = self.sweeper_token().await?;
                let creds = s3_credentials(&id, &value);
                S3Store::new(&StoreSettings {
                    endpoint: self.r2_endpoint.clone(),
                    region: "auto".into(),
                    access_key_id: creds.access_key_id,
                    secret_access_key: creds.secret_access_key,
                })
            })
            .await
    }

    async fn sweeper_token(&self) -> Result<(String, Secret), ProvisionError> {
        let stored = self
            .db("read the sweep's token", |c| {
                Ok(c.query_row(
                    "SELECT token_id, token_value FROM cloudflare_tokens WHERE purpose = ?1",
                    [SWEEPER],
                    |r| {
                        Ok((
                            r.get::<_, Option<String>>(0)?,
                            r.get::<_, Option<String>>(1)?,
                        ))
                    },
                )
                .optional()?)
            })
            .await?;
        let (id, value) = match stored {
            Some((Some(id), Some(value))) => return Ok((id, Secret::new(value))),
            Some(_) => match self
                .api
                .token_by_name(SWEEPER_NAME)
                .await
                .map_err(|e| cf("list tokens", e))?
            {
                Some(id) => {
                    let value = self
                        .api
                        .roll_token(&id)
                        .await
                        .map_err(|e| cf("roll the sweep's token", e))?;
                    (id, value)
                }
                None => self.create_sweeper().await?,
            },
            None => {
                self.db("record the sweep's token", |c| {
                    c.execute(
                        "INSERT INTO cloudflare_tokens (purpose, name, attempted_at)
                         VALUES (?1, ?2, ?3) ON CONFLICT (purpose) DO NOTHING",
                        params![SWEEPER, SWEEPER_NAME, now()],
                    )?;
                    Ok(())
                })
                .await?;
                self.create_sweeper().await?
            }
        };
        let (i, v) = (id.clone(), value.clone());
        self.db("record the sweep's token", move |c| {
            c.execute(
                "UPDATE cloudflare_tokens SET token_id = ?2, token_value = ?3 WHERE purpose = ?1",
                params![SWEEPER, i, v.expose()],
            )?;
            Ok(())
        })
        .await?;
        tracing::info!(token_id = %id, "minted the R2 token the retention sweep deletes with");
        Ok((id, value))
    }

    async fn create_sweeper(&self) -> Result<(String, Secret), ProvisionError> {
        let created = self
            .api
            .create_r2_token(SWEEPER_NAME, R2Scope::AllBuckets, OBJECT_WRITE)
            .await
            .map_err(|e| cf("create the sweep's token", e))?;
        Ok((created.token.id, created.value))
    }

    fn lifecycle(expiries: &[Expiry]) -> Lifecycle {
        let mut rules = vec![LifecycleRule {
            id: ABORT_RULE.into(),
            enabled: true,
            conditions: LifecycleConditions {
                prefix: String::new(),
            },
            delete_objects_transition: None,
            abort_multipart_uploads_transition: Some(Transition {
                condition: TransitionCondition::age(86_400),
            }),
        }];
        for e in expiries {
            rules.push(LifecycleRule {
                id: format!("{DELETE_RULE_PREFIX}{}", e.prefix.trim_end_matches('/')),
                enabled: true,
                conditions: LifecycleConditions {
                    prefix: e.prefix.clone(),
                },
                delete_objects_transition: Some(Transition {
                    condition: TransitionCondition::date(backstop_date(&e.due)),
                }),
                abort_multipart_uploads_transition: None,
            });
        }
        Lifecycle { rules }
    }
}

/// A Date rule's date: the deadline rounded up to the next midnight UTC (S3-style Date
/// conditions take midnights). Never earlier than the deadline, since the rule is only
/// the backstop for the service's own sweep.
fn backstop_date(due: &str) -> String {
    let secs = parse_rfc3339(due)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let midnight = secs.div_ceil(86_400) * 86_400;
    rfc3339(UNIX_EPOCH + Duration::from_secs(midnight))
}

/// A client error as a provisioning error. Its message names the call, Cloudflare's
/// codes and messages, and for a refused token the permission it needs; never a token.
fn cf(op: &'static str, e: CfError) -> ProvisionError {
    match e.kind {
        ErrorKind::RateLimited { retry_after } => ProvisionError::RateLimited {
            op,
            retry_after_secs: retry_after.map_or(60, |d| d.as_secs().max(1)),
        },
        _ => ProvisionError::Upstream {
            op,
            detail: e.to_string(),
        },
    }
}

impl Provisioner for CloudflareProvisioner {
    fn r2_endpoint(&self) -> &str {
        &self.r2_endpoint
    }

    /// The token is valid and sees the zone.
    async fn check(&self) -> Result<(), ProvisionError> {
        self.verify().await
    }

    async fn ensure_tunnel(&self, name: &str) -> Result<Tunnel, ProvisionError> {
        let secret = tunnel_token::new_secret();
        let ensured = self
            .api
            .ensure_tunnel(name, ConfigSrc::Cloudflare, &secret)
            .await
            .map_err(|e| cf("create the tunnel", e))?;
        let t = ensured.tunnel;
        if ensured.adopted {
            if t.config_src.as_deref() == Some("local") {
                return Err(ProvisionError::Conflict(format!(
                    "a locally managed tunnel named {name} (id {}) exists in the account: \
                     hubkeeper-control did not create it; delete it or rename it",
                    t.id
                )));
            }
            tracing::info!(tunnel = %name, tunnel_id = %t.id, "adopted the tunnel an earlier attempt created");
        }
        let token = match ensured.token {
            Some(token) => token,
            None => self
                .api
                .tunnel_token(&t.id)
                .await
                .map_err(|e| cf("get the tunnel token", e))?,
        };
        Ok(Tunnel { id: t.id, token })
    }

    async fn set_ingress(&self, tunnel_id: &str, ingress: &Ingress) -> Result<(), ProvisionError> {
        let origin_request = ingress.no_tls_verify.then(|| OriginRequest {
            no_tls_verify: Some(true),
            other: serde_json::Map::new(),
        });
        let config = TunnelConfig {
            ingress: vec![
                IngressRule {
                    hostname: Some(ingress.hostname.clone()),
                    service: ingress.origin.clone(),
                    origin_request,
                },
                IngressRule {
                    hostname: None,
                    service: "http_status:404".into(),
                    origin_request: None,
                },
            ],
        };
        self.api
            .put_tunnel_configuration(tunnel_id, &config)
            .await
            .map(|_| ())
            .map_err(|e| cf("set the tunnel's ingress", e))
    }

    async fn route_hostname(
        &self,
        hostname: &str,
        tunnel_id: &str,
        owner: &str,
    ) -> Result<String, ProvisionError> {
        let zone = self.zone_id().await?;
        match self
            .api
            .route_cname(zone, hostname, tunnel_id, &owner_comment(owner))
            .await
        {
            Ok(id) => Ok(id),
            Err(e @ RouteError::Foreign { .. }) => Err(ProvisionError::Conflict(format!(
                "{e}: hubkeeper-control did not create it; remove that record in the Cloudflare dashboard, then enroll again"
            ))),
            Err(RouteError::Api(e)) => Err(cf("create the DNS record", e)),
        }
    }

    async fn ensure_bucket(&self, bucket: &str, expiries: &[Expiry]) -> Result<(), ProvisionError> {
        self.api
            .ensure_bucket(bucket, self.location_hint.as_deref())
            .await
            .map_err(|e| cf("create the bucket", e))?;
        self.set_expiries(bucket, expiries).await
    }

    async fn set_expiries(&self, bucket: &str, expiries: &[Expiry]) -> Result<(), ProvisionError> {
        self.api
            .put_bucket_lifecycle(bucket, &Self::lifecycle(expiries))
            .await
            .map_err(|e| cf("set the bucket's lifecycle rules", e))
    }

    async fn mint_key(
        &self,
        name: &str,
        bucket: &str,
        maybe_exists: bool,
    ) -> Result<R2Key, ProvisionError> {
        if maybe_exists
            && let Some(id) = self
                .api
                .token_by_name(name)
                .await
                .map_err(|e| cf("list tokens", e))?
        {
            // Its value was shown once, to an answer that was lost: roll it.
            let value = self
                .api
                .roll_token(&id)
                .await
                .map_err(|e| cf("roll the hub's token", e))?;
            tracing::info!(token = %name, token_id = %id, "adopted the token an earlier attempt created");
            return Ok(self.key_from(id, &value));
        }
        let created = self
            .api
            .create_bucket_token(name, bucket, OBJECT_WRITE)
            .await
            .map_err(|e| cf("create the hub's token", e))?;
        Ok(self.key_from(created.token.id, &created.value))
    }

    async fn roll_key(&self, key_id: &str, _bucket: &str) -> Result<R2Key, ProvisionError> {
        let value = self
            .api
            .roll_token(key_id)
            .await
            .map_err(|e| cf("roll the hub's token", e))?;
        Ok(self.key_from(key_id.to_owned(), &value))
    }

    async fn revoke_key(&self, key_id: &str) -> Result<(), ProvisionError> {
        match self.api.delete_token(key_id).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(cf("delete the hub's token", e)),
        }
    }

    async fn delete_connections(&self, tunnel_id: &str) -> Result<(), ProvisionError> {
        match self.api.delete_tunnel_connections(tunnel_id).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(cf("delete the tunnel's connections", e)),
        }
    }

    async fn delete_tunnel(&self, tunnel_id: &str) -> Result<(), ProvisionError> {
        match self.api.delete_tunnel(tunnel_id).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(cf("delete the tunnel", e)),
        }
    }

    async fn delete_dns_record(&self, record_id: &str) -> Result<(), ProvisionError> {
        let zone = self.zone_id().await?;
        self.api
            .delete_dns_record(zone, record_id)
            .await
            .map_err(|e| cf("delete the DNS record", e))
    }

    async fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<(), ProvisionError> {
        self.sweeper().await?.delete_prefix(bucket, prefix).await
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<BucketDeletion, ProvisionError> {
        match self.api.delete_bucket(bucket).await {
            Ok(()) => Ok(BucketDeletion::Deleted),
            Err(e) if e.is_not_found() => Ok(BucketDeletion::Missing),
            Err(e) if e.codes().contains(&10008) => Ok(BucketDeletion::NotEmpty),
            Err(e) => Err(cf("delete the bucket", e)),
        }
    }

    async fn tunnel_statuses(&self) -> Result<Option<Vec<(String, String)>>, ProvisionError> {
        let tunnels = self
            .api
            .list_tunnels_by(None, STATUS_PAGE)
            .await
            .map_err(|e| cf("list tunnels", e))?;
        Ok(Some(
            tunnels
                .into_iter()
                .filter_map(|t| t.status.map(|s| (t.id, s)))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backstop_is_the_next_midnight_never_earlier() {
        assert_eq!(
            backstop_date("2026-03-04T10:00:00Z"),
            "2026-03-05T00:00:00Z"
        );
        assert_eq!(
            backstop_date("2026-03-04T00:00:00Z"),
            "2026-03-04T00:00:00Z"
        );
    }

    #[test]
    fn rules_abort_multipart_after_a_day_and_delete_each_pending_prefix_by_date() {
        let l = CloudflareProvisioner::lifecycle(&[Expiry {
            prefix: "hubs/h1/".into(),
            due: "2026-03-04T10:00:00Z".into(),
        }]);
        assert_eq!(l.rules.len(), 2);
        assert_eq!(
            l.rules[0].abort_multipart_uploads_transition,
            Some(Transition {
                condition: TransitionCondition::age(86_400)
            })
        );
        assert_eq!(l.rules[1].conditions.prefix, "hubs/h1/");
        let c = &l.rules[1]
            .delete_objects_transition
            .as_ref()
            .unwrap()
            .condition;
        assert_eq!(
            c.kind, "Date",
            "an Age rule would delete old backups at once"
        );
        assert_eq!(c.date.as_deref(), Some("2026-03-05T00:00:00Z"));
    }
}
