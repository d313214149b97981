//! The driver: input `i` of a run is made from bytes drawn by an RNG seeded with
//! (seed, i), so any input can be made again from its number. A worker process runs a
//! range of inputs through one target, catching panics and recording its position in a
//! file before each input; the supervisor watches that position (no progress within
//! the time limit is a hang), the worker's memory (its high-water mark against a
//! limit) and its exit (a death is a crash), saves the input of every finding, and
//! restarts past it.

use crate::targets::{self, Target};
use arbitrary::Unstructured;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Inputs per target.
    #[arg(long, default_value_t = 10_000)]
    inputs: u64,
    /// Seed of the run (default: from the clock; printed, so a run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds one input may take before it counts as a hang.
    #[arg(long, default_value_t = 10)]
    time_limit: u64,
    /// Peak RSS (MiB) a worker may reach; past it the input in flight is a finding.
    #[arg(long, default_value_t = 512)]
    rss_limit: u64,
    /// Where findings (the inputs, with what they broke) are written.
    #[arg(long, default_value = "target/fuzz-findings")]
    out: PathBuf,
    /// Targets to run (default: all).
    targets: Vec<String>,
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    target: String,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    from: u64,
    #[arg(long)]
    to: u64,
    #[arg(long)]
    progress: PathBuf,
    #[arg(long)]
    out: PathBuf,
}

/// Totals of one target.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    inputs: u64,
    crashes: u64,
    violations: u64,
    hangs: u64,
    over_memory: u64,
    peak_rss_kib: u64,
}

impl Totals {
    fn findings(&self) -> u64 {
        self.crashes + self.violations + self.hangs + self.over_memory
    }
}

/// Input `index` of a run with `seed`, for `target`.
fn input(target: &dyn Target, seed: u64, index: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let len = rng.usize(64..=8192);
    let mut raw = vec![0u8; len];
    rng.fill(&mut raw);
    let mut u = Unstructured::new(&raw);
    target.generate(&mut u).unwrap_or_default()
}

pub fn run(args: &RunArgs) -> Result<bool, String> {
    let names: Vec<String> = if args.targets.is_empty() {
        targets::ALL.iter().map(|t| t.0.to_owned()).collect()
    } else {
        args.targets.clone()
    };
    for n in &names {
        targets::make(n)?;
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    println!(
        "seed {seed}, {} inputs per target, time limit {}s per input, RSS limit {} MiB",
        args.inputs, args.time_limit, args.rss_limit
    );
    println!(
        "{:<18} {:>10} {:>8} {:>10} {:>6} {:>8} {:>9} {:>9} {:>8}",
        "target",
        "inputs",
        "crashes",
        "violations",
        "hangs",
        "over-mem",
        "peak-RSS",
        "inputs/s",
        "seconds"
    );
    let mut all = Totals::default();
    for name in &names {
        let started = Instant::now();
        let t = supervise(name, seed, args)?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{:<18} {:>10} {:>8} {:>10} {:>6} {:>8} {:>5} MiB {:>9.0} {:>8.1}",
            name,
            t.inputs,
            t.crashes,
            t.violations,
            t.hangs,
            t.over_memory,
            t.peak_rss_kib / 1024,
            t.inputs as f64 / secs.max(1e-9),
            secs
        );
        all.inputs += t.inputs;
        all.crashes += t.crashes;
        all.violations += t.violations;
        all.hangs += t.hangs;
        all.over_memory += t.over_memory;
        all.peak_rss_kib = all.peak_rss_kib.max(t.peak_rss_kib);
    }
    println!(
        "{:<18} {:>10} {:>8} {:>10} {:>6} {:>8} {:>5} MiB",
        "total",
        all.inputs,
        all.crashes,
        all.violations,
        all.hangs,
        all.over_memory,
        all.peak_rss_kib / 1024
    );
    if all.findings() > 0 {
        println!("findings are in {}", args.out.display());
    }
    Ok(all.findings() == 0)
}

