//! Raw HTTP/1.1 on both sides: requests for the two servers (odd methods, paths,
//! encodings, framing, headers, bodies at and past the cap, pipelining) served through
//! hyper into the real handler over an in-memory stream; and answers for the two
//! clients, served from a loopback TCP listener.

use crate::craft::{self, U};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the production servers allow for a request head (`http::serve`).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// One generated request: its bytes, and whether it is a clean request whose body is
/// over `cap` (so the first answer must be 413).
pub struct GenRequest {
    pub bytes: Vec<u8>,
    pub over_cap: bool,
    pub method: &'static str,
    /// The path as generated, before any query.
    pub route: String,
}

/// The JSON fields of a route's body, each with plausible values (JSON text).
pub type Fields = &'static [(&'static str, &'static [&'static str])];

/// A request. `routes` are the server's paths with their body fields; `cap` its body
/// limit; `extra_headers` are always sent when clean (a token).
pub fn request(
    u: U,
    routes: &[(&str, Fields)],
    cap: usize,
    extra_headers: &[String],
) -> arbitrary::Result<GenRequest> {
    let mut clean = true;
    // Half the requests are well-formed, to get past the HTTP layer into the handler.
    let calm: bool = u.arbitrary()?;
    let &(route_path, fields) = u.choose(routes)?;
    let method = if !fields.is_empty() && u.int_in_range(0..=3u8)? > 0 {
        "POST"
    } else if calm || u.int_in_range(0..=7u8)? > 0 {
        *u.choose(&["GET", "HEAD", "POST"])?
    } else {
        clean = false;
        *u.choose(&[
            "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "get", "G\0T", "POSTX", "",
            "M-SEARCH", "PRI",
        ])?
    };
    let mut path = route_path.to_owned();
    if !calm && u.int_in_range(0..=3u8)? == 0 {
        clean = false;
        match u.int_in_range(0..=10u8)? {
            0 => path.push('/'),
            1 => path = format!("/{path}"),
            2 => path = path.to_uppercase(),
            3 => path = path.replace('/', "%2F"),
            4 => path = format!("http://localhost{path}"),
            5 => path = "*".into(),
            6 => path.push_str(&"a".repeat(*u.choose(&[100usize, 4000, 20_000])?)),
            7 => path = path.replacen("/v1", "/v1/.", 1),
            8 => path.push('#'),
            9 => path.push_str(u.choose(&["%00", "%", "\u{e9}", "\t", " x", "\\"])?),
            _ => path = craft::text(u)?,
        }
    }
    let route = path.clone();
    match u.int_in_range(0..=3u8)? {
        0 => {
            path.push('?');
            let k = craft::text(u)?;
            let v = craft::text(u)?;
            path.push_str(
                &url::form_urlencoded::Serializer::new(String::new())
                    .append_pair(&k, &v)
                    .finish(),
            );
        }
        1 => {
            path.push('?');
            path.push_str(u.choose(&[
                "hub_id=hub-1",
                "hub_id=hub-1&hub_id=hub-2",
                "hub_id=",
                "hub_id",
                "x=1",
                "hub_id=%ff%fe",
                "hub_id=hub%2D1",
                "&&&",
                "=",
            ])?);
        }
        _ => {}
    }
    let version = if calm || u.int_in_range(0..=9u8)? > 0 {
        "HTTP/1.1"
    } else {
        clean = false;
        *u.choose(&[
            "HTTP/1.0",
            "HTTP/2.0",
            "HTTP/1.2",
            "HTTP/0.9",
            "http/1.1",
            "HTTP/1.1 x",
            "",
        ])?
    };
    let body: Vec<u8> = match u.int_in_range(0..=9u8)? {
        4..=7 if !fields.is_empty() => {
            // Plausible: most fields, with values the server may accept.
            let mut parts = Vec::new();
            for (k, values) in fields {
                if u.int_in_range(0..=5u8)? > 0 {
                    parts.push(format!("\"{k}\":{}", u.choose(values)?));
                }
            }
            format!("{{{}}}", parts.join(",")).into_bytes()
        }
        0..=2 => Vec::new(),
        3 => b"{}".to_vec(),
        4 => b" \n\t".to_vec(),
        5 => {
            let n = *u.choose(&[cap - 1, cap, cap + 1, 4 * cap, 1 << 20])?;
            let mut b = vec![b' '; n];
            b[0] = b'{';
            b[n - 1] = b'}';
            b
        }
        _ => {
            let keys: Vec<&str> = fields.iter().map(|f| f.0).collect();
            let mut s = String::new();
            if u.int_in_range(0..=4u8)? == 0 {
                craft::json_value(u, &keys, 0, &mut s)?;
            } else {
                craft::json_object(u, &keys, 0, &mut s)?;
            }
            s.into_bytes()
        }
    };
    let mut head = format!("{method} {path} {version}\r\n");
    if calm || u.int_in_range(0..=9u8)? > 0 {
        head.push_str("Host: localhost\r\n");
    }
    for h in extra_headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    let chunked = u.int_in_range(0..=4u8)? == 0;
    let mut framing_ok = true;
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
    } else if !body.is_empty() || u.arbitrary()? {
        let len = match u.int_in_range(0..=7u8)? + 2 * u8::from(calm) {
            0 => {
                framing_ok = false;
                (*u.choose(&[
                    "-1",
                    "+5",
                    " 5",
                    "0x10",
                    "18446744073709551616",
                    "1e3",
                    "",
                    "5, 5",
                    "5,6",
                ])?)
                .to_owned()
            }
            1 => {
                framing_ok = false;
                (body.len() + usize::from(u.int_in_range(1..=9u8)?)).to_string()
            }
            _ => body.len().to_string(),
        };
        head.push_str(&format!("Content-Length: {len}\r\n"));
    }
    for _ in 0..u.int_in_range(0..=3u8)? * u8::from(!calm) {
        let (name, value) = match u.int_in_range(0..=9u8)? {
            0 => {
                clean = false;
                ("Origin", "http://evil.example".to_owned())
            }
            1 => {
                clean = false;
                ("Referer", "http://evil.example/".to_owned())
            }
            2 => (
                "Content-Type",
                (*u.choose(&["application/json", "text/plain", ""])?).into(),
            ),
            3 => (
                "Connection",
                (*u.choose(&["close", "keep-alive", "upgrade", "Upgrade, x"])?).into(),
            ),
            4 => ("Expect", "100-continue".to_owned()),
            5 => {
                clean = false;
                (
                    "Transfer-Encoding",
                    (*u.choose(&["gzip", "chunked, gzip", "identity", "xchunked"])?).into(),
                )
            }
            6 => {
                clean = false;
                ("Content-Length", (*u.choose(&["0", "1", "70000"])?).into())
            }
            7 => ("Authorization", format!("Bearer {}", craft::text(u)?)),
            8 => {
                let n = *u.choose(&[100usize, 8000, 17_000])?;
                if n > 1000 {
                    clean = false;
                }
                ("X-Big", "x".repeat(n))
            }
            _ => ("X-Fuzz", craft::text(u)?),
        };
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            // hyper refuses such a head (400) before the body matters.
            clean = false;
        }
        head.push_str(name);
        head.push_str(": ");
        head.push_str(&value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let head_len = head.len();
    let mut bytes = head.into_bytes();
    if chunked {
        let mut rest: &[u8] = &body;
        while !rest.is_empty() {
            let n = rest.len().min(usize::from(u.int_in_range(1..=255u8)?) * 64);
            let size = match u.int_in_range(0..=30u8)? + u8::from(calm) {
                0 => {
                    framing_ok = false;
                    (*u.choose(&["ffffffffffffffffff", "-1", "zz", "", "1;ext=\"x\""])?).to_owned()
                }
                _ => format!("{n:x}"),
            };
            bytes.extend_from_slice(size.as_bytes());
            bytes.extend_from_slice(b"\r\n");
            bytes.extend_from_slice(&rest[..n]);
            bytes.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        if calm || u.int_in_range(0..=9u8)? > 0 {
            bytes.extend_from_slice(b"0\r\n\r\n");
        } else {
            framing_ok = false;
        }
    } else {
        bytes.extend_from_slice(&body);
    }
    if !calm && u.int_in_range(0..=4u8)? == 0 {
        clean = false;
        craft::mutate(u, &mut bytes)?;
    }
    // A head near the size limit is refused (431) before the body matters.
    let head_small = head_len < MAX_HEADER_BYTES / 2;
    let over_cap = clean && framing_ok && head_small && body.len() > cap;
    Ok(GenRequest {
        bytes,
        over_cap,
        method,
        route,
    })
}

/// Feeds `input` to one hyper server connection (configured as production's, but
/// reading to the end of what the client sent before closing) serving `service`, and
/// returns everything it answered. The client sends all, then shuts its side.
pub async fn serve_bytes<F, Fut>(input: &[u8], request_timeout: Duration, service: F) -> Vec<u8>
where
    F: Fn(Request<Incoming>) -> Fut + Send + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let (client, server) = tokio::io::duplex(64 * 1024);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(request_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .keep_alive(true)
        .half_close(true);
    let svc = hyper::service::service_fn(move |req| {
        let fut = service(req);
        async move { Ok::<_, Infallible>(fut.await) }
    });
    let conn = builder.serve_connection(TokioIo::new(server), svc);
    let (mut rd, mut wr) = tokio::io::split(client);
    let write = async {
        let _ = wr.write_all(input).await;
        let _ = wr.shutdown().await;
    };
    let read = async {
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        out
    };
    let (_, _, out) = tokio::join!(conn, write, read);
    out
}

/// The status code of each answer in `out`, in order (as far as they can be found).
pub fn statuses(out: &[u8]) -> Vec<u16> {
    let mut v = Vec::new();
    let mut i = 0;
    while let Some(pos) = find(&out[i..], b"HTTP/1.") {
        let at = i + pos;
        if let Some(code) = out
            .get(at + 9..at + 12)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse().ok())
        {
            // Interim answers (100 Continue) come before the final one.
            if !(100..200).contains(&code) {
                v.push(code);
            }
        }
        i = at + 7;
    }
    v
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An answer from a peer the client talks to: a status (the usual and the odd), headers
/// (framing right and wrong, `Retry-After`), and a body from `body`.
pub fn answer(
    u: U,
    body: &mut dyn FnMut(U) -> arbitrary::Result<Vec<u8>>,
) -> arbitrary::Result<Vec<u8>> {
    let status = *u.choose(&[
        200u16, 200, 200, 200, 201, 204, 301, 304, 400, 401, 403, 404, 409, 413, 429, 500, 502,
        503, 504, 599, 100, 101, 199, 600, 999,
    ])?;
    let body = body(u)?;
    let mut head = format!("HTTP/1.1 {status} Whatever\r\n");
    if u.int_in_range(0..=7u8)? == 0 {
        head = (*u.choose(&[
            "HTTP/1.0 200 OK\r\n",
            "HTTP/1.1 200\r\n",
            "HTTP/2 200\r\n",
            "200 OK\r\n",
            "HTTP/1.1 2000 OK\r\n",
            "\r\n",
        ])?)
        .to_owned();
    }
    let chunked = u.int_in_range(0..=5u8)? == 0;
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
    } else {
        match u.int_in_range(0..=7u8)? {
            0 => {} // Read to close.
            1 => head.push_str(&format!("Content-Length: {}\r\n", body.len() + 10)),
            2 => head.push_str(&format!(
                "Content-Length: {}\r\n",
                body.len().saturating_sub(1)
            )),
            3 => head.push_str(u.choose(&[
                "Content-Length: -1\r\n",
                "Content-Length: 99999999999999999999\r\n",
                "Content-Length: 1, 2\r\n",
            ])?),
            _ => head.push_str(&format!("Content-Length: {}\r\n", body.len())),
        }
    }
    if u.int_in_range(0..=2u8)? == 0 {
        let v = if u.arbitrary()? {
            (*u.choose(craft::NUMBERS)?).to_owned()
        } else {
            craft::text(u)?
        };
        head.push_str(&format!("Retry-After: {}\r\n", v.replace(['\r', '\n'], "")));
    }
    if u.arbitrary()? {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut bytes = head.into_bytes();
    if chunked {
        for chunk in body.chunks(usize::from(u.int_in_range(1..=255u8)?) * 16) {
            bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
    } else {
        bytes.extend_from_slice(&body);
    }
    if u.int_in_range(0..=5u8)? == 0 {
        craft::mutate(u, &mut bytes)?;
    }
    Ok(bytes)
}

/// A loopback listener that answers every connection with the current canned answer
/// (after reading the request head and any declared body), then closes.
pub struct Peer {
    pub addr: std::net::SocketAddr,
    answer: Arc<Mutex<Vec<u8>>>,
}

impl Peer {
    /// Starts on the current runtime (it runs while the runtime is driven).
    pub async fn start() -> std::io::Result<Peer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let answer = Arc::new(Mutex::new(Vec::new()));
        let canned = answer.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let bytes = canned.lock().map(|a| a.clone()).unwrap_or_default();
                tokio::spawn(async move {
                    read_request(&mut s).await;
                    let _ = s.write_all(&bytes).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Ok(Peer { addr, answer })
    }

    pub fn set(&self, bytes: &[u8]) {
        if let Ok(mut a) = self.answer.lock() {
            a.clear();
            a.extend_from_slice(bytes);
        }
    }
}

/// Reads a request head and its `Content-Length` body (the clients send nothing else).
async fn read_request(s: &mut tokio::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = s.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return;
            }
        }
    }
}
