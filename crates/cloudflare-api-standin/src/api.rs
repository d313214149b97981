//! The HTTP side: the accept loop (and refusing connections while "down"), the
//! envelope, bearer-token checks, faults, routing of Cloudflare's paths onto the
//! account, the `/__standin/` test hooks and the state file.

use crate::state::{Account, ApiError, ApiResult, PERMISSION_GROUPS, sha256_hex};
use crate::{Faults, JurisdictionCall, MintedKey, S3Store, Shared, StartError, lock};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

pub const STATE_FILE: &str = "state.json";
const BODY_LIMIT: usize = 1024 * 1024;

type Resp = Response<Full<Bytes>>;
type Query = BTreeMap<String, String>;

/// Returned by the service to make hyper drop the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("the stand-in dropped the answer on purpose (lose_answer fault)")]
pub struct LostAnswer;

// ---------------------------------------------------------------- serving

pub async fn accept_loop(listener: TcpListener, addr: SocketAddr, shared: Arc<Shared>) {
    let mut down = shared.down.subscribe();
    let mut listener = Some(listener);
    loop {
        if let Some(l) = &listener {
            tokio::select! {
                accepted = l.accept() => {
                    if let Ok((stream, _)) = accepted {
                        tokio::spawn(connection(stream, shared.clone()));
                    }
                }
                changed = down.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if *down.borrow_and_update() {
                        // Closing the socket is what makes connects fail with
                        // "connection refused", as for a server that is not there.
                        listener = None;
                    }
                }
            }
        } else if *down.borrow_and_update() {
            if down.changed().await.is_err() {
                return;
            }
        } else {
            match TcpListener::bind(addr).await {
                Ok(l) => listener = Some(l),
                // Someone took the port meanwhile, or it is still held: try again.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

async fn connection(stream: TcpStream, shared: Arc<Shared>) {
    let mut down = shared.down.subscribe();
    let svc_shared = shared.clone();
    let svc = service_fn(move |req| handle(svc_shared.clone(), req));
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = down.changed() => {
                if changed.is_err() || *down.borrow_and_update() {
                    // Calls in flight finish (the one that switched "down" on gets its
                    // answer); idle keep-alive connections close now.
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                    return;
                }
            }
        }
    }
}

fn respond(status: u16, body: Bytes) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn envelope(status: u16, v: &Value) -> Resp {
    respond(status, Bytes::from(v.to_string()))
}

fn ok(result: Value) -> Resp {
    envelope(
        200,
        &json!({"success": true, "errors": [], "messages": [], "result": result}),
    )
}

fn ok_paged(result: Value, info: Value) -> Resp {
    envelope(
        200,
        &json!({"success": true, "errors": [], "messages": [], "result": result,
                "result_info": info}),
    )
}

fn error(e: &ApiError) -> Resp {
    envelope(
        e.status,
        &json!({"success": false,
                "errors": [{"code": e.code, "message": e.message}],
                "messages": [], "result": null}),
    )
}

fn admin_json(status: u16, v: &Value) -> Resp {
    envelope(status, v)
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, LostAnswer> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query: Query = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let auth = header(AUTHORIZATION.as_str());
    let jurisdiction = header("cf-r2-jurisdiction");
    let body = match Limited::new(req.into_body(), BODY_LIMIT).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(error(&ApiError::new(
                400,
                6007,
                "Malformed request body (or larger than 1 MiB)",
            )));
        }
    };
    if let Some(rest) = path.strip_prefix("/__standin/") {
        return Ok(admin(&shared, &method, rest, &body));
    }
    let segs: Vec<&str> = path
        .strip_prefix("/client/v4")
        .unwrap_or("/")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let parsed = if path.starts_with("/client/v4/") {
        parse(&method, &segs)
    } else {
        None
    };
    let template = match &parsed {
        Some((_, _, t)) => (*t).to_owned(),
        None => format!("{method} (unknown)"),
    };
    *lock(&shared.calls).entry(template.clone()).or_insert(0) += 1;
    {
        let mut log = lock(&shared.call_log);
        if log.len() >= CALL_LOG_CAP {
            log.pop_front();
        }
        log.push_back(template.clone());
    }

    let faults = take_faults(&shared, &template);
    if let Some(f) = &faults {
        if f.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(f.latency_ms)).await;
        }
        if f.hang {
            hang(&shared).await;
        }
        if let Some(secs) = f.rate_limit_secs {
            let mut r = error(&ApiError::new(
                429,
                971,
                "Please wait and consider throttling your request speed",
            ));
            r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
            return Ok(r);
        }
        if let Some(status) = f.status_5xx {
            return Ok(error(&ApiError::new(
                status,
                10000,
                "Internal server error (stand-in fault)",
            )));
        }
        if f.garbage {
            return Ok(respond(
                200,
                Bytes::from_static(b"<html><body>502 Bad Gateway</body></html>"),
            ));
        }
        if let Some(perm) = &f.missing_permission {
            return Ok(error(&ApiError::new(
                403,
                10000,
                format!("Authentication error: the token lacks the permission \"{perm}\""),
            )));
        }
    }

    let Some((acct, route, template)) = parsed else {
        return Ok(error(&ApiError::new(
            404,
            7003,
            format!("Could not route to {path}, perhaps your object identifier is invalid?"),
        )));
    };
    if template.contains("/r2/") {
        lock(&shared.jurisdictions).push(JurisdictionCall {
            call: template.to_owned(),
            jurisdiction: jurisdiction.clone(),
        });
    }
    let answer = match authorize(&shared, auth.as_deref(), &route, acct) {
        Ok(caller) => {
            let body = if body.is_empty() {
                Ok(Value::Null)
            } else {
                serde_json::from_slice::<Value>(&body).map_err(|e| {
                    ApiError::new(400, 6007, format!("Malformed JSON in request body: {e}"))
                })
            };
            match body {
                Ok(body) => {
                    let ctx = Ctx {
                        shared: &shared,
                        query: &query,
                        body: &body,
                        jurisdiction: jurisdiction.as_deref().unwrap_or("default"),
                        caller,
                    };
                    dispatch(ctx, route).await
                }
                Err(e) => error(&e),
            }
        }
        Err(e) => error(&e),
    };
    if faults.is_some_and(|f| f.lose_answer) {
        return Err(LostAnswer);
    }
    Ok(answer)
}

