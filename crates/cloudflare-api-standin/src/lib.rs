//! A stand-in for the Cloudflare API v4, for tests and the local stack: **not
//! Cloudflare**. It keeps what hubkeeper's code depends on — the envelope, bearer
//! tokens, tunnels, zones and DNS records, R2 buckets and their lifecycle, account
//! tokens — with Cloudflare's status codes and error codes, state in memory (and, with a
//! state directory, in `state.json` so a restart keeps it), and faults a test can switch
//! on at run time. It owns the listener, the account state and the fault switches.
//!
//! Start it in-process with [`Standin::start`]; the `cloudflare-api-standin` binary
//! wraps the same thing. Test hooks live under `/__standin/`, a path Cloudflare never
//! uses, and on [`Standin`].

mod api;
mod state;

pub use state::{ApiError, PERMISSION_GROUPS, sha256_hex};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Where the S3 side of R2 lives: buckets the stand-in creates or deletes are created
/// or deleted there too (path-style, region `auto`), with these admin keys.
#[derive(Clone)]
pub struct S3Store {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// How to start the stand-in.
#[derive(Debug, Clone)]
pub struct Options {
    /// Default 127.0.0.1:0 (a free port).
    pub listen: SocketAddr,
    pub account_id: String,
    /// Bearer tokens accepted for every call (the "master" tokens).
    pub master_tokens: Vec<String>,
    /// DNS zones the account has, e.g. `example.com`.
    pub zones: Vec<String>,
    /// With it, the state lives in `state.json` there and survives a restart.
    pub state_dir: Option<PathBuf>,
    /// `per_page` when a list call names none: small, so clients must paginate.
    pub default_per_page: usize,
    pub s3: Option<S3Store>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            account_id: "0123456789abcdef0123456789abcdef".into(),
            master_tokens: vec!["standin-master-token".into()],
            zones: vec!["example.com".into()],
            state_dir: None,
            default_per_page: 2,
            s3: None,
        }
    }
}

/// Faults, switchable at run time (`PUT /__standin/faults` with this as JSON, or
/// [`Standin::set_faults`]). Unset fields are off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Refuse connections: the listener is closed (and open connections dropped) for
    /// this long, then bound again on the same address. Over HTTP this is the only
    /// way, as a refused stand-in cannot be switched back; the library also has
    /// [`Standin::set_down`].
    pub down_ms: Option<u64>,
    /// Accept calls and never answer them (until switched off).
    pub hang: bool,
    /// Answer with this HTTP status (500–599) and an error envelope, doing nothing.
    pub status_5xx: Option<u16>,
    /// Answer 429 with `retry-after` of this many seconds, doing nothing.
    pub rate_limit_secs: Option<u64>,
    /// Answer 200 with a body that is not JSON, doing nothing.
    pub garbage: bool,
    /// Wait this long before every API call.
    pub latency_ms: u64,
    /// Do the call, then drop the connection without an answer.
    pub lose_answer: bool,
    /// Answer 403 naming this permission as missing, doing nothing.
    pub missing_permission: Option<String>,
    /// Only calls whose `METHOD /template` (as in the call counter) is this one.
    pub only: Option<String>,
    /// Only the next this many matching calls; then the faults switch themselves off
    /// (latency included).
    pub count: Option<u64>,
}

/// A minted R2 key pair: the token's id and the sha256-hex of its value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintedKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub token_name: String,
}

impl std::fmt::Debug for MintedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedKey")
            .field("access_key_id", &self.access_key_id)
            .field("token_name", &self.token_name)
            .finish_non_exhaustive()
    }
}

/// One R2 call and the `cf-r2-jurisdiction` header it carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JurisdictionCall {
    pub call: String,
    pub jurisdiction: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the state file {path}: {detail}; move it away to start afresh")]
    State { path: PathBuf, detail: String },
    #[error("cannot use the S3 store: {0}")]
    S3(String),
}

