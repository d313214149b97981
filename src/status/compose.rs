//! Derives the one status object (spec §7) from what the components publish: the
//! config in force, the managed-mode engine's view and the supervisor's view.
//! A pure function, so the state rules are tested here without processes.

use crate::backup::BackupView;
use crate::config::{Mode, Plan};
use crate::health::HealthView;
use crate::modes::managed::ManagedView;
use crate::status::{Component, State, Status, StatusError, TunnelState};
use crate::tunnel::supervisor::TunnelView;

pub struct Inputs<'a> {
    pub plan: &'a Plan,
    /// Refused reloads and settings that need a restart.
    pub config_errors: &'a [StatusError],
    pub managed: &'a ManagedView,
    pub tunnel: &'a TunnelView,
    pub health: &'a HealthView,
    pub backup: &'a BackupView,
}

pub fn compose(i: &Inputs<'_>) -> Status {
    let plan = i.plan;
    let t = i.tunnel;
    let mut s = Status {
        enabled: plan.is_enabled(),
        mode: plan.mode().map(Mode::as_str),
        hub_id: plan.hub_id().map(|h| h.as_str().to_owned()),
        note: i.managed.note.clone(),
        ..Status::default()
    };
    s.tunnel = t.status.clone();
    s.checks.tunnel = t.check.clone();
    s.checks.dns = i.health.dns.clone();
    s.checks.r2 = i.health.r2.clone();
    s.checks.public = i.health.public.clone();
    s.last_health_check = i.health.last_run;
    let b = i.backup;
    s.backup = b.status.clone();
    if let Some(e) = &i.managed.enrollment {
        s.hostname = Some(e.hostname.clone());
        s.tunnel_id = Some(e.tunnel_id.clone());
        s.r2_bucket = Some(e.r2_bucket.clone());
    }
    s.errors.extend(i.config_errors.iter().cloned());
    s.errors.extend(i.managed.errors.iter().cloned());
    if let Some(p) = &t.problem {
        s.errors.push(p.error(Component::Tunnel));
    }
    s.errors.extend(i.health.errors.iter().cloned());
    if let Some(e) = &i.health.public_error {
        // A failure seen while cloudflared was not connected adds nothing to what the
        // tunnel's own state says; one seen while it was is news.
        if public_fresh(i) || e.component == Component::Config {
            s.errors.push(e.clone());
        }
    }
    s.errors.extend(b.errors.iter().cloned());

    s.state = match plan {
        Plan::Disabled(_) => State::Disabled,
        Plan::Managed(_) => managed_state(i, &s),
        Plan::SelfManaged(_) => {
            s.errors.push(StatusError::new(
                Component::Enroll,
                "mode_not_available",
                "self-managed mode is not available in this build of hubkeeper",
                "this build manages tunnels in managed mode only: use mode = \"managed\", or set enabled = false",
            ));
            State::Error
        }
    };
    s
}

/// Whether the public check ran while the current cloudflared was running.
fn public_fresh(i: &Inputs<'_>) -> bool {
    let t = i.tunnel;
    match (t.status.state, t.status.since, i.health.public_sent) {
        (TunnelState::Running, Some(since), Some(sent)) => sent >= since,
        _ => false,
    }
}

