//! End-to-end benchmark of the `hubkeeper` daemon: idle footprint and socket API
//! throughput, measured on the real release binary from the outside.
//!
//! Run with `cargo bench --bench daemon` (about a minute and a half), or with
//! `HUBKEEPER_BENCH_QUICK=1` for a smoke run of about 12 s whose figures mean
//! little. The benchmark only prints figures next to their targets: it never fails
//! on a missed target, because timings depend on the machine it runs on.
//!
//! What it does:
//! 1. starts `hubkeeper run` with a minimal disabled config in a temporary
//!    directory, without `NOTIFY_SOCKET`/`WATCHDOG_USEC` (so no watchdog timer),
//! 2. idles it and reads its RSS and its context switches (every switch is a
//!    wake-up: a thread that sleeps and is woken again) from `/proc`,
//! 3. only then loads `GET /v1/status` with 1, 16 and 64 keep-alive clients, so
//!    that the idle figures are those of a daemon that has served one request,
//!    not of one whose allocator still holds the load test's peak,
//! 4. stops the daemon with SIGTERM.

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
use procfs::{clock_ticks, machine_busy};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::procfs;
use tokio::net::UnixStream;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

const CONFIG: &str = r#"socket = "run/hk.sock"
secrets_dir = "state/secrets"
"#;

const CONCURRENCY: [usize; 3] = [1, 16, 64];

const TARGET_IDLE_RSS_KIB: u64 = 8 * 1024;
const TARGET_IDLE_WAKEUPS_PER_SEC: f64 = 1.0;
const TARGET_RPS_AT_64: f64 = 20_000.0;
const TARGET_P99_AT_64_MS: f64 = 2.0;

/// Window lengths; the quick variant only proves the benchmark still runs.
struct Windows {
    quick: bool,
    /// Idle time after the warm-up request before RSS is read.
    idle: Duration,
    /// Wake-ups are counted over the last `wakeups` of `idle`: the first part lets
    /// start-up work (lazy initialisation, the watcher thread settling) finish.
    wakeups: Duration,
    /// Length of each load run.
    load: Duration,
}

impl Windows {
    fn from_env() -> Self {
        let quick = std::env::var_os("HUBKEEPER_BENCH_QUICK").is_some_and(|v| v == "1");
        if quick {
            Self {
                quick,
                idle: Duration::from_secs(5),
                wakeups: Duration::from_secs(3),
                load: Duration::from_secs(2),
            }
        } else {
            Self {
                quick,
                idle: Duration::from_secs(60),
                wakeups: Duration::from_secs(30),
                load: Duration::from_secs(10),
            }
        }
    }
}

fn main() -> Result<()> {
    let windows = Windows::from_env();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Default worker count (one per core): the client competes with the daemon for
    // the same cores, as a local CLI or scraper would.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    let dir = tempfile::tempdir()?;
    let mut daemon = Daemon::start(dir.path())?;
    println!("hubkeeper daemon benchmark");
    println!(
        "  binary {}\n  pid {}, {} cores shared by the daemon (2 runtime workers) and this client ({} workers){}",
        testkit::BIN.display(),
        daemon.pid,
        cores,
        cores,
        if windows.quick {
            "\n  QUICK RUN (HUBKEEPER_BENCH_QUICK=1): shortened windows, figures are indicative only"
        } else {
            ""
        }
    );

    let result = rt.block_on(measure(&daemon, &windows));
    let stop = daemon.stop();
    let figures = result?;
    let (status, took) = stop?;
    println!("\nshutdown: SIGTERM -> exit in {} ({status})", ms(took));
    report_log(&daemon.stderr_path);
    print_targets(&figures);
    Ok(())
}

/// The figures the targets are checked against.
struct Figures {
    idle_rss_kib: u64,
    idle_wakeups_per_sec: f64,
    at_64: LoadResult,
}

