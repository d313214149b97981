//! One backup run with the real rustic: `backup --init --json`, then `forget --prune`.
//!
//! rustic exits 0 when it is killed (SIGINT/SIGTERM) and when files are unreadable
//! (only a WARN line says so), so success is not read from the exit code alone: a run
//! we stopped is a failure whatever rustic says, and WARN lines make it partial.

use serde::{Deserialize, Serialize};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Time rustic and its process group get to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// stderr lines kept to explain a failure.
const KEEP_LINES: usize = 5;

#[derive(Debug, Clone)]
pub struct Invocation {
    pub rustic: PathBuf,
    /// The profile path without `.toml` (`rustic -P` adds it).
    pub profile: PathBuf,
    pub timeout: Duration,
    pub nice: u8,
    pub io_idle: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub id: String,
    pub files: u64,
    pub bytes_added: u64,
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Success {
    pub snapshot: Snapshot,
    /// The whole run: backup, retention and process start-up.
    pub wall: Duration,
    /// Source files rustic skipped (`[WARN] ignoring error`): the snapshot exists but
    /// is incomplete.
    pub warnings: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("cannot run rustic at {0}: no such file")]
    Missing(PathBuf),
    #[error("cannot run rustic at {path}: {reason}")]
    Spawn { path: PathBuf, reason: String },
    #[error("rustic {step} failed ({how}): {detail}")]
    Failed {
        step: &'static str,
        how: String,
        detail: String,
    },
    #[error("rustic {step} was still running after the backup timeout ({}); it was killed", humantime::format_duration(*.timeout))]
    TimedOut {
        step: &'static str,
        timeout: Duration,
    },
    #[error("the backup was stopped before it finished")]
    Stopped,
    #[error("rustic {step} printed more than {} on stdout, which is no summary; it was stopped", humantime_bytes(*.cap))]
    Flood { step: &'static str, cap: usize },
    #[error("rustic backup printed no snapshot ({0})")]
    NoSnapshot(String),
}

/// What kind of failure a run ended in: the `errors[].code` and hint it is reported
/// under, kept as a value (also in `backup-state.json`) so the status never has to
/// parse it back out of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    RusticMissing,
    RusticSpawnFailed,
    BackupRetentionFailed,
    BackupFailed,
    BackupTimeout,
    BackupStopped,
}

impl FailureKind {
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::RusticMissing => "rustic_missing",
            FailureKind::RusticSpawnFailed => "rustic_spawn_failed",
            FailureKind::BackupRetentionFailed => "backup_retention_failed",
            FailureKind::BackupFailed => "backup_failed",
            FailureKind::BackupTimeout => "backup_timeout",
            FailureKind::BackupStopped => "backup_stopped",
        }
    }

    pub fn hint(self) -> &'static str {
        match self {
            FailureKind::RusticMissing => {
                "install rustic (e.g. `cargo install rustic-rs --locked`, or a release binary) or fix backup.rustic in the config"
            }
            FailureKind::RusticSpawnFailed => {
                "check that backup.rustic is an executable rustic binary"
            }
            FailureKind::BackupRetentionFailed => {
                "the snapshot was saved but old ones were not pruned: see rustic's lines in hubkeeper's journal"
            }
            FailureKind::BackupFailed => {
                "see rustic's lines in hubkeeper's journal (journalctl -u hubkeeper); hubkeeper retries with backoff"
            }
            FailureKind::BackupTimeout => {
                "the backup took longer than backup.timeout: check the R2 connection and the size of backup.paths, or raise backup.timeout"
            }
            FailureKind::BackupStopped => {
                "hubkeeper was stopped or disabled during the backup; the next one runs as scheduled"
            }
        }
    }
}

impl RunError {
    pub fn kind(&self) -> FailureKind {
        match self {
            RunError::Missing(_) => FailureKind::RusticMissing,
            RunError::Spawn { .. } => FailureKind::RusticSpawnFailed,
            RunError::Failed { step: "forget", .. } => FailureKind::BackupRetentionFailed,
            RunError::Failed { .. } | RunError::NoSnapshot(_) | RunError::Flood { .. } => {
                FailureKind::BackupFailed
            }
            RunError::TimedOut { .. } => FailureKind::BackupTimeout,
            RunError::Stopped => FailureKind::BackupStopped,
        }
    }
}