/// Runs `args.inputs` inputs of `name` in workers, restarting past each that died.
fn supervise(name: &str, seed: u64, args: &RunArgs) -> Result<Totals, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let progress = args.out.join(format!(".{name}.progress"));
    let limit = Duration::from_secs(args.time_limit);
    let rss_limit_kib = args.rss_limit * 1024;
    let mut t = Totals::default();
    let mut from = 0;
    while from < args.inputs {
        std::fs::write(&progress, from.to_le_bytes())
            .map_err(|e| format!("cannot write {}: {e}", progress.display()))?;
        let mut child = Command::new(&exe)
            .arg("worker")
            .arg(name)
            .args(["--seed", &seed.to_string()])
            .args([
                "--from",
                &from.to_string(),
                "--to",
                &args.inputs.to_string(),
            ])
            .arg("--progress")
            .arg(&progress)
            .arg("--out")
            .arg(&args.out)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a worker: {e}"))?;
        let (at, stopped) = watch(&mut child, &progress, limit, rss_limit_kib, &mut t)?;
        let report = child.stdout.take().map(|s| {
            BufReader::new(s)
                .lines()
                .map_while(Result::ok)
                .filter(|l| l.starts_with("totals "))
                .last()
        });
        match (stopped, report.flatten()) {
            (Stop::Exited(status), Some(line)) if status.success() => {
                let w = parse_totals(&line)?;
                t.inputs += w.inputs;
                t.crashes += w.crashes;
                t.violations += w.violations;
                t.peak_rss_kib = t.peak_rss_kib.max(w.peak_rss_kib);
                from = args.inputs;
            }
            (stop, _) => {
                // The worker ran `from..at` (counted as inputs) and died, hung or grew on
                // input `at`.
                t.inputs += at - from + 1;
                let why = match stop {
                    Stop::Hung => {
                        t.hangs += 1;
                        format!("no answer within {}s", args.time_limit)
                    }
                    Stop::Memory(kib) => {
                        t.over_memory += 1;
                        format!("peak RSS {} MiB, over the limit", kib / 1024)
                    }
                    Stop::Exited(status) => {
                        t.crashes += 1;
                        match status.signal() {
                            Some(sig) => format!("the worker died of signal {sig}"),
                            None => format!("the worker exited with {status}"),
                        }
                    }
                };
                let target = targets::make(name)?;
                let kind = match stop {
                    Stop::Hung => "hang",
                    Stop::Memory(_) => "memory",
                    Stop::Exited(_) => "crash",
                };
                save(
                    &args.out,
                    name,
                    kind,
                    seed,
                    at,
                    &input(&*target, seed, at),
                    &why,
                );
                from = at + 1;
            }
        }
    }
    let _ = std::fs::remove_file(&progress);
    Ok(t)
}

enum Stop {
    Exited(std::process::ExitStatus),
    Hung,
    Memory(u64),
}

/// Watches a worker until it exits, or kills it when it stops making progress or grows
/// past the limit. Returns the input it was on.
fn watch(
    child: &mut Child,
    progress: &Path,
    limit: Duration,
    rss_limit_kib: u64,
    t: &mut Totals,
) -> Result<(u64, Stop), String> {
    let read_at = || -> u64 {
        std::fs::read(progress)
            .ok()
            .and_then(|b| b.get(..8).and_then(|b| b.try_into().ok()))
            .map_or(0, u64::from_le_bytes)
    };
    let mut last = read_at();
    let mut since = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok((read_at(), Stop::Exited(status)));
        }
        let hwm = peak_rss_kib(child.id()).unwrap_or(0);
        t.peak_rss_kib = t.peak_rss_kib.max(hwm);
        if hwm > rss_limit_kib {
            let at = read_at();
            let _ = child.kill();
            let _ = child.wait();
            return Ok((at, Stop::Memory(hwm)));
        }
        let now = read_at();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ok((now, Stop::Hung));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// VmHWM of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn parse_totals(line: &str) -> Result<Totals, String> {
    let mut t = Totals::default();
    for kv in line.split_whitespace().skip(1) {
        let (k, v) = kv.split_once('=').ok_or("a worker's totals are garbled")?;
        let v: u64 = v.parse().map_err(|_| "a worker's totals are garbled")?;
        match k {
            "inputs" => t.inputs = v,
            "crashes" => t.crashes = v,
            "violations" => t.violations = v,
            "peak_rss_kib" => t.peak_rss_kib = v,
            _ => {}
        }
    }
    Ok(t)
}

