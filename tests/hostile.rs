//! Hostile and careless peers against the real daemon: a client that pipelines
//! requests and never reads the answers, idle keep-alive clients filling the
//! connection permits, and config or token files replaced by FIFOs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::*;
use testkit as support;

const STATUS: &[u8] = b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n";

/// A connection that pipelines `GET /v1/status` for as long as the daemon takes them
/// and never reads an answer. The writer thread ends when the daemon closes it.
fn pipeline_without_reading(s: UnixStream) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut s = s;
        let chunk = STATUS.repeat(100);
        while s.write_all(&chunk).is_ok() {}
    })
}

/// A keep-alive connection that was answered once and then says nothing.
fn idle_keep_alive(mut s: UnixStream) -> UnixStream {
    s.write_all(STATUS).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while parse_response(&buf).is_none_or(|r| r.body.len() < content_length(&r)) {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the first answer");
        buf.extend_from_slice(&chunk[..n]);
    }
    s
}

fn content_length(r: &Resp) -> usize {
    r.header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Connects to `socket` as `uid` (effective uid of one short-lived thread only: the
/// kernel records the connecting thread's credentials for SO_PEERCRED).
fn connect_as(uid: u32, socket: &Path) -> UnixStream {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: the raw syscall changes this thread's credentials only (glibc's
            // setresuid would change every thread's); the thread ends right after.
            let rc = unsafe {
                libc::syscall(libc::SYS_setresuid, libc::uid_t::MAX, uid, libc::uid_t::MAX)
            };
            assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());
            UnixStream::connect(socket).unwrap()
        })
        .join()
        .unwrap()
    })
}

/// Whether the daemon has closed `s` (read side at EOF or reset), without reading.
fn closed_by_peer(s: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

#[test]
fn a_client_that_never_reads_its_answers_is_disconnected() {
    let d = Daemon::start("[api]\nrequest_timeout = \"1s\"\n");
    let hostile = pipeline_without_reading(UnixStream::connect(&d.socket).unwrap());
    let idle = idle_keep_alive(UnixStream::connect(&d.socket).unwrap());
    // A stalled write is cut off after request_timeout; give it a generous margin.
    wait_for(
        Duration::from_secs(8),
        "the daemon to close the connection whose peer does not read",
        || hostile.is_finished(),
    );
    wait_for(
        Duration::from_secs(8),
        "the daemon to close the idle keep-alive connection",
        || closed_by_peer(&idle),
    );
    assert_eq!(d.status()["state"], "disabled");
}

#[test]
fn hostile_peers_filling_the_permits_cannot_starve_others() {
    if !is_root() {
        eprintln!("skipped: needs root to connect as another user");
        return;
    }
    let d = Daemon::start(
        "socket_mode = \"0666\"\n[api]\nmax_connections = 4\nrequest_timeout = \"2s\"\n",
    );
    // `nobody` takes every permit: pipelining without reading, and idle keep-alive.
    let idle: Vec<UnixStream> = (0..2)
        .map(|_| connect_as(65534, &d.socket))
        .map(idle_keep_alive)
        .collect();
    let hostile: Vec<JoinHandle<()>> = (0..4)
        .map(|_| pipeline_without_reading(connect_as(65534, &d.socket)))
        .collect();

    // root is still answered, well before the 2 s in which the stalled ones are cut.
    let started = Instant::now();
    let mut honest = UnixStream::connect(&d.socket).unwrap();
    honest
        .set_read_timeout(Some(Duration::from_secs(2 + 3)))
        .unwrap();
    honest
        .write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = honest.read_to_end(&mut got);
    let r = parse_response(&got).unwrap_or_else(|| {
        panic!(
            "no answer within {:?} while a hostile peer holds the permits; log:\n{}",
            started.elapsed(),
            d.log()
        )
    });
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "disabled");

    // Past its share, `nobody` is told so at once.
    let mut more = connect_as(65534, &d.socket);
    more.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = more.write_all(STATUS);
    let mut got = Vec::new();
    let _ = more.read_to_end(&mut got);
    let r = parse_response(&got).expect("a refusal before the close");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "too_many_connections");

    // Every hostile connection is closed: stalled writes and idle ones alike.
    wait_for(
        Duration::from_secs(10),
        "the daemon to close every connection of the peer that does not read",
        || hostile.iter().all(JoinHandle::is_finished),
    );
    wait_for(
        Duration::from_secs(10),
        "the daemon to close the idle keep-alive connections",
        || idle.iter().all(closed_by_peer),
    );
}