/// Everything a call can touch. One lock, never held across an `.await`: each call
/// takes it, does its in-memory step and lets go (S3 calls happen outside it).
pub(crate) struct Shared {
    pub opts: Options,
    pub account: Mutex<state::Account>,
    pub calls: Mutex<BTreeMap<String, u64>>,
    /// Every call's template in the order the calls came (bounded, oldest dropped).
    pub call_log: Mutex<std::collections::VecDeque<String>>,
    pub jurisdictions: Mutex<Vec<JurisdictionCall>>,
    pub faults: watch::Sender<Faults>,
    pub down: watch::Sender<bool>,
    /// Bumped by every [`Standin::set_faults`]: hanging calls wait for it to move.
    pub hang_generation: Mutex<u64>,
    /// One writer of the state file at a time, so an older snapshot never lands last.
    pub persist_lock: Mutex<()>,
    pub s3: Option<hubkeeper_s3::Client>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind: keep serving it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running stand-in; it stops when dropped.
pub struct Standin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Standin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Standin {
    /// Binds, loads the state file if there is one, and serves in a task of the
    /// current tokio runtime.
    pub async fn start(opts: Options) -> Result<Standin, StartError> {
        let mut account = match &opts.state_dir {
            Some(dir) => api::load_state(&dir.join(api::STATE_FILE))?,
            None => state::Account::default(),
        };
        for zone in &opts.zones {
            if !account.zones.iter().any(|z| &z.name == zone) {
                account.zones.push(state::Zone {
                    id: state::new_id(),
                    name: zone.clone(),
                });
            }
        }
        let s3 = match &opts.s3 {
            Some(store) => Some(api::s3_client(store, "standin-admin")?),
            None => None,
        };
        let listener =
            TcpListener::bind(opts.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: opts.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: opts.listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            opts,
            account: Mutex::new(account),
            calls: Mutex::new(BTreeMap::new()),
            call_log: Mutex::new(std::collections::VecDeque::new()),
            jurisdictions: Mutex::new(Vec::new()),
            faults: watch::Sender::new(Faults::default()),
            down: watch::Sender::new(false),
            hang_generation: Mutex::new(0),
            persist_lock: Mutex::new(()),
            s3,
        });
        api::persist(&shared);
        let task = tokio::spawn(api::accept_loop(listener, addr, shared.clone()));
        Ok(Standin { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API base, like `https://api.cloudflare.com/client/v4`.
    pub fn url(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    pub fn account_id(&self) -> &str {
        &self.shared.opts.account_id
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults.borrow().clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        api::set_faults(&self.shared, faults);
    }

    /// Refuse connections (listener closed, open connections dropped) until called
    /// with `false`.
    pub fn set_down(&self, down: bool) {
        self.shared.down.send_replace(down);
    }

    /// Calls so far by `METHOD /template`, e.g. `POST /accounts/{acct}/cfd_tunnel`.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.calls).clone()
    }

    pub fn reset_calls(&self) {
        lock(&self.shared.calls).clear();
        lock(&self.shared.call_log).clear();
    }

    /// The calls' templates in the order they came (the last 10,000).
    pub fn call_log(&self) -> Vec<String> {
        lock(&self.shared.call_log).iter().cloned().collect()
    }

    /// Every R2 call so far with its `cf-r2-jurisdiction` header.
    pub fn jurisdictions(&self) -> Vec<JurisdictionCall> {
        lock(&self.shared.jurisdictions).clone()
    }

    /// What a running cloudflared would do: give the tunnel live connections (or
    /// take them away). False when there is no such live tunnel.
    pub fn set_connected(&self, tunnel_id: &str, connected: bool) -> bool {
        api::set_connected(&self.shared, tunnel_id, connected)
    }

    /// Without an S3 store: make a bucket count as holding objects (delete → 10008).
    pub fn set_bucket_not_empty(&self, jurisdiction: &str, name: &str, not_empty: bool) -> bool {
        let ok = lock(&self.shared.account)
            .bucket_mut(jurisdiction, name)
            .map(|b| b.not_empty = not_empty)
            .is_ok();
        api::persist(&self.shared);
        ok
    }

    /// The S3 key pairs of every active token: what an S3 store would have to accept
    /// for the minted keys to work (rclone takes its keys at start, so a harness
    /// restarts it with these).
    pub fn minted_keys(&self) -> Vec<MintedKey> {
        api::minted_keys(&self.shared)
    }
}
