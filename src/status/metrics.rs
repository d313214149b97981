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

/// The health checks: `dns`, `r2`, `tunnel`, `public`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    check: &'static str,
}

/// What found cloudflared wedged: `ready` (its `/ready` probe) or `public` (the
/// public path while `/ready` was green).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// A control-service error code (`control_unreachable`, `control_server_error`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

/// The tunnel's own figures, derived from the supervisor's view.
#[derive(Debug, Default)]
struct TunnelMetrics {
    state: Family<StateLabel, Gauge>,
    restarts: Counter,
    ready_connections: Gauge,
    /// The supervisor's restart count last seen: it is per run, so a drop starts over.
    restarts_seen: AtomicU64,
}

/// The per-check and wedge families, apart from the rest so each kind of metric keeps
/// its own block.
#[derive(Debug, Default)]
struct CheckMetrics {
    ok: Family<CheckLabel, Gauge>,
    duration: Family<CheckLabel, Gauge<f64, AtomicU64>>,
    wedge_restarts: Family<ReasonLabel, Counter>,
    /// The supervisor's running totals last seen, to add only what is new.
    wedge_seen: [AtomicU64; 2],
}

#[derive(Debug)]
pub struct Metrics {
    checks: CheckMetrics,
    tunnel: TunnelMetrics,
    control_failures: Family<CodeLabel, Counter>,
    /// The managed engine's running totals last seen, by code.
    control_failures_seen: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
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
    /// Verifies by result (`ok`, `failed`), following the persisted totals.
    backup_verify: Family<ResultLabel, Counter>,
    backup_last_verified: Gauge<f64, AtomicU64>,
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
        let checks = CheckMetrics::default();
        registry.register(
            "check_ok",
            "1 when the last run of a health check (dns, r2, tunnel, public) passed, 0 when it failed",
            checks.ok.clone(),
        );
        registry.register(
            "check_duration_seconds",
            "How long the last run of a health check took",
            checks.duration.clone(),
        );
        registry.register(
            "tunnel_wedge_restarts",
            "cloudflared restarts because it was wedged, by what saw it (ready: its /ready probe; public: the public path while /ready was green)",
            checks.wedge_restarts.clone(),
        );
        for reason in ["ready", "public"] {
            let _ = checks.wedge_restarts.get_or_create(&ReasonLabel { reason });
        }
        let tunnel = TunnelMetrics::default();
        registry.register(
            "tunnel_state",
            "1 for cloudflared's current state (starting, running, backoff, stopping, stopped, fatal)",
            tunnel.state.clone(),
        );
        registry.register(
            "tunnel_restarts",
            "cloudflared restarts after a crash or a wedge",
            tunnel.restarts.clone(),
        );
        registry.register(
            "tunnel_ready_connections",
            "Edge connections cloudflared reported at its last /ready probe",
            tunnel.ready_connections.clone(),
        );
        let control_failures = Family::<CodeLabel, Counter>::default();
        registry.register(
            "control_request_failures",
            "Failed requests to the control service, by error code (as in errors[].code)",
            control_failures.clone(),
        );
        let backup_verify = Family::<ResultLabel, Counter>::default();
        registry.register(
            "backup_verify",
            "Backup verifies (rustic check --read-data-subset) by result, in all (kept across restarts)",
            backup_verify.clone(),
        );
        let backup_last_verified = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "backup_last_verified_timestamp_seconds",
            "Unix time of the last verify that passed (0: none yet)",
            backup_last_verified.clone(),
        );
        Self {
            checks,
            tunnel,
            control_failures,
            control_failures_seen: Default::default(),
            registry,
            started: Instant::now(),
            uptime,
            state,
            config_reloads,
            backup_last_success,
            backup_last_duration,
            backup_last_bytes_added,
            backup_failures,
            backup_verify,
            backup_last_verified,
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
        self.backup_last_verified
            .set(b.status.last_verified.map_or(0.0, secs));
        // Counters only go up: they follow the persisted totals by the difference (the
        // first view after a start carries the totals from before it).
        for (result, total) in [("ok", b.verify_ok_total), ("failed", b.verify_failed_total)] {
            let c = self.backup_verify.get_or_create(&ResultLabel { result });
            c.inc_by(total.saturating_sub(c.get()));
        }
    }

    /// The DNS, R2 and public-path checks' last results.
    pub fn set_checks(&self, h: &crate::health::HealthView) {
        for (check, c) in [("dns", &h.dns), ("r2", &h.r2), ("public", &h.public)] {
            if let Some(c) = c {
                self.checks
                    .ok
                    .get_or_create(&CheckLabel { check })
                    .set(i64::from(c.ok));
            }
        }
        for (check, took) in &h.durations {
            self.checks
                .duration
                .get_or_create(&CheckLabel { check })
                .set(took.as_secs_f64());
        }
    }

    /// Failed control-service requests, from the managed engine's running totals.
    pub fn set_managed(&self, m: &crate::modes::managed::ManagedView) {
        let Ok(mut seen) = self.control_failures_seen.lock() else {
            return;
        };
        for (&code, &total) in &m.control_failures {
            let before = seen.insert(code, total).unwrap_or(0);
            if total > before {
                self.control_failures
                    .get_or_create(&CodeLabel { code })
                    .inc_by(total - before);
            }
        }
    }

    /// The tunnel's probe result and the wedge restarts.
    pub fn set_tunnel(&self, t: &crate::tunnel::TunnelView) {
        for s in crate::status::TunnelState::ALL {
            self.tunnel
                .state
                .get_or_create(&StateLabel { state: s.as_str() })
                .set(i64::from(t.status.state == s));
        }
        self.tunnel
            .ready_connections
            .set(i64::from(t.status.ready_connections.unwrap_or(0)));
        let total = t.status.restarts;
        let before = self
            .tunnel
            .restarts_seen
            .swap(total, std::sync::atomic::Ordering::Relaxed);
        if total > before {
            self.tunnel.restarts.inc_by(total - before);
        } else if total < before {
            self.tunnel.restarts.inc_by(total);
        }
        let check = "tunnel";
        if let Some(c) = &t.check {
            self.checks
                .ok
                .get_or_create(&CheckLabel { check })
                .set(i64::from(c.ok));
        }
        if let Some(took) = t.probe_took {
            self.checks
                .duration
                .get_or_create(&CheckLabel { check })
                .set(took.as_secs_f64());
        }
        let totals = [
            ("ready", t.wedge_restarts.ready),
            ("public", t.wedge_restarts.public),
        ];
        for ((reason, total), seen) in totals.into_iter().zip(&self.checks.wedge_seen) {
            let before = seen.swap(total, std::sync::atomic::Ordering::Relaxed);
            if total > before {
                self.checks
                    .wedge_restarts
                    .get_or_create(&ReasonLabel { reason })
                    .inc_by(total - before);
            }
        }
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

    #[test]
    fn checks_and_wedge_restarts() {
        let m = Metrics::new();
        let at = std::time::SystemTime::now();
        let check = |ok| {
            Some(crate::status::Check {
                ok,
                at,
                detail: String::new(),
            })
        };
        m.set_checks(&crate::health::HealthView {
            dns: check(true),
            r2: check(true),
            public: check(false),
            durations: vec![("public", std::time::Duration::from_millis(250))],
            ..Default::default()
        });
        let mut t = crate::tunnel::TunnelView {
            check: check(true),
            ..Default::default()
        };
        t.wedge_restarts.public = 2;
        m.set_tunnel(&t);
        m.set_tunnel(&t);
        let text = m.render(&Snapshot::new(Status::default()));
        for line in [
            "hubkeeper_check_ok{check=\"public\"} 0",
            "hubkeeper_check_ok{check=\"dns\"} 1",
            "hubkeeper_check_ok{check=\"tunnel\"} 1",
            "hubkeeper_check_duration_seconds{check=\"public\"} 0.25",
            "hubkeeper_tunnel_wedge_restarts_total{reason=\"public\"} 2",
            "hubkeeper_tunnel_wedge_restarts_total{reason=\"ready\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }

    #[test]
    fn tunnel_state_restarts_and_control_failures() {
        let m = Metrics::new();
        let mut t = crate::tunnel::TunnelView::default();
        t.status.state = crate::status::TunnelState::Running;
        t.status.ready_connections = Some(4);
        t.status.restarts = 3;
        m.set_tunnel(&t);
        m.set_tunnel(&t);
        // A new run starts its count over: the counter keeps growing.
        t.status.restarts = 1;
        m.set_tunnel(&t);
        let mut v = crate::modes::managed::ManagedView::default();
        v.control_failures.insert("control_server_error", 2);
        m.set_managed(&v);
        v.control_failures.insert("control_server_error", 5);
        v.control_failures.insert("control_timeout", 1);
        m.set_managed(&v);
        let text = m.render(&Snapshot::new(Status::default()));
        for line in [
            "hubkeeper_tunnel_state{state=\"running\"} 1",
            "hubkeeper_tunnel_state{state=\"backoff\"} 0",
            "hubkeeper_tunnel_ready_connections 4",
            "hubkeeper_tunnel_restarts_total 4",
            "hubkeeper_control_request_failures_total{code=\"control_server_error\"} 5",
            "hubkeeper_control_request_failures_total{code=\"control_timeout\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }

    #[test]
    fn the_example_alert_rules_name_only_metrics_that_exist() {
        let rules = include_str!("../../contrib/prometheus/hubkeeper-alerts.yml");
        // Labelled families show once they have a sample.
        let m = Metrics::new();
        m.count_reload("refused");
        let check = Some(crate::status::Check {
            ok: true,
            at: std::time::SystemTime::now(),
            detail: String::new(),
        });
        m.set_checks(&crate::health::HealthView {
            public: check,
            ..Default::default()
        });
        let mut v = crate::modes::managed::ManagedView::default();
        v.control_failures.insert("control_timeout", 1);
        m.set_managed(&v);
        m.set_tunnel(&crate::tunnel::TunnelView::default());
        m.set_backup(&crate::backup::BackupView::default());
        let text = m.render(&Snapshot::new(Status::default()));
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let mut named = 0;
        for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let Some(_) = word.strip_prefix("hubkeeper_") else {
                continue;
            };
            named += 1;
            let family = ["_total", "_info"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .unwrap_or(word);
            assert!(
                families.contains(&family),
                "{word} is not a metric the daemon exposes: {families:?}"
            );
        }
        assert!(named >= 10, "{named}");
    }

    #[test]
    fn verify_totals_and_last_verified() {
        let m = Metrics::new();
        let mut b = crate::backup::BackupView {
            verify_ok_total: 3,
            verify_failed_total: 1,
            ..Default::default()
        };
        b.status.last_verified = Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1700));
        m.set_backup(&b);
        b.verify_ok_total = 4;
        m.set_backup(&b);
        let text = m.render(&Snapshot::new(Status::default()));
        assert!(
            text.contains("hubkeeper_backup_verify_total{result=\"ok\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("hubkeeper_backup_verify_total{result=\"failed\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("hubkeeper_backup_last_verified_timestamp_seconds 1700.0\n"),
            "{text}"
        );
    }
}
