//! The backup scheduler: one task owns when backups run and what is known of them.
//!
//! - every `backup.interval` after the last success; the first backup is due at once,
//!   and a run missed while the daemon was down is caught up at start (the last run is
//!   persisted in `secrets_dir/backup-state.json`, which only this task writes);
//! - a little jitter, so hubs do not all hit R2 on the hour;
//! - a failure is retried with backoff (1 minute doubling, at most the interval or an
//!   hour), never in a loop;
//! - one run at a time: a second request gets "already running";
//! - a verify (`rustic check --read-data-subset`) every `backup.verify_interval` after
//!   the last one that passed, once a backup exists; it is one of the runs, never
//!   beside a backup: a backup falling due during a verify waits for it, and one
//!   requested during a verify is queued and starts when it ends. A failed verify is
//!   retried with the same backoff as a failed backup;
//! - overdue (no success for twice the interval, or none yet one interval after
//!   enrollment) is tracked with its own timer, so it shows even when nothing else
//!   happens;
//! - when backups stop being wanted (disabled, not enrolled), a running one is stopped.

use super::profile;
use super::run::{self, FailureKind, Invocation, RunError};
use crate::config::Config;
use crate::health::r2::Target;
use crate::secrets::SecretsStore;
use crate::status::{BackupState, BackupStatus, Component, StatusError, VerifyState, rfc3339};
use hubkeeper_base::task::join_some;
use hubkeeper_proto::time::parse_rfc3339;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const STATE_FILE: &str = "backup-state.json";
const RETRY_INITIAL: Duration = Duration::from_secs(60);
const RETRY_MAX: Duration = Duration::from_secs(3600);

/// What to back up and where. `None` while backups are not wanted.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupTargets {
    pub hub_id: String,
    pub target: Target,
    pub config: Arc<Config>,
    /// When this hub enrolled: a hub without backups is not overdue before one
    /// interval has passed since then.
    pub enrolled_at: Option<SystemTime>,
    /// When the current keys were issued (enrolled or rotated): a backup within the
    /// propagation window waits until the store accepts them.
    pub keys_since: Option<SystemTime>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackupView {
    /// `backup` of the status object, as served.
    pub status: BackupStatus,
    /// For `errors[]`: the current failure or partial result, and overdue.
    pub errors: Vec<StatusError>,
    pub last_duration: Option<Duration>,
    pub last_bytes_added: Option<u64>,
    pub failures_total: u64,
    /// Verifies that passed and that failed, in all (kept across restarts).
    pub verify_ok_total: u64,
    pub verify_failed_total: u64,
    /// The access key id the rustic profile on disk holds: a key rotation is done
    /// when it is the new one.
    pub profile_key_id: Option<String>,
}

/// The answer to "start a backup now".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunNow {
    Started,
    AlreadyRunning,
    Unavailable,
}

#[derive(Debug, Clone)]
pub struct Backups {
    targets: watch::Sender<Option<Arc<BackupTargets>>>,
    now: mpsc::Sender<oneshot::Sender<RunNow>>,
}

/// `backup-state.json`. Missing fields take their defaults, so an older or hand-made
/// file is read, not discarded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct Persisted {
    last_success: Option<String>,
    last_snapshot_id: Option<String>,
    last_attempt: Option<String>,
    /// The last failure's message, and its kind (absent in files written before the
    /// kind was recorded: those read as `backup_failed`).
    last_error: Option<String>,
    last_error_kind: Option<FailureKind>,
    consecutive_failures: u32,
    failures_total: u64,
    last_duration_ms: Option<u64>,
    last_bytes_added: Option<u64>,
    /// Unreadable files in the last run (it saved a snapshot without them).
    last_warnings: usize,
    /// The last verify that passed, the last one tried, and why the last one failed.
    last_verified: Option<String>,
    last_verify_attempt: Option<String>,
    verify_error: Option<String>,
    verify_consecutive_failures: u32,
    verify_ok_total: u64,
    verify_failed_total: u64,
}

impl Backups {
    pub fn start(
        store: SecretsStore,
        shutdown: CancellationToken,
    ) -> (Backups, watch::Receiver<BackupView>, JoinHandle<()>) {
        let (targets_tx, targets_rx) = watch::channel(None);
        let (now_tx, now_rx) = mpsc::channel(4);
        let persisted = load(&store);
        let (view_tx, view_rx) = watch::channel(BackupView::default());
        let actor = Actor {
            targets: targets_rx,
            now: now_rx,
            view: view_tx,
            store,
            persisted,
            shutdown,
            overdue: false,
            profile_key_id: None,
            not_saved: None,
        };
        (
            Backups {
                targets: targets_tx,
                now: now_tx,
            },
            view_rx,
            tokio::spawn(actor.run()),
        )
    }

