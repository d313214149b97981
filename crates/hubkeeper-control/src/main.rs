//! `hubkeeper-control`: parses the command line and runs the control service.

use hubkeeper_control::cli::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    hubkeeper_base::exit::main_of(|cli: Cli| hubkeeper_control::run::run_command(&cli.config))
}
