//! How tests steer the stand-in and watch it, through `$CLOUDFLARED_STANDIN_DIR`:
//! `behavior` and `edge` (read by the stand-in; `edge` is described in `edge.rs`) and
//! `events.log` (appended by it).
//!
//! The environment variable is the channel because hubkeeper passes its environment to
//! cloudflared (minus NOTIFY_SOCKET and WATCHDOG_*), so a test can steer the stand-in
//! through a real hubkeeper without hubkeeper knowing about it.

use crate::cli::parse_go_duration;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const DIR_ENV: &str = "CLOUDFLARED_STANDIN_DIR";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyMode {
    /// 200 once connected, 503 before.
    Ok,
    /// 503 even when connected: connections lost, process alive (what cloudflared does
    /// after losing the edge: it never exits on its own).
    Unavailable,
    /// The request is accepted and never answered: a wedged (e.g. SIGSTOPped) process.
    Hang,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnSigterm {
    Graceful,
    Ignore,
}

#[derive(Clone, Debug)]
pub struct Behavior {
    pub connect_delay: Duration,
    pub ready: ReadyMode,
    pub ready_connections: u32,
    pub exit_after: Option<Duration>,
    pub exit_code: i32,
    pub on_sigterm: OnSigterm,
    pub drain: Duration,
    pub hang_start: bool,
    /// Lines written at start, alternating stdout and stderr, each `flood_line_bytes`
    /// long: a child that floods its output.
    pub flood_lines: u64,
    pub flood_line_bytes: usize,
    /// Bytes written to stdout at start with no newline among them.
    pub flood_unbroken: u64,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            connect_delay: Duration::from_millis(200),
            ready: ReadyMode::Ok,
            ready_connections: 4,
            exit_after: None,
            exit_code: 1,
            on_sigterm: OnSigterm::Graceful,
            drain: Duration::from_millis(100),
            hang_start: false,
            flood_lines: 0,
            flood_line_bytes: 1000,
            flood_unbroken: 0,
        }
    }
}

impl Behavior {
    /// Parses `key = value` lines; `#` starts a comment. An unknown key or a bad value is
    /// an error, so a typo in a test shows up instead of silently running the default.
    pub fn parse(text: &str) -> Result<Behavior, String> {
        let mut b = Behavior::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |msg: String| format!("behavior line {}: {msg}", n + 1);
            let (key, value) = line
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| at(format!("expected `key = value`, got `{line}`")))?;
            let duration = || {
                parse_go_duration(value)
                    .ok()
                    .filter(|n| *n >= 0)
                    .map(|n| Duration::from_nanos(n as u64))
                    .ok_or_else(|| at(format!("{key}: `{value}` is not a Go duration like 200ms")))
            };
            match key {
                "connect_delay" => b.connect_delay = duration()?,
                "exit_after" => b.exit_after = Some(duration()?),
                "drain" => b.drain = duration()?,
                "ready" => {
                    b.ready = match value {
                        "ok" => ReadyMode::Ok,
                        "503" => ReadyMode::Unavailable,
                        "hang" => ReadyMode::Hang,
                        _ => return Err(at(format!("ready: `{value}` is not ok, 503 or hang"))),
                    }
                }
                "ready_connections" => {
                    b.ready_connections = value
                        .parse()
                        .map_err(|_| at(format!("ready_connections: `{value}` is not a count")))?
                }
                "exit_code" => {
                    b.exit_code = value
                        .parse()
                        .ok()
                        .filter(|c| (0..=255).contains(c))
                        .ok_or_else(|| at(format!("exit_code: `{value}` is not 0-255")))?
                }
                "on_sigterm" => {
                    b.on_sigterm = match value {
                        "graceful" => OnSigterm::Graceful,
                        "ignore" => OnSigterm::Ignore,
                        _ => {
                            return Err(at(format!(
                                "on_sigterm: `{value}` is not graceful or ignore"
                            )));
                        }
                    }
                }
                "hang_start" => {
                    b.hang_start = match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(at(format!("hang_start: `{value}` is not true or false"))),
                    }
                }
                "flood_lines" | "flood_line_bytes" | "flood_unbroken" => {
                    let n: u64 = value
                        .parse()
                        .map_err(|_| at(format!("{key}: `{value}` is not a count")))?;
                    match key {
                        "flood_lines" => b.flood_lines = n,
                        "flood_line_bytes" => b.flood_line_bytes = n as usize,
                        _ => b.flood_unbroken = n,
                    }
                }
                _ => return Err(at(format!("unknown key `{key}`"))),
            }
        }
        Ok(b)
    }
}

/// The control directory, when tests gave one.
#[derive(Clone)]
pub struct Control {
    dir: Option<PathBuf>,
}

impl Control {
    pub fn from_env() -> Control {
        Control {
            dir: std::env::var_os(DIR_ENV)
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
        }
    }

    /// The control directory, if tests gave one.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    /// Reads `behavior`; no directory or no file means the defaults.
    pub fn load(&self) -> Result<Behavior, String> {
        let Some(dir) = &self.dir else {
            return Ok(Behavior::default());
        };
        let path = dir.join("behavior");
        match std::fs::read_to_string(&path) {
            Ok(text) => Behavior::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Behavior::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Appends `name fields t_ms=<unix ms>`.
    pub fn event(&self, name: &str, fields: &str) {
        let sep = if fields.is_empty() { "" } else { " " };
        self.append(&format!("{name}{sep}{fields} t_ms={}", unix_ms()));
    }

    /// Appends the `start` event. `argv` comes last because it holds spaces: everything
    /// after `argv=` is the arguments (without argv[0]) joined by single spaces.
    pub fn start_event(&self, argv: &[String]) {
        let present = |names: &[&str]| {
            if names.iter().any(|n| std::env::var_os(n).is_some()) {
                "present"
            } else {
                "absent"
            }
        };
        self.append(&format!(
            "start pid={} pgid={} ppid={} t_ms={} notify_socket={} watchdog={} argv={}",
            std::process::id(),
            nix::unistd::getpgrp(),
            nix::unistd::getppid(),
            unix_ms(),
            present(&["NOTIFY_SOCKET"]),
            present(&["WATCHDOG_USEC", "WATCHDOG_PID"]),
            argv.join(" ")
        ));
    }

    /// One `write` per line on an O_APPEND file: lines of successive or concurrent
    /// stand-ins never interleave, and nothing sits in a buffer when the process is killed.
    fn append(&self, line: &str) {
        let Some(dir) = &self.dir else { return };
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("events.log"))
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            crate::log::warn(
                "cloudflared-standin: cannot append to events.log",
                &[("error", &e.to_string())],
            );
        }
    }
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behavior_file() {
        let b = Behavior::parse(
            "# a comment\n\nconnect_delay = 1s\nready = hang # trailing\nready_connections=2\n\
             exit_after = 0s\nexit_code = 7\non_sigterm = ignore\ndrain = 1m\nhang_start = true\n",
        )
        .unwrap();
        assert_eq!(b.connect_delay, Duration::from_secs(1));
        assert_eq!(b.ready, ReadyMode::Hang);
        assert_eq!(b.ready_connections, 2);
        assert_eq!(b.exit_after, Some(Duration::ZERO));
        assert_eq!(b.exit_code, 7);
        assert_eq!(b.on_sigterm, OnSigterm::Ignore);
        assert_eq!(b.drain, Duration::from_secs(60));
        assert!(b.hang_start);
        for bad in [
            "connnect_delay = 1s",
            "ready = maybe",
            "exit_code = 300",
            "drain = -1s",
            "connect_delay 1s",
        ] {
            assert!(Behavior::parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
