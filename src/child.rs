//! Spawning the children hubkeeper runs (cloudflared and rustic) the same
//! careful way: no systemd notify variables, their own process group, killed when
//! the daemon dies, and their output forwarded line by line to our log: drained to the
//! end whatever it holds, with each line capped.

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
    for_each_line(stream, |line| {
        // A child's bytes must not be able to forge or recolour lines of our log.
        let line = hubkeeper_proto::text::printable(line);
        // cloudflared marks levels as INF/WRN/ERR/DBG; keep them meaningful in ours.
        if line.contains(" ERR ") || line.contains(" WRN ") {
            tracing::warn!(child = name, pid, "{line}");
        } else if line.contains(" DBG ") {
            tracing::debug!(child = name, pid, "{line}");
        } else {
            tracing::info!(child = name, pid, "{line}");
        }
    })
    .await;
}

/// The longest line kept from a child's output; the rest of a longer one is counted
/// and dropped, so a child that never writes a newline costs this much, not all it
/// wrote.
pub const MAX_LINE: usize = 8 * 1024;

/// Calls `f` with each line of `stream` until it ends: bytes that are not UTF-8 are
/// replaced (U+FFFD), a line over [`MAX_LINE`] is cut and says how much was cut. It
/// never stops early: a child whose pipe nobody drains blocks, or dies of SIGPIPE.
pub async fn for_each_line(stream: impl AsyncRead + Unpin, mut f: impl FnMut(&str)) {
    let mut reader = BufReader::new(stream);
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut cut: usize = 0;
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        let newline = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        let keep = chunk.len().min(MAX_LINE.saturating_sub(line.len()));
        line.extend_from_slice(&chunk[..keep]);
        cut += chunk.len() - keep;
        let consumed = newline.map_or(buf.len(), |i| i + 1);
        reader.consume(consumed);
        if newline.is_some() {
            emit(&mut line, &mut cut, &mut f);
        }
    }
    if !line.is_empty() || cut > 0 {
        emit(&mut line, &mut cut, &mut f);
    }
}

fn emit(line: &mut Vec<u8>, cut: &mut usize, f: &mut impl FnMut(&str)) {
    let text = String::from_utf8_lossy(line);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    if *cut > 0 {
        f(&format!("{text} [{cut} more bytes cut]"));
    } else {
        f(text);
    }
    line.clear();
    *cut = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for_each_line(bytes, |l| out.push(l.to_owned())).await;
        out
    }

    /// One byte that is not UTF-8 used to end the forwarder (issue 8): the child's
    /// next write then met a closed pipe.
    #[tokio::test]
    async fn bytes_that_are_not_utf8_do_not_stop_the_reading() {
        let got = lines_of(b"first\nbad \xff\xfe byte\r\nlast\n").await;
        assert_eq!(got, ["first", "bad \u{fffd}\u{fffd} byte", "last"]);
    }

    #[tokio::test]
    async fn a_line_without_end_is_capped_and_what_follows_still_arrives() {
        let mut input = vec![b'x'; MAX_LINE + 5000];
        input.extend_from_slice(b"\nafter\ntail without newline");
        let got = lines_of(&input).await;
        assert_eq!(
            got.len(),
            3,
            "{:?}",
            got.iter().map(String::len).collect::<Vec<_>>()
        );
        assert_eq!(
            got[0],
            format!("{} [5000 more bytes cut]", "x".repeat(MAX_LINE))
        );
        assert_eq!(got[1], "after");
        assert_eq!(got[2], "tail without newline");
    }

    /// A real child's pipe, as the daemon reads it: everything is drained, and the child
    /// exits 0 instead of dying of SIGPIPE halfway.
    #[tokio::test]
    async fn a_child_writing_invalid_bytes_is_drained_to_the_end() {
        let mut child = Command::new("sh")
            .args([
                "-c",
                "printf 'a\\377\\n'; i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut n = 0;
        let mut last = String::new();
        for_each_line(out, |l| {
            n += 1;
            last = l.to_owned();
        })
        .await;
        assert!(child.wait().await.unwrap().success());
        assert_eq!((n, last.as_str()), (2001, "line 1999"));
    }
}
