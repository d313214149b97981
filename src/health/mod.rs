//! Health checks (spec §7, §9): DNS (does the hostname resolve?), R2 (write, read
//! back, delete a small object) and the public path (a request through Cloudflare's
//! edge), every `health.interval` and on demand (`POST /v1/check`). One task owns them:
//! runs never overlap, and they happen off the status path, so a hung store costs a
//! check, never a `GET /v1/status`. The tunnel's own check comes from the supervisor's
//! probes; the public check's results also go to the supervisor, which decides on a
//! restart (it alone knows whether `/ready` is green).

pub mod dns;
pub mod public;
pub mod r2;

use crate::config::DnsResolver;
use crate::status::{Check, Component, Problem, StatusError};
use hubkeeper_base::publish::publish;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long fresh keys may be refused before that counts as a failure (R2 documents
/// "up to a minute" to propagate).
pub const KEY_PROPAGATION: Duration = Duration::from_secs(60);

/// What to check. `None` while there is nothing to check (disabled, not enrolled).
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    pub hostname: String,
    pub dns: DnsResolver,
    pub interval: Duration,
    pub r2: r2::Target,
    /// Objects are written under this prefix (`hubkeeper-health/<hub_id>/`).
    pub prefix: String,
    pub keys_since: Option<SystemTime>,
    /// The public-path check's target, or why the URL could not be built.
    pub public: Result<public::Target, String>,
}

/// One public-path result, as the supervisor needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicReport {
    /// Counts up with every run, so the same result is never counted twice.
    pub run: u64,
    /// When the request was sent: results from before a child was ready are not its.
    pub sent: tokio::time::Instant,
    pub ok: bool,
    /// A failure a cloudflared restart may fix.
    pub tunnel_at_fault: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthView {
    pub dns: Option<Check>,
    pub r2: Option<Check>,
    /// When the last complete run ended.
    pub last_run: Option<SystemTime>,
    pub errors: Vec<StatusError>,
    /// R2 refused fresh keys within the propagation window: not known yet.
    pub r2_pending: bool,
    /// The access key id the last R2 check used: a key rotation is done when a check
    /// with the new key has run.
    pub r2_key_id: Option<String>,
    pub public: Option<Check>,
    /// Kept apart from `errors`: the status shows it only when the check ran while the
    /// tunnel was up (a failure while cloudflared restarts says nothing new).
    pub public_error: Option<StatusError>,
    pub public_report: Option<PublicReport>,
    /// When the public check's request was sent.
    pub public_sent: Option<SystemTime>,
    /// How long each check of the last run took, by check name (`dns`, `r2`, `public`).
    pub durations: Vec<(&'static str, Duration)>,
}

#[derive(Debug, Clone)]
pub struct Health {
    targets: watch::Sender<Option<Arc<Targets>>>,
    now: mpsc::Sender<oneshot::Sender<()>>,
}

impl Health {
    pub fn start(
        shutdown: CancellationToken,
    ) -> (Health, watch::Receiver<HealthView>, JoinHandle<()>) {
        let (targets_tx, targets_rx) = watch::channel(None);
        let (now_tx, now_rx) = mpsc::channel(16);
        let (view_tx, view_rx) = watch::channel(HealthView::default());
        let actor = Actor {
            targets: targets_rx,
            now: now_rx,
            view: view_tx,
            shutdown,
            runs: 0,
        };
        (
            Health {
                targets: targets_tx,
                now: now_tx,
            },
            view_rx,
            tokio::spawn(actor.run()),
        )
    }

    /// Sets what to check (only a real change restarts the schedule).
    pub fn set_targets(&self, t: Option<Targets>) {
        self.targets.send_if_modified(|cur| {
            if cur.as_deref() == t.as_ref() {
                false
            } else {
                *cur = t.map(Arc::new);
                true
            }
        });
    }

    /// Runs every check now; `done` fires when the run (or the one in progress and
    /// then a fresh one) has finished.
    pub fn check_now(&self, done: oneshot::Sender<()>) {
        if let Err(mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d)) =
            self.now.try_send(done)
        {
            let _ = d.send(());
        }
    }
}

struct Actor {
    targets: watch::Receiver<Option<Arc<Targets>>>,
    now: mpsc::Receiver<oneshot::Sender<()>>,
    view: watch::Sender<HealthView>,
    shutdown: CancellationToken,
    runs: u64,
}

