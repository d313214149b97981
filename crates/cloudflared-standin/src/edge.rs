//! The "edge": a plain HTTP listener on loopback that stands for Cloudflare's edge in
//! front of this connector, so tests can send a request "through the tunnel" and break
//! that path while `/ready` stays green.
//!
//! Configured by `$CLOUDFLARED_STANDIN_DIR/edge` (`key = value` lines), read at start
//! for `listen` and on every request for the rest:
//!
//! - `listen = 127.0.0.1:PORT`: where the edge listens (no file: no edge);
//! - `origin = http://127.0.0.1:PORT`: the ingress rule's service. Managed mode's
//!   ingress lives at Cloudflare and the token does not carry it, so the test names it;
//! - `fault = none | 502 | 530 | 1016 | hang`: answer like Cloudflare's edge does when
//!   the path is broken (502 bad gateway; 530 with error 1033, the connector is
//!   unusable; 530 with error 1016, origin DNS error; hang: accept and never answer).
//!
//! Without a fault it proxies the request to the origin and answers like the edge:
//! the origin's answer as is, 502 when the origin cannot be reached, and 530 with
//! error 1033 while the connector has no edge connections (before connecting, while
//! draining, `ready = 503`).

use crate::control::Control;
use crate::tunnel::Tunnel;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

pub const FILE: &str = "edge";

/// Bodies either way are test-sized.
const MAX_BODY: usize = 1024 * 1024;
const ORIGIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    BadGateway,
    TunnelError,
    OriginDns,
    Hang,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeConfig {
    pub listen: Option<String>,
    pub origin: Option<String>,
    pub fault: Fault,
}

impl EdgeConfig {
    pub fn parse(text: &str) -> Result<EdgeConfig, String> {
        let mut c = EdgeConfig {
            listen: None,
            origin: None,
            fault: Fault::None,
        };
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |msg: String| format!("edge line {}: {msg}", n + 1);
            let (key, value) = line
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| at(format!("expected `key = value`, got `{line}`")))?;
            match key {
                "listen" => c.listen = Some(value.to_owned()),
                "origin" => {
                    if !value.starts_with("http://") {
                        return Err(at(format!(
                            "origin: `{value}` is not an http:// URL (the stand-in proxies plain HTTP only)"
                        )));
                    }
                    c.origin = Some(value.to_owned());
                }
                "fault" => {
                    c.fault = match value {
                        "none" => Fault::None,
                        "502" => Fault::BadGateway,
                        "530" | "1033" => Fault::TunnelError,
                        "1016" => Fault::OriginDns,
                        "hang" => Fault::Hang,
                        _ => {
                            return Err(at(format!(
                                "fault: `{value}` is not none, 502, 530, 1016 or hang"
                            )));
                        }
                    }
                }
                _ => return Err(at(format!("unknown key `{key}`"))),
            }
        }
        Ok(c)
    }

    /// The edge file; `None` when there is none (no edge wanted).
    pub fn load(control: &Control) -> Result<Option<EdgeConfig>, String> {
        let Some(dir) = control.dir() else {
            return Ok(None);
        };
        let path = dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => EdgeConfig::parse(&text)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

pub async fn serve(listener: TcpListener, tunnel: Arc<Tunnel>) {
    crate::metrics_server::accept_loop(
        listener,
        tunnel,
        |t, req| async move { route(&t, req).await },
    )
    .await;
}

async fn route(tunnel: &Tunnel, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let config = match EdgeConfig::load(&tunnel.control) {
        Ok(Some(c)) => c,
        Ok(None) => EdgeConfig {
            listen: None,
            origin: None,
            fault: Fault::None,
        },
        Err(e) => {
            tunnel.control.event("behavior_error", "at=edge");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
        }
    };
    let connected = tunnel.ready_connections().is_some_and(|n| n > 0);
    let (response, via) = match config.fault {
        Fault::Hang => {
            tunnel
                .control
                .event("edge", &format!("path={path} status=hang"));
            return std::future::pending().await;
        }
        Fault::TunnelError => (error_1xxx(&host, 1033), "fault"),
        Fault::OriginDns => (error_1xxx(&host, 1016), "fault"),
        Fault::BadGateway => (bad_gateway(&host), "fault"),
        Fault::None if !connected => (error_1xxx(&host, 1033), "not_connected"),
        Fault::None => match &config.origin {
            None => (bad_gateway(&host), "no_origin"),
            Some(origin) => match proxy(origin, req).await {
                Ok(r) => (r, "origin"),
                Err(_) => (bad_gateway(&host), "origin_unreachable"),
            },
        },
    };
    tunnel.control.event(
        "edge",
        &format!(
            "path={path} status={} via={via}",
            response.status().as_u16()
        ),
    );
    response
}

/// Sends the request on to the origin over a fresh connection, as cloudflared would.
async fn proxy(origin: &str, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, String> {
    let authority = origin
        .strip_prefix("http://")
        .unwrap_or(origin)
        .split('/')
        .next()
        .unwrap_or("")
        .to_owned();
    let work = async {
        let stream = TcpStream::connect(&authority)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let (parts, body) = req.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let mut out = Request::from_parts(parts, Full::new(body));
        *out.uri_mut() = out
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| e.to_string())?;
        let resp = sender.send_request(out).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let mut resp = Response::from_parts(parts, Full::new(body));
        // The body was re-framed; hyper sets the length from the full body.
        resp.headers_mut().remove(hyper::header::TRANSFER_ENCODING);
        edge_headers(&mut resp);
        Ok(resp)
    };
    tokio::time::timeout(ORIGIN_TIMEOUT, work)
        .await
        .map_err(|_| "origin timeout".to_owned())?
}

fn edge_headers(r: &mut Response<Full<Bytes>>) {
    let ray = format!("{:016x}-STANDIN", uuid::Uuid::new_v4().as_u128() as u64);
    let h = r.headers_mut();
    h.insert(hyper::header::SERVER, "cloudflare".parse().unwrap());
    h.insert("cf-ray", ray.parse().unwrap());
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().unwrap(),
    );
    r
}

