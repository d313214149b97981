//! Idempotent "make sure it exists" on top of the single calls, for callers that must
//! survive a crash or a lost answer at any point without duplicating anything
//! (research `cloudflare-api.md` §6): a tunnel created or adopted by name, a proxied
//! CNAME created, adopted or updated under an ownership comment (a record that is not
//! the caller's is never touched), a bucket created or confirmed, a token found by
//! name. Still nothing of hubs: names and comments are the caller's.

use hubkeeper_proto::Secret;

use crate::client::Client;
use crate::error::{Error, ErrorKind};
use crate::model::{ConfigSrc, DnsRecord, NewDnsRecord, Tunnel};

/// A tunnel that exists, with its token when Cloudflare handed one over.
#[derive(Debug, Clone)]
pub struct EnsuredTunnel {
    pub tunnel: Tunnel,
    /// The token from the create answer; `None` for an adopted tunnel (ask `/token`).
    pub token: Option<Secret>,
    /// True when a tunnel of that name already existed (an earlier attempt made it).
    pub adopted: bool,
}

/// Why a hostname could not be routed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// A record the caller did not make holds the name: left alone.
    #[error(
        "{name} already has a DNS record ({record_type} to {content}, id {id}) that was not made here"
    )]
    Foreign {
        name: String,
        record_type: String,
        content: String,
        id: String,
    },
    #[error(transparent)]
    Api(#[from] Error),
}

impl Error {
    /// Whether a create's answer may have been lost after Cloudflare acted on it: the
    /// caller looks for what it asked for before trying again.
    pub fn answer_maybe_lost(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Timeout(_) | ErrorKind::Server { .. } | ErrorKind::Unreachable(_)
        )
    }
}

impl Client {
    /// Creates the tunnel `name` with `secret`, or adopts the live tunnel of that name
    /// when the create says it exists (1013) or its answer was lost. Lists follow every
    /// page and skip deleted tunnels.
    pub async fn ensure_tunnel(
        &self,
        name: &str,
        config_src: ConfigSrc,
        secret: &Secret,
    ) -> Result<EnsuredTunnel, Error> {
        let failed = match self.create_tunnel(name, config_src, Some(secret)).await {
            Ok(created) => {
                return Ok(EnsuredTunnel {
                    tunnel: created.tunnel,
                    token: created.token,
                    adopted: false,
                });
            }
            Err(e) if e.is_conflict() || e.answer_maybe_lost() => e,
            Err(e) => return Err(e),
        };
        let live = self.list_tunnels(Some(name)).await?;
        match live
            .into_iter()
            .find(|t| t.name == name && t.deleted_at.is_none())
        {
            Some(tunnel) => Ok(EnsuredTunnel {
                tunnel,
                token: None,
                adopted: true,
            }),
            None => Err(failed),
        }
    }

    /// Routes `hostname` to the tunnel with a proxied CNAME carrying `comment`: created;
    /// adopted when a CNAME already points at the tunnel (a lost answer); updated when
    /// a CNAME carries `comment` (the caller's, pointing elsewhere). Anything else at
    /// the name is [`RouteError::Foreign`]. Returns the record's id.
    pub async fn route_cname(
        &self,
        zone_id: &str,
        hostname: &str,
        tunnel_id: &str,
        comment: &str,
    ) -> Result<String, RouteError> {
        let record = NewDnsRecord::tunnel_cname(hostname, tunnel_id, Some(comment.to_owned()));
        let failed = match self.create_dns_record(zone_id, &record).await {
            Ok(r) => return Ok(r.id),
            // 81053/81057: a record is there (ours from a lost answer, or another's).
            Err(e) if e.is_conflict() || e.answer_maybe_lost() => e,
            Err(e) => return Err(e.into()),
        };
        let cnames = self.list_dns_records(zone_id, "CNAME", hostname).await?;
        if let Some(r) = cnames.iter().find(|r| r.content == record.content) {
            return Ok(r.id.clone());
        }
        if let Some(r) = cnames
            .iter()
            .find(|r| r.comment.as_deref() == Some(comment))
        {
            return Ok(self.update_dns_record(zone_id, &r.id, &record).await?.id);
        }
        if !failed.is_conflict() {
            return Err(failed.into());
        }
        let mut others: Vec<DnsRecord> = cnames;
        for kind in ["A", "AAAA"] {
            if others.is_empty() {
                others = self.list_dns_records(zone_id, kind, hostname).await?;
            }
        }
        match others.into_iter().next() {
            Some(r) => Err(RouteError::Foreign {
                name: hostname.to_owned(),
                record_type: r.record_type,
                content: r.content,
                id: r.id,
            }),
            None => Err(failed.into()),
        }
    }

    /// Creates the bucket, or confirms that a bucket of that name is there (R2's names
    /// are per account, so a 409 is a bucket of this account).
    pub async fn ensure_bucket(
        &self,
        name: &str,
        location_hint: Option<&str>,
    ) -> Result<(), Error> {
        match self.create_bucket(name, location_hint).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_conflict() => self.get_bucket(name).await.map(|_| ()),
            Err(e) => Err(e),
        }
    }

    /// The id of the live token named `name`, if any (Cloudflare has no name filter:
    /// every page is read).
    pub async fn token_by_name(&self, name: &str) -> Result<Option<String>, Error> {
        Ok(self
            .list_tokens()
            .await?
            .into_iter()
            .find(|t| t.name == name && t.status.as_deref() != Some("expired"))
            .map(|t| t.id))
    }
}
