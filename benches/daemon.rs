//! End-to-end benchmark of the `hubkeeper` daemon: its memory beside its targets and
//! beside two other supervisors, then its socket API's throughput. Measured on the
//! release binaries from the outside, through `/proc`.
//!
//! Run with `cargo bench --bench daemon` (about two minutes), or with
//! `HUBKEEPER_BENCH_QUICK=1` for a smoke run of about half a minute whose figures mean
//! little (its 5 s window ends before the daemon gives back start-up's code pages, 20 s
//! after READY). To compare builds: `HUBKEEPER_BENCH_BIN=/path/to/hubkeeper` measures that
//! binary's daemon instead of this build's, `HUBKEEPER_BENCH_MEMORY_ONLY=1` skips the
//! load part. It prints figures next to their targets and never fails on a missed target,
//! nor on a part it cannot run: that part is shown as not measured, with the reason.
//!
//! What the parts need:
//! - the managed daemon: the workspace's other binaries in release mode
//!   (`cargo build --release --workspace` first: `hubkeeper-control`,
//!   `cloudflared-standin` and `s3-dirmarker-proxy` are other packages, which
//!   `cargo bench` does not build for this one), and rclone, the tests' S3 stand-in
//!   (`./dev/test --no-run` installs it into `target/tools`;
//!   `HUBKEEPER_TEST_RCLONE=/path/to/rclone` points elsewhere);
//! - the peers: `apt-get install s6 supervisor` (Debian's packages). The bench starts
//!   them itself, with their own config in a temporary directory, never the system's
//!   service.
//!
//! What it measures:
//! 1. the size of the release binary;
//! 2. memory 60 s after ready (5 s in a quick run) of four processes run side by side:
//!    a. `hubkeeper run` with `enabled = false`;
//!    b. `hubkeeper run` in managed mode, enrolled with the real control service
//!    (`hubkeeper-control`, local provisioner, `rclone serve s3` behind
//!    `s3-dirmarker-proxy`, the tests' DNS server), supervising the cloudflared
//!    stand-in, health checks every 20 s so the window holds three rounds of them, and
//!    **backups disabled** (no rustic: a backup's memory is `benches/backup.rs`'s
//!    subject);
//!    c. `s6-supervise` supervising `sleep`;
//!    d. `supervisord` supervising `sleep`.
//!
//!    "Ready" is READY=1 on a NOTIFY_SOCKET of this bench for hubkeeper (the instant
//!    systemd would count from), "up" in `s6-svstat` for s6, and the RUNNING line of
//!    supervisord's log; (b) must also reach status `ready` within the window. The
//!    figures are those of the supervising process alone, not its child: VmRSS, RssAnon,
//!    RssFile (`/proc/PID/status`) and PSS (`/proc/PID/smaps_rollup`). For hubkeeper, the
//!    wake-ups (context switches) of the last 30 s of the window too: without
//!    WATCHDOG_USEC there is no watchdog timer, so a disabled daemon should not wake.
//! 3. `GET /v1/status` from 1, 16 and 64 keep-alive clients against (a), then its
//!    memory again, and the time from SIGTERM to its exit.
//! 4. Memory under faults (`HUBKEEPER_BENCH_MEMORY_ONLY=1` skips it too): a managed
//!    daemon's VmRSS and VmHWM once the cloudflared stand-in has flooded 10,000 lines of
//!    1,000 bytes (alternating stdout and stderr) and the daemon has logged them all; and
//!    a managed daemon's after 1,000 failed control-service requests: enrolled against a
//!    scripted service that then refuses every key rotation (409), it is sent 1,000
//!    `POST /v1/rotate-keys` (a refusal is not retried, and failed enrolls back off, so
//!    this is the quick way to 1,000 failures; the requests are counted at the server).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use std::any::Any;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::procfs::{Memory, clock_ticks, machine_busy, status_field};
use testkit::s3::free_port;
use testkit::stack::{CONTROL_TOKEN, ControlService, STANDIN, Standin};
use testkit::{BASE, BIN, Daemon, open_tempdir};
use tokio::net::UnixStream;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

const CONCURRENCY: [usize; 3] = [1, 16, 64];

const TARGET_DISABLED_RSS_KIB: u64 = 5 * 1024;
const TARGET_MANAGED_RSS_KIB: u64 = 8 * 1024;
const TARGET_IDLE_WAKEUPS_PER_SEC: f64 = 1.0;
const TARGET_RPS_AT_64: f64 = 20_000.0;
const TARGET_P99_AT_64_MS: f64 = 2.0;
/// Faults must not grow the daemon: bounded, whatever a child prints or how often the
/// control service fails.
const TARGET_FAULT_RSS_KIB: u64 = 16 * 1024;
const FLOOD_LINES: usize = 10_000;
const CONTROL_FAILURES: usize = 1_000;

/// Window lengths; the quick variant only proves the benchmark still runs.
struct Windows {
    quick: bool,
    /// Skips the load part (for comparing builds, where only memory matters).
    memory_only: bool,
    /// From ready to the memory reading.
    idle: Duration,
    /// Wake-ups are counted over the last `wakeups` of `idle`: the first part lets
    /// start-up work (lazy initialisation, the first checks) finish.
    wakeups: Duration,
    /// Length of each load run.
    load: Duration,
}