/// Runs backup then retention. `stop` ends it early (recorded as [`RunError::Stopped`]).
pub async fn run(inv: &Invocation, stop: &CancellationToken) -> Result<Success, RunError> {
    let started = Instant::now();
    let deadline = started + inv.timeout;
    let out = step(
        inv,
        "backup",
        &["backup", "--init", "--json"],
        Stdout::Json,
        deadline,
        stop,
    )
    .await?;
    let snapshot = parse_snapshot(&out.stdout)?;
    tracing::info!(
        snapshot = %snapshot.id,
        files = snapshot.files,
        bytes_added = snapshot.bytes_added,
        warnings = out.warnings,
        "backup saved"
    );
    step(
        inv,
        "forget",
        &["forget", "--prune"],
        Stdout::Drop,
        deadline,
        stop,
    )
    .await?;
    let wall = started.elapsed();
    tracing::info!(
        snapshot = %snapshot.id,
        seconds = wall.as_secs_f64(),
        "backup run finished (backup and retention)"
    );
    Ok(Success {
        snapshot,
        wall,
        warnings: out.warnings,
    })
}

/// One verify: `rustic check --read-data --read-data-subset=<subset>`, under the same
/// deadline and stop as a backup. Returns how long it took.
pub async fn verify(
    inv: &Invocation,
    subset: &str,
    stop: &CancellationToken,
) -> Result<Duration, RunError> {
    let started = Instant::now();
    let subset_arg = format!("--read-data-subset={subset}");
    step(
        inv,
        "check",
        &["check", "--read-data", &subset_arg],
        Stdout::Drop,
        started + inv.timeout,
        stop,
    )
    .await?;
    let took = started.elapsed();
    tracing::info!(subset, seconds = took.as_secs_f64(), "backup verified");
    Ok(took)
}

struct StepOut {
    stdout: Vec<u8>,
    warnings: usize,
}

/// What a step's stdout is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stdout {
    /// Kept (up to [`STDOUT_CAP`]) and parsed: `backup --json`'s summary.
    Json,
    /// Drained and dropped: nothing there is needed, and a pipe nobody reads blocks.
    Drop,
}

/// The most of rustic's stdout kept: a `backup --json` summary is a few KiB, so more
/// than this is not a summary, and memory must not grow with whatever a child prints.
pub const STDOUT_CAP: usize = 1 << 20;

/// How a step ended before rustic's exit and both pipes' end were all seen.
enum Cut {
    Deadline,
    Stopped,
    Flood,
}

async fn step(
    inv: &Invocation,
    name: &'static str,
    args: &[&str],
    output: Stdout,
    deadline: Instant,
    stop: &CancellationToken,
) -> Result<StepOut, RunError> {
    let mut cmd = Command::new(&inv.rustic);
    cmd.arg("-P")
        .arg(&inv.profile)
        .arg("--no-progress")
        .args(args);
    // Its own process group (set here): what rustic or a wrapper leaves behind is
    // stopped with it.
    crate::child::prepare(&mut cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    lower_priority(&mut cmd, inv.nice, inv.io_idle);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => RunError::Missing(inv.rustic.clone()),
        _ => RunError::Spawn {
            path: inv.rustic.clone(),
            reason: e.to_string(),
        },
    })?;
    let pid = child.id().unwrap_or(0);
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        stop_group(&mut child, pid).await;
        return Err(RunError::Spawn {
            path: inv.rustic.clone(),
            reason: "its output pipes could not be set up".into(),
        });
    };

    // The step is over when rustic has exited AND both pipes are closed: a process it
    // left behind may hold them. The deadline and the stop cover all three, so
    // nothing rustic starts can keep a run going past them.
    let ended = {
        let all = async {
            tokio::try_join!(
                async { Ok(child.wait().await) },
                read_stdout(stdout, output),
                async { Ok(watch_stderr(stderr, pid).await) },
            )
        };
        tokio::select! {
            r = all => r,
            () = tokio::time::sleep_until(deadline) => Err(Cut::Deadline),
            () = stop.cancelled() => Err(Cut::Stopped),
        }
    };
    let (status, stdout, (warnings, last)) = match ended {
        Ok(done) => done,
        Err(cut) => {
            stop_group(&mut child, pid).await;
            return Err(match cut {
                Cut::Deadline => RunError::TimedOut {
                    step: name,
                    timeout: inv.timeout,
                },
                Cut::Stopped => RunError::Stopped,
                Cut::Flood => RunError::Flood {
                    step: name,
                    cap: STDOUT_CAP,
                },
            });
        }
    };
    match status {
        Ok(s) if s.success() => Ok(StepOut { stdout, warnings }),
        Ok(s) => Err(RunError::Failed {
            step: name,
            how: match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit code {c}"),
                (_, Some(sig)) => format!("killed by signal {sig}"),
                _ => "failed".into(),
            },
            detail: if last.is_empty() {
                "no output".into()
            } else {
                cap_detail(last.join(" | "))
            },
        }),
        Err(e) => Err(RunError::Failed {
            step: name,
            how: "not waited for".into(),
            detail: e.to_string(),
        }),
    }
}

