//! `cloudflared-standin`: a TEST STAND-IN for `cloudflared tunnel run`. It is NOT
//! cloudflared, opens no connection to Cloudflare, carries no traffic, and must never be
//! installed as cloudflared on a real host.
//!
//! hubkeeper's tests and the local dev stack run it where the real binary cannot be
//! installed or reach Cloudflare. It imitates, after cloudflared 2026.8.2, only what
//! hubkeeper depends on:
//!
//! - the two pinned invocations (spec §5), with cloudflared's flag syntax and its exit
//!   codes: 255 for usage errors and an unreadable or invalid token, 1 for other start
//!   errors (bad config or credentials file, `--grace-period` over 3m, metrics address
//!   not bindable);
//! - the metrics server on `--metrics`: `/ready` (200 with `readyConnections` once
//!   connected, 503 before and while shutting down), `/healthcheck`, `/metrics`;
//! - signals: the first SIGTERM/SIGINT drains (at most the grace period) and exits 0;
//!   a second one during the drain kills the process, as cloudflared's handler is gone;
//! - `READY=1` to `$NOTIFY_SOCKET` once connected, and cloudflared's log format;
//! - an "edge" listener standing for Cloudflare's edge in front of the tunnel, when the
//!   control directory has an `edge` file (see `edge`): it proxies to the origin and
//!   answers 502/530 like Cloudflare when the path is broken;
//! - never exiting on its own once started, unless told to crash.
//!
//! Tests steer and observe it through `$CLOUDFLARED_STANDIN_DIR` (see `control`).

// A test stand-in: a panic here is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod control;
mod credentials;
mod edge;
mod log;
mod metrics_server;
mod tunnel;

use cli::{Invocation, RunArgs, Source, UsageError};
use control::{Control, OnSigterm};
use credentials::Failure;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;
use tunnel::Tunnel;

/// Exit status for a broken behavior file: a code cloudflared never uses, so a typo in
/// a test cannot pass for simulated cloudflared behaviour.
const EXIT_BAD_BEHAVIOR: i32 = 2;