fn mkfifo(p: &Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// Runs the CLI with `args`, killing it if it has not exited within 10 s (a read
/// that blocks on a FIFO would otherwise hang the test): (exit code, stderr).
fn cli_within_deadline(args: &[&str]) -> (i32, String) {
    let mut child = std::process::Command::new(&*BIN)
        .args(args)
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hubkeeper {args:?} did not exit within 10s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), err)
}

fn managed(token_file: &str) -> String {
    format!(
        "enabled = true\nmode = \"managed\"\nhub_id = \"hub-1\"\n[managed]\nurl = \"http://127.0.0.1:9\"\naccount_id = \"a\"\nlicense_id = \"l\"\ntoken_file = \"{token_file}\"\n"
    )
}

#[test]
fn a_config_replaced_by_a_fifo_does_not_block_the_daemon() {
    let d = Daemon::start("");
    std::fs::remove_file(&d.config).unwrap();
    mkfifo(&d.config);
    d.signal(nix::sys::signal::Signal::SIGHUP);
    // The event loop still answers (this waits on the loop) within the raw client's
    // 10 s read timeout, and says what is wrong with the config.
    let r = post(&d.socket, "/v1/check");
    assert!(r.status < 500 || r.status == 503, "{}", r.text());
    let st = d.wait_status("the FIFO to be reported as a config error", |s| {
        s.to_string().contains("is a FIFO, not a regular file")
    });
    assert_eq!(
        st["state"], "disabled",
        "the last good config stays: {st:#}"
    );
    let mut d = d;
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let st = d.wait_exit();
    assert!(st.success(), "{st:?}; log:\n{}", d.log());
}

#[test]
fn check_config_and_run_refuse_a_fifo_config() {
    let d = open_tempdir();
    let p = d.path().join("hk.toml");
    mkfifo(&p);
    for verb in ["check-config", "run"] {
        let (code, err) = cli_within_deadline(&[verb, "--config", p.to_str().unwrap()]);
        assert_eq!(code, 78, "{verb}: {err}");
        assert!(
            err.contains(p.to_str().unwrap()) && err.contains("is a FIFO, not a regular file"),
            "{verb}: {err}"
        );
    }
}

#[test]
fn token_files_that_are_not_regular_files_are_config_errors() {
    let d = open_tempdir();
    mkfifo(&d.path().join("fifo-token"));
    let p = d.path().join("hk.toml");
    for (token, what) in [
        ("fifo-token", "is a FIFO, not a regular file"),
        ("/dev/zero", "is a character device, not a regular file"),
    ] {
        std::fs::write(&p, managed(token)).unwrap();
        let (code, err) = cli_within_deadline(&["check-config", "--config", p.to_str().unwrap()]);
        assert_eq!(code, 78, "{err}");
        assert!(
            err.contains("managed.token_file") && err.contains(token) && err.contains(what),
            "{err}"
        );
    }
}

#[test]
fn huge_config_and_token_files_are_refused_unread() {
    let d = open_tempdir();
    // Sparse: 1 GiB that costs nothing on disk, and would cost 1 GiB to read whole.
    let huge = d.path().join("huge");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let (code, err) = cli_within_deadline(&["check-config", "--config", huge.to_str().unwrap()]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("larger than"), "{err}");
    let p = d.path().join("hk.toml");
    std::fs::write(&p, managed("huge")).unwrap();
    let (code, err) = cli_within_deadline(&["check-config", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("managed.token_file") && err.contains("larger than"),
        "{err}"
    );
}
