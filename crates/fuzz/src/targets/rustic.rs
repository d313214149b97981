//! What rustic prints: `backup --json` stdout into the snapshot parser
//! (`hubkeeper::backup::run::parse_snapshot`), and stderr bytes, delivered in odd
//! chunks, through the line splitter every child's output goes through
//! (`hubkeeper::child::for_each_line`). Properties: no panic; a snapshot has an id;
//! every line is capped and says how much was cut; what is not cut comes back whole
//! (lines joined again give the input, for UTF-8 without CR).

use super::{Target, runtime};
use crate::craft::{self, U};
use hubkeeper::child::{MAX_LINE, for_each_line};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::runtime::Runtime;

const SUMMARY: &[&str] = &[
    "total_files_processed",
    "data_added",
    "backup_duration",
    "total_duration",
    "files_new",
];

pub struct Rustic {
    rt: Runtime,
}

impl Rustic {
    pub fn new() -> Result<Self, String> {
        Ok(Self { rt: runtime()? })
    }
}

/// One `backup --json` object, mostly the right shape.
fn snapshot(u: U, out: &mut String) -> arbitrary::Result<()> {
    if u.int_in_range(0..=4u8)? == 0 {
        return craft::json_value(u, &["id", "summary"], 0, out);
    }
    out.push_str("{\"id\":");
    if u.int_in_range(0..=4u8)? > 0 {
        out.push_str("\"4f9a0c\"");
    } else {
        craft::json_value(u, &[], 2, out)?;
    }
    out.push_str(",\"summary\":{");
    for (i, k) in SUMMARY.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("\"{k}\":"));
        if u.arbitrary()? {
            out.push_str(u.choose(craft::NUMBERS)?);
        } else {
            craft::json_value(u, &[], 3, out)?;
        }
    }
    out.push_str("}}\n");
    Ok(())
}

fn stderr(u: U) -> arbitrary::Result<Vec<u8>> {
    let mut b = Vec::new();
    for _ in 0..u.int_in_range(0..=8u8)? {
        match u.int_in_range(0..=5u8)? {
            0 => b.extend_from_slice(b"[WARN] ignoring error: permission denied\n"),
            1 => b.extend_from_slice(b"[INFO] using no config file\r\n"),
            2 => b.extend(std::iter::repeat_n(
                b'x',
                *u.choose(&[MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, 3 * MAX_LINE, 100_000])?,
            )),
            3 => b.extend_from_slice(u.choose(&[
                b"\n" as &[u8],
                b"\r",
                b"\xff\xfe",
                b"\xc3",
                b"\xe2\x82",
                b"\0",
            ])?),
            _ => b.extend_from_slice(craft::text(u)?.as_bytes()),
        }
    }
    Ok(b)
}

impl Target for Rustic {
    fn generate(&self, u: U) -> arbitrary::Result<Vec<u8>> {
        let stdout: bool = u.arbitrary()?;
        let mut bytes = if stdout {
            let mut s = String::new();
            for _ in 0..u.int_in_range(1..=3u8)? {
                snapshot(u, &mut s)?;
            }
            let mut b = s.into_bytes();
            if u.int_in_range(0..=4u8)? == 0 {
                craft::mutate(u, &mut b)?;
            }
            b
        } else {
            let mut b = stderr(u)?;
            // The chunk size the pipe delivers in.
            b.insert(0, u.arbitrary()?);
            b
        };
        bytes.insert(0, u8::from(stdout));
        Ok(bytes)
    }

    fn run(&mut self, input: &[u8]) -> Result<(), String> {
        match input {
            [1, out @ ..] => match hubkeeper::backup::run::parse_snapshot(out) {
                Ok(s) if s.id.is_empty() => Err("a snapshot without an id".into()),
                _ => Ok(()),
            },
            [0, chunk, err @ ..] => {
                let reader = Chunked {
                    data: err,
                    chunk: usize::from(*chunk).max(1) * 37,
                };
                let mut lines = Vec::new();
                self.rt
                    .block_on(for_each_line(reader, |l| lines.push(l.to_owned())));
                check_lines(err, &lines)
            }
            _ => Ok(()),
        }
    }
}

fn check_lines(input: &[u8], lines: &[String]) -> Result<(), String> {
    let longest = MAX_LINE + " [18446744073709551615 more bytes cut]".len() + 3 * MAX_LINE;
    if let Some(l) = lines.iter().find(|l| l.len() > longest) {
        return Err(format!("a line of {} bytes passed the cap", l.len()));
    }
    let newlines = input.iter().filter(|b| **b == b'\n').count();
    let expected = newlines + usize::from(!input.is_empty() && !input.ends_with(b"\n"));
    if lines.len() != expected {
        return Err(format!("{} lines from {newlines} newlines", lines.len()));
    }
    if let Ok(text) = std::str::from_utf8(input)
        && !text.contains('\r')
        && text.split('\n').all(|l| l.len() <= MAX_LINE)
    {
        let mut joined = lines.join("\n");
        if text.ends_with('\n') {
            joined.push('\n');
        }
        if joined != text {
            return Err("lines joined again differ from the input".into());
        }
    }
    Ok(())
}

/// A pipe that delivers at most `chunk` bytes per read.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.data.len().min(self.chunk).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        let rest = &self.data[n..];
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}
