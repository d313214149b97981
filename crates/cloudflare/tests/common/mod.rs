//! A scripted HTTP/1.1 server on loopback for the client's tests: answers from a
//! script (the last answer repeats) and records each request whole, headers included,
//! so tests can check what the client sent.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudflare_api::{Client, Secret, Settings};

pub const TOKEN: &str = "cf-master-token-SHOULD-NEVER-LEAK-7731";

#[derive(Clone, Debug)]
pub enum Reply {
    Json(u16, String),
    WithHeader(u16, &'static str, &'static str, String),
    /// A body that is not JSON, sent as text/plain.
    Raw(u16, String),
    /// Accept and never answer.
    Hang,
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub line: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Server {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    pub fn start(script: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/client/v4", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reqs = requests.clone();
        std::thread::spawn(move || {
            let mut n = 0usize;
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let reply = script[n.min(script.len() - 1)].clone();
                n += 1;
                let reqs = reqs.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let mut headers = Vec::new();
                    let mut len = 0;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.trim_end().split_once(':') {
                            let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.parse().unwrap_or(0);
                            }
                            headers.push((k, v));
                        }
                    }
                    let mut body = vec![0; len];
                    let _ = reader.read_exact(&mut body);
                    reqs.lock().unwrap().push(Recorded {
                        line: line.trim().to_owned(),
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    let (status, extra, ctype, body) = match reply {
                        Reply::Json(s, b) => (s, String::new(), "application/json", b),
                        Reply::WithHeader(s, k, v, b) => {
                            (s, format!("{k}: {v}\r\n"), "application/json", b)
                        }
                        Reply::Raw(s, b) => (s, String::new(), "text/plain", b),
                        Reply::Hang => {
                            std::thread::sleep(Duration::from_secs(3600));
                            return;
                        }
                    };
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes());
                });
            }
        });
        Server { url, requests }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// Settings for tests: quick backoff, no pacing, short attempts.
pub fn settings(url: &str) -> Settings {
    let mut s = Settings::new("acct-1", Secret::new(TOKEN));
    s.api_base = url.to_owned();
    s.min_interval = Duration::ZERO;
    s.backoff_initial = Duration::from_millis(10);
    s.backoff_max = Duration::from_millis(40);
    s.attempt_timeout = Duration::from_secs(5);
    s.attempts = 3;
    s
}

pub fn client(server: &Server) -> Client {
    Client::new(settings(&server.url)).unwrap()
}

/// A success envelope around `result` (raw JSON).
pub fn ok(result: &str) -> Reply {
    Reply::Json(
        200,
        format!(r#"{{"success":true,"errors":[],"messages":[],"result":{result}}}"#),
    )
}

/// A success envelope with `result_info`.
pub fn page(result: &str, info: &str) -> Reply {
    Reply::Json(
        200,
        format!(
            r#"{{"success":true,"errors":[],"messages":[],"result":{result},"result_info":{info}}}"#
        ),
    )
}

/// A failure envelope with one error.
pub fn fail(status: u16, code: u64, message: &str) -> Reply {
    Reply::Json(
        status,
        format!(
            r#"{{"success":false,"errors":[{{"code":{code},"message":"{message}"}}],"messages":[],"result":null}}"#
        ),
    )
}
