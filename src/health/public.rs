//! The public-path check: a GET to `health.public_url` (by default the hub's hostname
//! through Cloudflare's edge), because cloudflared's `/ready` only says it holds edge
//! connections, not that requests get through them (a connector can stay "ready"
//! while the edge answers 502/530).
//!
//! Any answer from the hub counts as working (200, a login redirect, 401, 404...).
//! Failures: no answer (connection error, timeout), Cloudflare's tunnel answers 502
//! and 530, and its error pages 1033 (no healthy connector for the tunnel) and 1016
//! (origin DNS error). A 502 is cross-checked against the origin itself, so a hub that
//! is down is told apart from a broken tunnel, and does not restart cloudflared.

use crate::status::Problem;
use std::time::Duration;

/// A Cloudflare error page is a few KiB; only its head is looked at.
const MAX_BODY: usize = 64 * 1024;

/// What the check found.
#[derive(Debug)]
pub enum Outcome {
    /// The hub answered through the public path.
    Works {
        status: u16,
    },
    Failed(Failure),
}

#[derive(Debug)]
pub struct Failure {
    pub problem: Problem,
    /// Whether restarting cloudflared may fix it (the edge cannot reach the hub through
    /// a connector that `/ready` calls healthy). A hub that is down, or a DNS record
    /// that points nowhere, is not fixed by a restart.
    pub tunnel_at_fault: bool,
}

/// What to request, and where the hub listens (for the 502 cross-check).
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub url: url::Url,
    pub origin: url::Url,
    pub origin_no_tls_verify: bool,
}

/// One GET, bounded by `timeout` as a whole (body included).
pub async fn check(t: &Target, timeout: Duration) -> Outcome {
    let client = match client(timeout, false) {
        Ok(c) => c,
        Err(f) => return Outcome::Failed(f),
    };
    let answer = tokio::time::timeout(timeout, fetch(&client, &t.url)).await;
    let (status, body) = match answer {
        Err(_) => {
            return Outcome::Failed(unreachable(
                "public_timeout",
                format!("{} did not answer within {}ms", t.url, timeout.as_millis()),
            ));
        }
        // reqwest's own timeout (the same length) may fire first.
        Ok(Err(e)) if e.is_timeout() => {
            return Outcome::Failed(unreachable(
                "public_timeout",
                format!("{} did not answer within {}ms", t.url, timeout.as_millis()),
            ));
        }
        Ok(Err(e)) => {
            return Outcome::Failed(unreachable(
                "public_unreachable",
                format!("cannot reach {}: {}", t.url, describe(&e)),
            ));
        }
        Ok(Ok(a)) => a,
    };
    match classify(status, &body) {
        Verdict::Works => Outcome::Works { status },
        Verdict::TunnelError => Outcome::Failed(Failure {
            problem: Problem {
                code: "public_tunnel_error",
                message: format!(
                    "{} answered {status} with Cloudflare error 1033: the edge has no working connection to this hub's tunnel, although cloudflared's /ready says it is connected",
                    t.url
                ),
                hint: "hubkeeper restarts cloudflared after repeated failures; if it persists, check that this host's cloudflared runs the hub's tunnel (tunnel token) and that outbound port 7844 is open",
            },
            tunnel_at_fault: true,
        }),
        Verdict::OriginDns => Outcome::Failed(Failure {
            problem: Problem {
                code: "public_origin_dns",
                message: format!(
                    "{} answered {status} with Cloudflare error 1016 (origin DNS error): the hostname's DNS record does not lead to the tunnel",
                    t.url
                ),
                hint: "the DNS record at Cloudflare points to a tunnel that no longer exists: disable and enable hubkeeper to enroll again, or ask the control service's operator",
            },
            tunnel_at_fault: false,
        }),
        Verdict::BadGateway => {
            if origin_answers(t, timeout).await {
                Outcome::Failed(Failure {
                    problem: Problem {
                        code: "public_bad_gateway",
                        message: format!(
                            "{} answered {status} (bad gateway) although the hub answers at {} on this host: requests do not get through the tunnel",
                            t.url, t.origin
                        ),
                        hint: "hubkeeper restarts cloudflared after repeated failures; if it persists, check the tunnel's ingress (tunnel.origin) and cloudflared's lines in the journal",
                    },
                    tunnel_at_fault: true,
                })
            } else {
                Outcome::Failed(Failure {
                    problem: Problem {
                        code: "public_origin_down",
                        message: format!(
                            "{} answered {status} (bad gateway) and the hub does not answer at {} on this host",
                            t.url, t.origin
                        ),
                        hint: "start the hub, or fix tunnel.origin to where it listens",
                    },
                    tunnel_at_fault: false,
                })
            }
        }
    }
}