impl Windows {
    fn from_env() -> Self {
        let quick = std::env::var_os("HUBKEEPER_BENCH_QUICK").is_some_and(|v| v == "1");
        let memory_only = std::env::var_os("HUBKEEPER_BENCH_MEMORY_ONLY").is_some_and(|v| v == "1");
        if quick {
            Self {
                quick,
                memory_only,
                idle: Duration::from_secs(5),
                wakeups: Duration::from_secs(3),
                load: Duration::from_secs(2),
            }
        } else {
            Self {
                quick,
                memory_only,
                idle: Duration::from_secs(60),
                wakeups: Duration::from_secs(30),
                load: Duration::from_secs(10),
            }
        }
    }
}

/// The `hubkeeper` whose daemon is measured: this build's, or `HUBKEEPER_BENCH_BIN` (to
/// compare builds without rebuilding the bench; the control service stays this build's).
fn daemon_bin() -> PathBuf {
    std::env::var_os("HUBKEEPER_BENCH_BIN").map_or_else(|| BIN.clone(), PathBuf::from)
}

fn main() -> Result<()> {
    let w = Windows::from_env();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("hubkeeper daemon benchmark");
    println!(
        "  binary {}\n  {cores} cores, Linux {}{}",
        daemon_bin().display(),
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        if w.quick {
            "\n  QUICK RUN (HUBKEEPER_BENCH_QUICK=1): shortened windows, figures are indicative only"
        } else {
            ""
        }
    );
    let binary_size = fs::metadata(daemon_bin())?.len();
    println!("  binary size {}", bytes(binary_size));

    // ---- memory ----
    println!(
        "\nstarting the four subjects side by side; each is measured {} s after it is ready",
        w.idle.as_secs()
    );
    let mut subjects = vec![
        Subject::start(
            "hubkeeper run, disabled",
            Some(TARGET_DISABLED_RSS_KIB),
            start_disabled,
        ),
        Subject::start(
            "hubkeeper run, managed",
            Some(TARGET_MANAGED_RSS_KIB),
            start_managed,
        ),
        Subject::start("s6-supervise + sleep", None, start_s6),
        Subject::start("supervisord + sleep", None, start_supervisord),
    ];
    observe(&mut subjects, &w);
    print_memory_table(binary_size, &subjects);

    // The load part needs only the disabled daemon: the others stop now, so they do
    // not compete with it for the cores.
    let disabled = subjects[0]
        .state
        .as_mut()
        .ok()
        .and_then(|r| r.keep.take())
        .and_then(|k| k.downcast::<Daemon>().ok())
        .map(|d| *d);
    let wakeups = subjects[0]
        .state
        .as_ref()
        .ok()
        .and_then(|r| r.wakeups_per_sec);
    drop(subjects);

    // ---- load ----
    let mut at_64 = None;
    match disabled {
        _ if w.memory_only => println!("\nload: skipped (HUBKEEPER_BENCH_MEMORY_ONLY=1)"),
        None => println!("\nload: not measured (the disabled daemon did not start)"),
        Some(mut d) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            match rt.block_on(load_runs(&d, &w)) {
                Ok(r) => at_64 = Some(r),
                Err(e) => println!("  load: FAILED: {e:#}"),
            }
            match stop(&mut d) {
                Ok((status, took)) => {
                    println!("\nshutdown: SIGTERM -> exit in {} ({status})", ms(took))
                }
                Err(e) => println!("\nshutdown: {e:#}"),
            }
            report_log(&d.log);
        }
    }
    print_targets(wakeups, at_64.as_ref());
    if !w.memory_only {
        print_fault_figures();
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Memory under faults
// ---------------------------------------------------------------------------

fn print_fault_figures() {
    println!("\nmemory under faults (the daemon alone, after the fault):");
    let rows = [
        (
            format!("flood: {FLOOD_LINES} cloudflared lines"),
            attempt(flood_memory),
        ),
        (
            format!("control: {CONTROL_FAILURES} failures (409)"),
            attempt(control_failures_memory),
        ),
    ];
    println!(
        "  {:<36} {:>10} {:>10}  target (VmRSS)",
        "", "VmRSS", "VmHWM"
    );
    for (name, r) in rows {
        match r {
            Ok((m, note)) => {
                let ok = m.vm_rss <= TARGET_FAULT_RSS_KIB;
                println!(
                    "  {name:<36} {:>10} {:>10}  bounded: < {} {}",
                    kib(m.vm_rss),
                    kib(m.vm_hwm),
                    kib(TARGET_FAULT_RSS_KIB),
                    if ok { "met" } else { "MISSED" }
                );
                println!("    {note}");
            }
            Err(e) => println!("  {name:<36} not measured: {e}"),
        }
    }
}

/// A managed daemon (own binary copy) against `url`, with the stand-in behaving as
/// `behavior`; returns it and the stand-in.
fn faulty_managed(url: &str, behavior: &str) -> Result<(Daemon, Standin)> {
    let dir = open_tempdir();
    fs::write(dir.path().join("control-token"), CONTROL_TOKEN)?;
    let standin = Standin {
        dir: dir.path().join("standin"),
    };
    fs::create_dir(&standin.dir)?;
    standin.behave(behavior);
    let config = format!(
        "{BASE}enabled = true\nmode = \"managed\"\nhub_id = \"hub-fault\"\n\
         [managed]\nurl = \"{url}\"\ntoken_file = \"control-token\"\naccount_id = \"acct-bench\"\n\
         license_id = \"lic-bench\"\nrequested_subdomain = \"bench\"\n\
         [tunnel]\ncloudflared = \"{}\"\nmetrics = \"127.0.0.1:{}\"\norigin = \"{}\"\n\
         [health]\ninterval = \"20s\"\ndns_resolver = \"{}\"\n\
         public_url = \"http://127.0.0.1:{}/\"\n\
         [backup]\nenabled = false\n",
        STANDIN.display(),
        free_port(),
        testkit::stack::hub_origin().url,
        testkit::dns::hub_test_zone().addr,
        free_port(),
    );
    testkit::stack::write_edge(&standin.dir, &config);
    let sdir = standin
        .dir
        .to_str()
        .context("temp path is not UTF-8")?
        .to_owned();
    let d = spawn_own_copy(dir, &config, &[("CLOUDFLARED_STANDIN_DIR", sdir.as_str())])?;
    Ok((d, standin))
}

fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Result<()> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("timed out after {limit:?} waiting for {what}")
}

