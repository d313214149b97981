//! The daemon: one `select!` loop that owns the running config and the status, and
//! reacts to signals, config-file changes, API commands and the watchdog tick.
//!
//! Components publish what they know; this loop composes it into the one status
//! snapshot the API serves, and tells systemd whenever the summary changes.

pub mod commands;

use crate::api::ApiError;
use crate::api::listener::{self, BindError};
use crate::api::peer::PostPolicy;
use crate::api::server::{self, Context, Limits};
use crate::backup::{BackupTargets, BackupView, Backups, RunNow};
use crate::config::watch::ConfigWatcher;
use crate::config::{self, Config, ConfigError, LoadedConfig, Plan};
use crate::daemon::commands::{Command, CommandRequest, Outcome, Reply};
use crate::health::{Health, HealthView, Targets};
use crate::modes::managed::{Managed, ManagedView, RotateError};
use crate::secrets::{SecretsStore, StoreError};
use crate::status::compose::{Inputs, compose};
use crate::status::metrics::Metrics;
use crate::status::{self, Component, Snapshot, Status, StatusError, StatusTx};
use crate::tunnel::supervisor::{Supervisor, TunnelView};
use hubkeeper_base::logging::LogControl;
use hubkeeper_base::systemd;
use hubkeeper_base::task::{ActorDied, Actors};
use hyper::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Time from the first file event to re-reading the config: editors write in several
/// steps, and one read should see them all.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(100);

/// When start-up's code pages are given back: after READY, the first enroll and the
/// first checks, so that what stays resident is what the running daemon uses.
const RELEASE_STARTUP_PAGES_AFTER: Duration = Duration::from_secs(20);

/// How long a rotation's answer waits for the profile and an R2 check with the new
/// keys: the check's own timeouts fit well inside it.
const ROTATION_SETTLE: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Secrets(#[from] StoreError),
    #[error(transparent)]
    Socket(#[from] BindError),
    #[error("cannot start: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    ActorDied(#[from] ActorDied),
}

/// Options for [`run`].
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Adjusts the log level on reload; `None` when logging is not ours (tests).
    pub logs: Option<LogControl>,
}

