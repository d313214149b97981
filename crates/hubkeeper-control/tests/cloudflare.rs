//! The Cloudflare provisioner against the Cloudflare API stand-in (a real HTTP server
//! that behaves like Cloudflare where we depend on it; not Cloudflare), with the real
//! control service binary and its buckets on a real S3 store (rclone): the calls of an
//! enroll, answers lost after Cloudflare acted, the service SIGKILLed between any two
//! steps, racing enrolls, Cloudflare down, hanging, failing, rate limiting or answering
//! garbage, a refused token, a zone not in the account, a DNS record that is not ours,
//! retention through the sweep, and no secret in any log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::time::Duration;
use testkit::stack::ControlService;
use testkit::{Resp, wait_for};

/// What the account holds for one hub: live tunnels named after it, DNS records at its
/// hostname, active tokens named after it, and buckets.
#[derive(Debug, PartialEq, Eq)]
struct Held {
    tunnels: usize,
    records: usize,
    tokens: usize,
    buckets: usize,
}

fn held(cs: &ControlService, hub: &str, hostname: &str) -> Held {
    let state = cs.api().state();
    let list = |k: &str| state[k].as_array().cloned().unwrap_or_default();
    Held {
        tunnels: list("tunnels")
            .iter()
            .filter(|t| t["deleted_at"].is_null())
            .filter(|t| {
                t["name"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("hubkeeper-{hub}-"))
            })
            .count(),
        records: list("records")
            .iter()
            .filter(|r| r["name"] == hostname)
            .count(),
        tokens: list("tokens")
            .iter()
            .filter(|t| t["status"] == "active")
            .filter(|t| {
                t["name"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("hubkeeper-{hub}-"))
            })
            .count(),
        buckets: list("buckets").len(),
    }
}

const ONE_EACH: Held = Held {
    tunnels: 1,
    records: 1,
    tokens: 1,
    buckets: 1,
};

fn ok(r: Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap().to_owned()
}

/// The calls since the last reset, without the sweep's look at every tunnel (a paged
/// list it makes each `sweep_interval`).
fn enroll_calls(cs: &ControlService) -> Vec<String> {
    let mut log = cs.api().call_log();
    log.retain(|c| c != "GET /accounts/{acct}/cfd_tunnel");
    log
}

/// Waits until the service's start-up check has been made, then forgets every call.
fn quiet(cs: &ControlService) {
    wait_for(Duration::from_secs(20), "the start-up check", || {
        cs.api().call_log().iter().any(|c| c == "GET /zones")
    });
    cs.api().reset_calls();
}

/// The key works on the store (after the stand-in's key mirror caught up), written
/// where the hub's backups go.
fn key_works(cs: &ControlService, hub: &str, answer: &Value) {
    let client = cs.s3.client(
        &s(answer, "r2_access_key_id"),
        &s(answer, "r2_secret_access_key"),
    );
    let bucket = s(answer, "r2_bucket");
    wait_for(Duration::from_secs(20), "the minted key to work", || {
        client
            .put(&bucket, &format!("hubkeeper/{hub}/probe"), b"x")
            .is_ok()
    });
}

#[test]
fn a_fresh_enroll_makes_the_fewest_calls_and_a_repeat_none() {
    let cs = ControlService::start_cloudflare("");
    quiet(&cs);
    let first = ok(cs.enroll("hub-a", "acct-a"));
    let log = enroll_calls(&cs);
    println!("calls of a fresh enroll (first hub of its account):");
    for c in &log {
        println!("  {c}");
    }
    assert_eq!(
        log,
        [
            "POST /accounts/{acct}/r2/buckets",
            "PUT /accounts/{acct}/r2/buckets/{bucket}/lifecycle",
            "POST /accounts/{acct}/cfd_tunnel",
            "PUT /accounts/{acct}/cfd_tunnel/{id}/configurations",
            // The zone's id was looked up by the start-up check.
            "POST /zones/{zone}/dns_records",
            "GET /accounts/{acct}/tokens/permission_groups",
            "POST /accounts/{acct}/tokens",
        ]
    );
    key_works(&cs, "hub-a", &first);
    assert_eq!(held(&cs, "hub-a", &s(&first, "hostname")), ONE_EACH);

    // The account's second hub: its bucket and the lookups are done.
    cs.api().reset_calls();
    ok(cs.enroll("hub-b", "acct-a"));
    assert_eq!(
        enroll_calls(&cs),
        [
            "POST /accounts/{acct}/cfd_tunnel",
            "PUT /accounts/{acct}/cfd_tunnel/{id}/configurations",
            "POST /zones/{zone}/dns_records",
            "POST /accounts/{acct}/tokens",
        ]
    );

    // A repeat: the same tunnel, hostname, bucket and keys, from the database.
    cs.api().reset_calls();
    let again = ok(cs.enroll("hub-a", "acct-a"));
    assert_eq!(again, first);
    assert!(enroll_calls(&cs).is_empty(), "{:?}", enroll_calls(&cs));
}

