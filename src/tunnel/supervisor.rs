//! The cloudflared supervisor: one task owns the child process. Commands come in on a
//! channel (run this spec, stop); what it knows goes out on a `watch` channel.
//!
//! States follow spec §7: `starting` (spawned, not ready yet) → `running` (first
//! `/ready` 200) → `backoff` (exited or wedged, waiting to restart) → ... and
//! `stopping` → `stopped`; `fatal` when it cannot be run at all and only an admin can
//! fix it (binary missing, arguments refused).
//!
//! Restart delays double from `backoff_initial` to `backoff_max`. As in s6, the delay
//! resets only when the child had been ready for a while before it died, never on a
//! fixed clock. cloudflared never exits when it loses the edge, so readiness is probed;
//! a child that is not ready within `ready_timeout`, or fails
//! `restart_after_failed_probes` probes in a row, is wedged and restarted, but at most
//! once per cooldown so a flapping edge cannot cause a restart storm.
//!
//! `/ready` cannot see a connector that holds edge connections while requests fail
//! through them, so the health actor's public-path results come in too: that many
//! failures in a row (of the kinds a restart may fix) while `/ready` is green wedge the
//! child the same way, under the same cooldown.

use super::probe;
use crate::health::PublicReport;
use hubkeeper_base::task::join_some;
use std::sync::Arc;

pub use probe::Probe;

pub use crate::status::Problem;
use crate::status::{Check, TunnelState, TunnelStatus};
use hubkeeper_base::backoff::Backoff;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

/// How long a child must have been ready for its death to reset the backoff.
pub const HEALTHY_RESET: Duration = Duration::from_secs(60);
/// Waited after the grace period before SIGKILL.
pub const STOP_MARGIN: Duration = Duration::from_secs(5);
/// Probe period while a fresh child has not become ready yet: the UI should say
/// Ready within a second of cloudflared connecting, not one health interval later.
const STARTING_PROBE: Duration = Duration::from_millis(250);
/// Deaths before readiness, in a row, that make a crash loop worth an error.
const CRASH_LOOP: u32 = 3;
/// The problem while a restart for a failing public path is held back by the cooldown.
const PUBLIC_FAILING: &str = "public_path_failing";
/// cloudflared's exit code for a usage error: retrying cannot help.
const USAGE_ERROR: i32 = 255;

/// Everything needed to run cloudflared.
#[derive(Debug, Clone, PartialEq)]
pub struct TunnelSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub metrics: SocketAddr,
    pub grace: Duration,
    pub ready_timeout: Duration,
    pub probe_interval: Duration,
    pub failures_to_restart: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// A fingerprint of what the child reads at start (the token, the binary's
    /// identity). Timing settings can change without a restart; these cannot.
    pub inputs: u64,
}

impl TunnelSpec {
    fn same_child(&self, other: &TunnelSpec) -> bool {
        self.program == other.program && self.args == other.args && self.inputs == other.inputs
    }

    fn probe_timeout(&self) -> Duration {
        // Shorter than the interval, so probes never overlap.
        (self.probe_interval / 2).min(Duration::from_secs(5))
    }

    fn wedge_cooldown(&self) -> Duration {
        self.ready_timeout.max(self.probe_interval * 5)
    }
}

/// What the supervisor publishes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TunnelView {
    /// `tunnel` of the status object, as served.
    pub status: TunnelStatus,
    pub check: Option<Check>,
    pub problem: Option<Problem>,
    /// Whether the current child has been ready at least once.
    pub been_ready: bool,
    /// How long the last `/ready` probe took.
    pub probe_took: Option<Duration>,
    /// Restarts of a wedged child, since the daemon started, by what saw it.
    pub wedge_restarts: WedgeRestarts,
}

/// Restarts of a wedged child by reason, since the daemon started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WedgeRestarts {
    /// `/ready` failed (or never turned green within `ready_timeout`).
    pub ready: u64,
    /// The public path failed while `/ready` was green.
    pub public: u64,
}

