#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The client against a scripted HTTP server on loopback: envelopes, errors, paging,
//! the R2 jurisdiction header, retries, time and size bounds, pacing, token minting.

mod common;

use std::time::{Duration, Instant};

use cloudflare_api::{
    Client, ConfigSrc, ErrorKind, IngressRule, Lifecycle, LifecycleConditions, LifecycleRule,
    NewDnsRecord, Secret, Transition, TransitionCondition, TunnelConfig,
};
use common::{Reply, Server, TOKEN, client, fail, ok, page, settings};

const TUNNEL: &str = r#"{"id":"6ff42ae2-765d-4adf-8112-31c55c1551ef","name":"hub-x","account_tag":"acct-1","status":"inactive","config_src":"cloudflare","created_at":"2026-01-01T00:00:00Z","deleted_at":null}"#;

#[tokio::test]
async fn success_envelope_gives_the_result_and_sends_the_bearer_token() {
    let server = Server::start(vec![ok(TUNNEL)]);
    let t = client(&server).get_tunnel("6ff42ae2").await.unwrap();
    assert_eq!(t.id, "6ff42ae2-765d-4adf-8112-31c55c1551ef");
    assert_eq!(t.status.as_deref(), Some("inactive"));
    assert!(t.deleted_at.is_none());
    let reqs = server.requests();
    assert_eq!(
        reqs[0].line,
        "GET /client/v4/accounts/acct-1/cfd_tunnel/6ff42ae2 HTTP/1.1"
    );
    assert_eq!(
        reqs[0].header("authorization"),
        Some(&*format!("Bearer {TOKEN}"))
    );
    assert_eq!(reqs[0].header("cf-r2-jurisdiction"), None);
}