fn flood_memory() -> Result<(Memory, String)> {
    let control = ControlService::start();
    let (d, standin) = faulty_managed(
        &control.url,
        &format!("flood_lines = {FLOOD_LINES}\nflood_line_bytes = 1000\n"),
    )?;
    let started = Instant::now();
    wait_until(Duration::from_secs(60), "the flood written", || {
        !standin.of("flood_done").is_empty()
    })?;
    let logged = || {
        fs::read_to_string(&d.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("xxxxxxxxxx"))
            .count()
    };
    wait_until(Duration::from_secs(60), "the flood in the log", || {
        logged() >= FLOOD_LINES
    })?;
    let took = started.elapsed();
    let m = Memory::read(d.child.id() as i32)?;
    let restarts = standin.of("start").len().saturating_sub(1);
    Ok((
        m,
        format!(
            "{} lines logged {} after start, cloudflared restarts {restarts}",
            logged(),
            ms(took)
        ),
    ))
}

fn control_failures_memory() -> Result<(Memory, String)> {
    use testkit::stack::{Answer, ScriptedServer, enroll_json};
    let srv = ScriptedServer::start(vec![
        Answer::Json(200, enroll_json()),
        Answer::Json(
            409,
            r#"{"error":{"code":"conflict","message":"no rotation for the bench"}}"#.into(),
        ),
    ]);
    let (d, _standin) = faulty_managed(&srv.url, "")?;
    wait_until(Duration::from_secs(30), "enrolled", || {
        // The socket appears once the daemon serves; it is not waited for above.
        d.socket.exists() && d.status()["hostname"].as_str().is_some()
    })?;
    let started = Instant::now();
    for _ in 0..CONTROL_FAILURES {
        let r = testkit::post(&d.socket, "/v1/rotate-keys");
        if r.status == 200 {
            bail!("a rotation the scripted service refuses succeeded");
        }
    }
    let took = started.elapsed();
    let m = Memory::read(d.child.id() as i32)?;
    let n = srv.count("/rotate-keys");
    Ok((
        m,
        format!(
            "{n} refused rotations in {} ({:.0}/s)",
            ms(took),
            n as f64 / took.as_secs_f64()
        ),
    ))
}

// ---------------------------------------------------------------------------
// Subjects: a supervising process, ready at some instant, measured later
// ---------------------------------------------------------------------------

struct Subject {
    name: String,
    target_kib: Option<u64>,
    /// Why it is not measured, when it is not.
    state: Result<Running, String>,
}

struct Running {
    pid: i32,
    /// A version or a detail shown beside the name.
    detail: String,
    ready_at: Instant,
    /// Whether to count this process's wake-ups (hubkeeper's, which has a target).
    count_wakeups: bool,
    /// What keeps the processes alive: dropping it stops them.
    keep: Option<Box<dyn Any>>,
    switches_before: Option<BTreeMap<u32, ThreadSwitches>>,
    memory: Option<Result<Memory, String>>,
    wakeups_per_sec: Option<f64>,
    wakeup_lines: Vec<String>,
    /// Seen after ready, before the reading (managed: time to status `ready`).
    notes: Vec<String>,
}

impl Running {
    /// A process just started and ready, before any reading.
    fn new(pid: i32, ready_at: Instant, keep: Box<dyn Any>) -> Self {
        Running {
            pid,
            detail: String::new(),
            ready_at,
            count_wakeups: false,
            keep: Some(keep),
            switches_before: None,
            memory: None,
            wakeups_per_sec: None,
            wakeup_lines: Vec::new(),
            notes: Vec::new(),
        }
    }
}

impl Subject {
    fn start(
        name: &str,
        target_kib: Option<u64>,
        f: impl FnOnce() -> Result<Running, String>,
    ) -> Subject {
        let state = f();
        match &state {
            Ok(r) => println!("  {name}: ready (pid {}) {}", r.pid, r.detail),
            Err(e) => println!("  {name}: {e}"),
        }
        Subject {
            name: name.to_owned(),
            target_kib,
            state,
        }
    }
}

