//! The public-path check end to end: the real daemon, the real control service, the
//! cloudflared stand-in with its "edge" listener proxying to a hub on loopback. The
//! path is broken at the edge while `/ready` stays green, and the daemon must notice,
//! say what to do, and restart cloudflared.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use support::s3::free_port;
use support::stack::*;
use support::*;
use testkit as support;

fn error(s: &serde_json::Value, code: &str) -> Option<serde_json::Value> {
    s["errors"]
        .as_array()?
        .iter()
        .find(|e| e["code"] == code)
        .cloned()
}

fn hint(e: &serde_json::Value) -> &str {
    e["hint"].as_str().unwrap()
}

#[test]
fn a_working_path_is_ok_and_a_hub_404_counts_as_working() {
    let cs = ControlService::start();
    let before = *hub_origin().requests.lock().unwrap();
    let (d, st) = start_managed(&managed_config(&cs.url, free_port(), ""), "");
    let s = d.wait_status("ready", |s| s["state"] == "ready");
    assert_eq!(s["checks"]["public"]["ok"], true, "{s:#}");
    let detail = s["checks"]["public"]["detail"].as_str().unwrap();
    assert!(detail.contains("answered 200"), "{detail}");
    // The answer came from the hub, through the edge.
    assert!(*hub_origin().requests.lock().unwrap() > before);
    assert!(st.of("edge").iter().any(|e| e.get("via") == Some("origin")));

    // A page the hub does not have: the hub answered, so the path works.
    let cfg = managed_config(&cs.url, free_port(), "");
    let cfg = cfg.replace("/\"\n[backup]", "/no-such-page\"\n[backup]");
    assert!(cfg.contains("/no-such-page\""), "{cfg}");
    drop(d);
    let (d, _st) = start_managed(&cfg, "");
    let s = d.wait_status("ready with a 404", |s| {
        s["state"] == "ready" && s["checks"]["public"]["detail"].to_string().contains("404")
    });
    assert_eq!(s["checks"]["public"]["ok"], true);
}

#[test]
fn a_broken_path_while_ready_is_green_degrades_and_restarts_cloudflared() {
    let cs = ControlService::start();
    let (d, st) = start_managed(&managed_config(&cs.url, free_port(), ""), "");
    let s = d.wait_status("ready", |s| s["state"] == "ready");
    let pid = s["tunnel"]["pid"].as_u64().unwrap();

    // The connector stays "ready"; the edge answers 530 with error 1033.
    st.edge_fault("530");
    let s = d.wait_status("public_tunnel_error", |s| {
        error(s, "public_tunnel_error").is_some()
    });
    assert_eq!(s["state"], "degraded", "{s:#}");
    assert_eq!(s["checks"]["public"]["ok"], false);
    assert_eq!(s["checks"]["tunnel"]["ok"], true, "/ready is still green");
    let e = error(&s, "public_tunnel_error").unwrap();
    assert_eq!(e["component"], "tunnel");
    assert!(e["message"].as_str().unwrap().contains("1033"), "{e}");
    assert!(hint(&e).contains("restarts cloudflared"), "{e}");

    // restart_after_failed_probes = 2 failures in a row: a new cloudflared.
    let s = d.wait_status("a new cloudflared", |s| {
        s["tunnel"]["pid"].as_u64().is_some_and(|p| p != pid)
    });
    assert!(s["tunnel"]["restarts"].as_u64().unwrap() >= 1);
    assert!(
        d.log().contains("failed public-path checks in a row"),
        "{}",
        d.log()
    );
    assert!(!alive(pid as u32), "the wedged cloudflared is gone");
    let metrics = get(&d.socket, "/metrics").text();
    assert!(
        metrics.contains("hubkeeper_tunnel_wedge_restarts_total{reason=\"public\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hubkeeper_tunnel_wedge_restarts_total{reason=\"ready\"} 0"),
        "{metrics}"
    );

    // The path mends: ready again, and the check says so.
    st.edge_fault("none");
    let s = d.wait_status("ready again", |s| s["state"] == "ready");
    assert_eq!(s["checks"]["public"]["ok"], true);
    let metrics = get(&d.socket, "/metrics").text();
    assert!(
        metrics.contains("hubkeeper_check_ok{check=\"public\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_down_hub_is_told_apart_and_does_not_restart_cloudflared() {
    let cs = ControlService::start();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let cfg = managed_config(&cs.url, free_port(), "").replace(&hub_origin().url, &dead);
    let (d, st) = start_managed(&cfg, "");
    let s = d.wait_status("public_origin_down", |s| {
        error(s, "public_origin_down").is_some() && s["tunnel"]["state"] == "running"
    });
    assert_eq!(s["state"], "degraded", "{s:#}");
    assert!(hint(&error(&s, "public_origin_down").unwrap()).contains("start the hub"));
    assert!(
        st.of("edge")
            .iter()
            .any(|e| e.get("via") == Some("origin_unreachable"))
    );
    // Several more failed checks (each a new `at`) and still the first cloudflared.
    let pid = s["tunnel"]["pid"].clone();
    let mut seen = std::collections::HashSet::new();
    let s = d.wait_status("four more public checks", |s| {
        seen.insert(s["checks"]["public"]["at"].to_string());
        seen.len() > 4
    });
    assert_eq!(
        s["tunnel"]["pid"], pid,
        "a down hub is no reason to restart"
    );
    assert_eq!(s["tunnel"]["restarts"], 0);
}

#[test]
fn an_origin_dns_error_page_is_named() {
    let cs = ControlService::start();
    let (d, st) = start_managed(&managed_config(&cs.url, free_port(), ""), "");
    d.wait_status("ready", |s| s["state"] == "ready");
    st.edge_fault("1016");
    let s = d.wait_status("public_origin_dns", |s| {
        error(s, "public_origin_dns").is_some()
    });
    assert_eq!(s["state"], "degraded");
    let e = error(&s, "public_origin_dns").unwrap();
    assert!(e["message"].as_str().unwrap().contains("1016"), "{e}");
    assert!(hint(&e).contains("enroll again"), "{e}");
}

#[test]
fn a_hung_edge_is_a_timeout() {
    let cs = ControlService::start();
    let (d, st) = start_managed(&managed_config(&cs.url, free_port(), ""), "");
    d.wait_status("ready", |s| s["state"] == "ready");
    st.edge_fault("hang");
    let s = d.wait_status("public_timeout", |s| error(s, "public_timeout").is_some());
    assert_eq!(s["state"], "degraded");
}