/// Reads stdout to its end: kept up to [`STDOUT_CAP`] for [`Stdout::Json`] (more is a
/// [`Cut::Flood`]), dropped as it comes for [`Stdout::Drop`]. A read error ends it
/// like the end of the pipe: rustic's exit status says how the step went.
async fn read_stdout(
    mut stdout: tokio::process::ChildStdout,
    output: Stdout,
) -> Result<Vec<u8>, Cut> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match stdout.read(&mut buf).await {
            Ok(0) | Err(_) => return Ok(kept),
            Ok(n) => n,
        };
        if output == Stdout::Json {
            if kept.len() + n > STDOUT_CAP {
                return Err(Cut::Flood);
            }
            kept.extend_from_slice(&buf[..n]);
        }
    }
}

/// Forwards rustic's stderr to our log; counts WARN lines and keeps the lines that
/// explain a failure: its first `[ERROR]` lines if it printed any (the cause: a
/// damaged pack, a refused key), else its last lines, never backtrace frames.
async fn watch_stderr(stderr: tokio::process::ChildStderr, pid: u32) -> (usize, Vec<String>) {
    let mut warnings = 0;
    let mut last = std::collections::VecDeque::new();
    let mut errors = Vec::new();
    crate::child::for_each_line(stderr, |line| {
        if line.contains("[WARN]") {
            // rustic skips a source file it cannot read with exactly this message and
            // carries on (exit 0); other warnings (a repository not initialised yet,
            // a retried request) do not make the snapshot incomplete.
            if line.contains("ignoring error") {
                warnings += 1;
            }
            tracing::warn!(child = "rustic", pid, "{line}");
        } else if line.contains("[ERROR]") {
            tracing::warn!(child = "rustic", pid, "{line}");
            if errors.len() < 2 {
                errors.push(line.to_owned());
            }
        } else {
            tracing::info!(child = "rustic", pid, "{line}");
        }
        if !line.trim().is_empty() && !is_backtrace(line) {
            if last.len() == KEEP_LINES {
                last.pop_front();
            }
            last.push_back(line.to_owned());
        }
    })
    .await;
    if errors.is_empty() {
        (warnings, last.into_iter().collect())
    } else {
        (warnings, errors)
    }
}

/// A line of a Rust backtrace (`  3: <unknown>`, `at ./src/x.rs:1:2`, the headings):
/// rustic prints them after an error when RUST_BACKTRACE is set, and they explain
/// nothing to an admin.
fn is_backtrace(line: &str) -> bool {
    let t = line.trim();
    let frame = t
        .split_once(": ")
        .or_else(|| t.split_once(':').filter(|(_, rest)| rest.is_empty()))
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    frame
        || t.starts_with("at ")
        || matches!(
            t,
            "Backtrace:" | "Some additional details ..." | "Caused by:" | "Context:" | "Message:"
        )
}

/// What a failure message keeps of rustic's lines: enough to say why, never a page.
const DETAIL_CAP: usize = 1000;

fn cap_detail(mut s: String) -> String {
    if s.len() > DETAIL_CAP {
        let mut end = DETAIL_CAP;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(" [cut]");
    }
    s
}