#[test]
fn racing_enrolls_of_one_hub_make_one_set_of_resources() {
    let cs = ControlService::start_cloudflare("");
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| ok(cs.enroll("hub-r", "acct-r"))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for a in &answers {
        assert_eq!(a, &answers[0], "every racer gets the same answer");
    }
    assert_eq!(held(&cs, "hub-r", &s(&answers[0], "hostname")), ONE_EACH);
}

#[test]
fn an_answer_lost_after_cloudflare_acted_is_adopted_not_duplicated() {
    let cs = ControlService::start_cloudflare("");
    for (n, call) in [
        "POST /accounts/{acct}/r2/buckets",
        "POST /accounts/{acct}/cfd_tunnel",
        "PUT /accounts/{acct}/cfd_tunnel/{id}/configurations",
        "POST /zones/{zone}/dns_records",
        "POST /accounts/{acct}/tokens",
    ]
    .iter()
    .enumerate()
    {
        let (hub, acct) = (format!("hub-l{n}"), format!("acct-l{n}"));
        cs.api()
            .set_faults(json!({"lose_answer": true, "only": call, "count": 1}));
        let first = cs.enroll(&hub, &acct);
        // Creates are not repeated blindly: the enroll either adopted what the lost
        // answer made, or failed and the next one adopts it.
        let answer = if first.status == 200 {
            first.json()
        } else {
            assert_eq!(first.status, 502, "{call}: {}", first.text());
            ok(cs.enroll(&hub, &acct))
        };
        let hostname = s(&answer, "hostname");
        let h = held(&cs, &hub, &hostname);
        assert_eq!((h.tunnels, h.records, h.tokens), (1, 1, 1), "{call}: {h:?}");
        key_works(&cs, &hub, &answer);
    }
}

#[test]
fn the_service_killed_between_any_two_steps_then_restarted_leaves_one_of_each() {
    let mut cs = ControlService::start_cloudflare("");
    let steps = [
        "POST /accounts/{acct}/r2/buckets",
        "PUT /accounts/{acct}/r2/buckets/{bucket}/lifecycle",
        "POST /accounts/{acct}/cfd_tunnel",
        "PUT /accounts/{acct}/cfd_tunnel/{id}/configurations",
        "POST /zones/{zone}/dns_records",
        "POST /accounts/{acct}/tokens",
    ];
    for (n, step) in steps.iter().enumerate() {
        let (hub, acct) = (format!("hub-k{n}"), format!("acct-k{n}"));
        quiet(&cs);
        cs.api().set_faults(json!({"hang": true, "only": step}));
        let port: u16 = cs.url.rsplit(':').next().unwrap().parse().unwrap();
        let body = json!({"account_id": acct, "hub_id": hub, "license_id": "lic-1",
            "requested_subdomain": "acme", "origin": "http://127.0.0.1:8080"})
        .to_string();
        let request = format!(
            "POST /v1/managed-cloudflare/enroll HTTP/1.1\r\nHost: control\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            testkit::stack::CONTROL_TOKEN,
            body.len()
        );
        let enroll = std::thread::spawn(move || testkit::tcp(port, request.as_bytes()));
        wait_for(Duration::from_secs(30), "the step to be under way", || {
            cs.api().call_log().iter().any(|c| c == step)
        });
        // SIGKILL while the step hangs: every step before it was recorded.
        cs.crash();
        let _ = enroll.join();
        cs.api().set_faults(json!({}));
        cs.resume();
        let answer = ok(cs.enroll(&hub, &acct));
        let h = held(&cs, &hub, &s(&answer, "hostname"));
        assert_eq!((h.tunnels, h.records, h.tokens), (1, 1, 1), "{step}: {h:?}");
        key_works(&cs, &hub, &answer);
    }
    let buckets = cs.api().state()["buckets"].as_array().unwrap().len();
    assert_eq!(buckets, steps.len(), "one bucket per account");
}