#[tokio::test]
async fn added_and_missing_fields_are_tolerated() {
    // A field Cloudflare added, nested objects we do not model, and most fields gone.
    let server = Server::start(vec![
        ok(r#"{"id":"t1","brand_new":{"x":[1,2]},"connections":[],"metadata":{}}"#),
        ok(
            r#"{"id":"r1","type":"CNAME","name":"a.example.com","content":"t1.cfargotunnel.com","settings":{"flatten_cname":false},"meta":{}}"#,
        ),
    ]);
    let c = client(&server);
    let t = c.get_tunnel("t1").await.unwrap();
    assert_eq!((t.id.as_str(), t.name.as_str(), t.status), ("t1", "", None));
    let rec = c
        .update_dns_record(
            "z1",
            "r1",
            &NewDnsRecord::tunnel_cname("a.example.com", "t1", None),
        )
        .await
        .unwrap();
    assert_eq!(rec.content, "t1.cfargotunnel.com");
    assert_eq!(rec.ttl, None);
}

#[tokio::test]
async fn failure_names_the_call_and_code_but_never_the_token() {
    let server = Server::start(vec![
        fail(
            409,
            1013,
            "You already have a tunnel with this name. Delete the existing tunnel, or choose a different name for your new tunnel",
        ),
        // A message that quotes the token must not carry it into our error.
        fail(403, 10000, &format!("Authentication error for {TOKEN}")),
    ]);
    let c = client(&server);
    let secret = Secret::new("tunnel-secret-base64-AAAAAAAAAAAAAAAAAAAAAAA=");
    let e = c
        .create_tunnel("hub-x", ConfigSrc::Cloudflare, Some(&secret))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Conflict {
                code: Some(1013),
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.starts_with("create tunnel: "), "{msg}");
    assert!(
        msg.contains("1013") && msg.contains("already have a tunnel"),
        "{msg}"
    );
    assert!(!msg.contains(TOKEN) && !format!("{e:?}").contains(TOKEN));
    assert!(!msg.contains(secret.expose()));

    let e = c.list_tokens().await.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Auth { status: 403, .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.starts_with("list tokens: "), "{msg}");
    assert!(
        msg.contains("10000") && msg.contains("API Tokens Write"),
        "{msg}"
    );
    assert!(
        !msg.contains(TOKEN) && !format!("{e:?}").contains(TOKEN),
        "{msg}"
    );
    // The token did go out, in the Authorization header only.
    let reqs = server.requests();
    assert!(
        reqs.iter()
            .all(|r| r.header("authorization") == Some(&*format!("Bearer {TOKEN}")))
    );
    assert!(
        reqs[0].body.contains(r#""config_src":"cloudflare""#),
        "{}",
        reqs[0].body
    );
    assert!(reqs[0].body.contains(secret.expose()));
}

#[tokio::test]
async fn success_false_in_a_200_is_an_error() {
    let server = Server::start(vec![Reply::Json(
        200,
        r#"{"success":false,"errors":[{"code":81053,"message":"An A, AAAA, or CNAME record with that host already exists."}],"result":null}"#.into(),
    )]);
    let e = client(&server)
        .create_dns_record(
            "z1",
            &NewDnsRecord::tunnel_cname("a.example.com", "t1", None),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Conflict {
                code: Some(81053),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("create DNS record: "), "{e}");
}

#[tokio::test]
async fn other_4xx_is_rejected_with_cloudflares_message() {
    let server = Server::start(vec![fail(400, 10005, "InvalidBucketName")]);
    let e = client(&server)
        .create_bucket("Bad_Name", None)
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Rejected { status: 400, .. }),
        "{e:?}"
    );
    assert_eq!(e.codes(), vec![10005]);
    assert!(e.to_string().contains("InvalidBucketName"), "{e}");
}

#[tokio::test]
async fn tunnel_list_follows_every_page() {
    let t = |id: &str| format!(r#"{{"id":"{id}","name":"hub-x"}}"#);
    let server = Server::start(vec![
        page(
            &format!("[{},{}]", t("a"), t("b")),
            r#"{"page":1,"per_page":2,"count":2,"total_count":5,"total_pages":3}"#,
        ),
        page(
            &format!("[{},{}]", t("c"), t("d")),
            r#"{"page":2,"per_page":2,"count":2,"total_count":5,"total_pages":3}"#,
        ),
        page(
            &format!("[{}]", t("e")),
            r#"{"page":3,"per_page":2,"count":1,"total_count":5,"total_pages":3}"#,
        ),
    ]);
    let mut s = settings(&server.url);
    s.per_page = 2;
    let got = Client::new(s)
        .unwrap()
        .list_tunnels(Some("hub-x"))
        .await
        .unwrap();
    let ids: Vec<_> = got.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e"]);
    let lines: Vec<_> = server.requests().into_iter().map(|r| r.line).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with("GET /client/v4/accounts/acct-1/cfd_tunnel?")
                && line.contains("is_deleted=false")
                && line.contains("name=hub-x")
                && line.contains(&format!("page={}&per_page=2", i + 1)),
            "{line}"
        );
    }
}

#[tokio::test]
async fn token_list_follows_pages_without_a_total() {
    // No total_pages: a full page means "ask for the next", a short one ends the list.
    let tok = |id: &str| format!(r#"{{"id":"{id}","name":"n-{id}","status":"active"}}"#);
    let server = Server::start(vec![
        page(
            &format!("[{},{}]", tok("1"), tok("2")),
            r#"{"page":1,"per_page":2,"count":2}"#,
        ),
        page(
            &format!("[{},{}]", tok("3"), tok("4")),
            r#"{"page":2,"per_page":2,"count":2}"#,
        ),
        page(
            &format!("[{}]", tok("5")),
            r#"{"page":3,"per_page":2,"count":1}"#,
        ),
    ]);
    let mut s = settings(&server.url);
    s.per_page = 2;
    let got = Client::new(s).unwrap().list_tokens().await.unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(got[4].name, "n-5");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert!(
        reqs[2]
            .line
            .contains("/accounts/acct-1/tokens?page=3&per_page=2"),
        "{}",
        reqs[2].line
    );
}

#[tokio::test]
async fn a_server_answering_the_first_page_again_is_not_followed() {
    let t = r#"[{"id":"a","name":"hub-x"},{"id":"b","name":"hub-x"}]"#;
    let first = r#"{"page":1,"per_page":2,"count":2,"total_count":9,"total_pages":5}"#;
    let server = Server::start(vec![page(t, first), page(t, first), page(t, first)]);
    let mut s = settings(&server.url);
    s.per_page = 2;
    let e = Client::new(s)
        .unwrap()
        .list_tunnels(None)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("asked for page 2, got page 1"),
        "{e}"
    );
    assert_eq!(
        server.requests().len(),
        2,
        "stopped at the first wrong page"
    );
}