    pub fn set_targets(&self, t: Option<BackupTargets>) {
        self.targets.send_if_modified(|cur| {
            if cur.as_deref() == t.as_ref() {
                false
            } else {
                *cur = t.map(Arc::new);
                true
            }
        });
    }

    pub fn run_now(&self, reply: oneshot::Sender<RunNow>) {
        if let Err(mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r)) =
            self.now.try_send(reply)
        {
            let _ = r.send(RunNow::AlreadyRunning);
        }
    }
}

struct Actor {
    targets: watch::Receiver<Option<Arc<BackupTargets>>>,
    now: mpsc::Receiver<oneshot::Sender<RunNow>>,
    view: watch::Sender<BackupView>,
    store: SecretsStore,
    persisted: Persisted,
    shutdown: CancellationToken,
    overdue: bool,
    /// See [`BackupView::profile_key_id`].
    profile_key_id: Option<String>,
    /// Why the last save of `backup-state.json` failed, until one succeeds: the history
    /// then lives only in memory, and a restart would lose it.
    not_saved: Option<String>,
}

/// The two kinds of run, which never overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    Backup,
    Verify,
}

enum Outcome {
    Backup(Result<run::Success, RunError>),
    Verify(Result<Duration, RunError>),
}

struct Running {
    job: Job,
    task: JoinHandle<Outcome>,
    stop: CancellationToken,
}

impl Running {
    /// Stops the run and waits for it to end.
    async fn stop(self) -> Outcome {
        self.stop.cancel();
        let job = self.job;
        self.task.await.unwrap_or_else(|_| lost(job))
    }
}

/// For keys issued within the propagation window and not yet used by a run that
/// succeeded: the store, a prefix to probe under, and until when to wait for the store
/// to accept them.
fn fresh_keys(t: &BackupTargets, p: &Persisted) -> Option<(Target, String, SystemTime)> {
    let since = t.keys_since?;
    let until = since + crate::health::KEY_PROPAGATION;
    let proven = [&p.last_success, &p.last_verified]
        .into_iter()
        .filter_map(|s| s.as_deref().and_then(parse_rfc3339))
        .any(|ok| ok >= since);
    (SystemTime::now() < until && !proven).then(|| {
        (
            t.target.clone(),
            format!("hubkeeper-health/{}/", t.hub_id),
            until,
        )
    })
}

