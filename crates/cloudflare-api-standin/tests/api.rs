//! The Cloudflare API stand-in over real HTTP on loopback (reqwest), one test per
//! part of the checklist in research/cloudflare-api.md §7, plus faults, pagination,
//! the call counter, the state file, the S3 store hook and the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloudflare_api_standin::{Faults, Options, S3Store, Standin, sha256_hex};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const MASTER: &str = "standin-master-token";

struct T {
    s: Standin,
    http: reqwest::Client,
}

async fn start() -> T {
    start_with(Options::default()).await
}

async fn start_with(opts: Options) -> T {
    let s = Standin::start(opts).await.unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    T { s, http }
}

impl T {
    fn acct(&self, rest: &str) -> String {
        format!("/accounts/{}{rest}", self.s.account_id())
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        jurisdiction: Option<&str>,
        body: Option<Value>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut rb = self.http.request(method, format!("{}{path}", self.s.url()));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(j) = jurisdiction {
            rb = rb.header("cf-r2-jurisdiction", j);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        rb.send().await
    }

    /// A call with the master token: (HTTP status, envelope).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(method, path, Some(MASTER), None, body).await
    }

    async fn call_as(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        jurisdiction: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let r = self
            .raw(method, path, token, jurisdiction, body)
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["success"], json!(status < 300), "{v}");
        assert!(v["errors"].is_array() && v["messages"].is_array(), "{v}");
        (status, v)
    }

    async fn admin(&self, method: Method, hook: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method, format!("http://{}/__standin/{hook}", self.s.addr()));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn create_tunnel(&self, name: &str) -> Value {
        let (st, v) = self
            .call(
                Method::POST,
                &self.acct("/cfd_tunnel"),
                Some(json!({"name": name, "config_src": "cloudflare"})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        v["result"].clone()
    }

    async fn zone_id(&self) -> String {
        let (_, v) = self
            .call(Method::GET, "/zones?name=example.com", None)
            .await;
        v["result"][0]["id"].as_str().unwrap().to_owned()
    }
}

fn code(v: &Value) -> u64 {
    v["errors"][0]["code"].as_u64().unwrap()
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_envelope_and_unknown_paths() {
    let t = start().await;
    let path = t.acct("/cfd_tunnel");
    let (st, v) = t.call_as(Method::GET, &path, None, None, None).await;
    assert_eq!((st, code(&v)), (400, 9106));
    let (st, v) = t
        .call_as(Method::GET, &path, Some("nope"), None, None)
        .await;
    assert_eq!((st, code(&v)), (403, 9109));
    let (st, v) = t
        .call_as(Method::GET, "/user/tokens/verify", Some("nope"), None, None)
        .await;
    assert_eq!((st, code(&v)), (401, 1000));
    let (st, v) = t.call(Method::GET, "/user/tokens/verify", None).await;
    assert_eq!((st, v["result"]["status"].as_str()), (200, Some("active")));
    let (st, v) = t.call(Method::GET, &t.acct("/tokens/verify"), None).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = t
        .call(Method::GET, "/accounts/someoneelse/cfd_tunnel", None)
        .await;
    assert_eq!((st, code(&v)), (403, 10000));
    let (st, v) = t.call(Method::GET, "/nothing/here", None).await;
    assert_eq!((st, code(&v)), (404, 7003));

    t.s.set_faults(Faults {
        missing_permission: Some("Cloudflare Tunnel Write".into()),
        ..Faults::default()
    });
    let (st, v) = t.call(Method::GET, &path, None).await;
    assert_eq!((st, code(&v)), (403, 10000));
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Cloudflare Tunnel Write"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_lifecycle() {
    let t = start().await;
    let tun = t.create_tunnel("hub-a").await;
    let id = tun["id"].as_str().unwrap().to_owned();
    assert_eq!(tun["status"], "inactive");
    assert_eq!(tun["deleted_at"], Value::Null);
    assert!(tun["token"].is_string());

    // Duplicate name among live tunnels.
    let (st, v) = t
        .call(
            Method::POST,
            &t.acct("/cfd_tunnel"),
            Some(json!({"name": "hub-a", "config_src": "cloudflare"})),
        )
        .await;
    assert_eq!((st, code(&v)), (409, 1013));

    // The token: padded standard base64 of {"a","t","s"}, what cloudflared parses;
    // the same on every GET (not show-once).
    let (st, v) = t
        .call(
            Method::GET,
            &t.acct(&format!("/cfd_tunnel/{id}/token")),
            None,
        )
        .await;
    assert_eq!(st, 200);
    let token = v["result"].as_str().unwrap().to_owned();
    assert_eq!(token, tun["token"].as_str().unwrap());
    let decoded: Value = serde_json::from_slice(&STANDARD.decode(&token).unwrap()).unwrap();
    assert_eq!(decoded["a"], t.s.account_id());
    assert_eq!(decoded["t"], id.as_str());
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    let secret = STANDARD.decode(decoded["s"].as_str().unwrap()).unwrap();
    assert!(secret.len() >= 32);

    // Configurations: the last rule must be a catch-all without hostname.
    let cfg_path = t.acct(&format!("/cfd_tunnel/{id}/configurations"));
    let bad = json!({"config": {"ingress": [
        {"hostname": "hub.example.com", "service": "http://localhost:8080"}]}});
    let (st, v) = t.call(Method::PUT, &cfg_path, Some(bad)).await;
    assert_eq!(st, 400, "{v}");
    let good = json!({"config": {"ingress": [
        {"hostname": "hub.example.com", "service": "http://localhost:8080"},
        {"service": "http_status:404"}]}});
    let (st, v) = t.call(Method::PUT, &cfg_path, Some(good.clone())).await;
    assert_eq!((st, v["result"]["version"].as_u64()), (200, Some(1)));
    let (_, v) = t.call(Method::GET, &cfg_path, None).await;
    assert_eq!(v["result"]["config"], good["config"]);

    // Connections block delete; DELETE connections clears them.
    assert!(t.s.set_connected(&id, true));
    let tun_path = t.acct(&format!("/cfd_tunnel/{id}"));
    let (_, v) = t.call(Method::GET, &tun_path, None).await;
    assert_eq!(v["result"]["status"], "healthy");
    let (_, v) = t
        .call(Method::GET, &format!("{tun_path}/connections"), None)
        .await;
    assert_eq!(v["result"][0]["conns"].as_array().unwrap().len(), 4);
    let (st, v) = t.call(Method::DELETE, &tun_path, None).await;
    assert_eq!((st, code(&v)), (400, 1022));
    let (st, _) = t
        .call(Method::DELETE, &format!("{tun_path}/connections"), None)
        .await;
    assert_eq!(st, 200);
    let (_, v) = t.call(Method::GET, &tun_path, None).await;
    assert_eq!(v["result"]["status"], "down");

    // Soft delete: GET still answers, with deleted_at; the name is free again.
    let (st, v) = t.call(Method::DELETE, &tun_path, None).await;
    assert_eq!(st, 200);
    assert!(v["result"]["deleted_at"].is_string());
    let (st, v) = t.call(Method::GET, &tun_path, None).await;
    assert_eq!(st, 200);
    assert!(v["result"]["deleted_at"].is_string());
    let (_, v) = t
        .call(
            Method::GET,
            &t.acct("/cfd_tunnel?name=hub-a&is_deleted=false"),
            None,
        )
        .await;
    assert_eq!(v["result"].as_array().unwrap().len(), 0);
    let again = t.create_tunnel("hub-a").await;
    assert_ne!(again["id"], json!(id));
    let (_, v) = t
        .call(Method::GET, &t.acct("/cfd_tunnel?name=hub-a"), None)
        .await;
    assert_eq!(v["result"].as_array().unwrap().len(), 2);
    assert!(
        !t.s.set_connected(&id, true),
        "a deleted tunnel cannot connect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_paged_with_small_default_pages() {
    let t = start().await;
    for i in 0..5 {
        t.create_tunnel(&format!("hub-{i}")).await;
    }
    let mut names = Vec::new();
    let mut page = 1;
    loop {
        let (_, v) = t
            .call(
                Method::GET,
                &t.acct(&format!("/cfd_tunnel?page={page}")),
                None,
            )
            .await;
        let info = &v["result_info"];
        assert_eq!(info["per_page"], 2);
        assert_eq!(info["total_count"], 5);
        assert_eq!(info["total_pages"], 3);
        assert_eq!(info["page"], page);
        let result = v["result"].as_array().unwrap();
        assert_eq!(info["count"], result.len());
        names.extend(
            result
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_owned()),
        );
        if result.len() < 2 {
            break;
        }
        page += 1;
    }
    assert_eq!(page, 3);
    assert_eq!(names, ["hub-0", "hub-1", "hub-2", "hub-3", "hub-4"]);
    let (_, v) = t
        .call(Method::GET, &t.acct("/cfd_tunnel?per_page=50"), None)
        .await;
    assert_eq!(v["result"].as_array().unwrap().len(), 5);
    let (st, _) = t
        .call(Method::GET, &t.acct("/cfd_tunnel?per_page=0"), None)
        .await;
    assert_eq!(st, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_and_dns_records() {
    let t = start().await;
    let (_, v) = t.call(Method::GET, "/zones?name=example.com", None).await;
    assert_eq!(v["result"].as_array().unwrap().len(), 1);
    let (_, v) = t.call(Method::GET, "/zones?name=example.org", None).await;
    assert_eq!(v["result"].as_array().unwrap().len(), 0);
    let zone = t.zone_id().await;
    let records = format!("/zones/{zone}/dns_records");
    let cname = json!({"type": "CNAME", "name": "hub.example.com",
        "content": "abc.cfargotunnel.com", "proxied": true, "ttl": 1, "comment": "managed"});
    let (st, v) = t.call(Method::POST, &records, Some(cname)).await;
    assert_eq!(st, 200, "{v}");
    let rid = v["result"]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["result"]["proxied"], true);

    let a = json!({"type": "A", "name": "HUB.example.com", "content": "192.0.2.1"});
    let (st, v) = t.call(Method::POST, &records, Some(a)).await;
    assert_eq!((st, code(&v)), (400, 81053));
    let txt = json!({"type": "TXT", "name": "hub.example.com", "content": "owner"});
    let (st, _) = t.call(Method::POST, &records, Some(txt)).await;
    assert_eq!(st, 200);

    let (_, v) = t
        .call(
            Method::GET,
            &format!("{records}?type=CNAME&name=hub.example.com"),
            None,
        )
        .await;
    assert_eq!(v["result"].as_array().unwrap().len(), 1);
    assert_eq!(v["result"][0]["id"], rid.as_str());
    let (_, v) = t
        .call(
            Method::GET,
            &format!("{records}?name.exact=hub.example.com"),
            None,
        )
        .await;
    assert_eq!(v["result_info"]["total_count"], 2);

    let updated = json!({"type": "CNAME", "name": "hub.example.com",
        "content": "def.cfargotunnel.com", "proxied": true});
    let (st, v) = t
        .call(Method::PUT, &format!("{records}/{rid}"), Some(updated))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["result"]["content"], "def.cfargotunnel.com");
    assert_eq!(v["result"]["id"], rid.as_str());

    let (st, v) = t
        .call(Method::DELETE, &format!("{records}/{rid}"), None)
        .await;
    assert_eq!((st, v["result"]["id"].as_str()), (200, Some(rid.as_str())));
    let (st, _) = t
        .call(Method::DELETE, &format!("{records}/{rid}"), None)
        .await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_buckets_and_lifecycle() {
    let t = start().await;
    let buckets = t.acct("/r2/buckets");
    let body = json!({"name": "hub-backups", "locationHint": "weur"});
    let (st, v) = t
        .call_as(
            Method::POST,
            &buckets,
            Some(MASTER),
            Some("default"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["result"]["location"], "WEUR");
    let (st, v) = t
        .call_as(
            Method::POST,
            &buckets,
            Some(MASTER),
            None,
            Some(body.clone()),
        )
        .await;
    assert_eq!((st, code(&v)), (409, 10004));
    // Jurisdictions are separate namespaces.
    let (st, _) = t
        .call_as(Method::POST, &buckets, Some(MASTER), Some("eu"), Some(body))
        .await;
    assert_eq!(st, 200);
    let (st, v) = t
        .call(Method::POST, &buckets, Some(json!({"name": "Bad_Name"})))
        .await;
    assert_eq!((st, code(&v)), (400, 10005));

    let one = format!("{buckets}/hub-backups");
    let (st, v) = t.call(Method::GET, &one, None).await;
    assert_eq!(
        (st, v["result"]["name"].as_str()),
        (200, Some("hub-backups"))
    );
    let (st, v) = t
        .call(Method::GET, &format!("{buckets}/missing"), None)
        .await;
    assert_eq!((st, code(&v)), (404, 10006));

    let (_, v) = t.call(Method::GET, &format!("{one}/lifecycle"), None).await;
    assert_eq!(
        v["result"]["rules"].as_array().unwrap().len(),
        1,
        "R2's default rule"
    );
    let rules = json!({"rules": [{"id": "abort", "enabled": true, "conditions": {"prefix": ""},
        "abortMultipartUploadsTransition": {"condition": {"type": "Age", "maxAge": 86400}}}]});
    let (st, _) = t
        .call(
            Method::PUT,
            &format!("{one}/lifecycle"),
            Some(rules.clone()),
        )
        .await;
    assert_eq!(st, 200);
    let (_, v) = t.call(Method::GET, &format!("{one}/lifecycle"), None).await;
    assert_eq!(v["result"], rules);

    assert!(t.s.set_bucket_not_empty("default", "hub-backups", true));
    let (st, v) = t.call(Method::DELETE, &one, None).await;
    assert_eq!((st, code(&v)), (409, 10008));
    let (st, _) = t
        .admin(
            Method::PUT,
            "buckets/default/hub-backups/not-empty",
            Some(json!({"not_empty": false})),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = t.call(Method::DELETE, &one, None).await;
    assert_eq!(st, 200);
    let (st, v) = t.call(Method::DELETE, &one, None).await;
    assert_eq!((st, code(&v)), (404, 10006));
    let (st, _) = t
        .call_as(Method::GET, &one, Some(MASTER), Some("eu"), None)
        .await;
    assert_eq!(st, 200, "the eu bucket of the same name is still there");

    let seen = t.s.jurisdictions();
    assert_eq!(seen[0].call, "POST /accounts/{acct}/r2/buckets");
    assert_eq!(seen[0].jurisdiction.as_deref(), Some("default"));
    assert_eq!(seen[1].jurisdiction, None);
    assert_eq!(seen[2].jurisdiction.as_deref(), Some("eu"));
    assert_eq!(seen.last().unwrap().jurisdiction.as_deref(), Some("eu"));
    let (_, v) = t.admin(Method::GET, "jurisdictions", None).await;
    assert_eq!(v.as_array().unwrap().len(), seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_buckets_exist_on_the_s3_store() {
    let (ak, sk) = ("standin-admin-key", "standin-admin-secret-0123456789");
    let store = testkit::s3::S3Server::start(&[(ak, sk)]);
    let t = start_with(Options {
        s3: Some(S3Store {
            endpoint: store.endpoint.clone(),
            access_key_id: ak.into(),
            secret_access_key: sk.into(),
        }),
        ..Options::default()
    })
    .await;
    let buckets = t.acct("/r2/buckets");
    for name in ["hub-full", "hub-empty"] {
        let (st, v) = t
            .call(Method::POST, &buckets, Some(json!({"name": name})))
            .await;
        assert_eq!(st, 200, "{v}");
        assert!(store.has_bucket(name));
    }
    let target = hubkeeper_s3::Target {
        endpoint: &store.endpoint,
        bucket: "hub-full",
        access_key_id: ak,
        secret_access_key: sk,
        region: hubkeeper_s3::REGION_AUTO,
        path_style: true,
    };
    let s3 = hubkeeper_s3::Client::new(&target, hubkeeper_s3::Limits::default(), None).unwrap();
    s3.put_object("snapshots/1", "x").await.unwrap();

    let (st, v) = t
        .call(Method::DELETE, &format!("{buckets}/hub-full"), None)
        .await;
    assert_eq!((st, code(&v)), (409, 10008));
    assert!(store.has_bucket("hub-full"));
    let (st, _) = t
        .call(Method::DELETE, &format!("{buckets}/hub-empty"), None)
        .await;
    assert_eq!(st, 200);
    assert!(!store.has_bucket("hub-empty"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_tokens_mint_roll_and_revoke() {
    let t = start().await;
    let (_, v) = t
        .call(Method::GET, &t.acct("/tokens/permission_groups"), None)
        .await;
    let groups = v["result"].as_array().unwrap();
    let id_of = |name: &str| {
        groups
            .iter()
            .find(|g| g["name"] == name)
            .map(|g| g["id"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        id_of("Workers R2 Storage Bucket Item Write").as_deref(),
        Some("2efd5506f9c8494dacb1fa10a3e7d5b6")
    );
    assert_eq!(
        id_of("Workers R2 Storage Bucket Item Read").as_deref(),
        Some("6a018a9f2fc74eb6b293b0c548f38b39")
    );
    let (_, v) = t
        .call(Method::GET, "/user/tokens/permission_groups", None)
        .await;
    assert_eq!(v["result"].as_array().unwrap().len(), groups.len());

    let acct = t.s.account_id().to_owned();
    let body = |name: &str| {
        json!({"name": name, "policies": [{"effect": "allow",
            "resources": {format!("com.cloudflare.edge.r2.bucket.{acct}_default_hub-backups"): "*"},
            "permission_groups": [{"id": "2efd5506f9c8494dacb1fa10a3e7d5b6"},
                                  {"id": "6a018a9f2fc74eb6b293b0c548f38b39"}]}]})
    };
    let (st, v) = t
        .call(Method::POST, &t.acct("/tokens"), Some(body("hub-a-r2")))
        .await;
    assert_eq!(st, 200, "{v}");
    let id = v["result"]["id"].as_str().unwrap().to_owned();
    let value = v["result"]["value"].as_str().unwrap().to_owned();
    let (st, _) = t
        .call(
            Method::POST,
            &t.acct("/tokens"),
            Some(json!({"name": "x", "policies": []})),
        )
        .await;
    assert_eq!(st, 400);
    for i in 0..2 {
        t.call(
            Method::POST,
            &t.acct("/tokens"),
            Some(body(&format!("other-{i}"))),
        )
        .await;
    }

    // The S3 key pair: id and sha256-hex of the value.
    let keys = t.s.minted_keys();
    let key = keys.iter().find(|k| k.access_key_id == id).unwrap();
    assert_eq!(key.secret_access_key, sha256_hex(&value));
    assert_eq!(key.secret_access_key.len(), 64);
    assert_eq!(
        sha256_hex("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let (_, v) = t.admin(Method::GET, "keys", None).await;
    assert_eq!(v.as_array().unwrap().len(), 3);

    // Get and list never show the value; the list is paged.
    let (_, v) = t
        .call(Method::GET, &t.acct(&format!("/tokens/{id}")), None)
        .await;
    assert_eq!(v["result"]["name"], "hub-a-r2");
    assert!(v["result"].get("value").is_none());
    let (_, v) = t.call(Method::GET, &t.acct("/tokens"), None).await;
    assert_eq!(v["result"].as_array().unwrap().len(), 2);
    assert_eq!(v["result_info"]["total_count"], 3);
    assert!(!v.to_string().contains(&value));

    // Verify: the minted value is a valid token, but not for the rest of the API.
    let verify = t.acct("/tokens/verify");
    let (st, _) = t
        .call_as(Method::GET, &verify, Some(&value), None, None)
        .await;
    assert_eq!(st, 200);
    let (st, _) = t
        .call_as(
            Method::GET,
            &t.acct("/cfd_tunnel"),
            Some(&value),
            None,
            None,
        )
        .await;
    assert_eq!(st, 403);

    // Roll: same id, new value; the old value is dead at once.
    let (st, v) = t
        .call(
            Method::PUT,
            &t.acct(&format!("/tokens/{id}/value")),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, 200);
    let rolled = v["result"].as_str().unwrap().to_owned();
    assert_ne!(rolled, value);
    let (st, _) = t
        .call_as(Method::GET, &verify, Some(&value), None, None)
        .await;
    assert_eq!(st, 401);
    let (st, _) = t
        .call_as(Method::GET, &verify, Some(&rolled), None, None)
        .await;
    assert_eq!(st, 200);
    let key =
        t.s.minted_keys()
            .into_iter()
            .find(|k| k.access_key_id == id)
            .unwrap();
    assert_eq!(key.secret_access_key, sha256_hex(&rolled));

    // Delete: gone, value dead, a second delete is 404.
    let (st, v) = t
        .call(Method::DELETE, &t.acct(&format!("/tokens/{id}")), None)
        .await;
    assert_eq!((st, v["result"]["id"].as_str()), (200, Some(id.as_str())));
    let (st, _) = t
        .call_as(Method::GET, &verify, Some(&rolled), None, None)
        .await;
    assert_eq!(st, 401);
    let (st, _) = t
        .call(Method::DELETE, &t.acct(&format!("/tokens/{id}")), None)
        .await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_answer_as_told_and_switch_off() {
    let t = start().await;
    let list = t.acct("/cfd_tunnel");

    t.s.set_faults(Faults {
        rate_limit_secs: Some(7),
        count: Some(1),
        ..Faults::default()
    });
    let r = t
        .raw(Method::GET, &list, Some(MASTER), None, None)
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let (st, _) = t.call(Method::GET, &list, None).await;
    assert_eq!(st, 200, "count: 1 switches the fault off after one call");

    let (st, _) = t
        .admin(Method::PUT, "faults", Some(json!({"status_5xx": 503})))
        .await;
    assert_eq!(st, 200);
    let (st, v) = t.call(Method::GET, &list, None).await;
    assert_eq!((st, v["success"].as_bool()), (503, Some(false)));

    let (st, _) = t
        .admin(Method::PUT, "faults", Some(json!({"garbage": true})))
        .await;
    assert_eq!(st, 200);
    let r = t
        .raw(Method::GET, &list, Some(MASTER), None, None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.is_err(), "the body is not JSON");

    // `only` picks one call by its template; the others go through.
    t.s.set_faults(Faults {
        status_5xx: Some(500),
        only: Some("POST /accounts/{acct}/cfd_tunnel".into()),
        ..Faults::default()
    });
    let (st, _) = t.call(Method::GET, &list, None).await;
    assert_eq!(st, 200);
    let (st, _) = t
        .call(Method::POST, &list, Some(json!({"name": "hub-x"})))
        .await;
    assert_eq!(st, 500);
    let (st, _) = t
        .admin(Method::PUT, "faults", Some(json!({"bogus": 1})))
        .await;
    assert_eq!(st, 400, "unknown fault names are refused");

    // Latency: the call still succeeds (tests do not assert timings).
    t.s.set_faults(Faults {
        latency_ms: 50,
        ..Faults::default()
    });
    let (st, _) = t.call(Method::GET, &list, None).await;
    assert_eq!(st, 200);
    t.s.set_faults(Faults::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lose_answer_applies_the_call_and_drops_the_connection() {
    let t = start().await;
    t.s.set_faults(Faults {
        lose_answer: true,
        count: Some(1),
        ..Faults::default()
    });
    let r = t
        .raw(
            Method::POST,
            &t.acct("/cfd_tunnel"),
            Some(MASTER),
            None,
            Some(json!({"name": "hub-lost"})),
        )
        .await;
    let e = r.expect_err("no answer");
    assert!(!e.is_timeout(), "{e}");
    let (_, v) = t
        .call(Method::GET, &t.acct("/cfd_tunnel?name=hub-lost"), None)
        .await;
    assert_eq!(
        v["result"].as_array().unwrap().len(),
        1,
        "the create happened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_holds_calls_until_the_faults_change() {
    let t = start().await;
    t.s.set_faults(Faults {
        hang: true,
        ..Faults::default()
    });
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = format!("{}{}", t.s.url(), t.acct("/cfd_tunnel"));
    let e = quick
        .get(&url)
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");

    let pending = tokio::spawn(t.http.get(url).bearer_auth(MASTER).send());
    let key = "GET /accounts/{acct}/cfd_tunnel";
    wait_until("the second call to arrive", || async {
        t.s.calls().get(key) == Some(&2)
    })
    .await;
    assert!(!pending.is_finished());
    t.s.set_faults(Faults::default());
    let r = pending.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_refuses_connections_until_up_again() {
    let t = start().await;
    let list = t.acct("/cfd_tunnel");
    let (st, _) = t.call(Method::GET, &list, None).await;
    assert_eq!(st, 200);
    // Over HTTP: the hook answers, then the port refuses.
    let (st, _) = t
        .admin(Method::PUT, "faults", Some(json!({"down_ms": 600000})))
        .await;
    assert_eq!(st, 200);
    wait_until("connections to be refused", || async {
        matches!(t.raw(Method::GET, &list, Some(MASTER), None, None).await,
                 Err(e) if e.is_connect())
    })
    .await;
    t.s.set_down(false);
    wait_until("the stand-in to serve again", || async {
        t.raw(Method::GET, &list, Some(MASTER), None, None)
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_counted_by_template() {
    let t = start().await;
    let a = t.create_tunnel("hub-a").await;
    let b = t.create_tunnel("hub-b").await;
    for tun in [&a, &b] {
        let id = tun["id"].as_str().unwrap();
        t.call(
            Method::GET,
            &t.acct(&format!("/cfd_tunnel/{id}/token")),
            None,
        )
        .await;
    }
    t.call(Method::GET, "/zones?name=example.com", None).await;
    let calls = t.s.calls();
    assert_eq!(calls["POST /accounts/{acct}/cfd_tunnel"], 2);
    assert_eq!(calls["GET /accounts/{acct}/cfd_tunnel/{id}/token"], 2);
    assert_eq!(calls["GET /zones"], 1);
    assert_eq!(calls.values().sum::<u64>(), 5);
    let (_, v) = t.admin(Method::GET, "calls", None).await;
    assert_eq!(v["GET /zones"], 1);
    t.admin(Method::DELETE, "calls", None).await;
    assert!(t.s.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_file_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        state_dir: Some(dir.path().to_owned()),
        ..Options::default()
    };
    let t = start_with(opts.clone()).await;
    let tun = t.create_tunnel("hub-kept").await;
    let zone = t.zone_id().await;
    drop(t);
    let t = start_with(opts).await;
    let (_, v) = t
        .call(Method::GET, &t.acct("/cfd_tunnel?name=hub-kept"), None)
        .await;
    assert_eq!(v["result"][0]["id"], tun["id"]);
    let id = tun["id"].as_str().unwrap();
    let (_, v) = t
        .call(
            Method::GET,
            &t.acct(&format!("/cfd_tunnel/{id}/token")),
            None,
        )
        .await;
    assert_eq!(v["result"], tun["token"], "same secret after the restart");
    assert_eq!(t.zone_id().await, zone);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("state.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn the_binary_serves_with_tokens_from_a_file() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("tokens");
    std::fs::write(&token_file, format!("{MASTER}\n")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cloudflare-api-standin"))
        .arg("--token-file")
        .arg(&token_file)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{url}/user/tokens/verify"))
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap()
            .status()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 200);
    assert!(dir.path().join("state/state.json").is_file());

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloudflare-api-standin"))
        .arg("--token-file")
        .arg(dir.path().join("missing"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the token file"));
}

/// The token the stand-in hands out starts the cloudflared stand-in, which parses it
/// the way cloudflared does (`--token-file`, then `/ready` answers 200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tunnel_token_starts_the_cloudflared_standin() {
    let t = start().await;
    let tun = t.create_tunnel("hub-run").await;
    let id = tun["id"].as_str().unwrap();
    let (_, v) = t
        .call(
            Method::GET,
            &t.acct(&format!("/cfd_tunnel/{id}/token")),
            None,
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("tunnel-token");
    std::fs::write(&token_file, v["result"].as_str().unwrap()).unwrap();
    let metrics = format!("127.0.0.1:{}", testkit::s3::free_port());
    let stderr = dir.path().join("stderr");
    let mut child = std::process::Command::new(&*testkit::STANDIN)
        .args(["tunnel", "--no-autoupdate", "--metrics", &metrics, "run"])
        .arg("--token-file")
        .arg(&token_file)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CLOUDFLARED_STANDIN_DIR")
        .stdin(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let ready = format!("http://{metrics}/ready");
    let end = Instant::now() + Duration::from_secs(10);
    let mut ok = false;
    while Instant::now() < end && child.try_wait().unwrap().is_none() {
        if let Ok(r) = t.http.get(&ready).send().await
            && r.status() == 200
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert!(
        ok,
        "cloudflared-standin did not get ready ({status}); stderr:\n{}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
}