/// What made a child wedged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WedgeReason {
    Ready,
    Public,
}

enum Cmd {
    Run(Box<TunnelSpec>),
    Stop(oneshot::Sender<()>),
}

/// The way in: cheap to clone.
#[derive(Debug, Clone)]
pub struct Supervisor {
    tx: mpsc::Sender<Cmd>,
    public: Arc<watch::Sender<Option<PublicReport>>>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Run(_) => f.write_str("Run"),
            Cmd::Stop(_) => f.write_str("Stop"),
        }
    }
}

impl Supervisor {
    /// Starts the supervisor task (idle until told to run something).
    pub fn start() -> (Supervisor, watch::Receiver<TunnelView>, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(8);
        let (view_tx, view_rx) = watch::channel(TunnelView::default());
        let (public_tx, public_rx) = watch::channel(None);
        let actor = Actor {
            rx,
            public: public_rx,
            view: view_tx,
            spec: None,
            backoff: Backoff::new(Duration::ZERO, Duration::ZERO),
            deaths_before_ready: 0,
            last_wedge_restart: None,
        };
        (
            Supervisor {
                tx,
                public: Arc::new(public_tx),
            },
            view_rx,
            tokio::spawn(actor.run()),
        )
    }

    /// Hands over a public-path result (a newer run replaces an unread older one).
    pub fn public_result(&self, report: PublicReport) {
        self.public.send_if_modified(|cur| {
            if cur.as_ref().is_some_and(|c| c.run >= report.run) {
                false
            } else {
                *cur = Some(report);
                true
            }
        });
    }

    /// Runs `spec`: starts cloudflared, or restarts it if its inputs changed.
    pub async fn run(&self, spec: TunnelSpec) {
        let _ = self.tx.send(Cmd::Run(Box::new(spec))).await;
    }

