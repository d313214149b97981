//! Reading a request body whole, within a size limit and a time limit, into the
//! errors both APIs answer with: 413 `body_too_large`, 408 `request_timeout`, 400
//! `bad_request`. A body is only ever parsed once it is complete and bounded.

use super::HttpError;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::StatusCode;
use hyper::body::Body;
use hyper::header::{self, HeaderMap};
use std::time::Duration;

/// Reads `body` (at most `limit` bytes, all of it within `timeout`).
pub async fn read_body<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, HttpError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = || {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {limit} bytes"),
        )
    };
    // A declared length over the limit is refused before a byte of it is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // Most requests (every GET) have no body: no timer, no buffering.
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(HttpError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive in time",
        )),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Ok(Err(_)) => Err(HttpError::bad_request("the request body could not be read")),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Empty, Full};
    use hyper::header::HeaderValue;

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn bodies_within_the_limit_are_read_whole() {
        let h = HeaderMap::new();
        let b = read_body(&h, Full::new(Bytes::from_static(b"{}")), 4, T).await;
        assert_eq!(b.unwrap(), Bytes::from_static(b"{}"));
        let b = read_body(&h, Empty::<Bytes>::new(), 4, T).await;
        assert!(b.unwrap().is_empty());
    }

    #[tokio::test]
    async fn too_large_is_413_whether_declared_or_sent() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        let e = read_body(&h, Empty::<Bytes>::new(), 4, T)
            .await
            .unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
        );
        let big = Full::new(Bytes::from_static(b"12345"));
        let e = read_body(&HeaderMap::new(), big, 4, T).await.unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.message, "request bodies are limited to 4 bytes");
    }
}