/// The faults that apply to this call, counting it against `count`.
fn take_faults(shared: &Shared, template: &str) -> Option<Faults> {
    let mut taken = None;
    shared.faults.send_if_modified(|f| {
        if *f == Faults::default() || f.only.as_deref().is_some_and(|o| o != template) {
            return false;
        }
        taken = Some(f.clone());
        match f.count {
            Some(n) if n <= 1 => {
                *f = Faults::default();
                true
            }
            Some(n) => {
                f.count = Some(n - 1);
                true
            }
            None => false,
        }
    });
    taken
}

/// Waits until the faults are set again (by a test), whatever to.
async fn hang(shared: &Shared) {
    let mut rx = shared.faults.subscribe();
    let seen = lock(&shared.hang_generation).to_owned();
    loop {
        if *lock(&shared.hang_generation) != seen {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

pub fn set_faults(shared: &Shared, mut faults: Faults) {
    if let Some(ms) = faults.down_ms.take() {
        shared.down.send_replace(true);
        let down = shared.down.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            down.send_replace(false);
        });
    }
    *lock(&shared.hang_generation) += 1;
    shared.faults.send_replace(faults);
}

// ---------------------------------------------------------------- auth

#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    Master,
    /// A token the stand-in minted: only good for R2 objects (and verify).
    Minted,
}

fn authorize(
    shared: &Shared,
    auth: Option<&str>,
    route: &Route<'_>,
    acct: Option<&str>,
) -> ApiResult<Caller> {
    let Some(auth) = auth else {
        return Err(ApiError::new(
            400,
            9106,
            "Missing X-Auth-Key, X-Auth-Email or Authorization headers",
        ));
    };
    let Some(token) = auth.strip_prefix("Bearer ").map(str::trim) else {
        return Err(ApiError::new(
            400,
            6003,
            "Invalid request headers: invalid format for Authorization header",
        ));
    };
    let verify = matches!(route, Route::Verify);
    let caller = if shared.opts.master_tokens.iter().any(|t| t == token) {
        Caller::Master
    } else if lock(&shared.account).token_by_value(token).is_some() {
        Caller::Minted
    } else if verify {
        return Err(ApiError::new(401, 1000, "Invalid API Token"));
    } else {
        return Err(ApiError::new(403, 9109, "Invalid access token"));
    };
    if acct.is_some_and(|a| a != shared.opts.account_id) {
        return Err(ApiError::new(403, 10000, "Authentication error"));
    }
    if caller == Caller::Minted && !verify {
        return Err(ApiError::new(403, 10000, "Authentication error"));
    }
    Ok(caller)
}

