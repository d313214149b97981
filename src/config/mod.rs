//! The daemon's config file: its typed model, loading with located diagnostics,
//! validation, and the watcher that notices edits. The located parsing and the value
//! types shared with the control service come from `hubkeeper_base::config`.

pub mod load;
pub mod model;
pub mod plan;
mod validate;
pub mod watch;

pub use hubkeeper_base::config::{
    ConfigError, Diagnostic, HttpUrl, HumanDuration, LogLevel, NonEmpty, diagnostic, duration,
    located,
};
pub use hubkeeper_proto::HubId;
pub use load::{LoadedConfig, load, load_with};
pub use model::*;
pub use plan::{ControlService, DisabledPlan, ManagedPlan, Plan, SelfManagedPlan};
