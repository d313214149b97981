//! Managed mode on the Cloudflare provisioner, end to end with real processes: the
//! daemon, the real control service with `[provisioner] kind = "cloudflare"`, the
//! Cloudflare API stand-in (`cloudflare-api-standin`, not Cloudflare) whose buckets and
//! minted keys live on a real S3 store (rclone), and the cloudflared stand-in started
//! with the token the API stand-in handed out. Enable → ready → rotate → disable →
//! enable again, with what the account holds after each step.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use support::s3::free_port;
use support::stack::*;
use support::*;
use testkit as support;

fn ready(s: &Value) -> bool {
    s["state"] == "ready"
}

fn live<'a>(state: &'a Value, kind: &str) -> Vec<&'a Value> {
    state[kind]
        .as_array()
        .map(|v| v.iter().filter(|t| t["deleted_at"].is_null()).collect())
        .unwrap_or_default()
}

fn active_tokens(state: &Value) -> Vec<&Value> {
    state["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "active")
        .collect()
}

#[test]
fn a_hub_goes_enable_ready_rotate_disable_and_enable_again_on_cloudflare() {
    let cs = ControlService::start_cloudflare("");
    let api = cs.api();
    let (d, _st) = start_managed(&managed_config(&cs.url, free_port(), ""), "");
    let s = d.wait_status("ready on Cloudflare", ready);
    let hostname = s["hostname"].as_str().unwrap().to_owned();
    let tunnel_id = s["tunnel_id"].as_str().unwrap().to_owned();
    assert_eq!(s["checks"]["r2"]["ok"], true, "the minted key works: {s:#}");

    // The account holds exactly one of each, as spec §11 describes them.
    let state = api.state();
    let tunnels = live(&state, "tunnels");
    assert_eq!(tunnels.len(), 1, "{state:#}");
    let t = tunnels[0];
    assert_eq!(t["id"], tunnel_id.as_str());
    assert_eq!(t["name"], "hubkeeper-hub-1-1");
    assert_eq!(t["config_src"], "cloudflare");
    let ingress = &t["config"]["ingress"];
    assert_eq!(ingress[0]["hostname"], hostname.as_str());
    assert_eq!(ingress[0]["service"], hub_origin().url.as_str());
    assert!(
        ingress[0]["originRequest"].is_null(),
        "no noTLSVerify unless asked"
    );
    assert_eq!(ingress[1], json!({"service": "http_status:404"}));
    let records = state["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["name"], hostname.as_str());
    assert_eq!(records[0]["type"], "CNAME");
    assert_eq!(
        records[0]["content"],
        format!("{tunnel_id}.cfargotunnel.com")
    );
    assert_eq!(records[0]["proxied"], true);
    assert_eq!(
        records[0]["comment"],
        "managed by hubkeeper-control for hub hub-1"
    );
    let buckets = state["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 1);
    assert_eq!(buckets[0]["name"], s["r2_bucket"]);
    let rules = buckets[0]["lifecycle"]["rules"].as_array().unwrap();
    assert_eq!(
        rules[0]["abortMultipartUploadsTransition"]["condition"],
        json!({"type": "Age", "maxAge": 86400})
    );
    let tokens = active_tokens(&state);
    assert_eq!(tokens.len(), 1, "one token per hub");
    assert_eq!(tokens[0]["name"], "hubkeeper-hub-1-1-r2");
    let policy = tokens[0]["policies"].to_string();
    assert!(
        policy.contains(&format!(
            "com.cloudflare.edge.r2.bucket.{}_default_{}",
            support::cloudflare::ACCOUNT_ID,
            buckets[0]["name"].as_str().unwrap()
        )),
        "scoped to the one bucket: {policy}"
    );
    let path = secrets(&d).join("enrollment.json");
    let before: Value = serde_json::from_str(&read(&path)).unwrap();
    assert_eq!(
        before["r2_access_key_id"], tokens[0]["id"],
        "S3 id = token id"
    );

    // Rotate: the same token rolled, so the same key id and a new secret that works.
    let (code, out, err) = cli(&["rotate-keys", "--socket", d.socket.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let after: Value = serde_json::from_str(&read(&path)).unwrap();
    assert_eq!(after["r2_access_key_id"], before["r2_access_key_id"]);
    assert_ne!(
        after["r2_secret_access_key"],
        before["r2_secret_access_key"]
    );
    d.wait_status("R2 works with the rolled key", |s| {
        ready(s) && s["checks"]["r2"]["ok"] == true
    });
    assert_eq!(active_tokens(&api.state()).len(), 1, "rolled, not minted");

    // The service looks at the tunnel as Cloudflare sees it.
    api.set_connected(&tunnel_id, true);
    support::wait_for(
        std::time::Duration::from_secs(20),
        "tunnel_status healthy",
        || cs.hub_status("hub-1")["tunnel_status"] == "healthy",
    );
    let st = cs.hub_status("hub-1");
    assert!(st["checked_at"].is_string(), "{st}");
    assert_eq!(st["deletion_due"], Value::Null);
    api.set_connected(&tunnel_id, false);

    // Disable: connections, tunnel, DNS record, token; the bucket stays.
    set_config_key(&d.config, "enabled", "false");
    d.wait_status("disabled", |s| {
        s["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("disabled "))
    });
    let state = api.state();
    assert!(live(&state, "tunnels").is_empty(), "{state:#}");
    assert!(state["records"].as_array().unwrap().is_empty());
    assert!(active_tokens(&state).is_empty());
    assert_eq!(state["buckets"].as_array().unwrap().len(), 1);
    let log = api.call_log();
    let order: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|c| c.starts_with("DELETE"))
        .collect();
    assert_eq!(
        order,
        [
            "DELETE /accounts/{acct}/cfd_tunnel/{id}/connections",
            "DELETE /accounts/{acct}/cfd_tunnel/{id}",
            "DELETE /zones/{zone}/dns_records/{id}",
            "DELETE /accounts/{acct}/tokens/{id}",
        ],
        "the research's order"
    );

    // Enabled again: a new tunnel, the same hostname and bucket, one of each again.
    set_config_key(&d.config, "enabled", "true");
    let s = d.wait_status("ready again", ready);
    assert_ne!(s["tunnel_id"], tunnel_id.as_str());
    assert_eq!(s["hostname"], hostname.as_str());
    let state = api.state();
    assert_eq!(live(&state, "tunnels").len(), 1);
    assert_eq!(state["records"].as_array().unwrap().len(), 1);
    assert_eq!(active_tokens(&state).len(), 1);
    assert_eq!(state["buckets"].as_array().unwrap().len(), 1);
}

/// Minted keys work at the store only a moment after the enroll (as R2's take up to a
/// minute): the first backup and verify wait for them instead of failing and waiting
/// out a minute's backoff with an error in the status.
#[test]
fn the_first_backup_waits_for_the_minted_key_instead_of_failing() {
    let cs = ControlService::start_cloudflare("");
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("notes.txt"), "hub data\n".repeat(100)).unwrap();
    let cfg = managed_config(&cs.url, free_port(), "").replace(
        "[backup]\nenabled = false\n",
        &format!(
            "[backup]\nenabled = true\nrustic = \"{}\"\npaths = [\"{}\"]\ninterval = \"1h\"\n",
            support::s3::rustic().display(),
            data.path().display()
        ),
    );
    let (d, _st) = start_managed(&cfg, "");
    let s = d.wait_status_within(
        std::time::Duration::from_secs(120),
        "the first backup and verify",
        |s| s["backup"]["last_snapshot_id"].is_string() && s["backup"]["last_verified"].is_string(),
    );
    assert_eq!(s["state"], "ready", "{s:#}");
    let persisted: Value =
        serde_json::from_str(&read(&secrets(&d).join("backup-state.json"))).unwrap();
    assert_eq!(persisted["failures_total"], 0, "{persisted:#}");
    assert_eq!(persisted["verify_failed_total"], 0, "{persisted:#}");
}
