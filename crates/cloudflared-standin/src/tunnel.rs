//! The simulated connector: when its "edge connections" register, how many there are,
//! and what `/ready` says about them. No network is touched.

use crate::control::{Behavior, Control, ReadyMode};
use crate::log;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

pub struct Tunnel {
    pub start: Instant,
    pub connector_id: Uuid,
    pub control: Control,
    behavior: Mutex<Behavior>,
    /// Bumped whenever the behavior file is re-read, so the connect timer re-arms when a
    /// test changes `connect_delay` while the stand-in runs.
    reloaded: watch::Sender<()>,
    /// Set once, when the connections register; cloudflared's count only drops again on
    /// shutdown (a lost edge is simulated with `ready = 503`).
    connected: Mutex<bool>,
    draining: AtomicBool,
}

impl Tunnel {
    pub fn new(start: Instant, control: Control, behavior: Behavior) -> Tunnel {
        Tunnel {
            start,
            connector_id: Uuid::new_v4(),
            control,
            behavior: Mutex::new(behavior),
            reloaded: watch::Sender::new(()),
            connected: Mutex::new(false),
            draining: AtomicBool::new(false),
        }
    }

    pub fn behavior(&self) -> Behavior {
        self.behavior.lock().unwrap().clone()
    }

    /// Re-reads the behavior file. A bad file (say, caught half-written) keeps the last
    /// good behavior and is reported, rather than dropping back to defaults mid-test.
    pub fn reload(&self) -> Behavior {
        match self.control.load() {
            Ok(b) => {
                *self.behavior.lock().unwrap() = b.clone();
                self.reloaded.send_replace(());
                self.connect_if_due();
                b
            }
            Err(e) => {
                log::warn(
                    "cloudflared-standin: keeping the previous behavior",
                    &[("error", &e)],
                );
                self.control
                    .event("behavior_error", &format!("error={}", one_word(&e)));
                self.behavior()
            }
        }
    }

    /// Registers the connections once `connect_delay` has passed since start, unless a
    /// shutdown began first.
    pub async fn connect_when_due(&self) {
        let mut reloaded = self.reloaded.subscribe();
        loop {
            reloaded.borrow_and_update();
            let due = self.start + self.behavior().connect_delay;
            tokio::select! {
                () = tokio::time::sleep_until(due) => {
                    if self.connect_if_due() || self.draining.load(Ordering::SeqCst) {
                        return;
                    }
                }
                _ = reloaded.changed() => {}
            }
        }
    }

    /// Returns whether the connections are registered (now or before).
    fn connect_if_due(&self) -> bool {
        let mut connected = self.connected.lock().unwrap();
        if *connected {
            return true;
        }
        let b = self.behavior();
        if self.draining.load(Ordering::SeqCst) || self.start.elapsed() < b.connect_delay {
            return false;
        }
        *connected = true;
        for i in 0..b.ready_connections {
            log::info(
                "Registered tunnel connection",
                &[
                    ("connIndex", &i.to_string()),
                    ("connection", &Uuid::new_v4().to_string()),
                    ("event", "0"),
                    ("ip", &format!("192.0.2.{}", 10 + i % 200)),
                    ("location", &format!("standin{:02}", i + 1)),
                    ("protocol", "quic"),
                ],
            );
        }
        self.control
            .event("ready", &format!("connections={}", b.ready_connections));
        notify_systemd_ready(&self.control);
        true
    }

    /// From now on the connections count as unregistered: cloudflared unregisters from
    /// the edge at the start of a graceful shutdown, so `/ready` turns 503 while it drains.
    pub fn begin_drain(&self) {
        // Under the `connected` lock, so a registration cannot slip in unlogged.
        let connected = {
            let guard = self.connected.lock().unwrap();
            self.draining.store(true, Ordering::SeqCst);
            *guard
        };
        if connected {
            for i in 0..self.behavior().ready_connections {
                log::info(
                    "Unregistered tunnel connection",
                    &[("connIndex", &i.to_string()), ("event", "0")],
                );
            }
        }
    }

    /// The registered connections as seen now, after re-reading the behavior file:
    /// `None` means "do not answer" (`ready = hang`).
    pub fn ready_connections(&self) -> Option<u32> {
        let b = self.reload();
        if b.ready == ReadyMode::Hang {
            return None;
        }
        let up = *self.connected.lock().unwrap() && !self.draining.load(Ordering::SeqCst);
        Some(if up && b.ready == ReadyMode::Ok {
            b.ready_connections
        } else {
            0
        })
    }
}

/// cloudflared sends `READY=1` to `$NOTIFY_SOCKET` after its first connection, so a
/// supervisor that leaks its own NOTIFY_SOCKET to the child gets a stray datagram.
/// Imitated so that leak has the same effect here.
fn notify_systemd_ready(control: &Control) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let target = target.to_string_lossy().into_owned();
    let addr = match target.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&target),
    };
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(b"READY=1", &a));
    let result = match sent {
        Ok(_) => "sent".to_owned(),
        Err(e) => one_word(&e.to_string()),
    };
    control.event("sd_notify", &format!("state=READY=1 result={result}"));
}

/// Events are space-separated `key=value` words; free text is squeezed into one word.
fn one_word(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join("_")
}