fn managed_state(i: &Inputs<'_>, s: &Status) -> State {
    let t = i.tunnel;
    let h = i.health;
    let blocking = |c: Component| s.errors.iter().any(|e| e.component == c);
    if i.managed.enrollment.is_none() {
        // No enrollment: nothing can be served until enroll works.
        return if blocking(Component::Enroll) {
            State::Error
        } else {
            State::Starting
        };
    }
    let crash_loop = t
        .problem
        .as_ref()
        .is_some_and(|p| p.code == "tunnel_crash_loop");
    if t.status.state == TunnelState::Fatal || crash_loop {
        return State::Error;
    }
    let tunnel_ok =
        t.status.state == TunnelState::Running && t.check.as_ref().is_some_and(|c| c.ok);
    let public_failed = h.public.as_ref().is_some_and(|c| !c.ok);
    let checks_failing = blocking(Component::Dns)
        || blocking(Component::R2)
        || blocking(Component::Backup)
        || (public_failed && public_fresh(i));
    // A public failure from before this connection: the fresh check is under way.
    let public_pending = public_failed && !public_fresh(i);
    // The first checks are not finished: a first start of cloudflared that has not
    // been ready yet, no completed health run, or fresh keys R2 has not accepted yet.
    let first_start = !t.been_ready && t.status.restarts == 0;
    let first_checks =
        h.last_run.is_none() || ((h.r2_pending || public_pending) && !checks_failing);
    if !checks_failing && (first_start || (tunnel_ok && first_checks)) {
        return State::Starting;
    }
    if tunnel_ok && !checks_failing && !h.r2_pending && !public_pending {
        State::Ready
    } else {
        State::Degraded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::managed::EnrollmentInfo;
    use crate::status::Check;
    use crate::tunnel::supervisor::Problem;
    use std::time::SystemTime;

    fn managed_config(enabled: bool) -> Plan {
        let hub_id = crate::config::HubId::parse("h").unwrap();
        if !enabled {
            return Plan::Disabled(crate::config::DisabledPlan {
                mode: Some(Mode::Managed),
                hub_id: Some(hub_id),
                control: None,
                delete_bucket: false,
                retention_days: 30,
            });
        }
        Plan::Managed(crate::config::ManagedPlan {
            hub_id,
            control: crate::config::ControlService {
                url: url::Url::parse("http://127.0.0.1:1").unwrap(),
                token: crate::secrets::Secret::new("t"),
                request_timeout: std::time::Duration::from_secs(1),
            },
            account_id: "a".into(),
            license_id: "l".into(),
            requested_subdomain: None,
        })
    }

    fn enrolled() -> ManagedView {
        ManagedView {
            enrollment: Some(EnrollmentInfo {
                hostname: "acme-1.example.com".into(),
                tunnel_id: "t".into(),
                r2_bucket: "b".into(),
                r2: crate::health::r2::Target {
                    endpoint: "http://127.0.0.1:1".into(),
                    bucket: "b".into(),
                    access_key_id: "k".into(),
                    secret_access_key: crate::secrets::Secret::new("s"),
                    path_style: true,
                },
                keys_since: None,
                enrolled_at: None,
            }),
            ..ManagedView::default()
        }
    }

    fn state(plan: &Plan, m: &ManagedView, t: &TunnelView) -> Status {
        let healthy = HealthView {
            dns: ok_check(),
            r2: ok_check(),
            last_run: Some(SystemTime::now()),
            ..HealthView::default()
        };
        compose(&Inputs {
            plan,
            config_errors: &[],
            managed: m,
            tunnel: t,
            health: &healthy,
            backup: &BackupView::default(),
        })
    }

    fn ok_check() -> Option<Check> {
        Some(Check {
            ok: true,
            at: SystemTime::now(),
            detail: "ready".into(),
        })
    }

    #[test]
    fn disabled_keeps_the_note() {
        let m = ManagedView {
            note: Some("disabled x; bucket kept for 30 days".into()),
            ..ManagedView::default()
        };
        let s = state(&managed_config(false), &m, &TunnelView::default());
        assert_eq!(s.state, State::Disabled);
        assert_eq!(
            s.note.as_deref(),
            Some("disabled x; bucket kept for 30 days")
        );
    }

    #[test]
    fn enrolling_is_starting_and_failing_enroll_is_error() {
        let cfg = managed_config(true);
        let m = ManagedView {
            enrolling: true,
            ..ManagedView::default()
        };
        assert_eq!(
            state(&cfg, &m, &TunnelView::default()).state,
            State::Starting
        );
        let m = ManagedView {
            errors: vec![StatusError::new(
                Component::Enroll,
                "control_unauthorized",
                "x",
                "y",
            )],
            ..ManagedView::default()
        };
        assert_eq!(state(&cfg, &m, &TunnelView::default()).state, State::Error);
    }

    #[test]
    fn tunnel_states_map_to_overall_states() {
        let cfg = managed_config(true);
        let m = enrolled();
        let mut t = TunnelView::default();
        t.status.state = TunnelState::Starting;
        assert_eq!(state(&cfg, &m, &t).state, State::Starting);
        t.status.state = TunnelState::Running;
        t.check = ok_check();
        t.been_ready = true;
        t.status.ready_connections = Some(4);
        let s = state(&cfg, &m, &t);
        assert_eq!(s.state, State::Ready);
        assert_eq!(s.hostname.as_deref(), Some("acme-1.example.com"));
        assert_eq!(s.tunnel.ready_connections, Some(4));
        t.status.state = TunnelState::Backoff;
        t.status.restarts = 1;
        assert_eq!(state(&cfg, &m, &t).state, State::Degraded);
        t.problem = Some(Problem {
            code: "tunnel_crash_loop",
            message: "m".into(),
            hint: "h",
        });
        assert_eq!(state(&cfg, &m, &t).state, State::Error);
        t.problem = None;
        t.status.state = TunnelState::Fatal;
        assert_eq!(state(&cfg, &m, &t).state, State::Error);
    }
}