/// Runs the daemon until SIGTERM/SIGINT or until `shutdown` is cancelled.
pub async fn run(
    loaded: LoadedConfig,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let cfg = loaded.config.clone();
    // Watching starts before the socket answers: an edit made by anyone who saw the
    // daemon up must not be missed.
    let mut watcher = start_watcher(&loaded.path);
    let store = SecretsStore::open(&cfg.secrets_dir)?;
    let gid = listener::resolve_group(cfg.socket_group.as_deref())?;
    let (std_listener, socket_guard) = listener::bind(&cfg.socket, cfg.socket_mode.0, gid)?;
    let listener = tokio::net::UnixListener::from_std(std_listener)?;

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;

    let engines = CancellationToken::new();
    let (supervisor, tunnel_view, supervisor_task) = Supervisor::start();
    let loaded = Arc::new(loaded);
    let (backups, backup_view, backup_task) = Backups::start(store.clone(), engines.clone());
    let (managed, managed_view, managed_task) =
        Managed::start(loaded.clone(), store, supervisor.clone(), engines.clone());
    let (health, health_view, health_task) = Health::start(engines.clone());

    let mut d = Daemon {
        running: cfg.clone(),
        loaded,
        managed,
        managed_view,
        tunnel_view,
        health,
        health_view,
        supervisor,
        tunnel_was_running: false,
        backups,
        backup_view,
        pending: JoinSet::new(),
        config_errors: Vec::new(),
        restart_required: Vec::new(),
        metrics: Arc::new(Metrics::new()),
        logs: opts.logs,
        status_tx: watch::channel(Snapshot::new(Status::default())).0,
        last_summary: String::new(),
    };
    status::publish(&d.status_tx, d.compose());
    d.last_summary = d.status_tx.borrow().status.summary();

    let (cmd_tx, mut cmd_rx) = mpsc::channel::<CommandRequest>(16);
    let ctx = Arc::new(Context {
        status: d.status_tx.subscribe(),
        commands: cmd_tx,
        metrics: d.metrics.clone(),
        request_timeout: cfg.api.request_timeout.get(),
    });
    let policy = PostPolicy {
        daemon_uid: nix::unistd::geteuid().as_raw(),
        socket_gid: gid,
    };
    let limits = Limits {
        max_connections: cfg.api.max_connections as usize,
        request_timeout: cfg.api.request_timeout.get(),
    };
    let api_stop = CancellationToken::new();
    let mut actors = Actors::default();
    actors.add("managed-mode", managed_task);
    actors.add("tunnel supervisor", supervisor_task);
    actors.add("health", health_task);
    actors.add("backup", backup_task);
    actors.add(
        "socket API",
        tokio::spawn(server::run(listener, ctx, policy, limits, api_stop.clone())),
    );

    let summary = d.status_tx.borrow().status.summary();
    tracing::info!(
        socket = %cfg.socket.display(),
        config = %d.loaded.path.display(),
        version = status::VERSION,
        "hubkeeper started: {summary}"
    );
    systemd::ready(&summary);
    // Once start-up is over (the first enroll, health checks and probes included), its
    // code pages are given back; see hubkeeper_base::memory.
    let release = engines.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(RELEASE_STARTUP_PAGES_AFTER) => {}
            () = release.cancelled() => return,
        }
        let n = tokio::task::spawn_blocking(hubkeeper_base::memory::release_startup_pages)
            .await
            .unwrap_or(0);
        tracing::debug!(mappings = n, "start-up pages released");
    });

    let mut reload_at: Option<Instant> = None;
    let mut watchdog = systemd::watchdog_interval().map(|every| {
        let mut i = tokio::time::interval(every);
        i.set_missed_tick_behavior(MissedTickBehavior::Delay);
        i
    });

    let mut died = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            // Each actor runs until shutdown: one that ends has failed, and a daemon
            // missing a part must not go on looking healthy. It stops (non-zero, so
            // systemd restarts it) and says which part died and how.
            d = actors.first_exit() => {
                tracing::error!("{d}; stopping so that the service manager restarts hubkeeper");
                died = Some(d);
                break;
            }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break }
            _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); break }
            _ = sighup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                reload_at = None;
                d.reload();
            }
            Some(()) = recv_event(&mut watcher) => {
                // The window opens at the first event of a burst and is not extended,
                // so a steady stream of events cannot postpone the reload forever.
                reload_at.get_or_insert(Instant::now() + RELOAD_DEBOUNCE);
            }
            () = sleep_until(reload_at), if reload_at.is_some() => {
                reload_at = None;
                tracing::debug!("config directory changed: re-reading the config");
                d.reload();
                if !watcher.as_ref().is_some_and(|w| w.still_covers(&d.loaded.path)) {
                    watcher = start_watcher(&d.loaded.path);
                }
            }
            Some(req) = cmd_rx.recv() => d.command(req),
            Some(done) = d.pending.join_next() => {
                if let Ok((reply, result)) = done {
                    d.refresh();
                    d.reply(reply, result);
                }
            }
            Ok(()) = d.managed_view.changed() => {
                d.metrics.set_managed(&d.managed_view.borrow());
                d.update_targets();
                d.refresh();
            }
            Ok(()) = d.backup_view.changed() => {
                d.metrics.set_backup(&d.backup_view.borrow());
                d.refresh();
            }
            Ok(()) = d.health_view.changed() => {
                d.health_changed();
                d.refresh();
            }
            Ok(()) = d.tunnel_view.changed() => {
                d.tunnel_changed();
                d.refresh();
            }
            _ = tick(&mut watchdog) => systemd::watchdog(),
        }
    }

    systemd::stopping();
    // cloudflared gets its SIGTERM and grace period while the socket still answers
    // (state "stopping"); the socket goes last.
    engines.cancel();
    if let Some(mut managed_task) = actors.take("managed-mode") {
        loop {
            tokio::select! {
                _ = &mut managed_task => break,
                Ok(()) = d.tunnel_view.changed() => d.refresh(),
                _ = tick(&mut watchdog) => systemd::watchdog(),
            }
        }
    }
    drop(d.managed);
    drop(d.supervisor);
    for name in ["tunnel supervisor", "health", "backup"] {
        if let Some(t) = actors.take(name) {
            let _ = t.await;
        }
    }
    api_stop.cancel();
    if let Some(api) = actors.take("socket API") {
        let _ = api.await;
    }
    drop(socket_guard);
    if let Some(d) = died {
        return Err(d.into());
    }
    tracing::info!("hubkeeper stopped");
    Ok(())
}

struct Daemon {
    /// The config in force (the last good one).
    loaded: Arc<LoadedConfig>,
    managed: Managed,
    managed_view: watch::Receiver<ManagedView>,
    tunnel_view: watch::Receiver<TunnelView>,
    health: Health,
    health_view: watch::Receiver<HealthView>,
    /// Public-path results go to the supervisor, which alone knows whether `/ready`
    /// was green when they failed.
    supervisor: Supervisor,
    /// Whether cloudflared was running when the tunnel view last changed: a fresh
    /// connection gets a fresh public-path check at once.
    tunnel_was_running: bool,
    backups: Backups,
    backup_view: watch::Receiver<BackupView>,
    /// API requests waiting on another component (rotation, a health-check run).
    pending: JoinSet<(Reply, Result<StatusCode, ApiError>)>,
    /// The settings the process started with; socket and secrets_dir need a restart.
    running: Config,
    /// Problems of a refused new config (component `config`).
    config_errors: Vec<StatusError>,
    /// Changes that were read but need a restart to take effect.
    restart_required: Vec<StatusError>,
    metrics: Arc<Metrics>,
    logs: Option<LogControl>,
    status_tx: StatusTx,
    last_summary: String,
}

