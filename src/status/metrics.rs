//! `GET /metrics`: Prometheus text exposition through the `prometheus-client` crate.
//! State gauges are derived from the published snapshot at scrape time, so there is
//! nothing to keep in sync.

use crate::status::{Snapshot, State};
use prometheus_client::encoding::{EncodeLabelSet, text::encode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    started: Instant,
    uptime: Gauge<f64, AtomicU64>,
    state: Family<StateLabel, Gauge>,
    /// Config reloads by result (`applied`, `unchanged`, `refused`).
    pub config_reloads: Family<ResultLabel, Counter>,
    backup_last_success: Gauge<f64, AtomicU64>,
    backup_last_duration: Gauge<f64, AtomicU64>,
    backup_last_bytes_added: Gauge,
    backup_failures: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hubkeeper");
        registry.register(
            "build",
            "Build information",
            Info::new(vec![("version", crate::status::VERSION)]),
        );
        let uptime = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "uptime_seconds",
            "Seconds since the daemon started",
            uptime.clone(),
        );
        let state = Family::<StateLabel, Gauge>::default();
        registry.register(
            "state",
            "1 for the daemon's current state (disabled, starting, ready, degraded, error)",
            state.clone(),
        );
        let config_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reloads by result",
            config_reloads.clone(),
        );
        let backup_last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "backup_last_success_timestamp_seconds",
            "Unix time of the last successful backup (0: none yet)",
            backup_last_success.clone(),
        );
        let backup_last_duration = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "backup_last_duration_seconds",
            "Duration of the last successful backup run (backup and retention)",
            backup_last_duration.clone(),
        );
        let backup_last_bytes_added = Gauge::default();
        registry.register(
            "backup_last_bytes_added",
            "Bytes the last successful backup added to the repository",
            backup_last_bytes_added.clone(),
        );
        // A gauge mirroring the persisted count, so it survives restarts as a total.
        let backup_failures = Gauge::default();
        registry.register(
            "backup_failures",
            "Failed backup runs, in all (kept across restarts)",
            backup_failures.clone(),
        );
        Self {
            registry,
            started: Instant::now(),
            uptime,
            state,
            config_reloads,
            backup_last_success,
            backup_last_duration,
            backup_last_bytes_added,
            backup_failures,
        }
    }

    pub fn count_reload(&self, result: &'static str) {
        self.config_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn set_backup(&self, b: &crate::backup::BackupView) {
        let secs = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        };
        self.backup_last_success
            .set(b.status.last_success.map_or(0.0, secs));
        self.backup_last_duration
            .set(b.last_duration.map_or(0.0, |d| d.as_secs_f64()));
        self.backup_last_bytes_added
            .set(b.last_bytes_added.map_or(0, |n| n as i64));
        self.backup_failures.set(b.failures_total as i64);
    }

    pub fn render(&self, snap: &Snapshot) -> String {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        for s in State::ALL {
            let v = i64::from(snap.status.state == s);
            self.state
                .get_or_create(&StateLabel { state: s.as_str() })
                .set(v);
        }
        let mut out = String::with_capacity(2048);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;

    #[test]
    fn exposes_state_uptime_and_build_info() {
        let m = Metrics::new();
        m.count_reload("applied");
        let text = m.render(&Snapshot::new(Status::default()));
        assert!(
            text.contains("hubkeeper_state{state=\"disabled\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("hubkeeper_state{state=\"ready\"} 0"),
            "{text}"
        );
        assert!(text.contains("hubkeeper_build_info{version=\""), "{text}");
        assert!(text.contains("hubkeeper_uptime_seconds "), "{text}");
        assert!(
            text.contains("hubkeeper_config_reloads_total{result=\"applied\"} 1"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
