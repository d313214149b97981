//! One routing `match` for the control API (spec §8), and what every request passes
//! first: the bearer token (the operator's or a live account token, as a `Caller`), a
//! bounded body, strict parsing into the `control::api` request types. Each request is
//! logged with its method, path, status, caller and hub id.

use super::auth;
use super::error::HttpError;
use super::server::State;
use crate::accounts::Caller;
use crate::provision::Provisioner;
use crate::service::{Service, ServiceError};
use crate::store::Store;
use bytes::Bytes;
use http_body_util::Full;
use hubkeeper_base::http::body::read_body;
use hubkeeper_base::http::error::{json, no_store};
use hubkeeper_proto::HubId;
use hubkeeper_proto::control::{self as api, DisableRequest, EnrollRequest, HubRequest};
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

pub async fn handle<S: Store, P: Provisioner>(
    req: Request<Incoming>,
    state: Arc<State<S, P>>,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut seen = Seen::default();
    let mut r = match route(req, &state, &mut seen).await {
        Ok(r) => r,
        Err(e) => e.response(),
    };
    // Answers carry tunnel tokens and keys: no cache may keep them.
    no_store(&mut r);
    tracing::info!(
        %method,
        path,
        status = r.status().as_u16(),
        caller = seen.caller.as_deref().unwrap_or("-"),
        hub_id = seen.hub.as_deref().unwrap_or("-"),
        "request"
    );
    r
}

/// What the log line says about a request, filled in as it is learnt.
#[derive(Debug, Default)]
struct Seen {
    /// Once the bearer is known: `operator` or the account and token id.
    caller: Option<String>,
    /// Once the request names a valid hub.
    hub: Option<String>,
}

/// The caller a request's bearer stands for; 401 for none, a wrong one, or a revoked
/// or unknown account token alike.
async fn authenticate<S: Store, P: Provisioner>(
    headers: &HeaderMap,
    state: &State<S, P>,
) -> Result<Caller, HttpError> {
    let presented = auth::bearer(headers).ok_or_else(super::error::unauthorized)?;
    if auth::is_operator(presented, &state.token) {
        return Ok(Caller::Operator);
    }
    match state.service.account_caller(presented).await {
        Ok(Some(caller)) => Ok(caller),
        Ok(None) => Err(super::error::unauthorized()),
        Err(e) => {
            tracing::error!(error = %e, "cannot look up an account token");
            Err(HttpError::from(e))
        }
    }
}

async fn route<S: Store, P: Provisioner>(
    req: Request<Incoming>,
    state: &Arc<State<S, P>>,
    seen: &mut Seen,
) -> Result<Response<Full<Bytes>>, HttpError> {
    let caller = authenticate(req.headers(), state).await?;
    seen.caller = Some(caller.log_name());
    let hub = &mut seen.hub;
    let (parts, body) = req.into_parts();
    let timeout = state.limits.request_timeout;
    match (&parts.method, parts.uri.path()) {
        (&Method::POST, api::ENROLL) => {
            let r: EnrollRequest = read_json(&parts.headers, body, timeout).await?;
            *hub = valid_hub(&r.hub_id);
            let answer =
                detached(state, move |s| async move { s.enroll(&caller, r).await }).await?;
            Ok(json(StatusCode::OK, &answer))
        }
        (&Method::GET, api::STATUS) => {
            let hub_id = query_hub_id(parts.uri.query())?;
            *hub = valid_hub(&hub_id);
            let answer = detached(
                state,
                move |s| async move { s.status(&caller, &hub_id).await },
            )
            .await?;
            Ok(json(StatusCode::OK, &answer))
        }
        (&Method::POST, api::ROTATE_KEYS) => {
            let r: HubRequest = read_json(&parts.headers, body, timeout).await?;
            *hub = valid_hub(&r.hub_id);
            let answer = detached(
                state,
                move |s| async move { s.rotate_keys(&caller, r).await },
            )
            .await?;
            Ok(json(StatusCode::OK, &answer))
        }
        (&Method::POST, api::DISABLE) => {
            let r: DisableRequest = read_json(&parts.headers, body, timeout).await?;
            *hub = valid_hub(&r.hub_id);
            let answer =
                detached(state, move |s| async move { s.disable(&caller, r).await }).await?;
            Ok(json(StatusCode::OK, &answer))
        }
        (_, api::ENROLL | api::ROTATE_KEYS | api::DISABLE) => {
            Err(HttpError::method_not_allowed("POST"))
        }
        (_, api::STATUS) => Err(HttpError::method_not_allowed("GET")),
        (_, path) => Err(HttpError::not_found(path)),
    }
}

/// Runs a service operation on its own task: a client that hangs up mid-enroll must
/// not cancel it between creating a resource and recording it. The task tracker lets
/// shutdown wait for it.
async fn detached<S, P, F, Fut, T>(state: &Arc<State<S, P>>, op: F) -> Result<T, HttpError>
where
    S: Store,
    P: Provisioner,
    F: FnOnce(Arc<Service<S, P>>) -> Fut,
    Fut: Future<Output = Result<T, ServiceError>> + Send + 'static,
    T: Send + 'static,
{
    let task = state.tasks.spawn(op(state.service.clone()));
    match task.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            let detail = e.to_string();
            let mapped = HttpError::from(e);
            if mapped.status.is_server_error() {
                tracing::error!(error = %detail, "request failed");
            }
            Err(mapped)
        }
        Err(e) => {
            tracing::error!(error = %e, "a request's task failed");
            Err(super::error::internal())
        }
    }
}

/// Only well-formed hub ids reach the log.
fn valid_hub(s: &str) -> Option<String> {
    HubId::parse(s).ok().map(|h| h.as_str().to_owned())
}

fn query_hub_id(query: Option<&str>) -> Result<String, HttpError> {
    let mut hub = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "hub_id" if hub.is_none() => hub = Some(v.into_owned()),
            "hub_id" => return Err(HttpError::bad_request("hub_id is given more than once")),
            other => {
                return Err(HttpError::bad_request(format!(
                    "unknown query parameter `{other}`: only hub_id is accepted"
                )));
            }
        }
    }
    hub.ok_or_else(|| HttpError::bad_request("missing query parameter hub_id"))
}

async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Incoming,
    timeout: Duration,
) -> Result<T, HttpError> {
    let bytes = read_body(headers, body, MAX_BODY, timeout).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| HttpError::bad_request(format!("invalid request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_query_is_strict() {
        assert_eq!(query_hub_id(Some("hub_id=hub-1")).unwrap(), "hub-1");
        assert_eq!(query_hub_id(Some("hub_id=a%2Db")).unwrap(), "a-b");
        assert!(query_hub_id(None).unwrap_err().message.contains("missing"));
        assert!(
            query_hub_id(Some("hub_id=a&x=1"))
                .unwrap_err()
                .message
                .contains("`x`")
        );
        assert!(query_hub_id(Some("hub_id=a&hub_id=b")).is_err());
    }
}