impl Daemon {
    /// The status as it follows from what the components published.
    fn compose(&self) -> Status {
        let mut config_errors = self.config_errors.clone();
        config_errors.extend(self.restart_required.iter().cloned());
        compose(&Inputs {
            plan: &self.loaded.plan,
            config_errors: &config_errors,
            managed: &self.managed_view.borrow(),
            tunnel: &self.tunnel_view.borrow(),
            health: &self.health_view.borrow(),
            backup: &self.backup_view.borrow(),
        })
    }

    fn health_changed(&self) {
        let view = self.health_view.borrow();
        self.metrics.set_checks(&view);
        if let Some(r) = &view.public_report {
            self.supervisor.public_result(r.clone());
        }
    }

    fn tunnel_changed(&mut self) {
        let view = self.tunnel_view.borrow();
        self.metrics.set_tunnel(&view);
        let running = view.status.state == crate::status::TunnelState::Running;
        drop(view);
        if running && !self.tunnel_was_running {
            // The last public-path result predates this connection.
            let (tx, _) = oneshot::channel();
            self.health.check_now(tx);
        }
        self.tunnel_was_running = running;
    }

    /// Publishes the composed status; logs and tells systemd when the summary changed.
    fn refresh(&mut self) {
        if status::publish(&self.status_tx, self.compose()) {
            let summary = self.status_tx.borrow().status.summary();
            if summary != self.last_summary {
                tracing::info!("status: {summary}");
                systemd::status(&summary);
                self.last_summary = summary;
            }
        }
    }

    fn reload(&mut self) {
        systemd::reloading();
        match config::load(&self.loaded.path) {
            Ok(new) if new == *self.loaded => {
                self.metrics.count_reload("unchanged");
                if !self.config_errors.is_empty() {
                    tracing::info!("the config file is valid again; errors cleared");
                }
                self.config_errors.clear();
            }
            Ok(new) => {
                self.restart_required = restart_required(&self.running, &new.config);
                for e in &self.restart_required {
                    tracing::warn!("{}", e.message);
                }
                if let Some(l) = &self.logs {
                    l.set_level(new.config.log_level);
                }
                self.loaded = Arc::new(new);
                self.managed.reconfigure(self.loaded.clone());
                self.update_targets();
                self.config_errors.clear();
                self.metrics.count_reload("applied");
                tracing::info!("config reloaded");
            }
            Err(e) => {
                self.metrics.count_reload("refused");
                tracing::error!(
                    "the new config is invalid and was not applied; the last good config stays in force:"
                );
                for line in e.lines() {
                    tracing::error!("{line}");
                }
                self.config_errors = config_status_errors(&e);
            }
        }
        self.refresh();
        systemd::ready(&self.status_tx.borrow().status.summary());
    }