#[tokio::test]
async fn every_r2_call_carries_the_jurisdiction() {
    let bucket = r#"{"name":"hubs","creation_date":"2026-01-01T00:00:00Z","location":"WEUR","jurisdiction":"eu"}"#;
    let server = Server::start(vec![
        ok(bucket),
        ok(bucket),
        ok("{}"),
        ok(
            r#"{"rules":[{"id":"abort-mpu","enabled":true,"conditions":{"prefix":""},"abortMultipartUploadsTransition":{"condition":{"type":"Age","maxAge":86400}}}]}"#,
        ),
        ok("{}"),
        ok(r#"{"id":"7"}"#),
    ]);
    let mut s = settings(&server.url);
    s.jurisdiction = "eu".into();
    let c = Client::new(s).unwrap();
    c.create_bucket("hubs", Some("weur")).await.unwrap();
    assert_eq!(
        c.get_bucket("hubs").await.unwrap().location.as_deref(),
        Some("WEUR")
    );
    let rules = Lifecycle {
        rules: vec![LifecycleRule {
            id: "abort-mpu".into(),
            enabled: true,
            conditions: LifecycleConditions::default(),
            delete_objects_transition: None,
            abort_multipart_uploads_transition: Some(Transition {
                condition: TransitionCondition::age(86400),
            }),
        }],
    };
    c.put_bucket_lifecycle("hubs", &rules).await.unwrap();
    assert_eq!(c.get_bucket_lifecycle("hubs").await.unwrap(), rules);
    c.delete_bucket("hubs").await.unwrap();
    c.delete_dns_record("z1", "7").await.unwrap();

    let reqs = server.requests();
    assert_eq!(reqs.len(), 6);
    for r in &reqs[..5] {
        assert!(r.line.contains("/accounts/acct-1/r2/buckets"), "{}", r.line);
        assert_eq!(r.header("cf-r2-jurisdiction"), Some("eu"), "{}", r.line);
    }
    assert_eq!(
        reqs[5].header("cf-r2-jurisdiction"),
        None,
        "not on DNS calls"
    );
    assert!(
        reqs[0].body.contains(r#""locationHint":"weur""#),
        "{}",
        reqs[0].body
    );
    assert!(
        reqs[2]
            .line
            .starts_with("PUT /client/v4/accounts/acct-1/r2/buckets/hubs/lifecycle")
    );
    let body: serde_json::Value = serde_json::from_str(&reqs[2].body).unwrap();
    assert_eq!(
        body["rules"][0]["abortMultipartUploadsTransition"]["condition"],
        serde_json::json!({"type": "Age", "maxAge": 86400}),
        "{body}"
    );
}

#[tokio::test]
async fn rate_limit_waits_at_least_retry_after_then_succeeds() {
    let server = Server::start(vec![
        Reply::WithHeader(
            429,
            "retry-after",
            "1",
            r#"{"success":false,"errors":[{"code":971,"message":"Please wait and consider throttling your request speed"}]}"#.into(),
        ),
        ok(TUNNEL),
    ]);
    let start = Instant::now();
    let t = client(&server).get_tunnel("t").await.unwrap();
    assert_eq!(t.name, "hub-x");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn rate_limit_too_long_to_wait_is_returned() {
    let server = Server::start(vec![Reply::WithHeader(
        429,
        "retry-after",
        "300",
        "{}".into(),
    )]);
    let e = client(&server).get_tunnel("t").await.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(300)),
        "{e:?}"
    );
    assert!(e.to_string().contains("retry-after 300 s"), "{e}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let server = Server::start(vec![
        fail(502, 0, "bad gateway"),
        Reply::Raw(503, "<html>unavailable</html>".into()),
        ok(TUNNEL),
    ]);
    let t = client(&server).get_tunnel("t").await.unwrap();
    assert_eq!(t.name, "hub-x");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn server_errors_end_after_the_last_attempt() {
    let server = Server::start(vec![fail(500, 10001, "internal")]);
    let e = client(&server).get_tunnel("t").await.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Server { status: 500, .. }),
        "{e:?}"
    );
    assert_eq!(server.requests().len(), 3, "attempts = 3");
}

