//! The pinned process exit codes (spec §2) and the error type that carries one to `main`.

use std::fmt;
use std::process::ExitCode;

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

/// The whole of a binary's `main`: parse the command line `C`, run it, print the error
/// (if it has words) and exit with its code. Usage errors exit 1 ("anything else"),
/// `--help` and `--version` 0.
pub fn main_of<C: clap::Parser>(run: impl FnOnce(C) -> Result<(), ExitError>) -> ExitCode {
    let cli = match C::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { FAILURE } else { OK });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("{e}");
            }
            ExitCode::from(e.code)
        }
    }
}

/// An invalid config exits 78 with every problem and their count.
impl From<&crate::config::ConfigError> for ExitError {
    fn from(e: &crate::config::ConfigError) -> Self {
        let n = e.problems.len();
        let plural = if n == 1 { "problem" } else { "problems" };
        ExitError::new(CONFIG, format!("{e}\n{n} {plural} in {}", e.path.display()))
    }
}
