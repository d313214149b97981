//! cloudflared's metrics server (`metrics/metrics.go`, `readiness.go`) for the three
//! endpoints a supervisor uses: `/ready`, `/healthcheck`, `/metrics`.

use crate::cli::IMITATED_VERSION;
use crate::tunnel::Tunnel;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Go's `http.DetectContentType` gives this for the JSON `/ready` writes without a
/// Content-Type, so a client must not insist on `application/json`.
const SNIFFED_TEXT: &str = "text/plain; charset=utf-8";

pub async fn serve(listener: TcpListener, tunnel: Arc<Tunnel>) {
    accept_loop(
        listener,
        tunnel,
        |t, req| async move { route(&t, req).await },
    )
    .await;
}

/// Serves HTTP/1 on `listener` with `route` for every request, forever: the one accept
/// loop of the stand-in's listeners (metrics and edge).
pub async fn accept_loop<F, Fut>(listener: TcpListener, tunnel: Arc<Tunnel>, route: F)
where
    F: Fn(Arc<Tunnel>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (tunnel, route) = (tunnel.clone(), route.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let fut = route(tunnel.clone(), req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn route(tunnel: &Tunnel, req: Request<Incoming>) -> Response<Full<Bytes>> {
    // Like Go's ServeMux without method patterns: any method is served.
    let path = req.uri().path();
    let response = match path {
        "/ready" => {
            let Some(n) = tunnel.ready_connections() else {
                tunnel.control.event("http", "path=/ready status=hang");
                // A wedged cloudflared: the connection stays open and nothing comes back.
                return std::future::pending().await;
            };
            let status = if n > 0 {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            // Field order as cloudflared's Go struct marshals it.
            let body = format!(
                r#"{{"status":{},"readyConnections":{n},"connectorId":"{}"}}"#,
                status.as_u16(),
                tunnel.connector_id
            );
            respond(status, SNIFFED_TEXT, body)
        }
        "/healthcheck" => respond(StatusCode::OK, SNIFFED_TEXT, "OK\n".into()),
        "/metrics" => {
            let n = tunnel.ready_connections().unwrap_or(0);
            respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                prometheus_text(n),
            )
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            SNIFFED_TEXT,
            "404 page not found\n".into(),
        ),
    };
    tunnel.control.event(
        "http",
        &format!("path={path} status={}", response.status().as_u16()),
    );
    response
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// A small subset of cloudflared's metric families, with its names and help texts.
fn prometheus_text(ha_connections: u32) -> String {
    format!(
        "# HELP build_info Build and version information\n\
         # TYPE build_info gauge\n\
         build_info{{goversion=\"cloudflared-standin\",revision=\"standin\",type=\"\",version=\"{IMITATED_VERSION}\"}} 1\n\
         # HELP cloudflared_tunnel_ha_connections Number of active ha connections\n\
         # TYPE cloudflared_tunnel_ha_connections gauge\n\
         cloudflared_tunnel_ha_connections {ha_connections}\n\
         # HELP cloudflared_tunnel_total_requests Amount of requests proxied through all the tunnels\n\
         # TYPE cloudflared_tunnel_total_requests counter\n\
         cloudflared_tunnel_total_requests 0\n\
         # HELP cloudflared_tunnel_request_errors Count of error proxying to origin\n\
         # TYPE cloudflared_tunnel_request_errors counter\n\
         cloudflared_tunnel_request_errors 0\n"
    )
}