#[tokio::test]
async fn creates_are_not_retried_after_a_5xx_or_a_timeout() {
    let server = Server::start(vec![fail(502, 0, "bad gateway"), ok(TUNNEL)]);
    let e = client(&server)
        .create_tunnel("hub-x", ConfigSrc::Cloudflare, None)
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Server { status: 502, .. }),
        "{e:?}"
    );
    assert_eq!(server.requests().len(), 1);

    let server = Server::start(vec![Reply::Hang, ok(r#"{"id":"r1"}"#)]);
    let mut s = settings(&server.url);
    s.attempt_timeout = Duration::from_millis(300);
    let e = Client::new(s)
        .unwrap()
        .create_dns_record(
            "z1",
            &NewDnsRecord::tunnel_cname("a.example.com", "t1", None),
        )
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Timeout(_)), "{e:?}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_hanging_api_is_a_timeout() {
    let server = Server::start(vec![Reply::Hang]);
    let mut s = settings(&server.url);
    s.attempt_timeout = Duration::from_millis(300);
    s.attempts = 2;
    let e = Client::new(s)
        .unwrap()
        .list_tunnels(None)
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Timeout(_)), "{e:?}");
    assert!(
        e.to_string().starts_with("list tunnels: no answer within"),
        "{e}"
    );
    assert_eq!(server.requests().len(), 2, "a GET is tried again");
}

#[tokio::test]
async fn garbage_is_a_bad_answer_that_does_not_quote_it() {
    let server = Server::start(vec![
        Reply::Raw(200, "<html>oops SENSITIVE-BODY-TEXT</html>".into()),
        ok(r#"{"id":42,"name":["SENSITIVE-FIELD"]}"#),
    ]);
    let c = client(&server);
    let e = c.get_tunnel("t").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::BadAnswer(_)), "{e:?}");
    assert!(!e.to_string().contains("SENSITIVE"), "{e}");
    let e = c.get_tunnel("t").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::BadAnswer(_)), "{e:?}");
    assert!(!e.to_string().contains("SENSITIVE"), "{e}");
    assert!(e.to_string().contains("Tunnel"), "{e}");
}

#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let big = format!(r#"{{"success":true,"result":"{}"}}"#, "a".repeat(4096));
    let server = Server::start(vec![Reply::Json(200, big)]);
    let mut s = settings(&server.url);
    s.max_body = 1024;
    let e = Client::new(s).unwrap().tunnel_token("t").await.unwrap_err();
    assert!(
        matches!(&e.kind, ErrorKind::BadAnswer(m) if m.contains("larger than 1024")),
        "{e:?}"
    );
}

#[tokio::test]
async fn an_unreachable_api_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = settings(&format!("http://127.0.0.1:{port}/client/v4"));
    s.attempts = 2;
    let e = Client::new(s).unwrap().get_tunnel("t").await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Unreachable(_)), "{e:?}");
    assert!(!e.to_string().contains(TOKEN));
}

#[tokio::test]
async fn calls_are_paced_at_four_per_second() {
    let server = Server::start(vec![ok(TUNNEL)]);
    let mut s = settings(&server.url);
    s.min_interval = Duration::from_millis(250);
    let c = Client::new(s).unwrap();
    let start = Instant::now();
    for _ in 0..5 {
        c.get_tunnel("t").await.unwrap();
    }
    let took = start.elapsed();
    // 5 calls: at least 4 gaps of 250 ms (a lower bound only: a slow machine is slower).
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    assert_eq!(server.requests().len(), 5);
    println!("5 paced calls took {took:?}");
}