fn main() {
    let start = Instant::now();
    let argv: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let control = Control::from_env();
    control.start_event(&argv);

    let behavior = match control.load() {
        Ok(b) => b,
        Err(e) => {
            log::plain(&format!("cloudflared-standin: {e}"));
            control.event("behavior_error", "at=start");
            finish(&control, EXIT_BAD_BEHAVIOR);
        }
    };
    let args = match cli::parse(&argv) {
        Ok(Invocation::Version) => {
            println!(
                "cloudflared version {} (built cloudflared-standin, a test stand-in)",
                cli::IMITATED_VERSION
            );
            finish(&control, 0);
        }
        Ok(Invocation::Help) => {
            println!("{}", cli::HELP);
            finish(&control, 0);
        }
        Ok(Invocation::Run(args)) => args,
        Err(UsageError(msg)) => {
            log::plain(&msg);
            finish(&control, 255);
        }
    };
    if behavior.exit_after == Some(Duration::ZERO) {
        simulated_crash(&control, behavior.exit_code, Duration::ZERO);
    }

    let identity = match &args.source {
        Source::TokenFile(path) => credentials::from_token_file(path),
        Source::Config(path) => credentials::from_config(path),
    };
    let identity = match identity {
        Ok(id) => id,
        Err(Failure::Usage(msg)) => {
            log::plain(&msg);
            finish(&control, 255);
        }
        Err(Failure::Runtime(msg)) => {
            log::plain(&msg);
            finish(&control, 1);
        }
    };

    let tunnel = Arc::new(Tunnel::new(start, control.clone(), behavior));
    log_start(&args, &tunnel, &identity);
    if args.grace_period > cli::MAX_GRACE_PERIOD {
        let msg = "grace-period must be equal or less than 3m0s";
        log::error("Couldn't start tunnel", &[("error", msg)]);
        log::plain(msg);
        finish(&control, 1);
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(run(&args, tunnel));
    finish(&control, code);
}

fn log_start(args: &RunArgs, tunnel: &Tunnel, identity: &credentials::Identity) {
    log::info(
        "Starting tunnel",
        &[("tunnelID", &identity.tunnel_id.to_string())],
    );
    log::info(
        &format!(
            "Version {} (Checksum cloudflared-standin)",
            cli::IMITATED_VERSION
        ),
        &[],
    );
    log::info(
        &format!(
            "GOOS: linux, GOVersion: cloudflared-standin, GoArch: {}",
            std::env::consts::ARCH
        ),
        &[],
    );
    // Only flag values, which are paths and addresses: the token itself never is one.
    let mut settings = vec![
        ("grace-period", args.grace_period_text.clone()),
        ("metrics", args.metrics.clone()),
        ("no-autoupdate", args.no_autoupdate.to_string()),
    ];
    match &args.source {
        Source::TokenFile(p) => settings.push(("token-file", p.display().to_string())),
        Source::Config(p) => settings.insert(0, ("config", p.display().to_string())),
    }
    let settings: Vec<String> = settings.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    log::info(&format!("Settings: map[{}]", settings.join(" ")), &[]);
    if !args.no_autoupdate {
        log::warn(
            "cloudflared-standin: without --no-autoupdate real cloudflared checks for updates \
             and restarts itself (exit 11) after applying one",
            &[],
        );
    }
    for w in &identity.warnings {
        log::warn(w, &[]);
    }
    log::info(
        &format!("Generated Connector ID: {}", tunnel.connector_id),
        &[],
    );
    log::info("Initial protocol quic", &[]);
}

async fn run(args: &RunArgs, tunnel: Arc<Tunnel>) -> i32 {
    let (Ok(mut sigterm), Ok(mut sigint)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        log::error("cloudflared-standin: cannot install signal handlers", &[]);
        return 1;
    };
    let at_start = tunnel.behavior();
    // A wedged start: alive, answering nothing, never connecting.
    if !at_start.hang_start {
        let listener = match tokio::net::TcpListener::bind(&args.metrics).await {
            Ok(l) => l,
            Err(e) => {
                let err = format!("failed to bind to address ({}): {e}", args.metrics);
                log::error("Error opening metrics server listener", &[("error", &err)]);
                log::plain(&format!("Error opening metrics server listener: {err}"));
                return 1;
            }
        };
        let bound = listener
            .local_addr()
            .map_or_else(|_| args.metrics.clone(), |a| a.to_string());
        log::info(&format!("Starting metrics server on {bound}/metrics"), &[]);
        tokio::spawn(metrics_server::serve(listener, tunnel.clone()));
        match edge::EdgeConfig::load(&tunnel.control) {
            Ok(Some(edge::EdgeConfig {
                listen: Some(addr), ..
            })) => match tokio::net::TcpListener::bind(&addr).await {
                Ok(l) => {
                    log::info(
                        &format!("cloudflared-standin: edge listening on {addr}"),
                        &[],
                    );
                    tokio::spawn(edge::serve(l, tunnel.clone()));
                }
                Err(e) => {
                    log::error(
                        "cloudflared-standin: cannot listen as the edge",
                        &[("address", &addr), ("error", &e.to_string())],
                    );
                    return 1;
                }
            },
            Ok(_) => {}
            Err(e) => {
                log::plain(&format!("cloudflared-standin: {e}"));
                tunnel.control.event("behavior_error", "at=start");
                return EXIT_BAD_BEHAVIOR;
            }
        }
        let t = tunnel.clone();
        tokio::spawn(async move { t.connect_when_due().await });
    }
    if at_start.flood_lines > 0 || at_start.flood_unbroken > 0 {
        let control = tunnel.control.clone();
        // Blocking writes on a thread of their own: a reader that is slow (or gone)
        // must not stall /ready or the signal handling.
        let b = at_start.clone();
        std::thread::spawn(move || flood(&control, &b));
    }

    let crash_at = at_start.exit_after.map(|d| tunnel.start + d);
    let mut drain_until: Option<Instant> = None;
    let mut signals = 0u32;
    loop {
        let (go_name, event_name, signo) = tokio::select! {
            () = sleep_until(crash_at) => {
                simulated_crash(&tunnel.control, at_start.exit_code, at_start.exit_after.unwrap_or_default());
            }
            () = sleep_until(drain_until) => {
                log::info("Tunnel server stopped", &[]);
                log::info("Metrics server stopped", &[]);
                return 0;
            }
            _ = sigterm.recv() => ("terminated", "sigterm", libc::SIGTERM),
            _ = sigint.recv() => ("interrupt", "sigint", libc::SIGINT),
        };
        signals += 1;
        if drain_until.is_some() {
            tunnel
                .control
                .event(event_name, &format!("n={signals} action=die"));
            die_by_signal(&tunnel.control, signo);
        }
        let behavior = tunnel.reload();
        match behavior.on_sigterm {
            OnSigterm::Ignore => {
                log::warn(
                    &format!(
                        "cloudflared-standin: ignoring signal {go_name} (on_sigterm = ignore)"
                    ),
                    &[],
                );
                tunnel
                    .control
                    .event(event_name, &format!("n={signals} action=ignore"));
            }
            OnSigterm::Graceful => {
                log::info(
                    &format!("Initiating graceful shutdown due to signal {go_name} ..."),
                    &[],
                );
                tunnel
                    .control
                    .event(event_name, &format!("n={signals} action=graceful"));
                tunnel.begin_drain();
                drain_until = Some(Instant::now() + behavior.drain.min(args.grace_period));
            }
        }
    }
}

/// Floods stdout and stderr as a misbehaving child would (`flood_lines`,
/// `flood_unbroken`), then records `flood_done` with what was written.
fn flood(control: &Control, b: &control::Behavior) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let body = "x".repeat(b.flood_line_bytes.saturating_sub(1));
    let mut lines = 0u64;
    for n in 0..b.flood_lines {
        let w: &mut dyn Write = if n % 2 == 0 { &mut out } else { &mut err };
        if writeln!(w, "{body}").is_err() {
            break;
        }
        lines += 1;
    }
    let _ = out.flush();
    let chunk = vec![b'y'; 64 * 1024];
    let mut unbroken = 0u64;
    while unbroken < b.flood_unbroken {
        let k = (b.flood_unbroken - unbroken).min(chunk.len() as u64) as usize;
        if out.write_all(&chunk[..k]).is_err() {
            break;
        }
        unbroken += k as u64;
    }
    // The end of the unbroken run, so the reader sees one (huge) line end here.
    let _ = out.write_all(b"\n");
    let _ = out.flush();
    control.event("flood_done", &format!("lines={lines} unbroken={unbroken}"));
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn simulated_crash(control: &Control, code: i32, after: Duration) -> ! {
    log::error(
        "cloudflared-standin: simulated crash (exit_after)",
        &[
            ("after", &format!("{after:?}")),
            ("exit_code", &code.to_string()),
        ],
    );
    finish(control, code);
}

/// cloudflared removes its signal handler after the first SIGTERM/SIGINT, so the next
/// one takes the default action: the process dies by that signal, with no exit code.
fn die_by_signal(control: &Control, signo: i32) -> ! {
    log::warn(
        "cloudflared-standin: second signal during the grace period; dying by it as cloudflared does",
        &[],
    );
    control.event("exit", &format!("signal={signo}"));
    // SAFETY: restoring the default disposition and raising a signal touch no Rust
    // state; the process is about to end.
    unsafe {
        libc::signal(signo, libc::SIG_DFL);
        libc::raise(signo);
    }
    // Unreachable unless the signal is blocked; mirror the shell's 128+n then.
    finish(control, 128 + signo);
}

/// Records the exit and ends the process.
fn finish(control: &Control, code: i32) -> ! {
    control.event("exit", &format!("code={code}"));
    std::process::exit(code);
}
