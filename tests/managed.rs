//! Managed mode end to end with real processes: the daemon, the real control service
//! (local provisioner on an rclone S3 store), and the cloudflared stand-in. Enable,
//! supervision (crash, 503, hang, missing binary), signals, disable (also while the
//! control service is down), startup without the control service, enroll failures,
//! rotation, and no secret anywhere it must not be.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use nix::sys::signal::Signal;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;
use support::s3::free_port;
use support::stack::*;
use support::*;
use testkit as support;

fn ready(s: &serde_json::Value) -> bool {
    s["state"] == "ready"
}

fn start_enabled(cs: &ControlService, behavior: &str) -> (Daemon, Standin) {
    let (d, st) = start_managed(&managed_config(&cs.url, free_port(), ""), behavior);
    d.wait_status("ready", ready);
    (d, st)
}

#[test]
fn enable_runs_the_tunnel_and_reports_ready() {
    let cs = ControlService::start();
    let (d, st) = start_enabled(&cs, "");
    let s = d.status();
    assert_eq!(s["enabled"], true);
    assert_eq!(s["mode"], "managed");
    assert!(
        s["hostname"].as_str().unwrap().starts_with("acme-")
            && s["hostname"].as_str().unwrap().ends_with(".hub.test"),
        "{s}"
    );
    assert!(!s["tunnel_id"].as_str().unwrap().is_empty());
    assert!(!s["r2_bucket"].as_str().unwrap().is_empty());
    assert_eq!(s["tunnel"]["state"], "running");
    assert_eq!(s["tunnel"]["ready_connections"], 4);
    assert_eq!(s["tunnel"]["restarts"], 0);
    assert!(s["tunnel"]["since"].is_string());
    assert_eq!(s["checks"]["tunnel"]["ok"], true);
    assert_eq!(s["checks"]["dns"]["ok"], true, "{s:#}");
    assert!(
        s["checks"]["dns"]["detail"]
            .as_str()
            .unwrap()
            .contains("resolves to 127.0.0.1"),
        "{s:#}"
    );
    assert_eq!(s["checks"]["r2"]["ok"], true, "{s:#}");
    assert!(s["last_health_check"].is_string());
    assert_eq!(s["errors"], serde_json::json!([]));
    assert_eq!(get(&d.socket, "/v1/health").status, 200);

    // The pinned argv, token only in the token file, no systemd variables, own group.
    let starts = st.of("start");
    assert_eq!(starts.len(), 1);
    let start = &starts[0];
    let pid: u32 = start.get("pid").unwrap().parse().unwrap();
    assert_eq!(s["tunnel"]["pid"], pid);
    assert_eq!(start.get("pgid"), start.get("pid"), "own process group");
    let token_file = secrets(&d).join("tunnel-token");
    let argv: Vec<&str> = start.get("argv").unwrap().split(' ').collect();
    let metrics = argv
        .iter()
        .position(|a| *a == "--metrics")
        .map(|i| argv[i + 1])
        .unwrap();
    assert!(metrics.starts_with("127.0.0.1:"), "{argv:?}");
    let expected = format!(
        "tunnel --no-autoupdate --metrics {metrics} --grace-period 3s run --token-file {}",
        token_file.display()
    );
    assert!(argv.join(" ").ends_with(&expected), "{argv:?}");
    assert_eq!(start.get("notify_socket"), Some("absent"));
    assert_eq!(start.get("watchdog"), Some("absent"));

    // Files: 0600, enrollment.json with the pinned keys, the token alone.
    let enrollment: serde_json::Value =
        serde_json::from_str(&read(&secrets(&d).join("enrollment.json"))).unwrap();
    for k in [
        "tunnel_id",
        "hostname",
        "r2_endpoint",
        "r2_bucket",
        "r2_access_key_id",
        "r2_secret_access_key",
        "enrolled_at",
    ] {
        assert!(enrollment[k].is_string(), "enrollment.json lacks {k}");
    }
    assert_eq!(enrollment["hostname"], s["hostname"]);
    for f in ["enrollment.json", "tunnel-token"] {
        assert_eq!(
            std::fs::metadata(secrets(&d).join(f)).unwrap().mode() & 0o777,
            0o600,
            "{f}"
        );
    }
    assert!(!read(&token_file).contains('\n'));
}

