//! The config file: its typed model, loading with located diagnostics, and validation.

pub mod diagnostic;
pub mod duration;
pub mod load;
pub mod model;
mod validate;

pub use diagnostic::{ConfigError, Diagnostic};
pub use duration::HumanDuration;
pub use load::{ConfigSecrets, LoadedConfig, load, load_with};
pub use model::*;