#[test]
fn cloudflare_failing_gives_a_clear_error_and_the_next_enroll_completes() {
    let cs = ControlService::start_cloudflare("request_timeout = \"1s\"\n");
    for (n, (fault, status, says)) in [
        (
            json!({"status_5xx": 503}),
            502,
            "Cloudflare server error (HTTP 503",
        ),
        (json!({"garbage": true}), 502, "unexpected answer"),
        (json!({"rate_limit_secs": 60}), 429, "rate limiting"),
        (json!({"hang": true}), 502, "no answer within 1s"),
        (
            json!({"missing_permission": "Zone › DNS Edit"}),
            502,
            "the token needs",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (hub, acct) = (format!("hub-f{n}"), format!("acct-f{n}"));
        cs.api().set_faults(fault.clone());
        let r = cs.enroll(&hub, &acct);
        assert_eq!(r.status, status, "{fault}: {}", r.text());
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(says), "{fault}: {message}");
        assert!(!message.contains(testkit::cloudflare::MASTER_TOKEN));
        if status == 429 {
            assert_eq!(r.header("retry-after"), Some("60"), "{fault}");
        }
        cs.api().set_faults(json!({}));
        let answer = ok(cs.enroll(&hub, &acct));
        let h = held(&cs, &hub, &s(&answer, "hostname"));
        assert_eq!(
            (h.tunnels, h.records, h.tokens),
            (1, 1, 1),
            "{fault}: {h:?}"
        );
    }
    // Down for a few seconds: the calls wait and retry, or the next enroll completes.
    cs.api().set_faults(json!({"down_ms": 2000}));
    let r = cs.enroll("hub-down", "acct-down");
    let answer = if r.status == 200 {
        r.json()
    } else {
        ok(cs.enroll("hub-down", "acct-down"))
    };
    let h = held(&cs, "hub-down", &s(&answer, "hostname"));
    assert_eq!((h.tunnels, h.records, h.tokens), (1, 1, 1), "{h:?}");
}

#[test]
fn the_token_quota_reached_is_named_and_the_enroll_resumes_when_there_is_room() {
    let cs = ControlService::start_cloudflare("");
    ok(cs.enroll("hub-q1", "acct-q"));
    // The account's tokens: hub-q1's; the quota allows no second.
    cs.api().set_token_quota(1);
    let r = cs.enroll("hub-q2", "acct-q");
    assert_eq!(r.status, 502, "{}", r.text());
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("maximum number of API tokens"),
        "Cloudflare's own words: {message}"
    );
    assert!(message.contains("create the hub's token"), "{message}");
    cs.api().set_token_quota(500);
    let answer = ok(cs.enroll("hub-q2", "acct-q"));
    let h = held(&cs, "hub-q2", &s(&answer, "hostname"));
    assert_eq!((h.tunnels, h.records, h.tokens), (1, 1, 1), "{h:?}");
}

#[test]
fn a_dns_record_that_is_not_ours_is_never_touched() {
    let cs = ControlService::start_cloudflare("");
    quiet(&cs);
    // Someone's A record where the hub's hostname will be (the first for "acme").
    let zone_id = cs.api().state()["zones"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = cs.api().api_call(
        "POST",
        &format!("/zones/{zone_id}/dns_records"),
        &json!({"type": "A", "name": "acme-1.hub.test", "content": "192.0.2.1", "ttl": 1, "proxied": false}),
    );
    assert_eq!(created.status, 200, "{}", created.text());
    let r = cs.enroll("hub-c", "acct-c");
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "provisioning_conflict");
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("acme-1.hub.test"), "{message}");
    assert!(message.contains("did not create"), "{message}");
    let records = cs.api().state()["records"].clone();
    assert_eq!(records.as_array().unwrap().len(), 1);
    assert_eq!(records[0]["content"], "192.0.2.1", "untouched");
}