impl Actor {
    async fn run(mut self) {
        let mut next: Option<tokio::time::Instant> = None;
        loop {
            let targets = self.targets.borrow().clone();
            if targets.is_none() {
                next = None;
                publish(&self.view, HealthView::default());
            } else if next.is_none() {
                // New targets: check at once.
                next = Some(tokio::time::Instant::now());
            }
            let mut waiters = Vec::new();
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                r = self.targets.changed() => {
                    if r.is_err() { return; }
                    next = None;
                    continue;
                }
                Some(w) = self.now.recv() => waiters.push(w),
                () = sleep_until(next), if next.is_some() => {}
            }
            // Requests that arrived meanwhile share this run.
            while let Ok(w) = self.now.try_recv() {
                waiters.push(w);
            }
            if let Some(t) = targets {
                // A check can take its full timeouts; shutdown must not wait for it.
                self.runs += 1;
                let view = tokio::select! {
                    v = run_checks(&t, self.runs) => v,
                    () = self.shutdown.cancelled() => return,
                };
                publish(&self.view, view);
                next = Some(tokio::time::Instant::now() + t.interval);
            }
            for w in waiters {
                let _ = w.send(());
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One run: DNS, R2 and the public path at the same time, each bounded by its own
/// timeouts. `run` numbers the run.
pub async fn run_checks(t: &Targets, run: u64) -> HealthView {
    let dns_timeout = (t.interval / 2).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let r2_limits = r2::Limits {
        connect: Duration::from_secs(5).min(t.interval),
        operation: Duration::from_secs(20).min(t.interval),
        attempts: 2,
    };
    let dns = async {
        let started = Instant::now();
        let r = dns::resolve(&t.hostname, t.dns, dns_timeout).await;
        (r, started.elapsed())
    };
    let r2 = async {
        let started = Instant::now();
        let r = match r2::client(&t.r2, r2_limits) {
            Ok(client) => r2::check(&client, &t.r2, &t.prefix).await,
            Err(p) => Err(p),
        };
        (r, started.elapsed())
    };
    let public_timeout =
        (t.interval / 2).clamp(Duration::from_millis(200), Duration::from_secs(10));
    let public_sent = SystemTime::now();
    let public = async {
        let sent = tokio::time::Instant::now();
        let r = match &t.public {
            Ok(target) => Some(public::check(target, public_timeout).await),
            Err(_) => None,
        };
        (r, sent, sent.elapsed())
    };
    let ((dns, dns_took), (r2, r2_took), (public, public_instant, public_took)) =
        tokio::join!(dns, r2, public);
    let at = SystemTime::now();
    let mut view = HealthView {
        last_run: Some(at),
        r2_key_id: Some(t.r2.access_key_id.clone()),
        durations: vec![("dns", dns_took), ("r2", r2_took), ("public", public_took)],
        ..HealthView::default()
    };
    let (check, report) = public_result(t, public, at);
    view.public = Some(check.0);
    view.public_sent = Some(public_sent);
    view.public_error = check.1;
    view.public_report = Some(PublicReport {
        run,
        sent: public_instant,
        ..report
    });
    view.dns = Some(match dns {
        Ok(ips) => {
            let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
            Check {
                ok: true,
                at,
                detail: format!(
                    "{} resolves to {} ({} ms)",
                    t.hostname,
                    list.join(", "),
                    dns_took.as_millis()
                ),
            }
        }
        Err(f) => failed(&mut view, Component::Dns, f, at),
    });
    view.r2 = Some(match r2 {
        Ok(()) => Check {
            ok: true,
            at,
            detail: format!(
                "wrote, read back and deleted a test object in bucket {} ({} ms)",
                t.r2.bucket,
                r2_took.as_millis()
            ),
        },
        Err(f)
            if r2::may_be_propagation(&f)
                && t.keys_since.is_some_and(|s| {
                    at.duration_since(s).unwrap_or_default() < KEY_PROPAGATION
                }) =>
        {
            view.r2_pending = true;
            Check {
                ok: false,
                at,
                detail: format!(
                    "new R2 keys are not active yet (R2 takes up to a minute): {}",
                    f.message
                ),
            }
        }
        Err(f) => failed(&mut view, Component::R2, f, at),
    });
    if let Some(e) = view.errors.first().or(view.public_error.as_ref()) {
        tracing::warn!("health check failed: {}", e.message);
    }
    view
}

type PublicCheck = (Check, Option<StatusError>);

/// The public check's result for `checks.public`, `errors[]` (component `tunnel`: the
/// pinned components have no `public`) and the supervisor.
fn public_result(
    t: &Targets,
    outcome: Option<public::Outcome>,
    at: SystemTime,
) -> (PublicCheck, PublicReport) {
    let report = |ok: bool, tunnel_at_fault: bool, detail: &str| PublicReport {
        run: 0,
        sent: tokio::time::Instant::now(),
        ok,
        tunnel_at_fault,
        detail: detail.to_owned(),
    };
    let target = match (&t.public, outcome) {
        (Ok(target), Some(outcome)) => Ok((target, outcome)),
        (Err(why), _) => Err(why.clone()),
        (Ok(_), None) => Err("the public-path check did not run".to_owned()),
    };
    match target {
        Ok((target, public::Outcome::Works { status })) => {
            let detail = format!("{} answered {status} through the public path", target.url);
            let r = report(true, false, &detail);
            (
                (
                    Check {
                        ok: true,
                        at,
                        detail,
                    },
                    None,
                ),
                r,
            )
        }
        Ok((_, public::Outcome::Failed(f))) => {
            let error = f.problem.error(Component::Tunnel);
            let r = report(false, f.tunnel_at_fault, &f.problem.message);
            let check = Check {
                ok: false,
                at,
                detail: f.problem.message,
            };
            ((check, Some(error)), r)
        }
        Err(why) => {
            let error = StatusError::new(
                Component::Config,
                "public_url_invalid",
                why.clone(),
                "fix health.public_url: a URL like \"https://<hostname>/\"",
            );
            let r = report(false, false, &why);
            (
                (
                    Check {
                        ok: false,
                        at,
                        detail: why,
                    },
                    Some(error),
                ),
                r,
            )
        }
    }
}

/// A failed check: its error for `errors[]`, and its result for `checks`.
fn failed(view: &mut HealthView, component: Component, p: Problem, at: SystemTime) -> Check {
    view.errors.push(p.error(component));
    Check {
        ok: false,
        at,
        detail: p.message,
    }
}
