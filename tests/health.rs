//! Health checks against real servers: R2 on an rclone S3 store (wrong secret, missing
//! bucket, stopped and hung store) and DNS on a loopback DNS server (NXDOMAIN,
//! timeout). The status keeps answering while a check hangs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use nix::sys::signal::Signal;
use support::dns::DnsServer;
use support::s3::free_port;
use support::stack::*;
use support::*;
use testkit as support;

fn error_code(s: &serde_json::Value, code: &str) -> Option<serde_json::Value> {
    s["errors"]
        .as_array()?
        .iter()
        .find(|e| e["code"] == code)
        .cloned()
}

/// An enrolled, ready daemon; then `edit` changes its enrollment.json and it restarts.
fn with_edited_enrollment(edit: impl Fn(&mut serde_json::Value)) -> (ControlService, Daemon) {
    let cs = ControlService::start();
    let (mut d, _st) = start_managed(&managed_config(&cs.url, free_port(), ""), "");
    d.wait_status("ready", |s| s["state"] == "ready");
    d.signal(Signal::SIGTERM);
    d.wait_exit();
    let path = secrets(&d).join("enrollment.json");
    let mut e: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
    edit(&mut e);
    std::fs::write(&path, serde_json::to_vec(&e).unwrap()).unwrap();
    (cs, restart(d))
}

#[test]
fn a_wrong_secret_key_is_a_signature_mismatch() {
    let (_cs, d) = with_edited_enrollment(|e| e["r2_secret_access_key"] = "not-the-secret".into());
    let s = d.wait_status("r2_signature_mismatch", |s| {
        error_code(s, "r2_signature_mismatch").is_some()
    });
    assert_eq!(s["state"], "degraded");
    assert_eq!(s["checks"]["r2"]["ok"], false);
    let e = error_code(&s, "r2_signature_mismatch").unwrap();
    assert_eq!(e["component"], "r2");
    assert!(
        e["hint"]
            .as_str()
            .unwrap()
            .contains("hubkeeper rotate-keys"),
        "{e}"
    );
    assert!(!s.to_string().contains("not-the-secret"));
}

#[test]
fn an_unknown_key_id_is_access_denied() {
    let (_cs, d) = with_edited_enrollment(|e| e["r2_access_key_id"] = "NOSUCHKEY".into());
    let s = d.wait_status("r2_access_denied", |s| {
        error_code(s, "r2_access_denied").is_some()
    });
    let e = error_code(&s, "r2_access_denied").unwrap();
    assert!(
        e["hint"].as_str().unwrap().contains("Object Read & Write"),
        "{e}"
    );
}

#[test]
fn a_missing_bucket_is_named() {
    let (_cs, d) = with_edited_enrollment(|e| e["r2_bucket"] = "no-such-bucket".into());
    let s = d.wait_status("r2_no_such_bucket", |s| {
        error_code(s, "r2_no_such_bucket").is_some()
    });
    let e = error_code(&s, "r2_no_such_bucket").unwrap();
    assert!(
        e["message"].as_str().unwrap().contains("no-such-bucket"),
        "{e}"
    );
    assert_eq!(s["state"], "degraded");
}

#[test]
fn a_stopped_store_is_unreachable_and_a_hung_one_times_out_while_status_answers() {
    let cs = ControlService::start();
    let (d, _st) = start_managed(&managed_config(&cs.url, free_port(), ""), "");
    d.wait_status("ready", |s| s["state"] == "ready");

    // Hung: rclone stopped with SIGSTOP accepts connections and never answers.
    cs.s3.signal(Signal::SIGSTOP);
    let mut answered = 0;
    let s = d.wait_status("r2_timeout", |s| {
        answered += 1;
        error_code(s, "r2_timeout").is_some()
    });
    assert!(answered > 1, "the status answered while the check hung");
    assert_eq!(s["state"], "degraded");
    // POST /v1/check waits for a fresh run and reports it.
    let r = post(&d.socket, "/v1/check");
    assert_eq!(r.status, 200);
    assert!(
        error_code(&r.json(), "r2_timeout").is_some(),
        "{}",
        r.text()
    );
    cs.s3.signal(Signal::SIGCONT);
    d.wait_status("ready again", |s| s["state"] == "ready");

    // Gone: nothing listens any more.
    drop(cs);
    let s = d.wait_status("r2_unreachable", |s| {
        error_code(s, "r2_unreachable").is_some()
    });
    assert!(
        error_code(&s, "r2_unreachable").unwrap()["hint"]
            .as_str()
            .unwrap()
            .contains("outbound HTTPS")
    );
}

#[test]
fn dns_nxdomain_and_timeout() {
    let cs = ControlService::start();
    // This resolver knows another zone only: the hub's name does not exist there.
    let other = DnsServer::start("other.test");
    let hub_dns = support::dns::hub_test_zone().addr.to_string();
    let cfg = managed_config(&cs.url, free_port(), "").replace(&hub_dns, &other.addr.to_string());
    let (d, _st) = start_managed(&cfg, "");
    let s = d.wait_status("dns_nxdomain", |s| error_code(s, "dns_nxdomain").is_some());
    assert_eq!(
        s["state"], "degraded",
        "the tunnel runs, DNS does not resolve yet"
    );
    assert_eq!(s["checks"]["dns"]["ok"], false);
    assert_eq!(s["checks"]["r2"]["ok"], true);
    other.set_silent(true);
    let s = d.wait_status("dns_timeout", |s| error_code(s, "dns_timeout").is_some());
    assert!(
        error_code(&s, "dns_timeout").unwrap()["hint"]
            .as_str()
            .unwrap()
            .contains("resolver")
    );
}
