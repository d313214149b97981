//! The config file: its typed model, loading with located diagnostics, and validation.
//! `located` is the located parsing itself, shared with the control service's config.

pub mod diagnostic;
pub mod duration;
pub mod load;
pub mod located;
pub mod model;
mod validate;

pub use diagnostic::{ConfigError, Diagnostic};
pub use duration::HumanDuration;
pub use load::{ConfigSecrets, LoadedConfig, load, load_with};
pub use model::*;