/// Waits until the store accepts the keys (a write, read and delete), or `until`, or a
/// stop. Fresh R2 keys can be refused for up to a minute; a backup or verify started
/// then would fail and wait out a minute's backoff with an error in the status.
async fn keys_accepted(target: &Target, prefix: &str, until: SystemTime, stop: &CancellationToken) {
    let Ok(client) = crate::health::r2::client(target, crate::health::r2::Limits::default()) else {
        return;
    };
    loop {
        match crate::health::r2::check(&client, target, prefix).await {
            Err(p) if crate::health::r2::may_be_propagation(&p) && SystemTime::now() < until => {
                tracing::info!(
                    "the store does not accept the new keys yet: the backup waits for them"
                );
            }
            _ => return,
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// The outcome of a run whose task died (a panic): a stopped run of that kind.
fn lost(job: Job) -> Outcome {
    match job {
        Job::Backup => Outcome::Backup(Err(RunError::Stopped)),
        Job::Verify => Outcome::Verify(Err(RunError::Stopped)),
    }
}

impl Actor {
    async fn run(mut self) {
        let mut running: Option<Running> = None;
        // A backup asked for during a verify: it starts when the verify ends.
        let mut queued = false;
        // Jitter is drawn once per schedule, not on every wake-up.
        let mut jitter = Duration::ZERO;
        loop {
            let targets = self.targets.borrow().clone();
            let Some(t) = targets else {
                if let Some(r) = running.take() {
                    tracing::info!(
                        "backups are no longer wanted: stopping the running {:?}",
                        r.job
                    );
                    let outcome = r.stop().await;
                    self.record(outcome);
                }
                queued = false;
                self.overdue = false;
                self.publish(None, None, None, None);
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    r = self.targets.changed() => if r.is_err() { return },
                    Some(reply) = self.now.recv() => { let _ = reply.send(RunNow::Unavailable); }
                }
                continue;
            };

            let invocation = match profile::write(&t.config, &t.hub_id, &t.target, &self.store) {
                Ok(profile) => {
                    self.profile_key_id = Some(t.target.access_key_id.clone());
                    Some(Invocation {
                        rustic: t.config.backup.rustic.clone(),
                        profile,
                        timeout: t.config.backup.timeout.get(),
                        nice: t.config.backup.nice,
                        io_idle: t.config.backup.io_idle,
                    })
                }
                Err(e) => {
                    tracing::error!("cannot write the rustic profile: {e}");
                    None
                }
            };
            let interval = t.config.backup.interval.get();
            let verify_every = t.config.backup.verify_interval.get();
            let subset = t.config.backup.verify_subset.arg();
            let next = self.next_run(interval, jitter);
            let next_verify = verify_every.and_then(|every| self.next_verify(every));
            let overdue_at = self.overdue_at(&t, interval);
            self.overdue = SystemTime::now() >= overdue_at;
            self.publish(
                Some(next),
                running.as_ref().map(|r| r.job),
                next_verify,
                invocation
                    .is_none()
                    .then_some("cannot write the rustic profile (see the journal)"),
            );
            // What runs next when nothing runs: a queued backup at once, else the one
            // due first (a backup on a tie: taking one matters more than checking).
            let due = match next_verify {
                _ if queued => (SystemTime::now(), Job::Backup),
                Some(v) if v < next => (v, Job::Verify),
                _ => (next, Job::Backup),
            };

            let start: Option<Job> = tokio::select! {
                () = self.shutdown.cancelled() => {
                    if let Some(r) = running.take() {
                        let outcome = r.stop().await;
                        self.record(outcome);
                    }
                    return;
                }
                r = self.targets.changed() => { if r.is_err() { return } None }
                Some(reply) = self.now.recv() => {
                    let answer = match running.as_ref().map(|r| r.job) {
                        Some(Job::Backup) => RunNow::AlreadyRunning,
                        _ if invocation.is_none() => RunNow::Unavailable,
                        Some(Job::Verify) => {
                            tracing::info!("a backup was asked for during a verify: it starts when the verify ends");
                            queued = true;
                            RunNow::Started
                        }
                        None => RunNow::Started,
                    };
                    let _ = reply.send(answer);
                    (answer == RunNow::Started && running.is_none()).then_some(Job::Backup)
                }
                () = sleep_until_system(due.0), if running.is_none() && invocation.is_some() => Some(due.1),
                () = sleep_until_system(overdue_at), if !self.overdue => None,
                result = join_some(running.as_mut().map(|r| &mut r.task)), if running.is_some() => {
                    let job = running.take().map_or(Job::Backup, |r| r.job);
                    self.record(result.unwrap_or_else(|_| lost(job)));
                    if job == Job::Backup {
                        jitter = random_jitter(interval);
                    }
                    None
                }
            };
            if let (Some(job), Some(inv)) = (start, invocation) {
                let stop = CancellationToken::new();
                let token = stop.clone();
                let now = Some(rfc3339(SystemTime::now()));
                let task = match job {
                    Job::Backup => {
                        queued = false;
                        tracing::info!(paths = ?t.config.backup.paths, "backup starting");
                        self.persisted.last_attempt = now;
                        let fresh = fresh_keys(&t, &self.persisted);
                        tokio::spawn(async move {
                            if let Some((target, prefix, until)) = fresh {
                                keys_accepted(&target, &prefix, until, &token).await;
                            }
                            Outcome::Backup(run::run(&inv, &token).await)
                        })
                    }
                    Job::Verify => {
                        tracing::info!(subset, "backup verify starting (rustic check)");
                        self.persisted.last_verify_attempt = now;
                        let fresh = fresh_keys(&t, &self.persisted);
                        tokio::spawn(async move {
                            if let Some((target, prefix, until)) = fresh {
                                keys_accepted(&target, &prefix, until, &token).await;
                            }
                            Outcome::Verify(run::verify(&inv, &subset, &token).await)
                        })
                    }
                };
                running = Some(Running { job, task, stop });
            }
        }
    }

    /// When the next verify is due: `every` after the last one that passed, at once
    /// if none has yet, with backoff after a failure; never before a backup exists.
    fn next_verify(&self, every: Duration) -> Option<SystemTime> {
        let p = &self.persisted;
        let parse = |s: &Option<String>| s.as_deref().and_then(parse_rfc3339);
        parse(&p.last_success)?;
        if p.verify_consecutive_failures > 0 {
            let delay = retry_delay(p.verify_consecutive_failures, every);
            return Some(parse(&p.last_verify_attempt).unwrap_or_else(SystemTime::now) + delay);
        }
        Some(parse(&p.last_verified).map_or_else(SystemTime::now, |t| t + every))
    }

    /// When the next backup is due.
    fn next_run(&self, interval: Duration, jitter: Duration) -> SystemTime {
        let p = &self.persisted;
        let parse = |s: &Option<String>| s.as_deref().and_then(parse_rfc3339);
        if p.consecutive_failures > 0 {
            let delay = retry_delay(p.consecutive_failures, interval);
            return parse(&p.last_attempt).unwrap_or_else(SystemTime::now) + delay;
        }
        match parse(&p.last_success) {
            // The first backup is due at once.
            None => SystemTime::now(),
            // In the past if a run was missed: caught up now.
            Some(t) => t + interval + jitter,
        }
    }

    fn overdue_at(&self, t: &BackupTargets, interval: Duration) -> SystemTime {
        let last = self
            .persisted
            .last_success
            .as_deref()
            .and_then(parse_rfc3339);
        match last {
            Some(s) => s + interval * 2,
            None => t.enrolled_at.unwrap_or_else(SystemTime::now) + interval,
        }
    }

    fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Backup(result) => self.record_backup(result),
            Outcome::Verify(result) => self.record_verify(result),
        }
        match save(&self.store, &self.persisted) {
            Ok(()) => self.not_saved = None,
            Err(e) => {
                tracing::error!("cannot save {STATE_FILE}: {e}");
                self.not_saved = Some(e.to_string());
            }
        }
    }

    fn record_backup(&mut self, result: Result<run::Success, RunError>) {
        let p = &mut self.persisted;
        match result {
            Ok(ok) => {
                p.last_success = Some(rfc3339(SystemTime::now()));
                p.last_snapshot_id = Some(ok.snapshot.id.clone());
                p.last_error = None;
                p.last_error_kind = None;
                p.consecutive_failures = 0;
                p.last_duration_ms = Some(ok.wall.as_millis() as u64);
                p.last_bytes_added = Some(ok.snapshot.bytes_added);
                p.last_warnings = ok.warnings;
                self.overdue = false;
            }
            Err(e) => {
                tracing::warn!("backup failed: {e}");
                p.last_error = Some(e.to_string());
                p.last_error_kind = Some(e.kind());
                p.consecutive_failures += 1;
                p.failures_total += 1;
                p.last_warnings = 0;
            }
        }
    }

    fn record_verify(&mut self, result: Result<Duration, RunError>) {
        let p = &mut self.persisted;
        match result {
            Ok(_) => {
                p.last_verified = Some(rfc3339(SystemTime::now()));
                p.verify_error = None;
                p.verify_consecutive_failures = 0;
                p.verify_ok_total += 1;
            }
            // Stopped by shutdown or disable: it says nothing of the repository, and
            // it runs again when due.
            Err(RunError::Stopped) => tracing::info!("the verify was stopped before it finished"),
            Err(e) => {
                tracing::warn!("backup verify failed: {e}");
                p.verify_error = Some(e.to_string());
                p.verify_consecutive_failures += 1;
                p.verify_failed_total += 1;
            }
        }
    }

    fn publish(
        &self,
        next: Option<SystemTime>,
        job: Option<Job>,
        next_verify: Option<SystemTime>,
        blocked: Option<&str>,
    ) {
        let p = &self.persisted;
        let parse = |s: &Option<String>| s.as_deref().and_then(parse_rfc3339);
        let running = job == Some(Job::Backup);
        let verifying = job == Some(Job::Verify);
        let wanted = next.is_some() || job.is_some() || blocked.is_some();
        let mut errors = Vec::new();
        if let Some(e) = &self.not_saved {
            errors.push(StatusError::new(
                Component::Backup,
                "backup_state_not_saved",
                format!(
                    "cannot save {STATE_FILE} ({e}): the backup history is kept in memory only and a restart would lose it"
                ),
                "free space on secrets_dir's filesystem or make it writable again; hubkeeper saves it after the next run",
            ));
        }
        if wanted {
            if let Some(why) = blocked {
                errors.push(StatusError::new(
                    Component::Backup,
                    "backup_profile_failed",
                    why,
                    "check that secrets_dir is writable by hubkeeper",
                ));
            }
            if p.consecutive_failures > 0 {
                let kind = p.failure_kind();
                let message = p
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "the last backup failed".into());
                errors.push(StatusError::new(
                    Component::Backup,
                    kind.code(),
                    message,
                    kind.hint(),
                ));
            } else if p.last_warnings > 0 {
                errors.push(StatusError::new(
                    Component::Backup,
                    "backup_partial",
                    format!("the last backup skipped what it could not read ({} warnings)", p.last_warnings),
                    "some files under backup.paths are unreadable by hubkeeper's user: fix their permissions (see the WARN lines in the journal)",
                ));
            }
            // Only while verifies are on: turning them off clears what they found.
            if p.verify_consecutive_failures > 0 && (next_verify.is_some() || verifying) {
                errors.push(StatusError::new(
                    Component::Backup,
                    "backup_verify_failed",
                    p.verify_error
                        .clone()
                        .unwrap_or_else(|| "the last verify failed".into()),
                    VERIFY_HINT,
                ));
            }
            if self.overdue {
                let since = p
                    .last_success
                    .clone()
                    .map_or_else(|| "enrollment".to_owned(), |s| s.to_string());
                errors.push(StatusError::new(
                    Component::Backup,
                    "backup_overdue",
                    format!("no successful backup since {since}"),
                    "backups keep failing or cannot run: see backup.last_error and the journal, then run `hubkeeper backup`",
                ));
            }
        }
        let state = if !wanted {
            BackupState::Disabled
        } else if running {
            BackupState::Running
        } else if p.consecutive_failures > 0 {
            BackupState::Failed
        } else {
            BackupState::Idle
        };
        let verify_state = if !wanted || (next_verify.is_none() && !verifying) {
            VerifyState::Disabled
        } else if verifying {
            VerifyState::Running
        } else if p.verify_consecutive_failures > 0 {
            VerifyState::Failed
        } else {
            VerifyState::Idle
        };
        let view = BackupView {
            status: BackupStatus {
                state,
                last_success: parse(&p.last_success),
                last_snapshot_id: p.last_snapshot_id.clone(),
                next_run: if running { None } else { next },
                // The message with its code, so one field tells an admin both.
                last_error: p
                    .last_error
                    .as_ref()
                    .map(|m| format!("{m} ({})", p.failure_kind().code())),
                last_verified: parse(&p.last_verified),
                verify_state,
                next_verify: if verifying || !wanted {
                    None
                } else {
                    next_verify
                },
            },
            errors,
            last_duration: p.last_duration_ms.map(Duration::from_millis),
            last_bytes_added: p.last_bytes_added,
            failures_total: p.failures_total,
            verify_ok_total: p.verify_ok_total,
            verify_failed_total: p.verify_failed_total,
            profile_key_id: self.profile_key_id.clone(),
        };
        hubkeeper_base::publish::publish(&self.view, view);
    }
}