fn save(out: &Path, target: &str, kind: &str, seed: u64, index: u64, input: &[u8], why: &str) {
    let base = out.join(format!("{target}-{kind}-{seed}-{index}"));
    let _ = std::fs::write(base.with_extension("bin"), input);
    let _ = std::fs::write(
        base.with_extension("txt"),
        format!(
            "{why}\nreplay: hubkeeper-fuzz replay {target} {}\n",
            base.with_extension("bin").display()
        ),
    );
    eprintln!("{target}: {kind} on input {index}: {}", first_line(why));
}

fn first_line(s: &str) -> &str {
    let l = s.lines().next().unwrap_or("");
    &l[..l.len().min(l.floor_char_boundary(300))]
}

/// Panics seen by the hook since the worker started, and the last one's message.
static PANICS: AtomicU64 = AtomicU64::new(0);
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

/// Records panics instead of printing them: a panic in a task the target's runtime
/// catches (and turns into an error) is still a crash.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        // Symbolising costs ~150 MiB of debug info: only when asked (RUST_BACKTRACE=1).
        let bt = std::backtrace::Backtrace::capture();
        if let Ok(mut m) = LAST_PANIC.lock() {
            *m = format!("panic: {info}\n{bt}");
        }
        PANICS.fetch_add(1, Ordering::SeqCst);
    }));
}

/// One input through the target: `Err(kind, why)` for a finding.
fn run_one(target: &mut Box<dyn Target>, input: &[u8]) -> Result<(), (&'static str, String)> {
    let before = PANICS.load(Ordering::SeqCst);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.run(input)));
    let panicked = PANICS.load(Ordering::SeqCst) != before || r.is_err();
    if panicked {
        let why = LAST_PANIC.lock().map(|m| m.clone()).unwrap_or_default();
        return Err(("crash", why));
    }
    match r {
        Ok(Err(v)) => Err(("violation", v)),
        _ => Ok(()),
    }
}

pub fn worker(a: &WorkerArgs) -> Result<bool, String> {
    install_panic_hook();
    let mut target = targets::make(&a.target)?;
    let progress = std::fs::OpenOptions::new()
        .write(true)
        .open(&a.progress)
        .map_err(|e| format!("cannot open {}: {e}", a.progress.display()))?;
    let mut t = Totals::default();
    for i in a.from..a.to {
        progress
            .write_at(&i.to_le_bytes(), 0)
            .map_err(|e| format!("cannot record progress: {e}"))?;
        let data = input(&*target, a.seed, i);
        t.inputs += 1;
        if let Err((kind, why)) = run_one(&mut target, &data) {
            if kind == "crash" {
                t.crashes += 1;
                // A panic may have left the target's state half-changed: start afresh.
                target = targets::make(&a.target)?;
            } else {
                t.violations += 1;
            }
            save(&a.out, &a.target, kind, a.seed, i, &data, &why);
        }
    }
    let peak = peak_rss_kib(std::process::id()).unwrap_or(0);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "totals inputs={} crashes={} violations={} peak_rss_kib={peak}",
        t.inputs, t.crashes, t.violations
    );
    Ok(true)
}

pub fn replay(name: &str, files: &[PathBuf]) -> Result<bool, String> {
    install_panic_hook();
    let mut target = targets::make(name)?;
    let mut clean = true;
    for f in files {
        let data = std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        let started = Instant::now();
        match run_one(&mut target, &data) {
            Ok(()) => println!("{}: ok ({:.0?})", f.display(), started.elapsed()),
            Err((kind, why)) => {
                clean = false;
                println!("{}: {kind}: {why}", f.display());
                target = targets::make(name)?;
            }
        }
    }
    Ok(clean)
}

pub fn show(name: &str, seed: u64, index: u64) -> Result<bool, String> {
    let target = targets::make(name)?;
    let data = input(&*target, seed, index);
    std::io::stdout()
        .write_all(&data)
        .map_err(|e| e.to_string())?;
    Ok(true)
}
