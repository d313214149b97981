//! `hubkeeper-control`: parses the command line and runs the control service.

use clap::Parser;
use hubkeeper_base::exit;
use hubkeeper_control::cli::Cli;
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
    match hubkeeper_control::run::run_command(&cli.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("{e}");
            }
            ExitCode::from(e.code)
        }
    }
}
