//! The client side of the socket API, used by `hubkeeper status`, `rotate-keys` and
//! `backup`: one HTTP/1.1 request over the Unix socket with hyper.

use bytes::Bytes;
use hubkeeper_base::http::exchange::exchange;
use hyper::{Method, StatusCode};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixStream;

/// How long a CLI call may take. Rotating keys waits on the control service, so this
/// is generous.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

const MAX_ANSWER: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the hubkeeper daemon at {}: {source}; is it running? (systemctl status hubkeeper)", socket.display())]
    Unreachable {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("the daemon at {} did not answer properly: {message}", socket.display())]
    Protocol { socket: PathBuf, message: String },
}

/// Sends one request and returns the status code and body.
pub async fn call(
    socket: &Path,
    method: Method,
    path: &str,
) -> Result<(StatusCode, Bytes), ClientError> {
    let protocol = |message: String| ClientError::Protocol {
        socket: socket.to_path_buf(),
        message,
    };
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Unreachable {
            socket: socket.to_path_buf(),
            source,
        })?;
    // A status is a few KiB; the cap only stops a runaway peer.
    let work = async {
        exchange(stream, method, "hubkeeper", path, MAX_ANSWER)
            .await
            .map_err(|e| protocol(e.to_string()))
    };
    tokio::time::timeout(CALL_TIMEOUT, work)
        .await
        .map_err(|_| protocol(format!("no answer within {}s", CALL_TIMEOUT.as_secs())))?
}

/// The `message` of an API error body, or the body itself if it is not one.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned())
}