    fn command(&mut self, req: CommandRequest) {
        let result = match req.command {
            Command::Check => {
                let (tx, rx) = oneshot::channel();
                self.health.check_now(tx);
                self.pending.spawn(async move {
                    let _ = rx.await;
                    (req.reply, Ok(StatusCode::OK))
                });
                return;
            }
            Command::RotateKeys => match self.loaded.plan {
                Plan::Disabled(_) => Err(ApiError::conflict(
                    "disabled",
                    "hubkeeper is disabled: there are no keys to rotate",
                )),
                Plan::SelfManaged(_) => Err(ApiError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "not_available",
                    "rotating keys through hubkeeper needs managed mode",
                )),
                Plan::Managed(_) => return self.rotate_keys(req.reply),
            },
            Command::Backup => {
                let (tx, rx) = oneshot::channel();
                self.backups.run_now(tx);
                self.pending.spawn(async move {
                    let answer = match rx.await.unwrap_or(RunNow::Unavailable) {
                        RunNow::Started => Ok(StatusCode::ACCEPTED),
                        RunNow::AlreadyRunning => Err(ApiError::conflict("backup_running", "a backup is already running")),
                        RunNow::Unavailable => Err(ApiError::conflict(
                            "backups_disabled",
                            "backups are disabled (enabled = false, backup.enabled = false, or not enrolled yet)",
                        )),
                    };
                    (req.reply, answer)
                });
                return;
            }
        };
        self.reply(req.reply, result);
    }

    /// Rotates through the managed engine and answers when the rotation is done (spec
    /// §9): the rustic profile holds the new key and an R2 check with it has run, so an
    /// admin's `rustic -P` right after the answer does not use dead keys. The check may
    /// say "pending" within R2's propagation minute; that is an answer too.
    fn rotate_keys(&mut self, reply: Reply) {
        let (tx, rx) = oneshot::channel();
        self.managed.rotate_keys(tx);
        let backups_wanted = self.loaded.config.backup.enabled;
        let mut health = self.health_view.clone();
        let mut backup = self.backup_view.clone();
        self.pending.spawn(async move {
            let key = match rx.await.unwrap_or(Err(RotateError::NotEnrolled)) {
                Ok(key) => key,
                Err(e) => return (reply, Err(rotation_error(e))),
            };
            let settled = async {
                let _ = health
                    .wait_for(|h| h.r2_key_id.as_deref() == Some(&key))
                    .await;
                if backups_wanted {
                    let _ = backup
                        .wait_for(|b| b.profile_key_id.as_deref() == Some(&key))
                        .await;
                }
            };
            if tokio::time::timeout(ROTATION_SETTLE, settled).await.is_err() {
                tracing::warn!(
                    "R2 keys rotated and stored, but the check with the new keys did not finish within {}s",
                    ROTATION_SETTLE.as_secs()
                );
            }
            (reply, Ok(StatusCode::OK))
        });
    }

    /// What the health checks and backups work on follows the enrollment and the
    /// config.
    fn update_targets(&self) {
        let cfg = &self.loaded.config;
        let view = self.managed_view.borrow();
        let enrolled = match (&self.loaded.plan, &view.enrollment) {
            (Plan::Managed(plan), Some(e)) => Some((&plan.hub_id, e)),
            _ => None,
        };
        let backups = match enrolled {
            Some((hub, e)) if cfg.backup.enabled => Some(BackupTargets {
                hub_id: hub.as_str().to_owned(),
                target: e.r2.clone(),
                config: Arc::new(cfg.clone()),
                enrolled_at: e.enrolled_at,
                keys_since: e.keys_since,
            }),
            _ => None,
        };
        self.backups.set_targets(backups);
        let targets = match enrolled {
            Some((hub, e)) => Some(Targets {
                hostname: e.hostname.clone(),
                dns: cfg.health.dns_resolver,
                interval: cfg.health.interval.get(),
                r2: e.r2.clone(),
                prefix: format!("hubkeeper-health/{hub}/"),
                keys_since: e.keys_since,
                public: cfg.health.public_url.expand(&e.hostname).map(|url| {
                    crate::health::public::Target {
                        url,
                        origin: cfg.tunnel.origin.0.clone(),
                        origin_no_tls_verify: cfg.tunnel.no_tls_verify,
                    }
                }),
            }),
            _ => None,
        };
        self.health.set_targets(targets);
    }

    fn reply(&self, reply: Reply, result: Result<StatusCode, ApiError>) {
        let result = result.map(|status| Outcome {
            status,
            snapshot: self.status_tx.borrow().clone(),
        });
        let _ = reply.send(result);
    }
}

fn rotation_error(e: RotateError) -> ApiError {
    match e {
        RotateError::NotEnrolled => ApiError::conflict("not_enrolled", e.to_string()),
        RotateError::Control(c) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "control_error",
            format!("{c}; the old keys stay in force"),
        ),
        RotateError::NotStarted(_) | RotateError::Store { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_failed",
            format!(
                "{e}: free space in secrets_dir (or make it writable again), then run `hubkeeper rotate-keys` again"
            ),
        ),
    }
}

fn config_status_errors(e: &ConfigError) -> Vec<StatusError> {
    e.lines()
        .into_iter()
        .map(|line| {
            StatusError::new(
                Component::Config,
                "config_invalid",
                line,
                "fix the config file (hubkeeper check-config shows every problem) and save it; the last good config stays in force until then",
            )
        })
        .collect()
}

/// Settings the running process cannot change without a restart.
fn restart_required(running: &Config, new: &Config) -> Vec<StatusError> {
    let mut out = Vec::new();
    let mut check = |key: &str, changed: bool| {
        if changed {
            out.push(StatusError::new(
                Component::Config,
                "restart_required",
                format!("{key} changed in the config; the running daemon keeps the old value"),
                "restart hubkeeper to apply it: systemctl restart hubkeeper",
            ));
        }
    };
    check("socket", running.socket != new.socket);
    check("socket_mode", running.socket_mode != new.socket_mode);
    check("socket_group", running.socket_group != new.socket_group);
    check("secrets_dir", running.secrets_dir != new.secrets_dir);
    check("api", running.api != new.api);
    out
}

fn start_watcher(path: &std::path::Path) -> Option<ConfigWatcher> {
    match ConfigWatcher::new(path) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file for changes; SIGHUP still reloads it");
            None
        }
    }
}

async fn recv_event(w: &mut Option<ConfigWatcher>) -> Option<()> {
    match w {
        Some(w) => w.events.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn tick(i: &mut Option<tokio::time::Interval>) {
    match i {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
