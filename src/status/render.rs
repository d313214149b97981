//! The human summary printed by `hubkeeper status`: a state banner, the tunnel, the
//! backups, and every error with its hint. It reads the JSON the daemon sent, so a
//! newer daemon with more keys still renders.

use hubkeeper_proto::text::shown;
use serde_json::Value;
use std::fmt::Write;

fn printable(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(shown(s, MAX_SHOWN)),
        Value::Array(a) => Value::Array(a.iter().map(printable).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (shown(k, MAX_SHOWN), printable(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Longest string shown from the daemon's answer.
const MAX_SHOWN: usize = 2048;

pub fn render(v: &Value) -> String {
    // Every string in it may have come from a peer (the control service, a child):
    // escaped before anything is printed, so no text can move the cursor, recolour,
    // or add a line of its own (a READY banner over an ERROR).
    let v = &printable(v);
    let s = |v: &Value| v.as_str().map(str::to_owned);
    let mut out = String::new();
    let state = s(&v["state"]).unwrap_or_else(|| "unknown".into());
    let banner = match state.as_str() {
        "ready" => "READY",
        "degraded" => "DEGRADED",
        "error" => "ERROR",
        "starting" => "STARTING",
        "disabled" => "DISABLED",
        _ => "UNKNOWN",
    };
    let mut who = Vec::new();
    if let Some(m) = s(&v["mode"]) {
        who.push(format!("{m} mode"));
    }
    if let Some(h) = s(&v["hub_id"]) {
        who.push(format!("hub {h}"));
    }
    if let Some(h) = s(&v["hostname"]) {
        who.push(h);
    }
    let _ = write!(out, "hubkeeper {banner}");
    if !who.is_empty() {
        let _ = write!(out, "  ({})", who.join(", "));
    }
    out.push('\n');
    if let Some(n) = s(&v["note"]) {
        let _ = writeln!(out, "  note    {n}");
    }

    let t = &v["tunnel"];
    let mut tunnel = s(&t["state"]).unwrap_or_else(|| "-".into());
    if let Some(pid) = t["pid"].as_u64() {
        let _ = write!(tunnel, ", pid {pid}");
    }
    if let Some(c) = t["ready_connections"].as_u64() {
        let _ = write!(tunnel, ", {c} edge connections");
    }
    if let Some(r) = t["restarts"].as_u64().filter(|r| *r > 0) {
        let _ = write!(tunnel, ", {r} restarts");
    }
    if let Some(since) = s(&t["since"]) {
        let _ = write!(tunnel, ", since {since}");
    }
    let _ = writeln!(out, "  tunnel  {tunnel}");

    let b = &v["backup"];
    let mut backup = s(&b["state"]).unwrap_or_else(|| "-".into());
    match s(&b["last_success"]) {
        Some(t) => {
            let _ = write!(backup, ", last success {t}");
        }
        None if backup != "disabled" => backup.push_str(", no backup yet"),
        None => {}
    }
    if let Some(id) = s(&b["last_snapshot_id"]) {
        let _ = write!(backup, " (snapshot {})", id.get(..8).unwrap_or(&id));
    }
    if let Some(n) = s(&b["next_run"]) {
        let _ = write!(backup, ", next {n}");
    }
    let _ = writeln!(out, "  backup  {backup}");
    // Absent from the status of an older daemon: then nothing is shown.
    if let Some(state) = s(&b["verify_state"]).filter(|v| v != "disabled") {
        let mut verify = state;
        match s(&b["last_verified"]) {
            Some(t) => {
                let _ = write!(verify, ", last verified {t}");
            }
            None => verify.push_str(", not verified yet"),
        }
        if let Some(n) = s(&b["next_verify"]) {
            let _ = write!(verify, ", next {n}");
        }
        let _ = writeln!(out, "  verify  {verify}");
    }

    if let Some(checks) = v["checks"].as_object() {
        for (name, c) in checks {
            if c.is_null() {
                continue;
            }
            let ok = if c["ok"].as_bool() == Some(true) {
                "ok"
            } else {
                "FAIL"
            };
            let detail = s(&c["detail"]).unwrap_or_default();
            let _ = writeln!(out, "  check   {name:<6} {ok}  {detail}");
        }
    }

    if let Some(errors) = v["errors"].as_array().filter(|e| !e.is_empty()) {
        let _ = writeln!(out, "errors:");
        for e in errors {
            let _ = writeln!(
                out,
                "  [{}] {}: {}",
                s(&e["component"]).unwrap_or_default(),
                s(&e["code"]).unwrap_or_default(),
                s(&e["message"]).unwrap_or_default()
            );
            if let Some(h) = s(&e["hint"]) {
                let _ = writeln!(out, "      hint: {h}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Component, State, Status, StatusError};

    #[test]
    fn renders_banner_and_errors_with_hints() {
        let mut st = Status {
            state: State::Error,
            enabled: true,
            mode: Some("managed"),
            hub_id: Some("hub-1".into()),
            ..Status::default()
        };
        st.errors.push(StatusError::new(
            Component::Config,
            "c",
            "it broke",
            "do this",
        ));
        let out = render(&serde_json::to_value(&st).unwrap());
        assert!(
            out.starts_with("hubkeeper ERROR  (managed mode, hub hub-1)"),
            "{out}"
        );
        assert!(out.contains("[config] c: it broke"), "{out}");
        assert!(out.contains("hint: do this"), "{out}");
        assert!(out.contains("tunnel  stopped"), "{out}");
    }

    #[test]
    fn foreign_text_cannot_forge_lines_or_colours() {
        let v = serde_json::json!({
            "state": "error",
            "hostname": "x\u{1b}[2K\rhubkeeper READY\nforged",
            "errors": [{"component": "enroll", "code": "c\u{1b}[31m", "message": "m\u{202e}", "hint": "h"}],
        });
        let out = render(&v);
        assert!(out.starts_with("hubkeeper ERROR"), "{out}");
        assert!(
            !out.contains('\u{1b}') && !out.contains('\r') && !out.contains('\u{202e}'),
            "{out:?}"
        );
        assert!(!out.lines().any(|l| l.starts_with("forged")), "{out}");
    }
}
