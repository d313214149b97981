//! Crash safety of the secrets store: a writer process is SIGKILLed at random instants,
//! 200 times; after each kill every file must hold a complete old or new version.
//!
//! The writer is this test binary itself, re-executed to run `crash_writer_child`
//! with HUBKEEPER_CRASH_DIR set, so it uses the real `SecretsStore` code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use hubkeeper::secrets::SecretsStore;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

const ROUNDS: usize = 200;

/// Files of different sizes: a kill lands in a large write's middle far more often.
const FILES: [(&str, usize); 3] = [
    ("enrollment.json", 300),
    ("rustic/profile.toml", 64 * 1024),
    ("cloudflared/credentials.json", 1024 * 1024),
];

/// Version `n` of a file: a header naming it, then bytes derived from `n`.
fn content(name: &str, size: usize, n: u64) -> Vec<u8> {
    let mut v = format!("v={n} name={name} size={size}\n").into_bytes();
    let fill = b'a' + (n % 26) as u8;
    v.resize(size, fill);
    v
}

/// The version a file holds, if it is one complete version.
fn version_of(name: &str, size: usize, bytes: &[u8]) -> Option<u64> {
    let header = std::str::from_utf8(bytes.split(|b| *b == b'\n').next()?).ok()?;
    let n: u64 = header.strip_prefix("v=")?.split(' ').next()?.parse().ok()?;
    (bytes == content(name, size, n).as_slice()).then_some(n)
}

#[test]
fn crash_writer_child() {
    // Only does something when run as the writer by the test below.
    let Ok(dir) = std::env::var("HUBKEEPER_CRASH_DIR") else {
        return;
    };
    let start: u64 = std::env::var("HUBKEEPER_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    let store = SecretsStore::open(dir.as_ref()).unwrap();
    println!("ready");
    let mut n = start;
    loop {
        n += 1;
        for (name, size) in FILES {
            store.write(name, &content(name, size, n)).unwrap();
        }
    }
}

#[test]
fn sigkill_at_random_instants_never_leaves_a_torn_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");
    let store = SecretsStore::open(&dir).unwrap();
    for (name, size) in FILES {
        store.write(name, &content(name, size, 0)).unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let mut last = [0u64; FILES.len()];
    let mut changed_rounds = 0;
    let mut temp_files_seen = 0;
    for round in 0..ROUNDS {
        // Each writer numbers its versions above everything seen so far.
        let start = last.iter().max().unwrap() + 1_000;
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HUBKEEPER_CRASH_DIR", &dir)
            .env("HUBKEEPER_CRASH_START", start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the writer to be writing, then kill it somewhere in the next 0-15 ms.
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        while !line.contains("ready") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "writer exited early");
        }
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..15_000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let mut any_changed = false;
        for (i, (name, size)) in FILES.iter().enumerate() {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).unwrap();
            let v = version_of(name, *size, &bytes)
                .unwrap_or_else(|| panic!("round {round}: {name} is torn ({} bytes)", bytes.len()));
            assert!(
                v == last[i] || v > start,
                "round {round}: {name} went back to version {v}"
            );
            any_changed |= v != last[i];
            last[i] = v;
            assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        }
        changed_rounds += usize::from(any_changed);
        temp_files_seen += count_temp_files(&dir);
    }
    // Re-opening clears what the kills left behind.
    SecretsStore::open(&dir).unwrap();
    assert_eq!(count_temp_files(&dir), 0);
    // The kills must really have landed during writing, not only before or after.
    assert!(
        changed_rounds > ROUNDS / 4,
        "only {changed_rounds} rounds wrote anything"
    );
    assert!(
        temp_files_seen > 0,
        "no kill landed mid-write in {ROUNDS} rounds"
    );
    eprintln!(
        "{ROUNDS} kills: {changed_rounds} rounds changed files, {temp_files_seen} interrupted writes left temp files, no torn file"
    );
}

fn count_temp_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for sub in ["", "rustic", "cloudflared"] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            n += rd
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
                .count();
        }
    }
    n
}
