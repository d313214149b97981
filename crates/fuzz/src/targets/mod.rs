//! The fuzz targets, one per parser of untrusted input. Each turns fuzz bytes into an
//! input (`generate`, structure-aware) and runs one input through the real code
//! (`run`), returning a property violation as an error; a panic is caught by the driver.

use crate::craft::U;

pub mod cloudflare_answers;
pub mod config;
pub mod control_answers;
pub mod control_api;
pub mod ready_probe;
pub mod rustic;
pub mod selftest;
pub mod socket_api;

pub trait Target {
    /// Makes one input. Inputs are bytes so that a finding can be saved and replayed.
    fn generate(&self, u: U) -> arbitrary::Result<Vec<u8>>;
    /// Runs one input. `Err` names the property it broke.
    fn run(&mut self, input: &[u8]) -> Result<(), String>;
}

/// Every target, by name: (name, what it covers).
pub const ALL: &[(&str, &str)] = &[
    (
        "config",
        "config TOML -> check-config's loader and diagnostics (src/config/load.rs)",
    ),
    (
        "socket-api",
        "raw HTTP on the socket API (src/api/routes.rs, 64 KiB body cap)",
    ),
    (
        "control-api",
        "raw HTTP on the control service's API (hubkeeper-control api/routes.rs)",
    ),
    (
        "control-answers",
        "control service answers -> ControlClient (src/modes/control_client.rs)",
    ),
    (
        "cloudflare-answers",
        "Cloudflare API answers -> cloudflare_api::Client (crates/cloudflare)",
    ),
    (
        "ready-probe",
        "cloudflared /ready answers -> the probe (src/tunnel/probe.rs)",
    ),
    (
        "rustic",
        "rustic's backup --json stdout and its stderr lines (src/backup/run.rs, src/child.rs)",
    ),
];

/// Builds the target called `name`.
pub fn make(name: &str) -> Result<Box<dyn Target>, String> {
    Ok(match name {
        "config" => Box::new(config::ConfigTarget::new()?),
        "socket-api" => Box::new(socket_api::SocketApi::new()?),
        "control-api" => Box::new(control_api::ControlApi::new()?),
        "control-answers" => Box::new(control_answers::ControlAnswers::new()?),
        "cloudflare-answers" => Box::new(cloudflare_answers::CloudflareAnswers::new()?),
        "ready-probe" => Box::new(ready_probe::ReadyProbe::new()?),
        "rustic" => Box::new(rustic::Rustic::new()?),
        "selftest-panic" => Box::new(selftest::SelfTest { kind: "panic" }),
        "selftest-violation" => Box::new(selftest::SelfTest { kind: "violation" }),
        "selftest-hang" => Box::new(selftest::SelfTest { kind: "hang" }),
        "selftest-abort" => Box::new(selftest::SelfTest { kind: "abort" }),
        "selftest-memory" => Box::new(selftest::SelfTest { kind: "memory" }),
        other => {
            let names: Vec<&str> = ALL.iter().map(|t| t.0).collect();
            return Err(format!(
                "unknown target `{other}`: the targets are {}",
                names.join(", ")
            ));
        }
    })
}

/// A current-thread runtime: one input at a time, and no worker threads to share
/// the machine with.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))
}
