//! Raw HTTP through hyper into the control service's real handler
//! (`hubkeeper_control::api::routes::handle`): bearer auth, routing, the status query,
//! the strict JSON bodies, then the real service on a real SQLite store, with an
//! in-memory provisioner that always succeeds. Properties: no panic, every connection
//! answers and ends, no 5xx, a clean request with a body over 64 KiB is refused with 413.

use super::socket_api::check;
use super::{Target, runtime};
use crate::craft::U;
use crate::http::{Fields, request, serve_bytes};
use hubkeeper_control::api::routes::{MAX_BODY, handle};
use hubkeeper_control::api::{Limits, State};
use hubkeeper_control::provision::{
    BucketDeletion, Expiry, Ingress, ProvisionError, Provisioner, R2Key, Tunnel,
};
use hubkeeper_control::service::Service;
use hubkeeper_control::store::sqlite::SqliteStore;
use hubkeeper_proto::Secret;
use hubkeeper_proto::control as api;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;

const TOKEN: &str = "fuzz-control-token";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const HUBS: &[&str] = &[
    r#""hub-1""#,
    r#""hub-2""#,
    r#""hub-1 ""#,
    r#""HUB-1""#,
    r#""""#,
    "1",
];
const ENROLL: Fields = &[
    (
        "account_id",
        &[
            r#""acct""#,
            r#""acct-2""#,
            r#""""#,
            r#""\u001b[2J""#,
            "null",
        ],
    ),
    ("hub_id", HUBS),
    ("license_id", &[r#""lic""#, r#""""#, "7"]),
    (
        "requested_subdomain",
        &[
            r#""acme""#,
            r#""ACME""#,
            r#""a.b""#,
            r#""-x""#,
            r#""""#,
            "null",
        ],
    ),
];
const HUB: Fields = &[("hub_id", HUBS)];
const DISABLE: Fields = &[
    ("hub_id", HUBS),
    ("delete_bucket", &["true", "false", "0", r#""true""#]),
    (
        "retention_days",
        &[
            "0",
            "1",
            "30",
            "3650",
            "3651",
            "4294967295",
            "4294967296",
            "-1",
            "1.5",
        ],
    ),
];
const ROUTES: &[(&str, Fields)] = &[
    (api::ENROLL, ENROLL),
    (api::STATUS, &[]),
    (api::ROTATE_KEYS, HUB),
    (api::DISABLE, DISABLE),
    ("/", &[]),
    ("/v1", HUB),
];

pub struct ControlApi {
    rt: Runtime,
    state: Arc<State<SqliteStore, Fake>>,
    _dir: tempfile::TempDir,
}

impl ControlApi {
    pub fn new() -> Result<Self, String> {
        let rt = runtime()?;
        // tmpfs when there is one: the store syncs every write.
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .map_err(|e| format!("cannot make a temporary dir: {e}"))?;
        let store = SqliteStore::open(&dir.path().join("control.db"))
            .map_err(|e| format!("cannot open the store: {e}"))?;
        let service = Service::new(store, Fake, "hubs.test".into());
        let limits = Limits {
            max_connections: 16,
            request_timeout: REQUEST_TIMEOUT,
        };
        let state = Arc::new(State::new(service, Secret::new(TOKEN), limits));
        Ok(Self {
            rt,
            state,
            _dir: dir,
        })
    }
}

impl Target for ControlApi {
    fn generate(&self, u: U) -> arbitrary::Result<Vec<u8>> {
        let auth = match u.int_in_range(0..=9u8)? {
            0 => vec![],
            1 => vec![format!("Authorization: Basic {TOKEN}")],
            2 => vec![format!("Authorization: bearer   {TOKEN} ")],
            3 => vec![format!("Authorization: Bearer {TOKEN}x")],
            _ => vec![format!("Authorization: Bearer {TOKEN}")],
        };
        let mut bytes = vec![0];
        for i in 0..u.int_in_range(1..=3u8)? {
            let r = request(u, ROUTES, MAX_BODY, &auth)?;
            if i == 0 {
                // Only an authorised POST to a route with a body reads it.
                let authorised = auth
                    .first()
                    .is_some_and(|a| !a.ends_with('x') && !a.contains("Basic"));
                let reads_body = r.method == "POST"
                    && [api::ENROLL, api::ROTATE_KEYS, api::DISABLE].contains(&r.route.as_str());
                bytes[0] = u8::from(r.over_cap && authorised && reads_body);
            }
            bytes.extend_from_slice(&r.bytes);
        }
        Ok(bytes)
    }

    fn run(&mut self, input: &[u8]) -> Result<(), String> {
        let [over_cap, raw @ ..] = input else {
            return Ok(());
        };
        let state = self.state.clone();
        let out = self
            .rt
            .block_on(serve_bytes(raw, REQUEST_TIMEOUT, move |req| {
                handle(req, state.clone())
            }));
        check(&out, *over_cap == 1)
    }
}

/// A provider that has everything: the API, not the provider, is under test.
#[derive(Debug)]
pub struct Fake;

impl Provisioner for Fake {
    fn r2_endpoint(&self) -> &str {
        "https://r2.test"
    }
    async fn ensure_tunnel(&self, name: &str) -> Result<Tunnel, ProvisionError> {
        Ok(Tunnel {
            id: format!("tid-{name}"),
            token: Secret::new("tok"),
        })
    }
    async fn set_ingress(&self, _tunnel: &str, _ingress: &Ingress) -> Result<(), ProvisionError> {
        Ok(())
    }
    async fn route_hostname(
        &self,
        host: &str,
        _tunnel: &str,
        _owner: &str,
    ) -> Result<String, ProvisionError> {
        Ok(format!("rec-{host}"))
    }
    async fn ensure_bucket(&self, _bucket: &str, _e: &[Expiry]) -> Result<(), ProvisionError> {
        Ok(())
    }
    async fn set_expiries(&self, _bucket: &str, _e: &[Expiry]) -> Result<(), ProvisionError> {
        Ok(())
    }
    async fn mint_key(
        &self,
        name: &str,
        _bucket: &str,
        _maybe_exists: bool,
    ) -> Result<R2Key, ProvisionError> {
        Ok(R2Key {
            id: format!("kid-{name}"),
            access_key_id: "AK".into(),
            secret_access_key: Secret::new("SK"),
        })
    }
    async fn roll_key(&self, key_id: &str, _bucket: &str) -> Result<R2Key, ProvisionError> {
        Ok(R2Key {
            id: format!("{key_id}-r"),
            access_key_id: "AK2".into(),
            secret_access_key: Secret::new("SK2"),
        })
    }
    async fn revoke_key(&self, _key_id: &str) -> Result<(), ProvisionError> {
        Ok(())
    }
    async fn delete_connections(&self, _tunnel: &str) -> Result<(), ProvisionError> {
        Ok(())
    }
    async fn delete_tunnel(&self, _tunnel: &str) -> Result<(), ProvisionError> {
        Ok(())
    }
    async fn delete_dns_record(&self, _record: &str) -> Result<(), ProvisionError> {
        Ok(())
    }
    async fn delete_prefix(&self, _bucket: &str, _prefix: &str) -> Result<(), ProvisionError> {
        Ok(())
    }
    async fn delete_bucket(&self, _bucket: &str) -> Result<BucketDeletion, ProvisionError> {
        Ok(BucketDeletion::Deleted)
    }
    async fn tunnel_statuses(&self) -> Result<Option<Vec<(String, String)>>, ProvisionError> {
        Ok(None)
    }
}