fn html(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "text/html; charset=UTF-8".parse().unwrap(),
    );
    edge_headers(&mut r);
    r
}

/// Cloudflare's 1xxx error page: status 530, the code in the title and the body.
fn error_1xxx(host: &str, code: u16) -> Response<Full<Bytes>> {
    let name = match code {
        1016 => "Origin DNS error",
        _ => "Cloudflare Tunnel error",
    };
    html(
        StatusCode::from_u16(530).unwrap(),
        format!(
            "<!DOCTYPE html>\n<html><head><title>{host} | {code}: {name}</title></head>\n\
             <body><h1><span>Error</span> <span>{code}</span></h1>\n<h2>{name}</h2>\n\
             <p>(cloudflared-standin's imitation of Cloudflare's error page)</p></body></html>\n"
        ),
    )
}

/// Cloudflare's 502 page, as when cloudflared cannot reach the origin.
fn bad_gateway(host: &str) -> Response<Full<Bytes>> {
    html(
        StatusCode::BAD_GATEWAY,
        format!(
            "<!DOCTYPE html>\n<html><head><title>{host} | 502: Bad gateway</title></head>\n\
             <body><h1>Bad gateway <span>Error code 502</span></h1>\n\
             <p>(cloudflared-standin's imitation of Cloudflare's error page)</p></body></html>\n"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_file() {
        let c = EdgeConfig::parse(
            "listen = 127.0.0.1:1\norigin = http://127.0.0.1:2 # hub\nfault = 530\n",
        )
        .unwrap();
        assert_eq!(c.listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(c.origin.as_deref(), Some("http://127.0.0.1:2"));
        assert_eq!(c.fault, Fault::TunnelError);
        for bad in ["fault = 503", "origin = https://x", "listen 1", "port = 1"] {
            assert!(EdgeConfig::parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
