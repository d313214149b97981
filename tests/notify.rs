//! The systemd notify protocol, recorded by a test-side datagram socket given to the
//! daemon as NOTIFY_SOCKET: READY after the socket listens, STATUS on changes,
//! WATCHDOG pings, RELOADING + MONOTONIC_USEC then READY on reload, STOPPING on exit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use nix::sys::signal::Signal;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use support::*;
use testkit as support;

struct Recorder {
    sock: UnixDatagram,
    seen: Vec<String>,
}

impl Recorder {
    /// Binds the notify socket in `dir`; returns it and its path for NOTIFY_SOCKET.
    fn new(dir: &tempfile::TempDir) -> (Recorder, String) {
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let rec = Recorder {
            sock,
            seen: Vec::new(),
        };
        (rec, path.to_str().unwrap().to_owned())
    }

    /// Reads datagrams until one satisfies `f`; returns it. Everything read is kept.
    fn wait(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if f(&msg) {
                    return msg;
                }
            }
        }
        panic!("no notify message for {what}; seen: {:#?}", self.seen);
    }
}

fn lines(msg: &str) -> Vec<&str> {
    msg.lines().collect()
}

#[test]
fn notify_protocol_from_start_to_stop() {
    let dir = open_tempdir();
    let (mut rec, path) = Recorder::new(&dir);
    std::fs::write(dir.path().join("tok"), "cf-token").unwrap();
    let mut d = Daemon::spawn(
        dir,
        BASE,
        &[
            ("NOTIFY_SOCKET", path.as_str()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );

    let ready = rec.wait("READY=1", |m| lines(m).contains(&"READY=1"));
    // READY means the socket listens: a request right now must succeed.
    assert_eq!(get(&d.socket, "/v1/status").status, 200);
    assert!(lines(&ready).contains(&"STATUS=disabled"), "{ready}");

    // Watchdog pings at half of WATCHDOG_USEC, from the event loop.
    for _ in 0..3 {
        rec.wait("WATCHDOG=1", |m| lines(m).contains(&"WATCHDOG=1"));
    }

    // A config change by file: RELOADING with a timestamp, a new STATUS, then READY.
    save_like_an_editor(
        &d.config,
        &format!(
            "{BASE}enabled = true\nmode = \"self-managed\"\nhub_id = \"hub-1\"\n[self_managed]\naccount_id = \"a\"\napi_token_file = \"tok\"\nzone = \"example.com\"\nhostname = \"h.example.com\"\n"
        ),
    );
    let reloading = rec.wait("RELOADING=1", |m| lines(m).contains(&"RELOADING=1"));
    let mono = lines(&reloading)
        .into_iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("RELOADING without MONOTONIC_USEC: {reloading}"));
    assert!(mono.parse::<u64>().unwrap() > 0);
    let status = rec.wait("STATUS=error", |m| {
        m.contains("STATUS=error: self-managed mode is not available")
    });
    assert!(
        !status.contains('\n') || status.lines().all(|l| l.contains('=')),
        "{status}"
    );
    rec.wait("READY=1 after reload", |m| lines(m).contains(&"READY=1"));

    // SIGHUP: the same sequence.
    d.signal(Signal::SIGHUP);
    rec.wait("RELOADING=1 after SIGHUP", |m| {
        lines(m).contains(&"RELOADING=1")
    });
    rec.wait("READY=1 after SIGHUP", |m| lines(m).contains(&"READY=1"));

    d.signal(Signal::SIGTERM);
    rec.wait("STOPPING=1", |m| lines(m).contains(&"STOPPING=1"));
    assert_eq!(d.wait_exit().code(), Some(0));
}

#[test]
fn no_watchdog_pings_without_watchdog_usec() {
    let dir = open_tempdir();
    let (mut rec, path) = Recorder::new(&dir);
    let mut d = Daemon::spawn(dir, BASE, &[("NOTIFY_SOCKET", path.as_str())]);
    rec.wait("READY=1", |m| lines(m).contains(&"READY=1"));
    // Stop it and collect everything it sent: no WATCHDOG among it.
    d.signal(Signal::SIGTERM);
    rec.wait("STOPPING=1", |m| lines(m).contains(&"STOPPING=1"));
    d.wait_exit();
    assert!(
        !rec.seen.iter().any(|m| m.contains("WATCHDOG")),
        "{:?}",
        rec.seen
    );
}