    /// Stops cloudflared (SIGTERM to its group, SIGKILL after the grace period and a
    /// margin) and returns once it is gone.
    pub async fn stop(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Cmd::Stop(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

struct Actor {
    rx: mpsc::Receiver<Cmd>,
    public: watch::Receiver<Option<PublicReport>>,
    view: watch::Sender<TunnelView>,
    spec: Option<TunnelSpec>,
    backoff: Backoff,
    deaths_before_ready: u32,
    last_wedge_restart: Option<Instant>,
}

/// How watching a child ended.
enum End {
    Exited {
        how: String,
        code: Option<i32>,
        ready_for: Option<Duration>,
    },
    Wedged {
        why: String,
        ready_for: Option<Duration>,
    },
    Replaced(Box<TunnelSpec>),
    Stopped(oneshot::Sender<()>),
    Closed,
}

/// What interrupted a wait.
enum Wake {
    Timer,
    Replaced(Box<TunnelSpec>),
    Stopped(oneshot::Sender<()>),
    Closed,
}

impl Actor {
    async fn run(mut self) {
        loop {
            let Some(spec) = self.spec.clone() else {
                self.publish(|v| {
                    *v = TunnelView {
                        status: TunnelStatus {
                            restarts: v.status.restarts,
                            since: Some(SystemTime::now()),
                            ..TunnelStatus::default()
                        },
                        ..TunnelView::default()
                    }
                });
                match self.rx.recv().await {
                    Some(Cmd::Run(s)) => self.adopt(*s),
                    Some(Cmd::Stop(done)) => {
                        let _ = done.send(());
                    }
                    None => return,
                }
                continue;
            };

            let child = match self.launch(&spec) {
                Ok(c) => c,
                Err(problem) => {
                    tracing::error!("{}", problem.message);
                    self.publish(|v| {
                        v.status.state = TunnelState::Fatal;
                        v.status.pid = None;
                        v.status.ready_connections = None;
                        v.status.since = Some(SystemTime::now());
                        v.problem = Some(problem);
                    });
                    // Only an admin can fix this; look again now and then so that
                    // installing cloudflared is enough, without a restart.
                    match self
                        .wait(spec.backoff_max.max(Duration::from_secs(1)))
                        .await
                    {
                        Wake::Timer => {}
                        w => {
                            if self.handle_wake(w) {
                                return;
                            }
                        }
                    }
                    continue;
                }
            };

            let delay = match self.watch_child(child, &spec).await {
                End::Replaced(s) => {
                    self.adopt(*s);
                    continue;
                }
                End::Stopped(done) => {
                    self.spec = None;
                    let _ = done.send(());
                    continue;
                }
                End::Closed => return,
                End::Exited {
                    how,
                    code,
                    ready_for,
                } => {
                    self.after_death(ready_for);
                    if code == Some(USAGE_ERROR) {
                        let problem = Problem {
                            code: "cloudflared_refused",
                            message: format!(
                                "cloudflared refused to start ({how}): its tunnel token or arguments are invalid"
                            ),
                            hint: "cloudflared's own message is in hubkeeper's journal: a rejected token needs a new enrollment (rotate or re-enable), a rejected flag needs cloudflared 2025.4.0 or newer (--token-file)",
                        };
                        tracing::error!("{}", problem.message);
                        self.publish(|v| {
                            v.status.state = TunnelState::Fatal;
                            v.problem = Some(problem);
                        });
                        spec.backoff_max.max(Duration::from_secs(1))
                    } else {
                        self.restart_delay(&format!("cloudflared {how}"))
                    }
                }
                End::Wedged { why, ready_for } => {
                    self.after_death(ready_for);
                    self.restart_delay(&format!("cloudflared is wedged ({why}); stopped it"))
                }
            };

            if self.view.borrow().status.state != TunnelState::Fatal {
                self.publish(|v| {
                    v.status.state = TunnelState::Backoff;
                    v.status.pid = None;
                    v.status.ready_connections = None;
                    v.status.since = Some(SystemTime::now());
                });
            }
            match self.wait(delay).await {
                Wake::Timer => {}
                w => {
                    if self.handle_wake(w) {
                        return;
                    }
                }
            }
        }
    }

    /// The next backoff step, logged with what happened (`delay_ms` lets an admin, and
    /// the tests, follow the sequence).
    fn restart_delay(&mut self, what: &str) -> Duration {
        let delay = self.backoff.next_delay();
        tracing::warn!(
            delay_ms = delay.as_millis() as u64,
            "{what}; restarting in {}",
            humantime::format_duration(delay)
        );
        delay
    }

    /// Bookkeeping after a child died or was restarted.
    fn after_death(&mut self, ready_for: Option<Duration>) {
        let restarts = self.view.borrow().status.restarts + 1;
        match ready_for {
            Some(d) if d >= HEALTHY_RESET => {
                self.backoff.reset();
                self.deaths_before_ready = 0;
            }
            Some(_) => self.deaths_before_ready = 0,
            None => self.deaths_before_ready += 1,
        }
        let crash_loop = (self.deaths_before_ready >= CRASH_LOOP).then(|| Problem {
            code: "tunnel_crash_loop",
            message: format!(
                "cloudflared stopped {} times in a row before connecting to Cloudflare",
                self.deaths_before_ready
            ),
            hint: "see cloudflared's lines in hubkeeper's journal (journalctl -u hubkeeper): the tunnel token may be invalid, or outbound port 7844 blocked",
        });
        self.publish(|v| {
            v.status.restarts = restarts;
            v.problem = crash_loop;
        });
    }

    /// Handles a command that arrived during a wait. Returns true if the supervisor
    /// should exit.
    fn handle_wake(&mut self, w: Wake) -> bool {
        match w {
            Wake::Timer => false,
            Wake::Replaced(s) => {
                self.adopt(*s);
                false
            }
            Wake::Stopped(done) => {
                self.spec = None;
                let _ = done.send(());
                false
            }
            Wake::Closed => true,
        }
    }

    /// Takes a new spec; a different child starts from a fresh backoff.
    fn adopt(&mut self, spec: TunnelSpec) {
        let same = self.spec.as_ref().is_some_and(|s| s.same_child(&spec));
        if !same {
            self.backoff = Backoff::new(spec.backoff_initial, spec.backoff_max);
            self.deaths_before_ready = 0;
            self.last_wedge_restart = None;
            self.publish(|v| v.problem = None);
        }
        self.spec = Some(spec);
    }

    /// Waits `d`, unless a command changes what to do.
    async fn wait(&mut self, d: Duration) -> Wake {
        if d.is_zero() {
            // tokio rounds every sleep up to its next 1 ms tick; no delay means now.
            // Commands already queued still win.
            return match self.rx.try_recv() {
                Ok(Cmd::Stop(done)) => Wake::Stopped(done),
                Ok(Cmd::Run(s)) if !self.spec.as_ref().is_some_and(|cur| cur.same_child(&s)) => {
                    Wake::Replaced(s)
                }
                Ok(Cmd::Run(s)) => {
                    self.spec = Some(*s);
                    Wake::Timer
                }
                Err(mpsc::error::TryRecvError::Disconnected) => Wake::Closed,
                Err(mpsc::error::TryRecvError::Empty) => Wake::Timer,
            };
        }
        let until = Instant::now() + d;
        loop {
            tokio::select! {
                () = sleep_until(until) => return Wake::Timer,
                cmd = self.rx.recv() => match cmd {
                    None => return Wake::Closed,
                    Some(Cmd::Stop(done)) => return Wake::Stopped(done),
                    Some(Cmd::Run(s)) => {
                        if self.spec.as_ref().is_some_and(|cur| cur.same_child(&s)) {
                            self.spec = Some(*s);
                        } else {
                            return Wake::Replaced(s);
                        }
                    }
                },
            }
        }
    }

    fn launch(&mut self, spec: &TunnelSpec) -> Result<Child, Problem> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args);
        crate::child::spawn(cmd, "cloudflared").map_err(|e| {
            let (code, hint) = match e.kind() {
                std::io::ErrorKind::NotFound => (
                    "cloudflared_missing",
                    "install cloudflared (e.g. the cloudflared package from pkg.cloudflare.com) or fix tunnel.cloudflared in the config",
                ),
                std::io::ErrorKind::PermissionDenied => (
                    "cloudflared_not_executable",
                    "make tunnel.cloudflared executable by hubkeeper's user, or fix the path in the config",
                ),
                _ => (
                    "cloudflared_spawn_failed",
                    "check tunnel.cloudflared in the config and the journal for details",
                ),
            };
            Problem {
                code,
                message: format!("cannot run {}: {e}", spec.program.display()),
                hint,
            }
        })
    }

    /// Watches a running child until it exits, wedges, or a command ends it.
    async fn watch_child(&mut self, mut child: Child, spec: &TunnelSpec) -> End {
        let pid = child.id();
        let started = Instant::now();
        tracing::info!(pid, "cloudflared started");
        self.publish(|v| {
            v.status.state = TunnelState::Starting;
            v.status.pid = pid;
            v.status.ready_connections = None;
            v.status.since = Some(SystemTime::now());
            v.been_ready = false;
        });
        let mut spec = spec.clone();
        let ready_deadline = started + spec.ready_timeout;
        let mut ready_since: Option<Instant> = None;
        let mut failures: u32 = 0;
        let mut next_probe = Instant::now() + STARTING_PROBE.min(spec.probe_interval);
        let mut probe: Option<JoinHandle<(Probe, Duration)>> = None;
        // Public-path failures in a row, counted only while `/ready` is green.
        let mut public_failures: u32 = 0;
        // Results from before this child are not its own.
        self.public.borrow_and_update();

        loop {
            let ready_for = ready_since.map(|t| t.elapsed());
            tokio::select! {
                status = child.wait() => {
                    let (how, code) = match status {
                        Ok(s) => (describe_exit(s), s.code()),
                        Err(e) => (format!("could not be waited for: {e}"), None),
                    };
                    if let Some(p) = probe.take() { p.abort(); }
                    return End::Exited { how, code, ready_for };
                }
                res = join_some(probe.as_mut()), if probe.is_some() => {
                    probe = None;
                    let (result, took) = res.unwrap_or((Probe::NoAnswer { reason: "the probe task failed".into() }, Duration::ZERO));
                    self.publish(|v| v.probe_took = Some(took));
                    let check = Check { ok: result.is_ready(), at: SystemTime::now(), detail: result.detail() };
                    if let Probe::Ready { connections } = result {
                        failures = 0;
                        if ready_since.is_none() {
                            ready_since = Some(Instant::now());
                            tracing::info!(connections, after_ms = started.elapsed().as_millis() as u64, "cloudflared is ready");
                            self.deaths_before_ready = 0;
                        }
                        self.publish(|v| {
                            if v.status.state != TunnelState::Running {
                                v.status.since = Some(SystemTime::now());
                            }
                            v.status.state = TunnelState::Running;
                            v.status.ready_connections = Some(connections);
                            v.check = Some(check);
                            v.been_ready = true;
                            // A green /ready says nothing about the public path.
                            if v.problem.as_ref().is_none_or(|p| p.code != PUBLIC_FAILING) {
                                v.problem = None;
                            }
                        });
                    } else {
                        self.publish(|v| {
                            v.status.ready_connections = None;
                            v.check = Some(check);
                        });
                        if ready_since.is_some() {
                            failures += 1;
                            tracing::warn!(failures, "{}", result.detail());
                            if failures >= spec.failures_to_restart {
                                let why = format!("{failures} failed /ready probes in a row; last: {}", result.detail());
                                if let Some(end) = self.restart_wedged(&mut child, &spec, why, ready_for, WedgeReason::Ready).await {
                                    return end;
                                }
                            }
                        }
                    }
                    next_probe = Instant::now() + if ready_since.is_some() {
                        spec.probe_interval
                    } else {
                        STARTING_PROBE.min(spec.probe_interval)
                    };
                }
                () = sleep_until(next_probe), if probe.is_none() => {
                    let (addr, timeout) = (spec.metrics, spec.probe_timeout());
                    probe = Some(tokio::spawn(async move {
                        let sent = Instant::now();
                        let p = probe::probe(addr, timeout).await;
                        (p, sent.elapsed())
                    }));
                    next_probe = Instant::now() + spec.probe_interval;
                }
                Ok(()) = self.public.changed() => {
                    let report = self.public.borrow_and_update().clone();
                    let Some(report) = report else { continue };
                    // Only results sent while this child was ready and its last
                    // /ready probe was green say something /ready cannot.
                    let green = ready_since.is_some_and(|t| report.sent >= t) && failures == 0;
                    if report.ok {
                        self.publish(|v| {
                            if v.problem.as_ref().is_some_and(|p| p.code == PUBLIC_FAILING) {
                                v.problem = None;
                            }
                        });
                    }
                    if !green || report.ok || !report.tunnel_at_fault {
                        public_failures = 0;
                        continue;
                    }
                    public_failures += 1;
                    tracing::warn!(public_failures, "the public path fails while cloudflared's /ready is green: {}", report.detail);
                    if public_failures >= spec.failures_to_restart {
                        let why = format!("{public_failures} failed public-path checks in a row while /ready was green; last: {}", report.detail);
                        if let Some(p) = probe.take() { p.abort(); }
                        if let Some(end) = self.restart_wedged(&mut child, &spec, why, ready_for, WedgeReason::Public).await {
                            return end;
                        }
                    }
                }
                () = sleep_until(ready_deadline), if ready_since.is_none() => {
                    if let Some(p) = probe.take() { p.abort(); }
                    let why = format!("not ready within tunnel.ready_timeout ({})", humantime::format_duration(spec.ready_timeout));
                    self.publish(|v| v.wedge_restarts.ready += 1);
                    self.stop_child(&mut child, spec.grace).await;
                    return End::Wedged { why, ready_for: None };
                }
                cmd = self.rx.recv() => {
                    match cmd {
                        Some(Cmd::Run(s)) if s.same_child(&spec) => {
                            spec = *s.clone();
                            self.spec = Some(*s);
                        }
                        other => {
                            if let Some(p) = probe.take() { p.abort(); }
                            self.stop_child(&mut child, spec.grace).await;
                            return match other {
                                Some(Cmd::Run(s)) => End::Replaced(s),
                                Some(Cmd::Stop(done)) => End::Stopped(done),
                                None => End::Closed,
                            };
                        }
                    }
                }
            }
        }
    }

    /// Restarts a wedged child unless one was restarted within the cooldown; then it
    /// keeps probing and says why it waits.
    async fn restart_wedged(
        &mut self,
        child: &mut Child,
        spec: &TunnelSpec,
        why: String,
        ready_for: Option<Duration>,
        reason: WedgeReason,
    ) -> Option<End> {
        let cooldown = spec.wedge_cooldown();
        if let Some(last) = self.last_wedge_restart.filter(|t| t.elapsed() < cooldown) {
            let left = cooldown.saturating_sub(last.elapsed());
            let (code, hint) = match reason {
                WedgeReason::Ready => (
                    "tunnel_not_ready",
                    "cloudflared keeps losing the Cloudflare edge: check the host's network and outbound port 7844",
                ),
                WedgeReason::Public => (
                    PUBLIC_FAILING,
                    "requests through Cloudflare keep failing although cloudflared says it is connected, also after a restart: check the tunnel's ingress (tunnel.origin), cloudflared's lines in the journal, and Cloudflare's status page",
                ),
            };
            self.publish(|v| {
                v.problem = Some(Problem {
                    code,
                    message: format!(
                        "{why}; the next restart is held back for {}s (cooldown)",
                        left.as_secs()
                    ),
                    hint,
                })
            });
            return None;
        }
        self.last_wedge_restart = Some(Instant::now());
        self.publish(|v| match reason {
            WedgeReason::Ready => v.wedge_restarts.ready += 1,
            WedgeReason::Public => v.wedge_restarts.public += 1,
        });
        self.stop_child(child, spec.grace).await;
        Some(End::Wedged { why, ready_for })
    }

    /// One SIGTERM to the group, then SIGKILL after the grace period and a margin.
    async fn stop_child(&mut self, child: &mut Child, grace: Duration) {
        self.publish(|v| {
            v.status.state = TunnelState::Stopping;
            v.status.since = Some(SystemTime::now());
        });
        let Some(pid) = child.id() else {
            let _ = child.wait().await;
            return;
        };
        let group = Pid::from_raw(pid as i32);
        // Once only: a second SIGTERM makes cloudflared quit without draining.
        let _ = killpg(group, Signal::SIGTERM);
        match tokio::time::timeout(grace + STOP_MARGIN, child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(
                    pid,
                    "cloudflared did not stop within its grace period; killing it"
                );
                let _ = killpg(group, Signal::SIGKILL);
                let _ = child.wait().await;
            }
        }
        // Anything it left in its group goes too.
        let _ = killpg(group, Signal::SIGKILL);
        tracing::info!(pid, "cloudflared stopped");
    }

    fn publish(&self, f: impl FnOnce(&mut TunnelView)) {
        hubkeeper_base::publish::update(&self.view, f);
    }
}

fn describe_exit(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (_, Some(sig)) => format!(
            "was killed by signal {}",
            Signal::try_from(sig).map_or(sig.to_string(), |s| s.as_str().to_owned())
        ),
        _ => "exited".into(),
    }
}
