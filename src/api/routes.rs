//! One routing `match` for the socket API, and the checks every request passes first:
//! no browser headers, a bounded body, typed (and strict) request bodies.

use super::ApiError;
use super::server::Context;
use crate::daemon::commands::{Command, CommandRequest};
use bytes::Bytes;
use http_body_util::Full;
use hubkeeper_base::http::body::read_body;
use hubkeeper_base::http::error::{json_bytes, no_store};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::oneshot;

/// Largest request body accepted (spec §7).
pub const MAX_BODY: usize = 64 * 1024;

/// `POST` bodies are optional; when present they must be this: an empty JSON object.
/// Parsed strictly so that a client sending options we do not support hears so.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoOptions {}

/// Per-connection facts the handler needs.
#[derive(Debug, Clone, Copy)]
pub struct ConnFacts {
    pub may_post: bool,
}

pub async fn handle(
    req: Request<Incoming>,
    ctx: &Context,
    conn: ConnFacts,
) -> Response<Full<Bytes>> {
    let mut r = match route(req, ctx, conn).await {
        Ok(r) => r,
        Err(e) => e.response(),
    };
    no_store(&mut r);
    r
}

async fn route(
    req: Request<Incoming>,
    ctx: &Context,
    conn: ConnFacts,
) -> Result<Response<Full<Bytes>>, ApiError> {
    // Browsers always send one of these; a local client never needs to. Refusing them
    // keeps a web page from reaching the socket through a DNS-rebinding trick.
    if req.headers().contains_key(header::ORIGIN) || req.headers().contains_key(header::REFERER) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "browser_request_refused",
            "requests carrying Origin or Referer are refused",
        ));
    }
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body, MAX_BODY, ctx.request_timeout).await?;
    let path = parts.uri.path();

    match (&parts.method, path) {
        (&Method::GET | &Method::HEAD, "/v1/status") => {
            let snap = ctx.status.borrow().clone();
            Ok(json_bytes(StatusCode::OK, snap.json.clone()))
        }
        (&Method::GET | &Method::HEAD, "/v1/health") => {
            let snap = ctx.status.borrow().clone();
            let code = if snap.is_ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            Ok(json_bytes(code, snap.health_json.clone()))
        }
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let snap = ctx.status.borrow().clone();
            let text = ctx.metrics.render(&snap);
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            Ok(r)
        }
        (&Method::POST, "/v1/rotate-keys") => command(ctx, conn, &body, Command::RotateKeys).await,
        (&Method::POST, "/v1/backup") => command(ctx, conn, &body, Command::Backup).await,
        (&Method::POST, "/v1/check") => command(ctx, conn, &body, Command::Check).await,
        (_, "/v1/status" | "/v1/health" | "/metrics") => {
            Err(ApiError::method_not_allowed("GET, HEAD"))
        }
        (_, "/v1/rotate-keys" | "/v1/backup" | "/v1/check") => {
            Err(ApiError::method_not_allowed("POST"))
        }
        _ => Err(ApiError::not_found(path)),
    }
}

async fn command(
    ctx: &Context,
    conn: ConnFacts,
    body: &Bytes,
    command: Command,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if !conn.may_post {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "POST is allowed only to root, the hubkeeper user and members of the socket's group",
        ));
    }
    if !body.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice::<NoOptions>(body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body must be empty or {{}}: {e}"),
            )
        })?;
    }
    let (tx, rx) = oneshot::channel();
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the daemon is shutting down",
        )
    };
    ctx.commands
        .send(CommandRequest { command, reply: tx })
        .await
        .map_err(|_| unavailable())?;
    let outcome = rx.await.map_err(|_| unavailable())??;
    Ok(json_bytes(outcome.status, outcome.snapshot.json.clone()))
}
