//! The systemd notify protocol: READY, STATUS, WATCHDOG, RELOADING, STOPPING.
//! Without `NOTIFY_SOCKET` every call is a no-op, so the daemon runs the same outside
//! systemd. Children get none of these variables (they are removed per child).

use sd_notify::NotifyState;
use std::time::Duration;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(&one_line(status))]);
}

/// Tells systemd a reload started; `ready` must follow when it is done.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, if systemd asked for it.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}