// ---------------------------------------------------------------- routes

enum Route<'a> {
    TunnelList,
    TunnelCreate,
    TunnelGet(&'a str),
    TunnelPatch(&'a str),
    TunnelDelete(&'a str),
    TunnelToken(&'a str),
    ConfigPut(&'a str),
    ConfigGet(&'a str),
    ConnGet(&'a str),
    ConnDelete(&'a str),
    Zones,
    RecordList(&'a str),
    RecordCreate(&'a str),
    RecordGet(&'a str, &'a str),
    RecordPut(&'a str, &'a str),
    RecordDelete(&'a str, &'a str),
    BucketList,
    BucketCreate,
    BucketGet(&'a str),
    BucketDelete(&'a str),
    LifecyclePut(&'a str),
    LifecycleGet(&'a str),
    PermissionGroups,
    TokenList,
    TokenCreate,
    TokenGet(&'a str),
    TokenPut(&'a str),
    TokenRoll(&'a str),
    TokenDelete(&'a str),
    Verify,
}

type Parsed<'a> = (Option<&'a str>, Route<'a>, &'static str);

fn parse<'a>(method: &Method, segs: &[&'a str]) -> Option<Parsed<'a>> {
    use Route::*;
    let m = method.as_str();
    Some(match (m, segs) {
        ("GET", ["accounts", a, "cfd_tunnel"]) => {
            (Some(*a), TunnelList, "GET /accounts/{acct}/cfd_tunnel")
        }
        ("POST", ["accounts", a, "cfd_tunnel"]) => {
            (Some(*a), TunnelCreate, "POST /accounts/{acct}/cfd_tunnel")
        }
        ("GET", ["accounts", a, "cfd_tunnel", id]) => (
            Some(*a),
            TunnelGet(id),
            "GET /accounts/{acct}/cfd_tunnel/{id}",
        ),
        ("PATCH", ["accounts", a, "cfd_tunnel", id]) => (
            Some(*a),
            TunnelPatch(id),
            "PATCH /accounts/{acct}/cfd_tunnel/{id}",
        ),
        ("DELETE", ["accounts", a, "cfd_tunnel", id]) => (
            Some(*a),
            TunnelDelete(id),
            "DELETE /accounts/{acct}/cfd_tunnel/{id}",
        ),
        ("GET", ["accounts", a, "cfd_tunnel", id, "token"]) => (
            Some(*a),
            TunnelToken(id),
            "GET /accounts/{acct}/cfd_tunnel/{id}/token",
        ),
        ("PUT", ["accounts", a, "cfd_tunnel", id, "configurations"]) => (
            Some(*a),
            ConfigPut(id),
            "PUT /accounts/{acct}/cfd_tunnel/{id}/configurations",
        ),
        ("GET", ["accounts", a, "cfd_tunnel", id, "configurations"]) => (
            Some(*a),
            ConfigGet(id),
            "GET /accounts/{acct}/cfd_tunnel/{id}/configurations",
        ),
        ("GET", ["accounts", a, "cfd_tunnel", id, "connections"]) => (
            Some(*a),
            ConnGet(id),
            "GET /accounts/{acct}/cfd_tunnel/{id}/connections",
        ),
        ("DELETE", ["accounts", a, "cfd_tunnel", id, "connections"]) => (
            Some(*a),
            ConnDelete(id),
            "DELETE /accounts/{acct}/cfd_tunnel/{id}/connections",
        ),
        ("GET", ["zones"]) => (None, Zones, "GET /zones"),
        ("GET", ["zones", z, "dns_records"]) => {
            (None, RecordList(z), "GET /zones/{zone}/dns_records")
        }
        ("POST", ["zones", z, "dns_records"]) => {
            (None, RecordCreate(z), "POST /zones/{zone}/dns_records")
        }
        ("GET", ["zones", z, "dns_records", id]) => {
            (None, RecordGet(z, id), "GET /zones/{zone}/dns_records/{id}")
        }
        ("PUT", ["zones", z, "dns_records", id]) => {
            (None, RecordPut(z, id), "PUT /zones/{zone}/dns_records/{id}")
        }
        ("DELETE", ["zones", z, "dns_records", id]) => (
            None,
            RecordDelete(z, id),
            "DELETE /zones/{zone}/dns_records/{id}",
        ),
        ("GET", ["accounts", a, "r2", "buckets"]) => {
            (Some(*a), BucketList, "GET /accounts/{acct}/r2/buckets")
        }
        ("POST", ["accounts", a, "r2", "buckets"]) => {
            (Some(*a), BucketCreate, "POST /accounts/{acct}/r2/buckets")
        }
        ("GET", ["accounts", a, "r2", "buckets", b]) => (
            Some(*a),
            BucketGet(b),
            "GET /accounts/{acct}/r2/buckets/{bucket}",
        ),
        ("DELETE", ["accounts", a, "r2", "buckets", b]) => (
            Some(*a),
            BucketDelete(b),
            "DELETE /accounts/{acct}/r2/buckets/{bucket}",
        ),
        ("PUT", ["accounts", a, "r2", "buckets", b, "lifecycle"]) => (
            Some(*a),
            LifecyclePut(b),
            "PUT /accounts/{acct}/r2/buckets/{bucket}/lifecycle",
        ),
        ("GET", ["accounts", a, "r2", "buckets", b, "lifecycle"]) => (
            Some(*a),
            LifecycleGet(b),
            "GET /accounts/{acct}/r2/buckets/{bucket}/lifecycle",
        ),
        ("GET", ["accounts", a, "tokens", "permission_groups"]) => (
            Some(*a),
            PermissionGroups,
            "GET /accounts/{acct}/tokens/permission_groups",
        ),
        ("GET", ["user", "tokens", "permission_groups"]) => {
            (None, PermissionGroups, "GET /user/tokens/permission_groups")
        }
        ("GET", ["accounts", a, "tokens", "verify"]) => {
            (Some(*a), Verify, "GET /accounts/{acct}/tokens/verify")
        }
        ("GET", ["user", "tokens", "verify"]) => (None, Verify, "GET /user/tokens/verify"),
        ("GET", ["accounts", a, "tokens"]) => (Some(*a), TokenList, "GET /accounts/{acct}/tokens"),
        ("POST", ["accounts", a, "tokens"]) => {
            (Some(*a), TokenCreate, "POST /accounts/{acct}/tokens")
        }
        ("GET", ["accounts", a, "tokens", id]) => {
            (Some(*a), TokenGet(id), "GET /accounts/{acct}/tokens/{id}")
        }
        ("PUT", ["accounts", a, "tokens", id]) => {
            (Some(*a), TokenPut(id), "PUT /accounts/{acct}/tokens/{id}")
        }
        ("PUT", ["accounts", a, "tokens", id, "value"]) => (
            Some(*a),
            TokenRoll(id),
            "PUT /accounts/{acct}/tokens/{id}/value",
        ),
        ("DELETE", ["accounts", a, "tokens", id]) => (
            Some(*a),
            TokenDelete(id),
            "DELETE /accounts/{acct}/tokens/{id}",
        ),
        _ => return None,
    })
}

struct Ctx<'a> {
    shared: &'a Shared,
    query: &'a Query,
    body: &'a Value,
    jurisdiction: &'a str,
    caller: Caller,
}

/// `page` and `per_page` over `items`, with Cloudflare's `result_info`.
fn paged(ctx: &Ctx<'_>, items: Vec<Value>) -> Resp {
    let number =
        |key: &str, default: usize| match ctx.query.get(key) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                ApiError::new(400, 1001, format!("{key} must be a positive integer"))
            }),
        };
    let (page, per_page) = match (
        number("page", 1),
        number("per_page", ctx.shared.opts.default_per_page),
    ) {
        (Ok(p), Ok(pp)) => (p, pp.min(1000)),
        (Err(e), _) | (_, Err(e)) => return error(&e),
    };
    let total = items.len();
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let info = json!({
        "page": page, "per_page": per_page, "count": slice.len(),
        "total_count": total, "total_pages": total.div_ceil(per_page),
    });
    ok_paged(Value::Array(slice), info)
}

fn flag(q: &Query, key: &str) -> Option<bool> {
    q.get(key).map(|v| v == "true" || v == "1")
}

async fn dispatch(ctx: Ctx<'_>, route: Route<'_>) -> Resp {
    let shared = ctx.shared;
    let acct_id = shared.opts.account_id.as_str();
    let result: ApiResult<Resp> = match route {
        Route::TunnelList => {
            let items: Vec<Value> = lock(&shared.account)
                .tunnels
                .iter()
                .filter(|t| ctx.query.get("name").is_none_or(|n| *n == t.name))
                .filter(|t| ctx.query.get("uuid").is_none_or(|u| *u == t.id))
                .filter(|t| {
                    flag(ctx.query, "is_deleted").is_none_or(|d| d == t.deleted_at.is_some())
                })
                .map(|t| t.to_json(acct_id))
                .collect();
            Ok(paged(&ctx, items))
        }
        Route::TunnelCreate => mutate(shared, |a| {
            let t = a.create_tunnel(ctx.body)?;
            let mut v = t.to_json(acct_id);
            v["token"] = json!(t.token(acct_id));
            v["credentials_file"] = json!({
                "AccountTag": acct_id, "TunnelID": t.id, "TunnelName": t.name,
                "TunnelSecret": t.secret,
            });
            Ok(ok(v))
        }),
        Route::TunnelGet(id) => lock(&shared.account)
            .tunnel(id)
            .map(|t| ok(t.to_json(acct_id))),
        Route::TunnelPatch(id) => mutate(shared, |a| {
            a.patch_tunnel(id, ctx.body).map(|t| ok(t.to_json(acct_id)))
        }),
        Route::TunnelDelete(id) => {
            let cascade = flag(ctx.query, "cascade").unwrap_or(false);
            mutate(shared, |a| {
                a.delete_tunnel(id, cascade).map(|t| ok(t.to_json(acct_id)))
            })
        }
        Route::TunnelToken(id) => lock(&shared.account)
            .tunnel_token(id, acct_id)
            .map(|t| ok(json!(t))),
        Route::ConfigPut(id) => mutate(shared, |a| {
            a.put_configuration(id, ctx.body)
                .map(|t| ok(t.configuration(acct_id)))
        }),
        Route::ConfigGet(id) => lock(&shared.account)
            .tunnel(id)
            .map(|t| ok(t.configuration(acct_id))),
        Route::ConnGet(id) => lock(&shared.account)
            .tunnel(id)
            .map(|t| ok(t.connections())),
        Route::ConnDelete(id) => mutate(shared, |a| {
            a.set_connected(id, false).map(|()| ok(Value::Null))
        }),
        Route::Zones => {
            let items: Vec<Value> = lock(&shared.account)
                .zones
                .iter()
                .filter(|z| {
                    ctx.query
                        .get("name")
                        .is_none_or(|n| n.eq_ignore_ascii_case(&z.name))
                })
                .map(|z| {
                    json!({"id": z.id, "name": z.name, "status": "active",
                           "account": {"id": acct_id, "name": "stand-in account"}})
                })
                .collect();
            Ok(paged(&ctx, items))
        }
        Route::RecordList(zone) => {
            let a = lock(&shared.account);
            a.zone(zone).map(|z| {
                let name = ctx.query.get("name.exact").or(ctx.query.get("name"));
                let items: Vec<Value> = a
                    .records
                    .iter()
                    .filter(|r| r.zone_id == zone)
                    .filter(|r| {
                        ctx.query
                            .get("type")
                            .is_none_or(|t| t.eq_ignore_ascii_case(&r.kind))
                    })
                    .filter(|r| name.is_none_or(|n| n.eq_ignore_ascii_case(&r.name)))
                    .map(|r| r.to_json(&z.name))
                    .collect();
                paged(&ctx, items)
            })
        }
        Route::RecordCreate(zone) => mutate(shared, |a| {
            let name = a.zone(zone)?.name.clone();
            a.create_record(zone, ctx.body)
                .map(|r| ok(r.to_json(&name)))
        }),
        Route::RecordGet(zone, id) => {
            let a = lock(&shared.account);
            a.zone(zone).and_then(|z| {
                a.records
                    .iter()
                    .find(|r| r.id == id && r.zone_id == zone)
                    .map(|r| ok(r.to_json(&z.name)))
                    .ok_or_else(|| ApiError::new(404, 81044, "Record does not exist."))
            })
        }
        Route::RecordPut(zone, id) => mutate(shared, |a| {
            let name = a.zone(zone)?.name.clone();
            a.update_record(zone, id, ctx.body)
                .map(|r| ok(r.to_json(&name)))
        }),
        Route::RecordDelete(zone, id) => mutate(shared, |a| {
            a.delete_record(zone, id).map(|()| ok(json!({"id": id})))
        }),
        Route::BucketList => {
            let buckets: Vec<Value> = lock(&shared.account)
                .buckets
                .iter()
                .filter(|b| b.jurisdiction == ctx.jurisdiction)
                .filter(|b| {
                    ctx.query
                        .get("name_contains")
                        .is_none_or(|n| b.name.contains(n.as_str()))
                })
                .map(|b| b.to_json())
                .collect();
            Ok(ok(json!({"buckets": buckets})))
        }
        Route::BucketCreate => create_bucket(&ctx).await,
        Route::BucketGet(name) => check_jurisdiction(ctx.jurisdiction).and_then(|()| {
            lock(&shared.account)
                .bucket(ctx.jurisdiction, name)
                .map(|b| ok(b.to_json()))
        }),
        Route::BucketDelete(name) => delete_bucket(&ctx, name).await,
        Route::LifecyclePut(name) => {
            let rules = ctx
                .body
                .get("rules")
                .and_then(Value::as_array)
                .filter(|r| r.len() <= 1000)
                .cloned();
            match rules {
                None => Err(ApiError::new(
                    400,
                    10040,
                    "The lifecycle configuration needs \"rules\": a list of at most 1000",
                )),
                Some(rules) => mutate(shared, |a| {
                    check_jurisdiction(ctx.jurisdiction)?;
                    a.bucket_mut(ctx.jurisdiction, name)?.lifecycle = Some(json!({"rules": rules}));
                    Ok(ok(json!({})))
                }),
            }
        }
        Route::LifecycleGet(name) => check_jurisdiction(ctx.jurisdiction).and_then(|()| {
            lock(&shared.account)
                .bucket(ctx.jurisdiction, name)
                .map(|b| ok(b.lifecycle.clone().unwrap_or_else(default_lifecycle)))
        }),
        Route::PermissionGroups => {
            let items: Vec<Value> = PERMISSION_GROUPS
                .iter()
                .filter(|(_, n)| ctx.query.get("name").is_none_or(|q| q == n))
                .map(|(id, name)| json!({"id": id, "name": name, "scopes": ["com.cloudflare.api.account"]}))
                .collect();
            Ok(ok(Value::Array(items)))
        }
        Route::TokenList => {
            let items: Vec<Value> = lock(&shared.account)
                .tokens
                .iter()
                .map(|t| t.to_json())
                .collect();
            Ok(paged(&ctx, items))
        }
        Route::TokenCreate => mutate(shared, |a| {
            a.create_token(ctx.body).map(|t| {
                let mut v = t.to_json();
                v["value"] = json!(t.value);
                ok(v)
            })
        }),
        Route::TokenGet(id) => lock(&shared.account).token(id).map(|t| ok(t.to_json())),
        Route::TokenPut(id) => mutate(shared, |a| {
            a.update_token(id, ctx.body).map(|t| ok(t.to_json()))
        }),
        Route::TokenRoll(id) => mutate(shared, |a| a.roll_token(id).map(|v| ok(json!(v)))),
        Route::TokenDelete(id) => mutate(shared, |a| {
            a.delete_token(id).map(|()| ok(json!({"id": id})))
        }),
        Route::Verify => Ok(verify(&ctx)),
    };
    result.unwrap_or_else(|e| error(&e))
}

fn verify(ctx: &Ctx<'_>) -> Resp {
    // The caller passed `authorize`, so the token is valid; say which one.
    let id = match ctx.caller {
        Caller::Master => "standin-master".to_owned(),
        Caller::Minted => "minted".to_owned(),
    };
    ok(json!({"id": id, "status": "active",
              "message": "This API Token is valid and active"}))
}

/// R2's default rule for a new bucket: abort incomplete multipart uploads after 7 days.
fn default_lifecycle() -> Value {
    json!({"rules": [{
        "id": "Default Multipart Abort Rule", "enabled": true,
        "conditions": {"prefix": ""},
        "abortMultipartUploadsTransition": {"condition": {"type": "Age", "maxAge": 604800}},
    }]})
}

fn check_jurisdiction(j: &str) -> ApiResult<()> {
    if matches!(j, "default" | "eu" | "fedramp") {
        Ok(())
    } else {
        Err(ApiError::new(
            400,
            10041,
            "cf-r2-jurisdiction must be default, eu or fedramp",
        ))
    }
}

/// Runs a change to the account under the lock, then writes the state file.
fn mutate<T>(shared: &Shared, f: impl FnOnce(&mut Account) -> ApiResult<T>) -> ApiResult<T> {
    let out = f(&mut lock(&shared.account));
    if out.is_ok() {
        persist(shared);
    }
    out
}

async fn create_bucket(ctx: &Ctx<'_>) -> ApiResult<Resp> {
    let shared = ctx.shared;
    check_jurisdiction(ctx.jurisdiction)?;
    // Claimed in the account first, so two racing creates get one 409.
    let (name, answer) = mutate(shared, |a| {
        let b = a.create_bucket(ctx.jurisdiction, ctx.body)?;
        Ok((b.name.clone(), b.to_json()))
    })?;
    if let Some(s3) = &shared.s3 {
        let created = match s3.for_bucket(&name) {
            Ok(c) => c.create_bucket().await,
            Err(e) => Err(e),
        };
        if let Err(e) = created {
            mutate(shared, |a| {
                a.remove_bucket(ctx.jurisdiction, &name);
                Ok(())
            })?;
            return Err(ApiError::new(
                500,
                10001,
                format!("The stand-in's S3 store could not create the bucket: {e}"),
            ));
        }
    }
    Ok(ok(answer))
}

async fn delete_bucket(ctx: &Ctx<'_>, name: &str) -> ApiResult<Resp> {
    let shared = ctx.shared;
    check_jurisdiction(ctx.jurisdiction)?;
    let not_empty = lock(&shared.account)
        .bucket(ctx.jurisdiction, name)?
        .not_empty;
    let not_empty_error =
        || ApiError::new(409, 10008, "The bucket you tried to delete is not empty.");
    if not_empty {
        return Err(not_empty_error());
    }
    if let Some(s3) = &shared.s3 {
        let deleted = match s3.for_bucket(name) {
            Ok(c) => c.delete_bucket().await,
            Err(e) => Err(e),
        };
        match deleted {
            Ok(hubkeeper_s3::BucketDeletion::NotEmpty) => return Err(not_empty_error()),
            Ok(_) => {}
            Err(e) => {
                return Err(ApiError::new(
                    500,
                    10001,
                    format!("The stand-in's S3 store could not delete the bucket: {e}"),
                ));
            }
        }
    }
    mutate(shared, |a| {
        a.bucket(ctx.jurisdiction, name)?;
        a.remove_bucket(ctx.jurisdiction, name);
        Ok(ok(Value::Null))
    })
}

// ---------------------------------------------------------------- test hooks

/// How many calls the ordered call log keeps.
const CALL_LOG_CAP: usize = 10_000;

fn admin(shared: &Shared, method: &Method, rest: &str, body: &Bytes) -> Resp {
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let parsed = |body: &Bytes| serde_json::from_slice::<Value>(body);
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["faults"]) => admin_json(200, &json!(*shared.faults.borrow())),
        ("PUT", ["faults"]) => match serde_json::from_slice::<Faults>(body) {
            Ok(f) => {
                set_faults(shared, f);
                admin_json(200, &json!(*shared.faults.borrow()))
            }
            Err(e) => admin_json(400, &json!({"error": format!("faults: {e}")})),
        },
        ("GET", ["calls"]) => admin_json(200, &json!(*lock(&shared.calls))),
        ("GET", ["calls", "log"]) => admin_json(200, &json!(*lock(&shared.call_log))),
        ("DELETE", ["calls"]) => {
            lock(&shared.calls).clear();
            lock(&shared.call_log).clear();
            admin_json(200, &json!({}))
        }
        ("GET", ["jurisdictions"]) => admin_json(200, &json!(*lock(&shared.jurisdictions))),
        ("PUT", ["token-quota"]) => match parsed(body).ok().and_then(|v| v.get("max")?.as_u64()) {
            None => admin_json(400, &json!({"error": "send {\"max\": N}"})),
            Some(n) => {
                let _ = mutate(shared, |a| {
                    a.token_quota = Some(usize::try_from(n).unwrap_or(usize::MAX));
                    Ok(())
                });
                admin_json(200, &json!({}))
            }
        },
        ("GET", ["keys"]) => admin_json(200, &json!(minted_keys(shared))),
        ("PUT", ["tunnels", id, "connections"]) => {
            match parsed(body)
                .ok()
                .and_then(|v| v.get("connected")?.as_bool())
            {
                None => admin_json(400, &json!({"error": "send {\"connected\": true|false}"})),
                Some(c) if set_connected(shared, id, c) => admin_json(200, &json!({})),
                Some(_) => admin_json(404, &json!({"error": "no such live tunnel"})),
            }
        }
        ("PUT", ["buckets", j, name, "not-empty"]) => {
            match parsed(body)
                .ok()
                .and_then(|v| v.get("not_empty")?.as_bool())
            {
                None => admin_json(400, &json!({"error": "send {\"not_empty\": true|false}"})),
                Some(n) => {
                    let found = mutate(shared, |a| {
                        a.bucket_mut(j, name)?.not_empty = n;
                        Ok(())
                    });
                    match found {
                        Ok(()) => admin_json(200, &json!({})),
                        Err(_) => admin_json(404, &json!({"error": "no such bucket"})),
                    }
                }
            }
        }
        _ => admin_json(
            404,
            &json!({"error": "stand-in hooks: faults, calls, calls/log, jurisdictions, token-quota, keys, \
                     tunnels/{id}/connections, buckets/{jurisdiction}/{name}/not-empty"}),
        ),
    }
}

pub fn set_connected(shared: &Shared, id: &str, connected: bool) -> bool {
    mutate(shared, |a| a.set_connected(id, connected)).is_ok()
}

pub fn minted_keys(shared: &Shared) -> Vec<MintedKey> {
    lock(&shared.account)
        .tokens
        .iter()
        .filter(|t| t.status == "active")
        .map(|t| MintedKey {
            access_key_id: t.id.clone(),
            secret_access_key: sha256_hex(&t.value),
            token_name: t.name.clone(),
        })
        .collect()
}

// ---------------------------------------------------------------- state file, S3

pub fn load_state(path: &Path) -> Result<Account, StartError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StartError::State {
            path: path.to_owned(),
            detail: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Account::default()),
        Err(e) => Err(StartError::State {
            path: path.to_owned(),
            detail: e.to_string(),
        }),
    }
}

/// Writes `state.json` (0600: it holds token values) by rename, so a crash leaves the
/// old or the new file, never half of one.
pub fn persist(shared: &Shared) {
    let Some(dir) = &shared.opts.state_dir else {
        return;
    };
    let _one_writer = lock(&shared.persist_lock);
    let Ok(bytes) = serde_json::to_vec_pretty(&*lock(&shared.account)) else {
        return;
    };
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(STATE_FILE))
    };
    if let Err(e) = write() {
        eprintln!(
            "cloudflare-api-standin: cannot write {}: {e}",
            dir.join(STATE_FILE).display()
        );
    }
}

pub fn s3_client(store: &S3Store, bucket: &str) -> Result<hubkeeper_s3::Client, StartError> {
    let target = hubkeeper_s3::Target {
        endpoint: &store.endpoint,
        bucket,
        access_key_id: &store.access_key_id,
        secret_access_key: &store.secret_access_key,
        region: hubkeeper_s3::REGION_AUTO,
        path_style: true,
    };
    hubkeeper_s3::Client::new(&target, hubkeeper_s3::Limits::default(), None)
        .map_err(|e| StartError::S3(e.to_string()))
}
