//! `hubkeeper-control`: parses the command line, then serves the control API or runs an
//! `account` command.

use hubkeeper_control::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    hubkeeper_base::exit::main_of(|cli: Cli| match &cli.command {
        None => hubkeeper_control::run::run_command(&cli.config),
        Some(Command::Account(cmd)) => hubkeeper_control::admin::account(&cli.config, cmd),
    })
}