impl Persisted {
    fn failure_kind(&self) -> FailureKind {
        self.last_error_kind.unwrap_or(FailureKind::BackupFailed)
    }
}

const VERIFY_HINT: &str = "rustic check could not read back part of the backups, or found them damaged: run `rustic -P <secrets_dir>/rustic/profile check --read-data` to see what, then `rustic repair index` (and `repair snapshots` if it says so); hubkeeper checks again with backoff";

/// After `failures` failures in a row: 1 minute doubling, at most an hour or `every`.
fn retry_delay(failures: u32, every: Duration) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    (RETRY_INITIAL * 2u32.pow(shift)).min(RETRY_MAX).min(every)
}

/// Up to 1% of the interval, at most a minute.
fn random_jitter(interval: Duration) -> Duration {
    let max = (interval / 100).min(Duration::from_secs(60));
    Duration::from_millis(rand::random_range(0..=max.as_millis() as u64))
}

async fn sleep_until_system(at: SystemTime) {
    let d = at.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(d).await;
}

fn load(store: &SecretsStore) -> Persisted {
    match store.read(STATE_FILE) {
        Ok(Some(b)) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::warn!("{STATE_FILE} is damaged ({e}); starting from no backup history");
            Persisted::default()
        }),
        _ => Persisted::default(),
    }
}

fn save(store: &SecretsStore, p: &Persisted) -> Result<(), crate::secrets::StoreError> {
    store.write_json_if_changed(STATE_FILE, p).map(|_| ())
}