/// Stops rustic's whole process group: SIGTERM (rustic stops cleanly on it), then
/// SIGKILL to whatever of the group is still there after [`STOP_GRACE`]. Waits for
/// rustic itself, and for the group to be empty, so a stopped step leaves nothing
/// behind holding its pipes.
async fn stop_group(child: &mut Child, pid: u32) {
    use nix::sys::signal::{Signal, killpg};
    let Ok(raw) = i32::try_from(pid) else {
        let _ = child.wait().await;
        return;
    };
    if raw <= 0 {
        let _ = child.wait().await;
        return;
    }
    // rustic leads its group (process_group(0)), so the group id is its pid; the id
    // cannot be reused while any member of the group lives.
    let group = nix::unistd::Pid::from_raw(raw);
    let _ = killpg(group, Signal::SIGTERM);
    let gone = async {
        let _ = child.wait().await;
        // The rest of the group are not our children: they are not waited for, so
        // whether any is left is asked of the kernel (signal 0).
        while killpg(group, None).is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    if tokio::time::timeout(STOP_GRACE, gone).await.is_err() {
        tracing::warn!(
            pid,
            "rustic's process group did not stop within {}s of SIGTERM: killing it",
            STOP_GRACE.as_secs()
        );
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

/// CPU niceness and the idle I/O class, best effort: the unit's syscall filter may
/// forbid them, and a backup at normal priority beats no backup.
/// rustic yields CPU and disk to the hub, and under memory pressure it, not the tunnel,
/// is the one the OOM killer picks: the unit lowers hubkeeper's `oom_score_adj`
/// (-500), which children inherit, so rustic sets its own back to 0 (raising it needs
/// no privilege).
fn lower_priority(cmd: &mut Command, nice: u8, io_idle: bool) {
    // SAFETY: runs in the forked child before exec; setpriority, the ioprio_set
    // syscall, open, write and close are async-signal-safe, the path is a static C
    // string, and every failure is ignored.
    unsafe {
        cmd.pre_exec(move || {
            libc::setpriority(libc::PRIO_PROCESS, 0, libc::c_int::from(nice));
            let fd = libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd >= 0 {
                libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
            }
            if io_idle {
                const IOPRIO_WHO_PROCESS: libc::c_int = 1;
                const IOPRIO_CLASS_IDLE: libc::c_int = 3;
                const IOPRIO_CLASS_SHIFT: libc::c_int = 13;
                libc::syscall(
                    libc::SYS_ioprio_set,
                    IOPRIO_WHO_PROCESS,
                    0,
                    IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
                );
            }
            Ok(())
        });
    }
}

/// `1 MiB`-style sizes for messages.
fn humantime_bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

/// The snapshot `backup --json` printed (the last JSON object on stdout: one per
/// `[[backup.snapshots]]` entry). Public for the fuzz targets (crates/fuzz).
#[doc(hidden)]
pub fn parse_snapshot(stdout: &[u8]) -> Result<Snapshot, RunError> {
    let last = serde_json::Deserializer::from_slice(stdout)
        .into_iter::<serde_json::Value>()
        .filter_map(Result::ok)
        .last()
        .ok_or_else(|| RunError::NoSnapshot("its output was not JSON".into()))?;
    let id = last["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| RunError::NoSnapshot("no snapshot id".into()))?
        .to_owned();
    let s = &last["summary"];
    let secs = s["backup_duration"]
        .as_f64()
        .or_else(|| s["total_duration"].as_f64())
        .unwrap_or(0.0);
    Ok(Snapshot {
        id,
        files: s["total_files_processed"].as_u64().unwrap_or(0),
        bytes_added: s["data_added"].as_u64().unwrap_or(0),
        // Negative or past what a Duration holds: unknown, like a missing one.
        duration: Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_last_snapshot_object() {
        let out = br#"{"id":"aaa","summary":{"total_files_processed":1}}
{"id":"bbb","summary":{"total_files_processed":7,"data_added":1234,"backup_duration":1.5}}"#;
        let s = parse_snapshot(out).unwrap();
        assert_eq!(s.id, "bbb");
        assert_eq!(s.files, 7);
        assert_eq!(s.bytes_added, 1234);
        assert_eq!(s.duration, Duration::from_millis(1500));
        assert!(matches!(
            parse_snapshot(b"oops"),
            Err(RunError::NoSnapshot(_))
        ));
    }

    #[test]
    fn failure_details_skip_backtraces_and_are_capped() {
        for l in [
            "   3: <unknown>",
            "  10: clone3",
            "at ./nptl/x.c:1:2",
            "Backtrace:",
            "9:",
        ] {
            assert!(is_backtrace(l), "{l}");
        }
        for l in [
            "[ERROR] error checking pack bf93cb1b : MAC",
            "error: check found errors!",
        ] {
            assert!(!is_backtrace(l), "{l}");
        }
        let long = cap_detail("é".repeat(DETAIL_CAP));
        assert!(
            long.len() <= DETAIL_CAP + 6 && long.ends_with("[cut]"),
            "{long}"
        );
    }

    #[test]
    fn an_absurd_duration_from_rustic_is_unknown_not_a_panic() {
        // Found by the fuzz target `rustic`: Duration::from_secs_f64 panics past u64 seconds.
        for secs in ["1e20", "1.7976931348623157e308", "-5"] {
            let out = format!(r#"{{"id":"aaa","summary":{{"backup_duration":{secs}}}}}"#);
            let s = parse_snapshot(out.as_bytes()).unwrap();
            assert_eq!(s.duration, Duration::ZERO, "{secs}");
        }
    }

    #[test]
    fn codes_and_hints() {
        let e = RunError::Missing("/usr/bin/rustic".into());
        assert_eq!(e.kind().code(), "rustic_missing");
        assert!(e.kind().hint().contains("install rustic"));
        let f = RunError::Failed {
            step: "forget",
            how: "exit code 1".into(),
            detail: "x".into(),
        };
        assert_eq!(f.kind().code(), "backup_retention_failed");
    }
}