#[test]
fn a_refused_token_or_a_missing_zone_is_named() {
    let mut cs = ControlService::start_cloudflare("");
    let d = cs.dir.path().to_owned();
    std::fs::write(d.join("cloudflare-token"), "not-the-token").unwrap();
    cs.pause();
    cs.resume();
    wait_for(
        Duration::from_secs(20),
        "the start-up check to fail",
        || {
            cs.log_text()
                .contains("the provisioner cannot be used until this is fixed")
        },
    );
    let r = cs.enroll("hub-t", "acct-t");
    assert_eq!(r.status, 502, "{}", r.text());
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("refused the API token"), "{message}");
    assert!(message.contains("the token needs"), "{message}");
    assert!(!message.contains("not-the-token"));

    std::fs::write(
        d.join("cloudflare-token"),
        testkit::cloudflare::MASTER_TOKEN,
    )
    .unwrap();
    testkit::set_config_key(&d.join("control.toml"), "zone", "\"other.test\"");
    cs.pause();
    cs.resume();
    let r = cs.enroll("hub-z", "acct-z");
    assert_eq!(r.status, 502, "{}", r.text());
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("the zone other.test is not in the account"),
        "{message}"
    );
}

#[test]
fn retention_keeps_backups_until_the_deadline_then_the_sweep_deletes_them() {
    let cs = ControlService::start_cloudflare("");
    let answer = ok(cs.enroll("hub-x", "acct-x"));
    key_works(&cs, "hub-x", &answer);
    let bucket = s(&answer, "r2_bucket");
    let client = cs.s3.client(
        &s(&answer, "r2_access_key_id"),
        &s(&answer, "r2_secret_access_key"),
    );
    client
        .put(&bucket, "hubkeeper/hub-x/snapshot", b"s")
        .unwrap();

    ok(cs.disable("hub-x", true, 30));
    let st = cs.hub_status("hub-x");
    let due = s(&st, "deletion_due");
    // The backstop: a Date rule on the hub's prefix, never an Age rule.
    let rules = cs.api().state()["buckets"][0]["lifecycle"]["rules"].clone();
    let rule = rules
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["conditions"]["prefix"] == "hubkeeper/hub-x/")
        .unwrap_or_else(|| panic!("no rule for the prefix: {rules:#}"))
        .clone();
    let cond = &rule["deleteObjectsTransition"]["condition"];
    assert_eq!(cond["type"], "Date", "{rule:#}");
    assert!(
        cond["date"].as_str().unwrap() >= due.as_str(),
        "{rule:#} vs {due}"
    );
    assert!(cs.s3.has_bucket(&bucket));

    // The deadline passes: the sweep deletes through S3 with its own token, then the
    // bucket (no other hub of the account uses it).
    rusqlite::Connection::open(cs.dir.path().join("state/control.db"))
        .unwrap()
        .execute(
            "UPDATE hubs SET deletion_due = '2026-01-01T00:00:00Z' WHERE hub_id = 'hub-x'",
            [],
        )
        .unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while !cs.api().state()["buckets"]
        .as_array()
        .is_some_and(Vec::is_empty)
    {
        assert!(
            std::time::Instant::now() < end,
            "the sweep did not delete the bucket within 60s; the service's log:\n{}",
            cs.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!cs.s3.has_bucket(&bucket));
    let st = cs.hub_status("hub-x");
    assert_eq!(st["deletion_due"], Value::Null);
    assert_eq!(st["r2_bucket"], Value::Null);
    let sweeper: Vec<Value> = cs.api().state()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "active")
        .cloned()
        .collect();
    assert_eq!(sweeper.len(), 1, "only the sweep's own token: {sweeper:#?}");
    assert_eq!(sweeper[0]["name"], "hubkeeper-control-sweeper");

    // No token value, secret or the master token in the service's log.
    let log = cs.log_text();
    for secret in [
        s(&answer, "tunnel_token"),
        s(&answer, "r2_secret_access_key"),
        sweeper[0]["value"].as_str().unwrap().to_owned(),
        testkit::cloudflare::MASTER_TOKEN.to_owned(),
    ] {
        assert!(!log.contains(&secret), "a secret in the log");
    }
}
