//! The `hubkeeper` command line: parses arguments and starts the right verb.

use hubkeeper::cli::{Cli, Cmd, verbs};
use std::process::ExitCode;

fn main() -> ExitCode {
    hubkeeper_base::exit::main_of(|cli: Cli| match cli.cmd {
        Cmd::Run(c) => verbs::run(&c.config),
        Cmd::CheckConfig(c) => verbs::check_config(&c.config),
        Cmd::Status { target, json } => verbs::status(&target, json),
        Cmd::RotateKeys(t) => verbs::rotate_keys(&t),
        Cmd::Backup(t) => verbs::backup(&t),
    })
}
