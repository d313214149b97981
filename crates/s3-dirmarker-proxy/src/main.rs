//! `s3-dirmarker-proxy`: part of the **stand-in for R2** used by the tests and the local
//! dev stack, not something hubkeeper ships.
//!
//! R2 (like S3) stores the empty `key/` objects that opendal, and so rustic, writes as
//! directory markers when it initialises a repository. `rclone serve s3`, our R2
//! stand-in, refuses them ("you can't create empty folders under other folders": HTTP
//! 500). This proxy sits in front of rclone and makes the pair behave like R2 there: it
//! answers such PUTs itself (200 with the empty object's ETag) and forwards every other
//! request unchanged, Host header included, so rclone still verifies every signature.
//!
//! Usage: `s3-dirmarker-proxy LISTEN_ADDR UPSTREAM_ADDR` (both IP:PORT, loopback).

// A test stand-in: a panic here is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

type Body = BoxBody<bytes::Bytes, hyper::Error>;

/// The ETag of an empty object (MD5 of nothing), as S3 and R2 return it.
const EMPTY_ETAG: &str = "\"d41d8cd98f00b204e9800998ecf8427e\"";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (
        args.get(1).and_then(|a| a.parse::<SocketAddr>().ok()),
        args.get(2).and_then(|a| a.parse::<SocketAddr>().ok()),
    ) else {
        eprintln!("usage: s3-dirmarker-proxy LISTEN_ADDR UPSTREAM_ADDR (IP:PORT each)");
        std::process::exit(2);
    };
    let listener = TcpListener::bind(listen).await.unwrap_or_else(|e| {
        eprintln!("s3-dirmarker-proxy: cannot listen on {listen}: {e}");
        std::process::exit(1);
    });
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve(client, upstream));
    }
}

type Upstream = hyper::client::conn::http1::SendRequest<Incoming>;

/// How long a request waits for rclone to come back: the tests restart it to change the
/// keys it accepts (see testkit's Cloudflare stand-in), and that must look like a slow
/// answer, not a failure.
const UPSTREAM_WAIT: Duration = Duration::from_secs(15);

/// A connection to rclone, retried while rclone refuses connections (restarting).
async fn connect(upstream: SocketAddr) -> Option<Upstream> {
    let end = Instant::now() + UPSTREAM_WAIT;
    loop {
        if let Ok(up) = TcpStream::connect(upstream).await
            && let Ok((sender, conn)) =
                hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(up)).await
        {
            tokio::spawn(conn);
            return Some(sender);
        }
        if Instant::now() > end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One client connection, with one upstream connection behind it at a time: when rclone
/// restarts, the next request opens a new one, so a client's kept-alive connection
/// keeps working.
async fn serve(client: TcpStream, upstream: SocketAddr) {
    let sender: Arc<Mutex<Option<Upstream>>> = Arc::new(Mutex::new(None));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let sender = sender.clone();
        async move {
            if is_dir_marker(&req) {
                return Ok::<_, hyper::Error>(reply(
                    200,
                    Empty::new().map_err(|n| match n {}).boxed(),
                ));
            }
            Ok(match forward(&sender, upstream, req).await {
                Ok(r) => r.map(BodyExt::boxed),
                Err(e) => reply(
                    502,
                    Full::new(bytes::Bytes::from(format!("upstream failed: {e}")))
                        .map_err(|n| match n {})
                        .boxed(),
                ),
            })
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(client), service)
        .await;
}

/// Sends `req` upstream; a request the old connection never sent (rclone went away)
/// goes again on a new one.
async fn forward(
    sender: &Mutex<Option<Upstream>>,
    upstream: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Incoming>, String> {
    let mut guard = sender.lock().await;
    for _ in 0..3 {
        let live = match guard.take() {
            Some(s) if !s.is_closed() => Some(s),
            _ => connect(upstream).await,
        };
        let Some(mut s) = live else {
            return Err("rclone is not listening".into());
        };
        if s.ready().await.is_err() {
            continue;
        }
        match s.try_send_request(req).await {
            Ok(r) => {
                *guard = Some(s);
                return Ok(r);
            }
            Err(mut e) => match e.take_message() {
                Some(unsent) => req = unsent,
                None => return Err(e.into_error().to_string()),
            },
        }
    }
    Err("rclone kept dropping the connection".into())
}

/// `PUT /bucket/some/dir/`: a key below a bucket that ends in '/'. (`PUT /bucket/` is
/// CreateBucket and goes through.)
fn is_dir_marker(req: &Request<Incoming>) -> bool {
    let key = req
        .uri()
        .path()
        .trim_start_matches('/')
        .split_once('/')
        .map_or("", |(_, k)| k);
    req.method() == Method::PUT && !key.is_empty() && key.ends_with('/')
}

fn reply(status: u16, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = hyper::StatusCode::from_u16(status).expect("valid status");
    if status == 200 {
        r.headers_mut()
            .insert("etag", hyper::header::HeaderValue::from_static(EMPTY_ETAG));
    }
    r
}
