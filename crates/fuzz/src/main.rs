//! `hubkeeper-fuzz`: runs the fuzz targets for a set number of inputs each and prints
//! per-target totals. Stable Rust only: inputs come from structure-aware generators
//! fed by a seeded RNG (`driver`), each target running in a worker process watched for
//! hangs (a per-input time limit), deaths and memory.

use clap::{Parser, Subcommand};
use hubkeeper_fuzz::{driver, targets};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Fuzz targets over hubkeeper's parsers of untrusted input")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Lists the targets.
    List,
    /// Runs targets (all when none is named) and prints their totals.
    Run(driver::RunArgs),
    /// Runs saved inputs (files written by `run`) through a target once each.
    Replay { target: String, files: Vec<PathBuf> },
    /// Writes input number INDEX of a run with SEED to stdout.
    Show {
        target: String,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        index: u64,
    },
    /// One worker (started by `run`).
    #[command(hide = true)]
    Worker(driver::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::List => {
            for (name, what) in targets::ALL {
                println!("{name:<18} {what}");
            }
            Ok(true)
        }
        Cmd::Run(args) => driver::run(&args),
        Cmd::Replay { target, files } => driver::replay(&target, &files),
        Cmd::Show {
            target,
            seed,
            index,
        } => driver::show(&target, seed, index),
        Cmd::Worker(args) => driver::worker(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("hubkeeper-fuzz: {e}");
            ExitCode::from(2)
        }
    }
}