/// Runs `f`, turning its error or its panic (the test helpers panic on failure) into
/// the reason shown instead of figures. The panic hook is silenced meanwhile: the
/// message is printed once, as the reason.
fn attempt<T>(f: impl FnOnce() -> Result<T>) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("not measured: {e:#}")),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic".into());
            Err(format!("not measured: {msg}"))
        }
    }
}

/// The daemon's READY=1, read from a datagram socket given to it as NOTIFY_SOCKET.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(dir: &Path) -> Result<Self> {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path)?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(Self { sock, path })
    }

    /// `NOTIFY_SOCKET=` for the process under test.
    fn env_value(&self) -> Result<String> {
        Ok(self
            .path
            .to_str()
            .context("temp path is not UTF-8")?
            .to_owned())
    }

    /// Waits for READY=1, failing early with the daemon's log if it exits first.
    fn wait_ready(self, d: &mut Daemon, limit: Duration) -> Result<Instant> {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
            {
                let at = Instant::now();
                self.drain();
                return Ok(at);
            }
            if let Some(st) = d.child.try_wait()? {
                bail!("the daemon exited before READY=1 ({st}); log:\n{}", d.log());
            }
        }
        bail!("no READY=1 within {limit:?}; log:\n{}", d.log());
    }

    /// Keeps reading what the daemon sends later (STATUS=...): left unread, a full
    /// socket buffer would block the daemon's next notify.
    fn drain(self) {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match self.sock.recv(&mut buf) {
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
            }
        });
    }
}

fn start_disabled() -> Result<Running, String> {
    attempt(|| {
        let dir = open_tempdir();
        let notify = NotifySocket::bind(dir.path())?;
        let path = notify.env_value()?;
        // `enabled` defaults to false: the packaged config's state.
        let mut d = spawn_own_copy(dir, BASE, &[("NOTIFY_SOCKET", path.as_str())])?;
        let ready_at = notify.wait_ready(&mut d, Duration::from_secs(15))?;
        // One request, so the figures are those of a daemon that has served one (its
        // connection task and HTTP buffers exist), as any daemon the hub UI asks has.
        let r = testkit::raw(
            &d.socket,
            b"GET /v1/status HTTP/1.1\r\nHost: hubkeeper\r\n\r\n",
        )?;
        if r.status != 200 {
            bail!("GET /v1/status answered {}", r.status);
        }
        Ok(Running {
            count_wakeups: true,
            ..Running::new(d.child.id() as i32, ready_at, Box::new(d))
        })
    })
}

/// Starts `hubkeeper run` as [`Daemon::spawn`] does, but from a copy of the binary in
/// `dir`, evicted from the page cache first.
///
/// A copy is another file, so its pages are not shared with the other daemon of this
/// run: PSS then counts the
/// binary's pages in full, as on a hub, where one daemon maps it. The eviction makes
/// the start a cold one, as after a boot: the kernel maps whole page-cache folios on a
/// fault, and their size depends on how the file got into the cache (readahead from
/// disk, or the linker's or a copy's writes), which moves RssFile by up to 1 MiB.
fn spawn_own_copy(dir: tempfile::TempDir, config: &str, env: &[(&str, &str)]) -> Result<Daemon> {
    let bin = dir.path().join("hubkeeper");
    fs::copy(daemon_bin(), &bin).context("cannot copy the hubkeeper binary")?;
    let f = fs::File::open(&bin)?;
    // Dirty pages cannot be dropped: write them out first.
    f.sync_all()?;
    nix::fcntl::posix_fadvise(
        &f,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .context("cannot evict the binary's copy from the page cache")?;
    drop(f);
    let cfg = dir.path().join("hk.toml");
    fs::write(&cfg, config)?;
    let log = dir.path().join("daemon.log");
    let mut cmd = Command::new(&bin);
    cmd.arg("run")
        .arg("--config")
        .arg(&cfg)
        // The figures are those of the config's log level and of this NOTIFY_SOCKET,
        // whatever the shell running cargo has set; no WATCHDOG_USEC: no watchdog timer.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .env_remove("RUST_LOG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("HUBKEEPER_CONFIG")
        .env_remove("HUBKEEPER_SOCKET")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.path().join("daemon.out"))?)
        .stderr(fs::File::create(&log)?);
    let child = cmd.spawn().context("cannot start the hubkeeper binary")?;
    Ok(Daemon {
        child,
        socket: dir.path().join("run/hk.sock"),
        config: cfg,
        log,
        dir,
    })
}

/// What the managed daemon needs kept alive besides itself.
struct ManagedStack {
    _daemon: Daemon,
    _control: ControlService,
}

