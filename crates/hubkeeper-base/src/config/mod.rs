//! Config-file machinery both binaries share: reading the file, located parsing that
//! reports every problem with `file:line:col`, durations with units, and the value
//! types both configs use. Each binary keeps its own model and rules.

pub mod checked;
pub mod diagnostic;
pub mod duration;
pub mod file;
pub mod located;
pub mod values;

pub use diagnostic::{ConfigError, Diagnostic};
pub use duration::HumanDuration;
pub use file::{ReadError, credentials_dir_from_env, read_config_file, read_regular_file};
pub use values::{HttpUrl, LogLevel, NonEmpty};