async fn measure(daemon: &Daemon, w: &Windows) -> Result<Figures> {
    let pid = daemon.pid;
    let body = warm_up(&daemon.socket).await?;
    println!(
        "\nwarm-up: GET /v1/status -> 200, {} bytes; startup RSS {}",
        body.len(),
        kib(read_status_kib(pid, "VmRSS")?)
    );

    // ---- idle ----
    println!(
        "\nidle ({} s after the warm-up request; wake-ups over the last {} s):",
        w.idle.as_secs(),
        w.wakeups.as_secs()
    );
    tokio::time::sleep(w.idle - w.wakeups).await;
    let before = thread_switches(pid)?;
    tokio::time::sleep(w.wakeups).await;
    let after = thread_switches(pid)?;
    let idle_rss = read_status_kib(pid, "VmRSS")?;
    print_memory(pid, "  ")?;

    let mut total = 0u64;
    let mut lines = Vec::new();
    for (tid, t) in &after {
        // A thread born during the window counts all its switches; one that died
        // during it is lost, which the count of exited threads below makes visible.
        let prior = before.get(tid).map_or(0, |b| b.switches);
        let d = t.switches.saturating_sub(prior);
        total += d;
        lines.push(format!("{} [{}]: {}", t.name, tid, d));
    }
    let exited = before.keys().filter(|t| !after.contains_key(t)).count();
    let wakeups_per_sec = total as f64 / w.wakeups.as_secs_f64();
    println!(
        "  threads: {} ({} exited during the window)",
        after.len(),
        exited
    );
    println!("  context switches per thread: {}", lines.join(", "));
    println!(
        "  idle wake-ups: {} in {} s = {:.2}/s",
        total,
        w.wakeups.as_secs(),
        wakeups_per_sec
    );

    // ---- load ----
    println!(
        "\nload: GET /v1/status, one keep-alive connection per client, back-to-back, {} s per run",
        w.load.as_secs()
    );
    println!(
        "  note: client and daemon share the machine's {} cores; the cpu columns are in cores used\n  (daemon, this client, and all other processes on the machine during the run)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
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
        let r = load(&daemon.socket, pid, c, w.load).await?;
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
    println!("\nafter load:");
    print_memory(pid, "  ")?;
    println!(
        "  threads: {}",
        read_status_field(pid, "Threads")?.unwrap_or_default()
    );

    Ok(Figures {
        idle_rss_kib: idle_rss,
        idle_wakeups_per_sec: wakeups_per_sec,
        at_64: at_64.context("no run at 64 clients")?,
    })
}

// ---------------------------------------------------------------------------
// The daemon process
// ---------------------------------------------------------------------------

struct Daemon {
    child: Child,
    pid: i32,
    socket: PathBuf,
    stderr_path: PathBuf,
}

impl Daemon {
    fn start(dir: &Path) -> Result<Self> {
        let config = dir.join("hubkeeper.toml");
        fs::write(&config, CONFIG)?;
        let stderr_path = dir.join("daemon.stderr");
        let socket = dir.join("run/hk.sock");
        let child = Command::new(testkit::BIN.as_path())
            .arg("run")
            .arg("--config")
            .arg(&config)
            // The figures are those of a daemon outside systemd with no watchdog, and
            // of the config's log level, whatever the shell running cargo has set.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .env_remove("RUST_LOG")
            .env_remove("HUBKEEPER_CONFIG")
            .env_remove("HUBKEEPER_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path)?)
            .spawn()
            .context("cannot start the hubkeeper binary")?;
        let pid = i32::try_from(child.id())?;
        let mut d = Self {
            child,
            pid,
            socket,
            stderr_path,
        };
        d.wait_ready(Duration::from_secs(10))?;
        Ok(d)
    }

    /// Ready means "accepts a connection", exactly what a client needs; the file
    /// alone is not enough in general (a stale socket also exists).
    fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the daemon exited before it was ready ({status}); its stderr:\n{}",
                    fs::read_to_string(&self.stderr_path).unwrap_or_default()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "the daemon did not accept connections on {} within {:?}; its stderr:\n{}",
                    self.socket.display(),
                    limit,
                    fs::read_to_string(&self.stderr_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, then waits for the exit: a daemon that does not stop is a finding,
    /// so it is reported rather than killed silently.
    fn stop(&mut self) -> Result<(ExitStatus, Duration)> {
        let t0 = Instant::now();
        kill(Pid::from_raw(self.pid), Signal::SIGTERM)?;
        let deadline = t0 + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status, t0.elapsed()));
            }
            if Instant::now() >= deadline {
                bail!("the daemon did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Daemon {
    /// Never leave a daemon behind when the benchmark fails half-way.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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

// ---------------------------------------------------------------------------
// /proc readers
// ---------------------------------------------------------------------------

fn read_status_field(pid: i32, key: &str) -> Result<Option<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status_field(&text, key).map(str::to_owned))
}

fn status_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// A `kB` field of `/proc/<pid>/status` (the kernel's kB are KiB).
fn read_status_kib(pid: i32, key: &str) -> Result<u64> {
    let v = read_status_field(pid, key)?.with_context(|| format!("no {key} in /proc status"))?;
    v.trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("cannot parse {key}: {v}"))
}

fn print_memory(pid: i32, indent: &str) -> Result<()> {
    let get = |k| read_status_kib(pid, k);
    println!(
        "{indent}VmRSS {} (anon {}, file {}, shmem {}), peak VmHWM {}, VmSize {}",
        kib(get("VmRSS")?),
        kib(get("RssAnon")?),
        kib(get("RssFile")?),
        kib(get("RssShmem")?),
        kib(get("VmHWM")?),
        kib(get("VmSize")?),
    );
    Ok(())
}

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

/// One request over a connection that is closed again: the daemon must be idle
/// afterwards, with no keep-alive timer of ours pending in it.
async fn warm_up(socket: &Path) -> Result<Bytes> {
    let mut sender = connect(socket).await?;
    let resp = sender.send_request(status_request()).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if status != StatusCode::OK {
        bail!("GET /v1/status answered {status}");
    }
    Ok(body)
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

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn print_targets(f: &Figures) {
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let rows = [
        (
            "idle RSS <= 8 MiB".to_owned(),
            kib(f.idle_rss_kib),
            f.idle_rss_kib <= TARGET_IDLE_RSS_KIB,
        ),
        (
            "idle wake-ups <= 1/s (no watchdog)".to_owned(),
            format!("{:.2}/s", f.idle_wakeups_per_sec),
            f.idle_wakeups_per_sec <= TARGET_IDLE_WAKEUPS_PER_SEC,
        ),
        (
            "64 clients: >= 20,000 req/s (2 cores)".to_owned(),
            format!("{:.0} req/s", f.at_64.rps),
            f.at_64.rps >= TARGET_RPS_AT_64,
        ),
        (
            "64 clients: p99 <= 2 ms".to_owned(),
            format!("{:.3} ms", f.at_64.p99_ms),
            f.at_64.p99_ms <= TARGET_P99_AT_64_MS,
        ),
        (
            "64 clients: no errors".to_owned(),
            f.at_64.errors.to_string(),
            f.at_64.errors == 0,
        ),
    ];
    println!("\n{:<40} {:>14}  result", "target", "measured");
    for (target, measured, ok) in rows {
        println!("{target:<40} {measured:>14}  {}", verdict(ok));
    }
}
