//! One plain HTTP/1.1 request on a stream the caller connected (a Unix socket, a
//! loopback TCP port), with hyper and no TLS: the `hubkeeper` CLI's calls to the
//! daemon's socket and the daemon's readiness probes of cloudflared. The answer's body
//! is capped, so a peer cannot make us buffer without bound.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("{0}")]
    Protocol(String),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
}

/// Sends `method path` with `Host: host` and returns the status and the whole body
/// (at most `max_body` bytes).
pub async fn exchange<S>(
    stream: S,
    method: Method,
    host: &str,
    path: &str,
    max_body: usize,
) -> Result<(StatusCode, Bytes), ExchangeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let protocol = |e: &dyn std::fmt::Display| ExchangeError::Protocol(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| protocol(&e))?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| protocol(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| protocol(&e))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), max_body)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ExchangeError::TooLarge(max_body)
            } else {
                ExchangeError::Protocol(e.to_string())
            }
        })?
        .to_bytes();
    Ok((status, body))
}
