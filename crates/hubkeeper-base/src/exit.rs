//! The pinned process exit codes (spec §2) and the error type that carries one to `main`.

use std::fmt;

/// Success.
pub const OK: u8 = 0;
/// Anything else went wrong.
pub const FAILURE: u8 = 1;
/// EX_UNAVAILABLE: the daemon's socket cannot be reached.
pub const UNAVAILABLE: u8 = 69;
/// EX_CONFIG: the configuration is invalid. The unit sets `RestartPreventExitStatus=78`
/// because restarting cannot fix a bad config.
pub const CONFIG: u8 = 78;

/// An error that knows which exit code it deserves. `main` prints it and exits with `code`.
#[derive(Debug)]
pub struct ExitError {
    pub code: u8,
    pub message: String,
}

impl ExitError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitError {}