#[tokio::test]
async fn tunnel_token_is_a_secret() {
    let server = Server::start(vec![ok(r#""eyJhIjoiYWNjdC0xIiwidCI6InQiLCJzIjoicyJ9""#)]);
    let token = client(&server).tunnel_token("t").await.unwrap();
    assert_eq!(token.expose(), "eyJhIjoiYWNjdC0xIiwidCI6InQiLCJzIjoicyJ9");
    assert!(!format!("{token:?}").contains("eyJ"));
    assert!(server.requests()[0].line.contains("/cfd_tunnel/t/token "));
}

#[tokio::test]
async fn configuration_needs_a_catch_all_and_is_put_whole() {
    let server = Server::start(vec![ok(
        r#"{"tunnel_id":"t","version":3,"config":{"ingress":[{"hostname":"a.example.com","service":"https://localhost:8443","originRequest":{"noTLSVerify":true,"connectTimeout":30}},{"service":"http_status:404"}]}}"#,
    )]);
    let c = client(&server);
    let bad = TunnelConfig {
        ingress: vec![IngressRule {
            hostname: Some("a.example.com".into()),
            service: "http://localhost:8080".into(),
            origin_request: None,
        }],
    };
    let e = c.put_tunnel_configuration("t", &bad).await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Invalid(_)), "{e:?}");
    assert!(e.to_string().contains("catch-all"), "{e}");
    assert!(server.requests().is_empty(), "refused before sending");

    let good = TunnelConfig {
        ingress: vec![
            IngressRule {
                hostname: Some("a.example.com".into()),
                service: "https://localhost:8443".into(),
                origin_request: Some(cloudflare_api::OriginRequest {
                    no_tls_verify: Some(true),
                    other: Default::default(),
                }),
            },
            IngressRule {
                hostname: None,
                service: "http_status:404".into(),
                origin_request: None,
            },
        ],
    };
    let got = c.put_tunnel_configuration("t", &good).await.unwrap();
    assert_eq!(got.version, Some(3));
    let back = got.config.unwrap();
    assert_eq!(
        back.ingress[0]
            .origin_request
            .as_ref()
            .unwrap()
            .no_tls_verify,
        Some(true)
    );
    let r = &server.requests()[0];
    assert!(
        r.line
            .starts_with("PUT /client/v4/accounts/acct-1/cfd_tunnel/t/configurations")
    );
    assert_eq!(
        r.body,
        r#"{"config":{"ingress":[{"hostname":"a.example.com","originRequest":{"noTLSVerify":true},"service":"https://localhost:8443"},{"service":"http_status:404"}]}}"#
    );
}

#[tokio::test]
async fn bucket_token_uses_permission_groups_by_name_cached() {
    let groups = r#"[{"id":"6a018a9f2fc74eb6b293b0c548f38b39","name":"Workers R2 Storage Bucket Item Read","scopes":["com.cloudflare.edge.r2.bucket"]},{"id":"2efd5506f9c8494dacb1fa10a3e7d5b6","name":"Workers R2 Storage Bucket Item Write","scopes":["com.cloudflare.edge.r2.bucket"]}]"#;
    let created = |id: &str, value: &str| {
        ok(&format!(
            r#"{{"id":"{id}","name":"hub-{id}-r2","status":"active","policies":[],"value":"{value}"}}"#
        ))
    };
    let server = Server::start(vec![
        page(
            groups,
            r#"{"page":1,"per_page":50,"count":2,"total_pages":1}"#,
        ),
        created("a1", "value-one"),
        created("b2", "value-two"),
        ok(r#""value-rolled""#),
    ]);
    let c = client(&server);
    let one = c
        .create_bucket_token(
            "hub-a1-r2",
            "hubs",
            &["Workers R2 Storage Bucket Item Write"],
        )
        .await
        .unwrap();
    assert_eq!(one.token.id, "a1");
    assert_eq!(one.value.expose(), "value-one");
    let two = c
        .create_bucket_token(
            "hub-b2-r2",
            "hubs",
            &["Workers R2 Storage Bucket Item Write"],
        )
        .await
        .unwrap();
    assert_eq!(two.value.expose(), "value-two");
    let rolled = c.roll_token("a1").await.unwrap();
    assert_eq!(rolled.expose(), "value-rolled");

    let reqs = server.requests();
    assert_eq!(reqs.len(), 4, "permission groups asked once");
    assert!(
        reqs[0]
            .line
            .contains("/accounts/acct-1/tokens/permission_groups?page=1")
    );
    assert!(
        reqs[1]
            .line
            .starts_with("POST /client/v4/accounts/acct-1/tokens ")
    );
    assert!(
        reqs[1]
            .body
            .contains(r#""com.cloudflare.edge.r2.bucket.acct-1_default_hubs":"*""#),
        "{}",
        reqs[1].body
    );
    assert!(
        reqs[1]
            .body
            .contains(r#"{"id":"2efd5506f9c8494dacb1fa10a3e7d5b6"}"#)
    );
    assert!(
        !reqs[1].body.contains("6a018a9f"),
        "only the group asked for"
    );
    assert!(
        reqs[3]
            .line
            .starts_with("PUT /client/v4/accounts/acct-1/tokens/a1/value")
    );

    let e = c
        .create_bucket_token("x", "hubs", &["No Such Group"])
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Invalid(_)) && e.to_string().contains("No Such Group"));
    assert_eq!(server.requests().len(), 4, "refused before sending");
}

#[tokio::test]
async fn verify_falls_back_to_the_user_endpoint() {
    let server = Server::start(vec![
        fail(401, 1000, "Invalid API Token"),
        ok(r#"{"id":"u1","status":"active"}"#),
    ]);
    let v = client(&server).verify_token().await.unwrap();
    assert_eq!((v.id.as_str(), v.status.as_str()), ("u1", "active"));
    let reqs = server.requests();
    assert!(
        reqs[0]
            .line
            .starts_with("GET /client/v4/accounts/acct-1/tokens/verify ")
    );
    assert!(
        reqs[1]
            .line
            .starts_with("GET /client/v4/user/tokens/verify ")
    );
}

#[tokio::test]
async fn dns_delete_of_a_missing_record_is_success_but_tunnel_404_is_not_found() {
    let server = Server::start(vec![fail(404, 81044, "Record does not exist.")]);
    let c = client(&server);
    c.delete_dns_record("z1", "gone").await.unwrap();
    let e = c.delete_tunnel("gone").await.unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert!(e.to_string().starts_with("delete tunnel: not found"), "{e}");
}

#[tokio::test]
async fn zone_and_dns_lookups_send_the_filters() {
    let server = Server::start(vec![
        page(
            r#"[{"id":"z1","name":"example.com","status":"active","account":{"id":"acct-1"}}]"#,
            r#"{"page":1,"per_page":50,"count":1,"total_pages":1}"#,
        ),
        page(
            r#"[{"id":"r1","type":"CNAME","name":"hub.example.com","content":"t.cfargotunnel.com","proxied":true,"comment":"managed by hubkeeper h"}]"#,
            r#"{"page":1,"per_page":50,"count":1,"total_pages":1}"#,
        ),
        page(
            "[]",
            r#"{"page":1,"per_page":50,"count":0,"total_pages":0}"#,
        ),
    ]);
    let c = client(&server);
    let z = c.zone_by_name("example.com").await.unwrap().unwrap();
    assert_eq!(z.id, "z1");
    let recs = c
        .list_dns_records("z1", "CNAME", "hub.example.com")
        .await
        .unwrap();
    assert_eq!(recs[0].comment.as_deref(), Some("managed by hubkeeper h"));
    assert!(c.zone_by_name("other.com").await.unwrap().is_none());
    let reqs = server.requests();
    assert!(
        reqs[0]
            .line
            .starts_with("GET /client/v4/zones?name=example.com&page=1")
    );
    assert!(
        reqs[1].line.starts_with(
            "GET /client/v4/zones/z1/dns_records?type=CNAME&name=hub.example.com&page=1"
        ),
        "{}",
        reqs[1].line
    );
}

#[test]
fn s3_credentials_follow_cloudflares_recipe() {
    let c = cloudflare_api::s3_credentials("tok-id", &Secret::new("abc"));
    assert_eq!(c.access_key_id, "tok-id");
    assert_eq!(
        c.secret_access_key.expose(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn a_bad_api_base_is_refused_with_what_to_do() {
    let mut s = settings("not a url");
    let e = Client::new(s.clone()).unwrap_err();
    assert!(
        e.to_string().contains("api.cloudflare.com/client/v4"),
        "{e}"
    );
    s.api_base = "ftp://x/".into();
    assert!(Client::new(s).is_err());
}