fn start_managed() -> Result<Running, String> {
    attempt(|| {
        let control = ControlService::start();
        let dir = open_tempdir();
        fs::write(dir.path().join("control-token"), CONTROL_TOKEN)?;
        let standin_dir = dir.path().join("standin");
        fs::create_dir(&standin_dir)?;
        // A healthy stand-in: connects at once, answers /ready with 200.
        Standin {
            dir: standin_dir.clone(),
        }
        .behave("");
        let config = format!(
            "{BASE}enabled = true\nmode = \"managed\"\nhub_id = \"hub-bench\"\n\
             [managed]\nurl = \"{}\"\ntoken_file = \"control-token\"\naccount_id = \"acct-bench\"\n\
             license_id = \"lic-bench\"\nrequested_subdomain = \"bench\"\n\
             [tunnel]\ncloudflared = \"{}\"\nmetrics = \"127.0.0.1:{}\"\norigin = \"{}\"\n\
             [health]\ninterval = \"20s\"\ndns_resolver = \"{}\"\n\
             public_url = \"http://127.0.0.1:{}/\"\n\
             [backup]\nenabled = false\n",
            control.url,
            STANDIN.display(),
            free_port(),
            testkit::stack::hub_origin().url,
            testkit::dns::hub_test_zone().addr,
            free_port(),
        );
        // The public-path check goes through the stand-in's edge to testkit's hub.
        testkit::stack::write_edge(&standin_dir, &config);
        let notify = NotifySocket::bind(dir.path())?;
        let path = notify.env_value()?;
        let sdir = standin_dir
            .to_str()
            .context("temp path is not UTF-8")?
            .to_owned();
        let mut d = spawn_own_copy(
            dir,
            &config,
            &[
                ("NOTIFY_SOCKET", path.as_str()),
                ("CLOUDFLARED_STANDIN_DIR", sdir.as_str()),
            ],
        )?;
        let ready_at = notify.wait_ready(&mut d, Duration::from_secs(15))?;
        // The figures are only those of a supervising daemon if it got there: enrolled,
        // the stand-in running and ready, the first DNS and R2 checks passed.
        let limit = Duration::from_secs(30);
        let mut last = serde_json::Value::Null;
        loop {
            if let Ok(r) = testkit::raw(
                &d.socket,
                b"GET /v1/status HTTP/1.1\r\nHost: hubkeeper\r\n\r\n",
            ) && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.body)
            {
                last = v;
                if last["state"] == "ready" && last["tunnel"]["state"] == "running" {
                    break;
                }
            }
            if ready_at.elapsed() > limit {
                bail!(
                    "not ready {limit:?} after READY=1; last status:\n{last:#}\nlog:\n{}",
                    d.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let note = format!(
            "status ready {} after READY=1 (tunnel pid {})",
            ms(ready_at.elapsed()),
            last["tunnel"]["pid"]
        );
        let pid = d.child.id() as i32;
        let stack = ManagedStack {
            _daemon: d,
            _control: control,
        };
        Ok(Running {
            count_wakeups: true,
            notes: vec![note],
            ..Running::new(pid, ready_at, Box::new(stack))
        })
    })
}

/// A peer supervisor process with its temporary directory; stopped with SIGTERM (both
/// bring their child down and exit on it), killed if it does not exit.
struct Peer {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn debian_version(package: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn start_s6() -> Result<Running, String> {
    let Some(bin) = find_in_path("s6-supervise") else {
        return Err("not installed: apt-get install s6".into());
    };
    attempt(|| {
        let dir = tempfile::tempdir()?;
        let svc = dir.path().join("sleep");
        fs::create_dir(&svc)?;
        let run = svc.join("run");
        fs::write(&run, "#!/bin/sh\nexec sleep 1000000\n")?;
        fs::set_permissions(&run, fs::Permissions::from_mode(0o755))?;
        let child = Command::new(&bin)
            .arg(&svc)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("s6.log"))?)
            .spawn()
            .context("cannot start s6-supervise")?;
        let pid = child.id() as i32;
        let mut peer = Peer { child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        let ready_at = loop {
            // "true <pid>" once the service is up with its process running.
            let out = Command::new("s6-svstat")
                .args(["-o", "up,pid"])
                .arg(&svc)
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut f = text.split_whitespace();
            if f.next() == Some("true") && f.next().is_some_and(|p| p != "-1") {
                break Instant::now();
            }
            if let Some(st) = peer.child.try_wait()? {
                bail!("s6-supervise exited ({st})");
            }
            if Instant::now() > deadline {
                bail!("s6-svstat does not show the service up after 10 s: {text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(Running {
            detail: debian_version("s6"),
            ..Running::new(pid, ready_at, Box::new(peer))
        })
    })
}

fn start_supervisord() -> Result<Running, String> {
    let Some(bin) = find_in_path("supervisord") else {
        return Err("not installed: apt-get install supervisor".into());
    };
    attempt(|| {
        let dir = tempfile::tempdir()?;
        let d = dir.path().display();
        // As Debian's own config, with its control socket (what supervisorctl needs),
        // but everything in the temp dir; `-c` keeps the system config out of it.
        let conf = format!(
            "[supervisord]\nnodaemon = true\nlogfile = {d}/supervisord.log\npidfile = {d}/supervisord.pid\n\
             childlogdir = {d}\n\n\
             [unix_http_server]\nfile = {d}/supervisor.sock\nchmod = 0700\n\n\
             [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
             [supervisorctl]\nserverurl = unix://{d}/supervisor.sock\n\n\
             [program:sleep]\ncommand = sleep 1000000\nautostart = true\nstartsecs = 1\n\
             stdout_logfile = {d}/sleep.log\nredirect_stderr = true\n"
        );
        let conf_path = dir.path().join("supervisord.conf");
        fs::write(&conf_path, conf)?;
        let log = dir.path().join("supervisord.log");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start supervisord")?;
        let pid = child.id() as i32;
        let mut peer = Peer { child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        let ready_at = loop {
            // Logged once the program has stayed up for `startsecs`: supervisord's "up".
            if fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("success: sleep entered RUNNING state")
            {
                break Instant::now();
            }
            if let Some(st) = peer.child.try_wait()? {
                bail!(
                    "supervisord exited ({st}); its log:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("supervisord did not log the program RUNNING within 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let version = Command::new(&bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Ok(Running {
            detail: version,
            ..Running::new(pid, ready_at, Box::new(peer))
        })
    })
}

/// Waits until each subject's reading is due and takes it: the wake-up baseline at
/// ready + idle - wakeups, memory and wake-ups at ready + idle. The subjects became
/// ready at different instants, so their readings are interleaved in time order.
fn observe(subjects: &mut [Subject], w: &Windows) {
    #[derive(Clone, Copy)]
    enum Reading {
        Baseline,
        Final,
    }
    let mut due: Vec<(Instant, usize, Reading)> = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        if let Ok(r) = &s.state {
            if r.count_wakeups {
                due.push((r.ready_at + w.idle - w.wakeups, i, Reading::Baseline));
            }
            due.push((r.ready_at + w.idle, i, Reading::Final));
        }
    }
    due.sort_by_key(|(at, ..)| *at);
    if let Some((last, ..)) = due.last() {
        println!(
            "  waiting {} s for the readings",
            last.saturating_duration_since(Instant::now()).as_secs()
        );
    }
    for (at, i, reading) in due {
        // Sleeping here is the measured idle window itself, not a wait for a condition.
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let Ok(r) = &mut subjects[i].state else {
            continue;
        };
        match reading {
            Reading::Baseline => r.switches_before = thread_switches(r.pid).ok(),
            Reading::Final => {
                r.memory = Some(Memory::read(r.pid).map_err(|e| format!("{e:#}")));
                if let (Some(before), Ok(after)) = (&r.switches_before, thread_switches(r.pid)) {
                    let mut total = 0;
                    for (tid, t) in &after {
                        // A thread born during the window counts all its switches.
                        let prior = before.get(tid).map_or(0, |b| b.switches);
                        let d = t.switches.saturating_sub(prior);
                        total += d;
                        r.wakeup_lines.push(format!("{} [{tid}]: {d}", t.name));
                    }
                    let exited = before.keys().filter(|t| !after.contains_key(t)).count();
                    if exited > 0 {
                        r.wakeup_lines.push(format!("{exited} threads exited"));
                    }
                    r.wakeups_per_sec = Some(total as f64 / w.wakeups.as_secs_f64());
                }
            }
        }
    }
}

fn print_memory_table(binary_size: u64, subjects: &[Subject]) {
    println!("\nmemory, each process alone (not its child), after its idle window:");
    println!(
        "  {:<34} {:>10} {:>10} {:>10} {:>10} {:>8}  target (VmRSS)",
        "process", "VmRSS", "RssAnon", "RssFile", "PSS", "threads"
    );
    for s in subjects {
        let name = match &s.state {
            Ok(r) if !r.detail.is_empty() => format!("{} {}", s.name, r.detail),
            _ => s.name.clone(),
        };
        let target = match s.target_kib {
            Some(t) => format!("<= {}", kib(t)),
            None => "peer".into(),
        };
        match &s.state {
            Err(e) => println!("  {name:<34} {e}"),
            Ok(r) => match &r.memory {
                Some(Ok(m)) => {
                    let verdict = match s.target_kib {
                        Some(t) if m.vm_rss <= t => "  met",
                        Some(_) => "  MISSED",
                        None => "",
                    };
                    println!(
                        "  {name:<34} {:>10} {:>10} {:>10} {:>10} {:>8}  {target}{verdict}",
                        kib(m.vm_rss),
                        kib(m.rss_anon),
                        kib(m.rss_file),
                        kib(m.pss),
                        m.threads
                    );
                }
                Some(Err(e)) => println!("  {name:<34} not measured: {e}"),
                None => println!("  {name:<34} not measured"),
            },
        }
    }
    println!(
        "  {:<34} {:>10}",
        "hubkeeper binary size",
        bytes(binary_size)
    );
    for s in subjects {
        let Ok(r) = &s.state else { continue };
        for n in &r.notes {
            println!("  {}: {n}", s.name);
        }
        if let Some(Ok(m)) = &r.memory {
            println!(
                "  {}: peak VmHWM {}, RssShmem {}, PSS anon {}, PSS file {}",
                s.name,
                kib(m.vm_hwm),
                kib(m.rss_shmem),
                kib(m.pss_anon),
                kib(m.pss_file)
            );
        }
        if let Some(rate) = r.wakeups_per_sec {
            println!(
                "  {}: {rate:.2} wake-ups/s over the last part of the window ({})",
                s.name,
                r.wakeup_lines.join(", ")
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The disabled daemon: load, stop, log
// ---------------------------------------------------------------------------

/// SIGTERM, then waits for the exit: a daemon that does not stop is a finding, so it
/// is reported rather than killed silently (the drop kills it afterwards).
fn stop(d: &mut Daemon) -> Result<(std::process::ExitStatus, Duration)> {
    let t0 = Instant::now();
    kill(Pid::from_raw(d.child.id() as i32), Signal::SIGTERM)?;
    let deadline = t0 + Duration::from_secs(10);
    loop {
        if let Some(status) = d.child.try_wait()? {
            return Ok((status, t0.elapsed()));
        }
        if Instant::now() >= deadline {
            bail!("the daemon did not exit within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Shows the daemon's warnings and errors: a benchmark of a daemon that complains
/// is not a benchmark of the normal path.
fn report_log(path: &Path) {
    let log = fs::read_to_string(path).unwrap_or_default();
    let notable: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    println!(
        "daemon stderr: {} lines, {} warnings/errors",
        log.lines().count(),
        notable.len()
    );
    for l in notable {
        println!("  {l}");
    }
}

async fn load_runs(d: &Daemon, w: &Windows) -> Result<LoadResult> {
    let pid = d.child.id() as i32;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "\nload: GET /v1/status on the disabled daemon, one keep-alive connection per client,\n  back-to-back, {} s per run",
        w.load.as_secs()
    );
    println!(
        "  note: client and daemon share the machine's {cores} cores; the cpu columns are in cores used\n  (daemon, this client, and all other processes on the machine during the run)"
    );
    println!(
        "  {:>7} {:>10} {:>10} {:>10} {:>10} {:>7} {:>11} {:>11} {:>10} {:>13}",
        "clients",
        "req/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "daemon cpu",
        "client cpu",
        "other cpu",
        "daemon cs/req"
    );
    let mut at_64 = None;
    for &c in &CONCURRENCY {
        let r = load(&d.socket, pid, c, w.load).await?;
        println!(
            "  {:>7} {:>10.0} {:>10.3} {:>10.3} {:>10.3} {:>7} {:>11.2} {:>11.2} {:>10.2} {:>13.3}",
            c,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.errors,
            r.daemon_cores,
            r.client_cores,
            r.other_cores,
            r.switches_per_req
        );
        if r.other_cores > 0.2 {
            println!(
                "          ^ other processes used {:.2} cores during this run: these figures understate the daemon",
                r.other_cores
            );
        }
        if c == 64 {
            at_64 = Some(r);
        }
    }
    let m = Memory::read(pid)?;
    println!(
        "\nafter load: VmRSS {} (anon {}, file {}), PSS {}, peak VmHWM {}, threads {}",
        kib(m.vm_rss),
        kib(m.rss_anon),
        kib(m.rss_file),
        kib(m.pss),
        kib(m.vm_hwm),
        m.threads
    );
    at_64.context("no run at 64 clients")
}

// ---------------------------------------------------------------------------
// /proc readers
// ---------------------------------------------------------------------------

struct ThreadSwitches {
    name: String,
    switches: u64,
}

/// Voluntary + involuntary context switches of every thread, by thread id.
fn thread_switches(pid: i32) -> Result<BTreeMap<u32, ThreadSwitches>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task"))? {
        let entry = entry?;
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A thread may exit between read_dir and the read: skip it.
        let Ok(text) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let num = |k| {
            status_field(&text, k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let switches = num("voluntary_ctxt_switches") + num("nonvoluntary_ctxt_switches");
        let name = status_field(&text, "Name").unwrap_or("?").to_owned();
        out.insert(tid, ThreadSwitches { name, switches });
    }
    Ok(out)
}

/// CPU time (user + system, all threads) of a process, from `/proc/<pid>/stat`.
fn cpu_time(pid: &str) -> Result<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces and parentheses: fields are counted after
    // the last ')'. utime and stime are fields 14 and 15, i.e. 12 and 13 after it.
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks()))
}

// ---------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------

async fn connect(socket: &Path) -> Result<SendRequest<Empty<Bytes>>> {
    let stream = UnixStream::connect(socket).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // A broken connection shows up as an error on the next request.
        let _ = conn.await;
    });
    Ok(sender)
}

fn status_request() -> Request<Empty<Bytes>> {
    Request::get("/v1/status")
        .header(hyper::header::HOST, "hubkeeper")
        .body(Empty::new())
        .expect("static request is valid")
}

struct LoadResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
    daemon_cores: f64,
    client_cores: f64,
    /// CPU used by anything else on the machine meanwhile: load figures taken while
    /// something else was busy are not the daemon's.
    other_cores: f64,
    /// Context switches of the daemon per request: how often its threads go to sleep
    /// and are woken again to serve one. Under load, busy workers should keep this
    /// well below 1; more than 1 means the runtime's threads wake each other.
    switches_per_req: f64,
}

struct ClientResult {
    hist: Histogram<u64>,
    errors: u64,
}

fn new_histogram() -> Histogram<u64> {
    // Nanoseconds, 1 ns to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

async fn load(socket: &Path, pid: i32, clients: usize, run: Duration) -> Result<LoadResult> {
    // The clock starts once every client is connected, so connection set-up does not
    // count as request time.
    let barrier = Arc::new(Barrier::new(clients + 1));
    let mut set = JoinSet::new();
    for _ in 0..clients {
        let barrier = barrier.clone();
        let socket = socket.to_path_buf();
        set.spawn(async move { client(&socket, &barrier, run).await });
    }
    barrier.wait().await;
    let t0 = Instant::now();
    let cpu0 = CpuSample::take(pid)?;

    let mut hist = new_histogram();
    let mut errors = 0;
    // A stuck request would otherwise hang the benchmark: whatever is still running
    // well after the window is aborted and counted as an error.
    let collect = async {
        while let Some(joined) = set.join_next().await {
            let r: ClientResult = joined??;
            hist.add(&r.hist)?;
            errors += r.errors;
        }
        anyhow::Ok(())
    };
    if tokio::time::timeout(run + Duration::from_secs(10), collect)
        .await
        .is_err()
    {
        errors += set.len() as u64;
        set.abort_all();
    }
    let elapsed = t0.elapsed();
    let cpu1 = CpuSample::take(pid)?;
    let secs = elapsed.as_secs_f64();
    let cores = |a: Duration, b: Duration| b.saturating_sub(a).as_secs_f64() / secs;
    let daemon_cores = cores(cpu0.daemon, cpu1.daemon);
    let client_cores = cores(cpu0.client, cpu1.client);
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1e6;
    let switches = cpu1.daemon_switches.saturating_sub(cpu0.daemon_switches);
    Ok(LoadResult {
        switches_per_req: switches as f64 / hist.len().max(1) as f64,
        rps: hist.len() as f64 / secs,
        p50_ms: q(0.50),
        p99_ms: q(0.99),
        max_ms: hist.max() as f64 / 1e6,
        errors,
        daemon_cores,
        client_cores,
        other_cores: (cores(cpu0.machine, cpu1.machine) - daemon_cores - client_cores).max(0.0),
    })
}

/// CPU time used so far by the daemon, by this process, and by the whole machine,
/// and the daemon's context switches.
struct CpuSample {
    daemon: Duration,
    client: Duration,
    machine: Duration,
    daemon_switches: u64,
}

impl CpuSample {
    fn take(pid: i32) -> Result<Self> {
        Ok(Self {
            daemon: cpu_time(&pid.to_string())?,
            client: cpu_time("self")?,
            machine: machine_busy()?,
            daemon_switches: thread_switches(pid)?.values().map(|t| t.switches).sum(),
        })
    }
}

/// One client: back-to-back requests on its own keep-alive connection until the
/// window ends. Latency runs from "ready to send" to "last body byte read", what a
/// caller waits for.
async fn client(socket: &Path, barrier: &Barrier, run: Duration) -> Result<ClientResult> {
    let mut hist = new_histogram();
    let mut errors = 0;
    let first = connect(socket).await;
    barrier.wait().await;
    let mut sender = first?;
    let deadline = Instant::now() + run;
    while Instant::now() < deadline {
        let t = Instant::now();
        let outcome = async {
            // http1 senders must be ready (the previous response fully consumed by
            // the connection task) before the next request.
            sender.ready().await?;
            let resp = sender.send_request(status_request()).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            if status != StatusCode::OK || body.is_empty() {
                bail!("unexpected answer: {status}, {} bytes", body.len());
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => hist.saturating_record(t.elapsed().as_nanos() as u64),
            Err(_) => {
                errors += 1;
                // A failed request may have left the connection unusable.
                match connect(socket).await {
                    Ok(s) => sender = s,
                    Err(_) => {
                        errors += 1;
                        // Back off rather than hammer a daemon that refuses us.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
    }
    Ok(ClientResult { hist, errors })
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

fn kib(v: u64) -> String {
    format!("{:.2} MiB", v as f64 / 1024.0)
}

fn bytes(v: u64) -> String {
    format!("{:.2} MiB", v as f64 / (1024.0 * 1024.0))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn print_targets(wakeups: Option<f64>, at_64: Option<&LoadResult>) {
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("\n{:<44} {:>14}  result", "other targets", "measured");
    match wakeups {
        Some(w) => println!(
            "{:<44} {:>14}  {}",
            "disabled: idle wake-ups <= 1/s (no watchdog)",
            format!("{w:.2}/s"),
            verdict(w <= TARGET_IDLE_WAKEUPS_PER_SEC)
        ),
        None => println!(
            "{:<44} {:>14}",
            "disabled: idle wake-ups <= 1/s", "not measured"
        ),
    }
    let Some(r) = at_64 else {
        println!("{:<44} {:>14}", "64 clients (load)", "not measured");
        return;
    };
    let rows = [
        (
            "64 clients: >= 20,000 req/s (2 cores)",
            format!("{:.0} req/s", r.rps),
            r.rps >= TARGET_RPS_AT_64,
        ),
        (
            "64 clients: p99 <= 2 ms",
            format!("{:.3} ms", r.p99_ms),
            r.p99_ms <= TARGET_P99_AT_64_MS,
        ),
        ("64 clients: no errors", r.errors.to_string(), r.errors == 0),
    ];
    for (target, measured, ok) in rows {
        println!("{target:<44} {measured:>14}  {}", verdict(ok));
    }
}
