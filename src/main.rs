//! The `hubkeeper` command line: parses arguments and starts the right verb.

use clap::Parser;
use hubkeeper::cli::{Cli, Cmd, verbs};
use hubkeeper_base::exit;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Usage errors are "anything else" (1); help and version are success.
            return ExitCode::from(if e.use_stderr() {
                exit::FAILURE
            } else {
                exit::OK
            });
        }
    };
    let result = match cli.cmd {
        Cmd::Run(c) => verbs::run(&c.config),
        Cmd::CheckConfig(c) => verbs::check_config(&c.config),
        Cmd::Status { target, json } => verbs::status(&target, json),
        Cmd::RotateKeys(t) => verbs::rotate_keys(&t),
        Cmd::Backup(t) => verbs::backup(&t),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("{e}");
            }
            ExitCode::from(e.code)
        }
    }
}