fn unreachable(code: &'static str, message: String) -> Failure {
    Failure {
        problem: Problem {
            code,
            message,
            hint: "check that the hostname resolves and this host has outbound HTTPS; if only the public path fails while the tunnel is ready, hubkeeper restarts cloudflared after repeated failures",
        },
        tunnel_at_fault: true,
    }
}

/// How an answer reads. Cloudflare sends 1xxx errors with status 530 and names the
/// code in the page (HTML by default, JSON or Markdown when asked for).
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Works,
    TunnelError,
    OriginDns,
    BadGateway,
}

fn classify(status: u16, body: &[u8]) -> Verdict {
    let mentions = |code: &[u8]| body.windows(code.len()).any(|w| w == code);
    match status {
        530 if mentions(b"1016") => Verdict::OriginDns,
        530 => Verdict::TunnelError,
        502 if mentions(b"1033") => Verdict::TunnelError,
        502 => Verdict::BadGateway,
        _ => Verdict::Works,
    }
}

/// The check follows no redirects (a redirect is the hub answering), uses no proxy
/// from the environment, and sends no cookies or credentials.
fn client(timeout: Duration, accept_invalid_certs: bool) -> Result<reqwest::Client, Failure> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .tls_danger_accept_invalid_certs(accept_invalid_certs)
        .user_agent(concat!(
            "hubkeeper/",
            env!("CARGO_PKG_VERSION"),
            " public-path check"
        ))
        .build()
        .map_err(|e| Failure {
            problem: Problem {
                code: "public_check_setup",
                message: format!("cannot set up the HTTP client for the public-path check: {e}"),
                hint: "report this bug",
            },
            tunnel_at_fault: false,
        })
}

async fn fetch(client: &reqwest::Client, url: &url::Url) -> Result<(u16, Vec<u8>), reqwest::Error> {
    let mut resp = client.get(url.clone()).send().await?;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    // Only an error answer's body is read, and only its head.
    if status >= 500 {
        while let Some(chunk) = resp.chunk().await? {
            let room = MAX_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_BODY {
                break;
            }
        }
    }
    Ok((status, body))
}

/// Whether the hub answers at its origin, directly on this host.
async fn origin_answers(t: &Target, timeout: Duration) -> bool {
    let Ok(client) = client(timeout, t.origin_no_tls_verify) else {
        return false;
    };
    matches!(
        tokio::time::timeout(timeout, client.get(t.origin.clone()).send()).await,
        Ok(Ok(_))
    )
}

/// reqwest's top-level message is generic ("error sending request"); the cause says
/// what happened (refused, TLS, DNS).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(200, b""), Verdict::Works);
        assert_eq!(classify(404, b"not found"), Verdict::Works);
        assert_eq!(classify(401, b""), Verdict::Works);
        assert_eq!(classify(503, b"hub busy"), Verdict::Works);
        assert_eq!(
            classify(
                530,
                b"<title>example.com | 1033: Cloudflare Tunnel error</title>"
            ),
            Verdict::TunnelError
        );
        assert_eq!(
            classify(530, br#"{"status":530,"error_code":1016}"#),
            Verdict::OriginDns
        );
        assert_eq!(classify(530, b""), Verdict::TunnelError);
        assert_eq!(classify(502, b"Bad gateway"), Verdict::BadGateway);
        assert_eq!(classify(502, b"Error code 1033"), Verdict::TunnelError);
    }
}