#[test]
fn a_crashing_cloudflared_is_restarted_with_growing_then_capped_delays() {
    let cs = ControlService::start();
    let (d, st) = start_managed(
        &managed_config(&cs.url, free_port(), ""),
        "exit_after = 150ms\nexit_code = 1\n",
    );
    wait_for(Duration::from_secs(30), "six starts", || {
        st.of("start").len() >= 6
    });
    // The delays the supervisor chose, from its log: 200ms doubling, capped at 800ms.
    let log = d.log();
    let delays: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("restarting in"))
        .filter_map(|l| {
            l.split("delay_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(delays.len() >= 5, "{log}");
    assert_eq!(&delays[..5], &[200, 400, 800, 800, 800], "{log}");
    // And it really waited that long between an exit and the next start.
    let exits = st.of("exit");
    let starts = st.of("start");
    for i in 0..4 {
        let gap = starts[i + 1].t_ms() - exits[i].t_ms();
        assert!(
            gap + 5 >= delays[i],
            "restart {i} came after {gap}ms, before its {}ms delay",
            delays[i]
        );
    }
    let s = d.status();
    assert!(s["tunnel"]["restarts"].as_u64().unwrap() >= 5);
    // A crash loop before ever connecting is an error an admin must see.
    assert_eq!(s["state"], "error", "{s:#}");
    assert!(
        s["errors"].to_string().contains("tunnel_crash_loop"),
        "{s:#}"
    );
}

fn wedge_test(behavior_after_ready: &str) {
    let cs = ControlService::start();
    let (d, st) = start_enabled(&cs, "");
    st.behave(behavior_after_ready);
    // Two failed probes (restart_after_failed_probes = 2) → stopped and started again.
    wait_for(
        Duration::from_secs(30),
        "a restart of the wedged cloudflared",
        || st.of("start").len() >= 2,
    );
    assert_eq!(
        st.of("sigterm").len(),
        1,
        "one SIGTERM for the wedged child: {:?}",
        st.events()
    );
    assert!(
        d.log()
            .contains("cloudflared is wedged (2 failed /ready probes in a row"),
        "{}",
        d.log()
    );
    st.behave("");
    let s = d.wait_status("ready again", ready);
    assert_eq!(s["tunnel"]["restarts"], 1);
}

#[test]
fn ready_503_restarts_after_the_configured_failures() {
    wedge_test("ready = 503\n");
}

#[test]
fn ready_hanging_restarts_after_the_configured_failures() {
    wedge_test("ready = hang\n");
}

#[test]
fn a_missing_binary_is_an_error_with_a_hint() {
    let cs = ControlService::start();
    let cfg = managed_config(&cs.url, free_port(), "")
        .replace(STANDIN.to_str().unwrap(), "/nonexistent/cloudflared");
    let (d, _st) = start_managed(&cfg, "");
    let s = d.wait_status("fatal", |s| s["tunnel"]["state"] == "fatal");
    assert_eq!(s["state"], "error");
    let e = s["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["code"] == "cloudflared_missing")
        .expect("cloudflared_missing");
    assert_eq!(e["component"], "tunnel");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/cloudflared")
    );
    assert!(e["hint"].as_str().unwrap().contains("install cloudflared"));
}

#[test]
fn sigterm_to_the_daemon_stops_cloudflared_first_with_one_sigterm() {
    let cs = ControlService::start();
    let (mut d, st) = start_enabled(&cs, "drain = 300ms\n");
    let pid: u32 = d.status()["tunnel"]["pid"].as_u64().unwrap() as u32;
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log());
    let sigterms = st.of("sigterm");
    assert_eq!(sigterms.len(), 1, "{:?}", st.events());
    let exit = st.of("exit");
    assert_eq!(
        exit.len(),
        1,
        "the child exited by itself: {:?}",
        st.events()
    );
    assert_eq!(exit[0].get("code"), Some("0"));
    assert!(!alive(pid), "no process left");
    assert!(d.log().contains("cloudflared stopped"));
}

#[test]
fn sigkill_to_the_daemon_takes_cloudflared_with_it() {
    let cs = ControlService::start();
    let (d, _st) = start_enabled(&cs, "on_sigterm = ignore\n");
    let pid: u32 = d.status()["tunnel"]["pid"].as_u64().unwrap() as u32;
    d.signal(Signal::SIGKILL);
    wait_for(
        Duration::from_secs(10),
        "cloudflared to die with the daemon",
        || !alive(pid),
    );
}

#[test]
fn a_cloudflared_ignoring_sigterm_is_killed_after_grace_and_margin() {
    let cs = ControlService::start();
    let cfg = managed_config(&cs.url, free_port(), "")
        .replace("grace_period = \"3s\"", "grace_period = \"1s\"");
    let (mut d, st) = start_managed(&cfg, "on_sigterm = ignore\n");
    d.wait_status("ready", ready);
    let pid: u32 = d.status()["tunnel"]["pid"].as_u64().unwrap() as u32;
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
    assert_eq!(st.of("sigterm").len(), 1);
    assert!(st.of("exit").is_empty(), "it never exited by itself");
    assert!(!alive(pid));
    assert!(
        d.log().contains("did not stop within its grace period"),
        "{}",
        d.log()
    );
}

/// Sets the top-level `enabled`, as an admin would, leaving `[backup] enabled` alone.
fn set_enabled(d: &Daemon, on: bool) {
    set_config_key(&d.config, "enabled", &on.to_string());
}

fn disabled(d: &Daemon) {
    set_enabled(d, false);
}

#[test]
fn disable_by_editing_the_file_stops_the_tunnel_and_cleans_up() {
    let cs = ControlService::start();
    let (d, st) = start_enabled(&cs, "");
    std::fs::write(secrets(&d).join("rustic-password-marker"), "x").unwrap();
    let store = secrets(&d);
    std::fs::create_dir_all(store.join("rustic")).unwrap();
    std::fs::write(store.join("rustic/password"), "pw").unwrap();
    let pid: u32 = d.status()["tunnel"]["pid"].as_u64().unwrap() as u32;
    disabled(&d);
    let s = d.wait_status("disabled with a note", |s| {
        s["state"] == "disabled"
            && s["note"]
                .as_str()
                .is_some_and(|n| n.starts_with("disabled "))
    });
    assert!(
        s["note"].as_str().unwrap().ends_with("; bucket kept"),
        "{s}"
    );
    assert_eq!(s["tunnel"]["state"], "stopped");
    assert!(!alive(pid));
    assert_eq!(st.of("sigterm").len(), 1);
    assert!(!store.join("enrollment.json").exists());
    assert!(!store.join("tunnel-token").exists());
    assert_eq!(
        read(&store.join("rustic/password")),
        "pw",
        "the repository password is kept"
    );
    assert!(
        cs.log_text().contains("/v1/managed-cloudflare/disable"),
        "{}",
        cs.log_text()
    );
    // The note survives a restart.
    let d = restart(d);
    assert_eq!(d.status()["note"], s["note"]);
    assert_eq!(d.status()["state"], "disabled");
}

#[test]
fn disable_while_the_control_service_is_down_completes_when_it_returns() {
    let mut cs = ControlService::start();
    let (d, _st) = start_enabled(&cs, "");
    let pid: u32 = d.status()["tunnel"]["pid"].as_u64().unwrap() as u32;
    cs.pause();
    disabled(&d);
    let s = d.wait_status("disable pending", |s| {
        s["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("disable pending since"))
            && s["errors"].to_string().contains("disable_pending")
    });
    assert_eq!(s["state"], "disabled");
    assert!(
        !alive(pid),
        "the tunnel stops even though the control service is down"
    );
    assert!(
        secrets(&d).join("enrollment.json").exists(),
        "secrets stay until the disable is confirmed"
    );
    // Pending across a restart of the daemon.
    let d = restart(d);
    d.wait_status("still pending after restart", |s| {
        s["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("disable pending"))
    });
    assert!(secrets(&d).join("enrollment.json").exists());
    cs.resume();
    let s = d.wait_status("disable completed", |s| {
        s["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("disabled "))
    });
    assert_eq!(s["errors"], serde_json::json!([]));
    assert!(!secrets(&d).join("enrollment.json").exists());
    assert!(!secrets(&d).join("tunnel-token").exists());
}

#[test]
fn enabling_again_enrolls_afresh() {
    let cs = ControlService::start();
    let (d, _st) = start_enabled(&cs, "");
    let first = d.status()["tunnel_id"].clone();
    disabled(&d);
    d.wait_status("disabled", |s| {
        s["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("disabled "))
    });
    set_enabled(&d, true);
    let s = d.wait_status("ready again", ready);
    assert_ne!(s["tunnel_id"], first, "a new tunnel after a disable");
}

#[test]
fn startup_with_an_enrollment_on_disk_runs_the_tunnel_without_the_control_service() {
    let mut cs = ControlService::start();
    let (mut d, st) = start_enabled(&cs, "");
    let hostname = d.status()["hostname"].clone();
    d.signal(Signal::SIGTERM);
    d.wait_exit();
    cs.pause();
    let d = restart(d);
    let s = d.wait_status("ready from the stored enrollment", ready);
    assert_eq!(s["hostname"], hostname);
    assert_eq!(st.of("start").len(), 2);
}

/// The scripted enroll answer names an R2 endpoint where nothing listens: the tunnel
/// runs, and the R2 check says so (degraded, not ready).
fn tunnel_up_with_r2_unreachable(s: &serde_json::Value) -> bool {
    s["tunnel"]["state"] == "running"
        && s["state"] == "degraded"
        && s["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["code"] == "r2_unreachable"))
}

fn scripted(script: Vec<Answer>) -> (ScriptedServer, Daemon) {
    let srv = ScriptedServer::start(script);
    let (d, _st) = start_managed(&managed_config(&srv.url, free_port(), ""), "");
    (srv, d)
}

#[test]
fn enroll_503s_are_retried_until_it_works() {
    let mut script = vec![
        Answer::Json(
            503,
            r#"{"error":{"code":"busy","message":"try later"}}"#.into()
        );
        3
    ];
    script.push(Answer::Json(200, enroll_json()));
    let (srv, d) = scripted(script);
    let s = d.wait_status("enrolled after the 503s", tunnel_up_with_r2_unreachable);
    assert_eq!(s["hostname"], "acme-1.hub.test");
    assert!(srv.count("/enroll") >= 4);
    let metrics = get(&d.socket, "/metrics").text();
    assert!(
        metrics
            .contains("hubkeeper_control_request_failures_total{code=\"control_server_error\"} 3"),
        "{metrics}"
    );
    // Each failure was reported while it lasted, with the service's own message.
    assert!(
        d.log()
            .contains("enroll failed: the control service failed (503): try later"),
        "{}",
        d.log()
    );
}

#[test]
fn enroll_429_honours_retry_after() {
    let (srv, d) = scripted(vec![
        Answer::WithHeader(
            429,
            "Retry-After",
            "1",
            r#"{"error":{"code":"rate_limited","message":"slow down"}}"#.into(),
        ),
        Answer::Json(200, enroll_json()),
    ]);
    d.wait_status("enrolled after the 429", tunnel_up_with_r2_unreachable);
    assert_eq!(srv.count("/enroll"), 2);
}

#[test]
fn enroll_401_is_an_error_that_points_at_the_token() {
    let (srv, d) = scripted(vec![Answer::Json(
        401,
        r#"{"error":{"code":"unauthorized","message":"bad token"}}"#.into(),
    )]);
    let s = d.wait_status("enroll error", |s| s["state"] == "error");
    let e = &s["errors"][0];
    assert_eq!(e["component"], "enroll");
    assert_eq!(e["code"], "control_unauthorized");
    assert_eq!(
        e["hint"],
        "the control token was rejected: check managed.token_file (or the control-token credential)"
    );
    assert!(srv.count("/enroll") >= 1);
    assert_eq!(get(&d.socket, "/v1/health").status, 503);
}

#[test]
fn enroll_garbage_is_a_clear_error_without_the_body() {
    let (_srv, d) = scripted(vec![Answer::Raw(200, "<html>secret-ish-garbage-77</html>")]);
    let s = d.wait_status("bad answer", |s| {
        s["errors"].to_string().contains("control_bad_answer")
    });
    assert!(
        s["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not the expected JSON (not JSON)"),
        "{s}"
    );
    assert!(!s.to_string().contains("secret-ish-garbage-77"));
    assert!(!d.log().contains("secret-ish-garbage-77"));
    let (_srv, d) = scripted(vec![Answer::Json(200, r#"{"tunnel_id":"t"}"#.into())]);
    let s = d.wait_status("missing field", |s| {
        s["errors"].to_string().contains("control_bad_answer")
    });
    assert!(
        s["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("missing field `tunnel_token`"),
        "{s}"
    );
}

#[test]
fn enroll_hanging_times_out_and_the_daemon_stays_responsive() {
    let (_srv, d) = scripted(vec![Answer::Hang]);
    let s = d.wait_status("timeout error", |s| {
        s["errors"].to_string().contains("control_timeout")
    });
    assert_eq!(s["state"], "error");
    assert!(
        s["errors"][0]["hint"]
            .as_str()
            .unwrap()
            .contains("managed.url")
    );
}

#[test]
fn rotate_keys_rewrites_the_enrollment_or_keeps_the_old_keys() {
    let mut cs = ControlService::start();
    let (d, _st) = start_enabled(&cs, "");
    let path = secrets(&d).join("enrollment.json");
    let before: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
    let (code, out, err) = cli(&["rotate-keys", "--socket", d.socket.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let after: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
    assert_ne!(after["r2_access_key_id"], before["r2_access_key_id"]);
    assert_ne!(
        after["r2_secret_access_key"],
        before["r2_secret_access_key"]
    );
    assert_eq!(after["tunnel_id"], before["tunnel_id"]);
    assert!(!out.contains(after["r2_secret_access_key"].as_str().unwrap()));
    // The control service down: 502, and the keys on disk are unchanged.
    cs.pause();
    let r = post(&d.socket, "/v1/rotate-keys");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "control_error");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("old keys stay in force")
    );
    let unchanged: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
    assert_eq!(unchanged, after);
    // Disabled: 409.
    cs.resume();
    disabled(&d);
    d.wait_status("disabled", |s| {
        s["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("disabled "))
    });
    assert_eq!(post(&d.socket, "/v1/rotate-keys").status, 409);
}

/// Every process hubkeeper runs or talks to, and what they print and serve, is
/// scanned for each secret value.
#[test]
fn no_secret_in_logs_status_metrics_or_any_argv() {
    let cs = ControlService::start();
    let (d, _st) = start_enabled(&cs, "");
    let enrollment: serde_json::Value =
        serde_json::from_str(&read(&secrets(&d).join("enrollment.json"))).unwrap();
    let token = read(&secrets(&d).join("tunnel-token"));
    let r2_secret = enrollment["r2_secret_access_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let _ = post(&d.socket, "/v1/rotate-keys");
    let enrollment2: serde_json::Value =
        serde_json::from_str(&read(&secrets(&d).join("enrollment.json"))).unwrap();
    let r2_secret2 = enrollment2["r2_secret_access_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let secrets_list = [
        CONTROL_TOKEN,
        token.as_str(),
        r2_secret.as_str(),
        r2_secret2.as_str(),
        S3_KEYS[0].1,
        S3_KEYS[1].1,
    ];

    let mut texts = vec![
        ("status".to_owned(), get(&d.socket, "/v1/status").text()),
        ("metrics".to_owned(), get(&d.socket, "/metrics").text()),
        ("daemon log".to_owned(), d.log()),
        ("control-service log".to_owned(), cs.log_text()),
    ];
    // The argv of every process on the machine (ours, the stand-in, the service).
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let argv = String::from_utf8_lossy(&cmd).replace('\0', " ");
            texts.push((
                format!("argv of {}", entry.file_name().to_string_lossy()),
                argv,
            ));
        }
    }
    for (what, text) in &texts {
        for s in secrets_list {
            assert!(!text.contains(s), "a secret leaked into {what}");
        }
    }
}

#[test]
fn reload_restarts_cloudflared_only_when_its_inputs_change() {
    let cs = ControlService::start();
    let (d, st) = start_enabled(&cs, "");
    let pid = d.status()["tunnel"]["pid"].clone();
    let reloads = |d: &Daemon| d.log().matches("config reloaded").count();

    // A timing setting: applied without touching cloudflared.
    let text = std::fs::read_to_string(&d.config).unwrap();
    save_like_an_editor(
        &d.config,
        &text.replace("interval = \"1s\"", "interval = \"2s\""),
    );
    wait_for(Duration::from_secs(10), "the first reload", || {
        reloads(&d) == 1
    });
    assert_eq!(st.of("start").len(), 1, "{:?}", st.events());
    assert_eq!(d.status()["tunnel"]["pid"], pid);

    // Its argv (the metrics address): restarted, with the new argv.
    let port = free_port();
    let text = std::fs::read_to_string(&d.config).unwrap();
    let old_metrics = text
        .lines()
        .find(|l| l.starts_with("metrics = "))
        .unwrap()
        .to_owned();
    save_like_an_editor(
        &d.config,
        &text.replace(&old_metrics, &format!("metrics = \"127.0.0.1:{port}\"")),
    );
    wait_for(
        Duration::from_secs(20),
        "a restart with the new argv",
        || st.of("start").len() == 2,
    );
    assert!(
        st.of("start")[1]
            .get("argv")
            .unwrap()
            .contains(&format!("--metrics 127.0.0.1:{port}"))
    );
    assert_eq!(st.of("sigterm").len(), 1);
    let s = d.wait_status("ready on the new metrics address", ready);
    assert_ne!(s["tunnel"]["pid"], pid);
}

#[test]
fn a_binary_that_is_not_executable_is_an_error_with_a_hint() {
    use std::os::unix::fs::PermissionsExt;
    let cs = ControlService::start();
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("cloudflared");
    std::fs::write(&fake, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = managed_config(&cs.url, free_port(), "")
        .replace(STANDIN.to_str().unwrap(), fake.to_str().unwrap());
    let (d, _st) = start_managed(&cfg, "");
    let s = d.wait_status("fatal", |s| s["tunnel"]["state"] == "fatal");
    let e = s["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["code"] == "cloudflared_not_executable")
        .expect("not executable error");
    assert!(e["hint"].as_str().unwrap().contains("executable"), "{e}");
}

#[test]
fn enabling_again_while_the_disable_is_pending_resumes_the_tunnel() {
    let mut cs = ControlService::start();
    let (d, st) = start_enabled(&cs, "");
    let hostname = d.status()["hostname"].clone();
    cs.pause();
    disabled(&d);
    d.wait_status("disable pending", |s| {
        s["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("disable pending"))
    });
    set_enabled(&d, true);
    // The control service never heard of the disable: the stored enrollment is still
    // valid, so the tunnel runs again without it.
    let s = d.wait_status("running again", |s| s["tunnel"]["state"] == "running");
    assert_eq!(s["hostname"], hostname);
    assert_eq!(st.of("start").len(), 2);
    assert!(secrets(&d).join("enrollment.json").exists());
}

fn set_key(d: &Daemon, key: &str, value: &str) {
    set_config_key(&d.config, key, value);
}

#[test]
fn a_disable_that_cannot_delete_its_secrets_backs_off_and_says_so() {
    let (srv, d) = scripted(vec![
        Answer::Json(200, enroll_json()),
        Answer::Json(200, r#"{"ok":true}"#.into()),
    ]);
    d.wait_status("enrolled", tunnel_up_with_r2_unreachable);
    // The config file lives beside secrets_dir, not in it: only the secrets freeze.
    let ro = fault::ReadOnly::make(&secrets(&d));
    disabled(&d);
    let s = d.wait_status("the cleanup failure reported", |s| {
        s["errors"].to_string().contains("disable_cleanup_failed")
    });
    assert_eq!(s["errors"][0]["component"], "control");
    assert!(
        s["errors"][0]["hint"]
            .as_str()
            .unwrap()
            .contains("make secrets_dir writable"),
        "{s}"
    );
    // The deletion is retried with backoff, and the service is not asked again.
    wait_for(Duration::from_secs(30), "three deletion attempts", || {
        d.log()
            .matches("the Cloudflare secrets could not be deleted")
            .count()
            >= 3
    });
    assert_eq!(srv.count("/disable"), 1, "{:?}", srv.requests);
    ro.undo();
    let s = d.wait_status("disabled once writable again", |s| {
        s["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("disabled "))
            && s["errors"] == serde_json::json!([])
    });
    assert_eq!(s["state"], "disabled");
    assert!(!secrets(&d).join("enrollment.json").exists());
    assert_eq!(srv.count("/disable"), 1);
}

#[test]
fn a_changed_hub_id_disables_the_old_hub_then_enrolls_the_new() {
    let cs = ControlService::start();
    let (d, _st) = start_enabled(&cs, "");
    let first = d.status()["tunnel_id"].clone();
    let stored: serde_json::Value =
        serde_json::from_str(&read(&secrets(&d).join("enrollment.json"))).unwrap();
    assert_eq!(stored["hub_id"], "hub-1");
    assert_eq!(stored["account_id"], "acct-1");
    assert_eq!(stored["control_url"], format!("{}/", cs.url));

    set_key(&d, "hub_id", "\"hub-2\"");
    let s = d.wait_status("ready as the new hub", |s| {
        ready(s) && s["hub_id"] == "hub-2" && s["tunnel_id"] != first
    });
    assert_eq!(s["errors"], serde_json::json!([]));
    assert_eq!(
        cs.hub_status("hub-1")["enabled"],
        false,
        "the old hub was released"
    );
    assert_eq!(cs.hub_status("hub-2")["enabled"], true);
    let stored: serde_json::Value =
        serde_json::from_str(&read(&secrets(&d).join("enrollment.json"))).unwrap();
    assert_eq!(stored["hub_id"], "hub-2");

    // A disable now goes out for the hub the enrollment is for.
    disabled(&d);
    d.wait_status("disabled", |s| {
        s["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("disabled "))
    });
    assert_eq!(cs.hub_status("hub-2")["enabled"], false);
}

#[test]
fn an_enrollment_made_with_another_control_service_is_refused_and_the_tunnel_keeps_running() {
    let cs = ControlService::start();
    let (d, _st) = start_enabled(&cs, "");
    let pid = d.status()["tunnel"]["pid"].clone();
    let other = ControlService::start();
    set_key(&d, "url", &format!("\"{}\"", other.url));
    let s = d.wait_status("refused", |s| {
        s["errors"].to_string().contains("enrolled_elsewhere")
    });
    let e = &s["errors"][0];
    assert_eq!(e["component"], "enroll");
    assert!(e["message"].as_str().unwrap().contains(&cs.url), "{e}");
    assert!(
        e["hint"].as_str().unwrap().contains("enrollment.json"),
        "{e}"
    );
    assert_eq!(s["tunnel"]["state"], "running");
    assert_eq!(s["tunnel"]["pid"], pid, "the tunnel was not restarted");
    assert!(
        !other.log_text().contains("/enroll"),
        "{}",
        other.log_text()
    );
}

#[test]
fn a_corrected_retention_replaces_the_pending_one() {
    let (srv, d) = scripted(vec![
        Answer::Json(200, enroll_json()),
        Answer::Json(
            503,
            r#"{"error":{"code":"busy","message":"try later"}}"#.into(),
        ),
    ]);
    d.wait_status("enrolled", tunnel_up_with_r2_unreachable);
    disabled(&d);
    wait_for(Duration::from_secs(20), "a disable with 30 days", || {
        !srv.matching("\"retention_days\":30").is_empty()
    });
    save_like_an_editor(
        &d.config,
        &(std::fs::read_to_string(&d.config).unwrap() + "[disable]\nretention_days = 60\n"),
    );
    wait_for(Duration::from_secs(30), "a disable with 60 days", || {
        !srv.matching("\"retention_days\":60").is_empty()
    });
    assert!(
        srv.matching("/disable")
            .iter()
            .all(|r| r.contains("\"hub_id\":\"hub-1\"")),
        "{:?}",
        srv.requests
    );
}

#[test]
fn a_hostname_with_control_characters_is_refused_and_never_printed() {
    let hostile = enroll_json().replace(
        "acme-1.hub.test",
        "acme\\u001b[2K\\rhubkeeper READY\\nx.hub.test",
    );
    let (_srv, d) = scripted(vec![Answer::Json(200, hostile)]);
    let s = d.wait_status("refused", |s| {
        s["errors"].to_string().contains("control_bad_answer")
    });
    assert!(
        s["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("invalid hostname: not a DNS hostname"),
        "{s}"
    );
    assert_eq!(s["hostname"], serde_json::Value::Null);
    assert!(!d.log().contains('\u{1b}'), "{}", d.log());
    assert!(!d.log().contains("hubkeeper READY"), "{}", d.log());
    let (_, out, _) = cli(&["status", "--socket", d.socket.to_str().unwrap()]);
    assert!(!out.contains('\u{1b}') && !out.contains('\r'), "{out:?}");
}

#[test]
fn huge_answers_and_messages_from_the_control_service_are_capped() {
    // 300 MiB without a length: the daemon stops reading at its cap.
    let (_srv, d) = scripted(vec![Answer::Flood(300 << 20)]);
    let s = d.wait_status("too large", |s| {
        s["errors"].to_string().contains("larger than")
    });
    assert_eq!(s["errors"][0]["code"], "control_bad_answer");
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    let peak_kib = support::procfs::kib_field(&status, "VmHWM").unwrap();
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB");

    // A long error message (under the body cap): errors[] carries a capped, escaped
    // excerpt. (A 5 MiB one is refused whole, as above.)
    let huge = format!(
        r#"{{"error":{{"code":"busy","message":"\u001b[31m{}"}}}}"#,
        "m".repeat(60 << 10)
    );
    let (_srv, d) = scripted(vec![Answer::Json(503, huge)]);
    let s = d.wait_status("failed", |s| {
        s["errors"].to_string().contains("control_server_error")
    });
    let text = s.to_string();
    assert!(text.len() < 8 * 1024, "status is {} bytes", text.len());
    assert!(
        s["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("more bytes)"),
        "{s}"
    );
    assert!(!d.log().contains('\u{1b}'));
    assert!(d.log().len() < 256 * 1024, "log is {} bytes", d.log().len());
}

#[test]
fn keys_due_for_rotation_are_rotated_on_schedule() {
    let cs = ControlService::start();
    let (mut d, _st) = start_enabled(&cs, "");
    d.signal(Signal::SIGTERM);
    d.wait_exit();
    let path = secrets(&d).join("enrollment.json");
    let mut e: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
    let old_key = e["r2_access_key_id"].clone();
    // Last rotated long ago: with rotate_every, due at once after the restart.
    e["keys_rotated_at"] = "2000-01-01T00:00:00Z".into();
    std::fs::write(&path, e.to_string()).unwrap();
    let cfg = std::fs::read_to_string(&d.config).unwrap() + "[r2]\nrotate_every = \"90d\"\n";
    std::fs::write(&d.config, cfg).unwrap();
    let d = restart(d);
    wait_for(Duration::from_secs(30), "the scheduled rotation", || {
        let e: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
        e["r2_access_key_id"] != old_key
    });
    let e: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
    let at = e["keys_rotated_at"].as_str().unwrap();
    assert!(at.starts_with("20") && at > "2026", "{at}");
    assert!(
        cs.log_text().contains("R2 keys rotated"),
        "{}",
        cs.log_text()
    );
    d.wait_status("ready with the new keys", ready);
}

#[test]
fn retry_after_0_does_not_make_a_hot_loop() {
    let (srv, _d) = scripted(vec![Answer::WithHeader(
        503,
        "Retry-After",
        "0",
        r#"{"error":{"code":"busy","message":"try later"}}"#.into(),
    )]);
    wait_for(Duration::from_secs(20), "a second attempt", || {
        srv.count("/enroll") >= 2
    });
    let second = std::time::Instant::now();
    wait_for(Duration::from_secs(20), "a fourth attempt", || {
        srv.count("/enroll") >= 4
    });
    // The backoff waits at least 0.5 s and then 1 s between them (half of 1 s and 2 s,
    // jittered); taken literally, `Retry-After: 0` made hundreds of attempts a second.
    // A slow machine only makes the gap longer.
    let gap = second.elapsed();
    assert!(gap >= Duration::from_millis(1400), "{gap:?}");
}

#[test]
fn enroll_tells_the_origin_and_a_changed_origin_is_told_again_without_a_restart() {
    let (srv, d) = scripted(vec![Answer::Json(200, enroll_json())]);
    let s = d.wait_status("enrolled", tunnel_up_with_r2_unreachable);
    let pid = s["tunnel"]["pid"].clone();
    let first = srv.matching("/enroll");
    assert!(
        first[0].contains(&format!(
            "\"origin\":\"{}/\"",
            support::stack::hub_origin().url
        )) && first[0].contains("\"no_tls_verify\":false"),
        "{first:?}"
    );
    set_key(
        &d,
        "origin",
        "\"https://127.0.0.1:8443\"\nno_tls_verify = true",
    );
    wait_for(
        Duration::from_secs(20),
        "an enroll with the new origin",
        || {
            srv.matching("/enroll").iter().any(|r| {
                r.contains("\"origin\":\"https://127.0.0.1:8443/\"")
                    && r.contains("\"no_tls_verify\":true")
            })
        },
    );
    wait_for(Duration::from_secs(20), "the new origin recorded", || {
        let e: serde_json::Value =
            serde_json::from_str(&read(&secrets(&d).join("enrollment.json"))).unwrap();
        e["ingress"]["origin"] == "https://127.0.0.1:8443/" && e["ingress"]["no_tls_verify"] == true
    });
    assert_eq!(d.status()["tunnel"]["pid"], pid, "the tunnel kept running");
}
