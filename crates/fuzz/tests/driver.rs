#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The runner itself: each kind of finding is seen, counted, saved and replayable, and
//! the run goes on past it; every real target gets through a few inputs clean.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_hubkeeper-fuzz");

/// Runs `target` for `inputs` inputs; returns (success, stdout, the totals row).
fn run(out: &Path, target: &str, inputs: u64, extra: &[&str]) -> (bool, String, Vec<String>) {
    let o = Command::new(BIN)
        .args([
            "run",
            "--seed",
            "7",
            "--inputs",
            &inputs.to_string(),
            "--out",
        ])
        .arg(out)
        .args(extra)
        .arg(target)
        .output()
        .unwrap();
    let stdout = String::from_utf8(o.stdout).unwrap();
    let row = stdout
        .lines()
        .find(|l| l.starts_with(target))
        .unwrap_or_else(|| panic!("no row for {target} in:\n{stdout}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    (o.status.success(), stdout, row)
}

/// The columns: target inputs crashes violations hangs over-mem peak-RSS ...
fn col(row: &[String], i: usize) -> u64 {
    row[i].parse().unwrap()
}

#[test]
fn each_kind_of_finding_is_counted_saved_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // Input i misbehaves when its byte is 0: about one in ten.
    for (target, column, extra) in [
        ("selftest-panic", 2, &[][..]),
        ("selftest-abort", 2, &[][..]),
        ("selftest-violation", 3, &[][..]),
        ("selftest-hang", 4, &["--time-limit", "1"][..]),
        ("selftest-memory", 5, &["--rss-limit", "128"][..]),
    ] {
        let out = dir.path().join(target);
        let inputs = if target == "selftest-hang" { 12 } else { 40 };
        let (ok, stdout, row) = run(&out, target, inputs, extra);
        assert!(!ok, "{stdout}");
        assert_eq!(
            col(&row, 1),
            inputs,
            "every input is run or counted: {stdout}"
        );
        let found = col(&row, column);
        assert!(found >= 1, "{target}: {stdout}");
        let saved: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "bin"))
            .collect();
        assert_eq!(
            saved.len() as u64,
            found,
            "{target}: one saved input per finding"
        );
        if target == "selftest-panic" || target == "selftest-violation" {
            let r = Command::new(BIN)
                .args(["replay", target])
                .arg(&saved[0])
                .output()
                .unwrap();
            assert!(!r.status.success(), "replaying a finding finds it again");
        }
    }
}

#[test]
fn every_target_runs_clean_for_a_few_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let list = Command::new(BIN).arg("list").output().unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names.len(), 7, "{list}");
    for name in names {
        let (ok, stdout, row) = run(dir.path(), name, 30, &[]);
        assert!(ok, "{stdout}");
        assert_eq!(col(&row, 1), 30, "{stdout}");
    }
}
