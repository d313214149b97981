//! The socket API against the real daemon: routing and the one error shape, browser
//! refusal, body and header limits, malformed and slow clients, the connection bound,
//! and who may POST (peer credentials).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;
use support::*;
use testkit as support;

fn assert_error_shape(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn unknown_paths_and_wrong_methods_get_json_errors() {
    let d = Daemon::start("");
    assert_error_shape(&get(&d.socket, "/v2/nope"), 404, "not_found");
    let r = request(&d.socket, "DELETE", "/v1/status", "");
    assert_error_shape(&r, 405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = get(&d.socket, "/v1/backup");
    assert_error_shape(&r, 405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"));
}

#[test]
fn browser_requests_are_refused() {
    let d = Daemon::start("");
    let r = request(
        &d.socket,
        "GET",
        "/v1/status",
        "Origin: http://evil.example\r\n",
    );
    assert_error_shape(&r, 403, "browser_request_refused");
    let r = request(
        &d.socket,
        "POST",
        "/v1/check",
        "Referer: http://evil.example/x\r\n",
    );
    assert_error_shape(&r, 403, "browser_request_refused");
}

#[test]
fn metrics_and_check_answer() {
    let d = Daemon::start("");
    let m = get(&d.socket, "/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let t = m.text();
    assert!(t.contains("hubkeeper_state{state=\"disabled\"} 1"), "{t}");
    assert!(t.contains("hubkeeper_uptime_seconds"), "{t}");
    assert!(t.contains("hubkeeper_build_info{version="), "{t}");
    let c = post(&d.socket, "/v1/check");
    assert_eq!(c.status, 200, "{}", c.text());
    assert_eq!(c.json()["state"], "disabled");
    assert_error_shape(&post(&d.socket, "/v1/rotate-keys"), 409, "disabled");
    assert_error_shape(&post(&d.socket, "/v1/backup"), 409, "backups_disabled");
}

#[test]
fn post_bodies_are_parsed_strictly() {
    let d = Daemon::start("");
    let ok = raw(
        &d.socket,
        b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    )
    .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    let bad = raw(
        &d.socket,
        b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\n{\"force\":true}",
    )
    .unwrap();
    assert_error_shape(&bad, 400, "bad_request");
    assert!(bad.text().contains("unknown field"), "{}", bad.text());
}

#[test]
fn bodies_over_64_kib_get_413() {
    let d = Daemon::start("");
    // Declared too large: refused without reading it.
    let r = raw(
        &d.socket,
        b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n",
    )
    .unwrap();
    assert_error_shape(&r, 413, "body_too_large");
    // Chunked, growing past the limit.
    let mut req =
        b"POST /v1/check HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let chunk = vec![b' '; 16 * 1024];
    for _ in 0..5 {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = raw(&d.socket, &req).unwrap();
    assert_error_shape(&r, 413, "body_too_large");
    // Exactly at the limit is fine (whitespace is an empty body).
    let mut req = b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n".to_vec();
    req.extend(std::iter::repeat_n(b' ', 65536));
    assert_eq!(raw(&d.socket, &req).unwrap().status, 200);
}

#[test]
fn malformed_http_and_oversized_headers_are_refused() {
    let d = Daemon::start("");
    let r = raw(&d.socket, b"THIS IS NOT HTTP\r\n\r\n").unwrap();
    assert_eq!(r.status, 400);
    let big = format!(
        "GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let r = raw(&d.socket, big.as_bytes()).unwrap();
    assert_eq!(r.status, 431);
    // The daemon is fine afterwards.
    assert_eq!(d.status()["state"], "disabled");
}

/// Reads until the peer closes; returns what arrived. Panics if it stays open.
fn read_until_closed(s: &mut UnixStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("connection not closed by the daemon: {e}"),
        }
    }
}

#[test]
fn a_client_that_sends_half_a_request_is_dropped() {
    let d = Daemon::start("[api]\nrequest_timeout = \"300ms\"\n");
    let mut slow = UnixStream::connect(&d.socket).unwrap();
    slow.write_all(b"GET /v1/status HTTP/1.1\r\nHost: hub")
        .unwrap();
    // Others are served meanwhile.
    assert_eq!(d.status()["state"], "disabled");
    let got = read_until_closed(&mut slow);
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"), "{got:?}");

    // Headers complete, body never finishes: 408 and closed.
    let mut slow = UnixStream::connect(&d.socket).unwrap();
    slow.write_all(b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    let got = read_until_closed(&mut slow);
    let r = parse_response(&got).expect("a response before the close");
    assert_error_shape(&r, 408, "request_timeout");
}

#[test]
fn connections_beyond_the_bound_wait_their_turn() {
    let d = Daemon::start("[api]\nmax_connections = 2\nrequest_timeout = \"20s\"\n");
    let idle1 = UnixStream::connect(&d.socket).unwrap();
    let _idle2 = UnixStream::connect(&d.socket).unwrap();
    let mut third = UnixStream::connect(&d.socket).unwrap();
    third
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    // Both permits are held by idle clients: no answer yet.
    third
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 512];
    let early = third.read(&mut buf);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "third connection was served beyond the bound: {early:?}"
    );
    // One idle client leaves: the waiting one is served.
    drop(idle1);
    let got = read_until_closed(&mut third);
    assert_eq!(parse_response(&got).unwrap().status, 503);
}

#[test]
fn only_root_the_daemon_user_and_the_socket_group_may_post() {
    if !is_root() {
        eprintln!("skipped: needs root to run clients as other users");
        return;
    }
    // 0666 so that `nobody` can connect at all; the POST check must still stop it.
    let d = Daemon::start("socket_mode = \"0666\"\nsocket_group = \"daemon\"\n");
    let sock = d.socket.to_str().unwrap();

    let (code, out, err) = cli_as(&["status", "--socket", sock], Some(65534));
    assert_eq!(code, 0, "nobody may read: {out}{err}");
    assert!(out.contains("DISABLED"), "{out}");

    let (code, _, err) = cli_as(&["backup", "--socket", sock], Some(65534));
    assert_eq!(code, 1);
    assert!(
        err.contains("POST is allowed only to root") && err.contains("403"),
        "{err}"
    );

    // A member of the socket's group (gid 1 = daemon) may: it gets past the check to
    // the real answer (backups are not available: 409).
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(&*BIN)
        .args(["backup", "--socket", sock])
        .uid(65534)
        .gid(1)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("409") && !err.contains("403"), "{err}");

    // Root may too.
    let (_, _, err) = cli(&["backup", "--socket", sock]);
    assert!(err.contains("409"), "{err}");
}

#[test]
fn no_secret_reaches_logs_status_metrics_or_argv() {
    let token = "ctl-tok-8d1f0c2e9a7b";
    let d = Daemon::start_with_files(
        "enabled = true\nmode = \"managed\"\nhub_id = \"hub-1\"\nlog_level = \"trace\"\n[managed]\nurl = \"http://127.0.0.1:9\"\naccount_id = \"a\"\nlicense_id = \"l\"\ntoken_file = \"control-token\"\n",
        &[("control-token", token)],
    );
    // Exercise every path that could print things: reload (refused and applied), API.
    save_like_an_editor(&d.config, &format!("{BASE}enabled = maybe\n"));
    d.wait_status("config error", |s| {
        s["errors"].to_string().contains("config_invalid")
    });
    let cfg = std::fs::read_to_string(d.dir.path().join("hk.toml")).unwrap();
    assert!(!cfg.contains(token));
    let status = get(&d.socket, "/v1/status").text();
    let metrics = get(&d.socket, "/metrics").text();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", d.child.id())).unwrap();
    let environ = std::fs::read(format!("/proc/{}/environ", d.child.id())).unwrap();
    for (what, text) in [
        ("status", status),
        ("metrics", metrics),
        ("log", d.log()),
        ("argv", String::from_utf8_lossy(&cmdline).into_owned()),
        (
            "environment",
            String::from_utf8_lossy(&environ).into_owned(),
        ),
    ] {
        assert!(
            !text.contains(token),
            "the control token leaked into {what}"
        );
    }
}
