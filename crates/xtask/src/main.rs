//! `cargo run -p xtask -- dist-assets OUTDIR`: writes the files the Debian packages ship
//! besides the binaries, generated from the clap definitions so they never drift from
//! the real command lines:
//!
//! ```text
//! OUTDIR/<binary>/man/<binary>.1, <binary>-<verb>.1 ...   roff (cargo-deb gzips them)
//! OUTDIR/<binary>/bash/<binary>
//! OUTDIR/<binary>/zsh/_<binary>
//! OUTDIR/<binary>/fish/<binary>.fish
//! ```
//!
//! One directory per binary, so each package's asset globs pick up only its own pages.

use clap::{Command, CommandFactory};
use clap_complete::Shell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: cargo run -p xtask -- dist-assets OUTDIR";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.as_slice() {
        [verb, out] if verb == "dist-assets" => PathBuf::from(out),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let commands = [
        hubkeeper::cli::Cli::command(),
        hubkeeper_control::cli::Cli::command(),
    ];
    for cmd in commands {
        let name = cmd.get_name().to_string();
        if let Err(e) = write_assets(cmd, &out.join(&name)) {
            eprintln!("xtask: {name}: {e}");
            return ExitCode::FAILURE;
        }
        println!("xtask: wrote {}", out.join(&name).display());
    }
    ExitCode::SUCCESS
}

fn write_assets(cmd: Command, dir: &Path) -> std::io::Result<()> {
    // Start empty: a verb removed from the CLI must not leave a stale page behind
    // for the package to pick up.
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    let man = dir.join("man");
    fs::create_dir_all(&man)?;
    let name = cmd.get_name().to_string();
    // One page for the binary and one per verb (`man hubkeeper-status`), each
    // with that verb's own options. Every page's footer names the program and
    // its version: clap_mangen would print a bare "status " on the verbs' pages,
    // which carry no version of their own.
    let source = format!("{name} {}", cmd.get_version().unwrap_or_default());
    let mut built = cmd.clone().disable_help_subcommand(true);
    built.build();
    write_pages(built, &source, &man)?;

    for (shell, sub, file) in [
        (Shell::Bash, "bash", name.clone()),
        (Shell::Zsh, "zsh", format!("_{name}")),
        (Shell::Fish, "fish", format!("{name}.fish")),
    ] {
        let d = dir.join(sub);
        fs::create_dir_all(&d)?;
        let mut f = fs::File::create(d.join(file))?;
        clap_complete::generate(shell, &mut cmd.clone(), &name, &mut f);
    }
    Ok(())
}

fn write_pages(cmd: Command, source: &str, dir: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), source, dir)?;
    }
    clap_mangen::Man::new(cmd).source(source).generate_to(dir)?;
    Ok(())
}
