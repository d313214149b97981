//! Health checks (spec §7, §9): DNS (does the hostname resolve?) and R2 (write, read
//! back, delete a small object), every `health.interval` and on demand (`POST
//! /v1/check`). One task owns them: runs never overlap, and they happen off the status
//! path, so a hung store costs a check, never a `GET /v1/status`. The tunnel's own
//! check comes from the supervisor's probes.

pub mod dns;
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
                let view = tokio::select! {
                    v = run_checks(&t) => v,
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

/// One run: DNS and R2 at the same time, each bounded by its own timeouts.
pub async fn run_checks(t: &Targets) -> HealthView {
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
    let ((dns, dns_took), (r2, r2_took)) = tokio::join!(dns, r2);
    let at = SystemTime::now();
    let mut view = HealthView {
        last_run: Some(at),
        r2_key_id: Some(t.r2.access_key_id.clone()),
        ..HealthView::default()
    };
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
    if let Some(e) = view.errors.first() {
        tracing::warn!("health check failed: {}", e.message);
    }
    view
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
