//! Spawning the children hubkeeper runs (cloudflared and rustic) the same
//! careful way: no systemd notify variables, their own process group, killed when
//! the daemon dies, and their output forwarded line by line to our log.

use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// Variables a child must not inherit: with NOTIFY_SOCKET, cloudflared would tell
/// systemd READY=1 on our behalf (it calls sd_notify after connecting).
const STRIPPED_ENV: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Makes `cmd` a supervised child: stripped environment, its own process group,
/// killed with the daemon. Its stdio is the caller's business.
pub fn prepare(cmd: &mut Command) {
    for var in STRIPPED_ENV {
        cmd.env_remove(var);
    }
    let parent = nix::unistd::getpid();
    cmd.stdin(Stdio::null())
        // Its own group: one signal reaches everything it started, and a Ctrl-C in a
        // terminal running the daemon does not hit it directly.
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            // PDEATHSIG fires when the thread that forked us exits; tokio spawns from
            // its long-lived worker threads, which live as long as the daemon.
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The daemon may have died between fork and prctl: then nobody would
            // send the signal.
            if nix::unistd::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Spawns `cmd` as a supervised child named `name` (the `child` log field), with its
/// stdout and stderr lines forwarded to our log.
pub fn spawn(mut cmd: Command, name: &'static str) -> std::io::Result<Child> {
    prepare(&mut cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward(out, name, pid));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward(err, name, pid));
    }
    Ok(child)
}

async fn forward(stream: impl AsyncRead + Unpin, name: &'static str, pid: u32) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        // cloudflared marks levels as INF/WRN/ERR/DBG; keep them meaningful in ours.
        if line.contains(" ERR ") || line.contains(" WRN ") {
            tracing::warn!(child = name, pid, "{line}");
        } else if line.contains(" DBG ") {
            tracing::debug!(child = name, pid, "{line}");
        } else {
            tracing::info!(child = name, pid, "{line}");
        }
    }
}
