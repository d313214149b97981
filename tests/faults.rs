//! Fault injection against the real daemon, the real control service and the
//! cloudflared stand-in: `secrets_dir` full (a small tmpfs mounted as it) during
//! enroll and rotate, `secrets_dir` read-only while running and at enroll, the daemon
//! SIGSTOPped past its watchdog, SIGKILL at random points of enroll, rotate and
//! disable (seeded, printed), and a child that floods its output or never ends a line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::s3::free_port;
use support::stack::*;
use support::*;
use testkit as support;

fn ready(s: &serde_json::Value) -> bool {
    s["state"] == "ready"
}

/// A managed daemon in `dir` (already prepared: a fault may sit at its secrets_dir).
fn start_in(
    dir: tempfile::TempDir,
    config: &str,
    behavior: &str,
    env: &[(&str, &str)],
) -> (Daemon, Standin) {
    std::fs::write(dir.path().join("control-token"), CONTROL_TOKEN).unwrap();
    let sdir = dir.path().join("standin");
    std::fs::create_dir_all(&sdir).unwrap();
    let standin = Standin { dir: sdir.clone() };
    standin.behave(behavior);
    write_edge(&sdir, config);
    let mut all = vec![("CLOUDFLARED_STANDIN_DIR", sdir.to_str().unwrap())];
    all.extend_from_slice(env);
    let d = Daemon::spawn(dir, config, &all);
    d.wait_serving();
    (d, standin)
}

fn config_for(cs: &ControlService, hub: &str) -> String {
    managed_config(&cs.url, free_port(), "")
        .replace("hub_id = \"hub-1\"", &format!("hub_id = \"{hub}\""))
}

/// Sets the top-level `enabled`, as an admin would.
fn set_enabled(d: &Daemon, on: bool) {
    set_config_key(&d.config, "enabled", &on.to_string());
}

/// Every file in secrets_dir parses or is absent, no temp file is left, and an
/// `enrollment.json` has its `tunnel-token` beside it. Returns the enrollment.
fn consistent(dir: &Path) -> Option<serde_json::Value> {
    let mut enrollment = None;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = || std::fs::read_to_string(entry.path()).unwrap();
        match name.as_str() {
            ".ballast" => {}
            n if n.contains(".tmp-") => panic!("a temp file was left behind: {n}"),
            "enrollment.json" => {
                let v: serde_json::Value = serde_json::from_str(&text())
                    .unwrap_or_else(|e| panic!("enrollment.json is torn: {e}"));
                enrollment = Some(v);
            }
            "state.json" | "backup-state.json" => {
                let _: serde_json::Value =
                    serde_json::from_str(&text()).unwrap_or_else(|e| panic!("{name} is torn: {e}"));
            }
            "tunnel-token" => assert!(!text().is_empty(), "an empty tunnel-token"),
            _ => {}
        }
    }
    if let Some(e) = &enrollment {
        for k in [
            "tunnel_id",
            "hostname",
            "r2_access_key_id",
            "r2_secret_access_key",
        ] {
            assert!(
                e[k].is_string(),
                "enrollment.json lacks {k}: it is half-recorded"
            );
        }
        assert!(
            dir.join("tunnel-token").exists(),
            "enrollment.json without its tunnel-token"
        );
    }
    enrollment
}

fn db(cs: &ControlService) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        cs.dir.path().join("state/control.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

/// The hub's live tunnels (ids) and live keys (access key ids) at the service.
fn live(cs: &ControlService, hub: &str) -> (Vec<String>, Vec<String>) {
    let db = db(cs);
    let pattern = format!("hubkeeper-{hub}-%");
    let tunnels = db
        .prepare("SELECT tunnel_id FROM local_tunnels WHERE name LIKE ?1 AND deleted_at IS NULL")
        .unwrap()
        .query_map([&pattern], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let keys = db
        .prepare("SELECT pair_index FROM local_keys WHERE name LIKE ?1 AND revoked_at IS NULL")
        .unwrap()
        .query_map([&pattern], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|i| S3_KEYS[i.unwrap() as usize].0.to_owned())
        .collect();
    (tunnels, keys)
}

/// Enrolled at the service and on disk, one of each, and they agree.
fn one_live_enrollment(cs: &ControlService, hub: &str, secrets_dir: &Path, why: &str) {
    let e = consistent(secrets_dir).unwrap_or_else(|| panic!("{why}: not enrolled on disk"));
    let (tunnels, keys) = live(cs, hub);
    assert_eq!(
        tunnels,
        vec![e["tunnel_id"].as_str().unwrap().to_owned()],
        "{why}: live tunnels"
    );
    assert_eq!(
        keys,
        vec![e["r2_access_key_id"].as_str().unwrap().to_owned()],
        "{why}: live keys"
    );
    assert_eq!(cs.hub_status(hub)["enabled"], true, "{why}");
}

fn nothing_live(cs: &ControlService, hub: &str, secrets_dir: &Path, why: &str) {
    assert!(
        consistent(secrets_dir).is_none(),
        "{why}: still enrolled on disk"
    );
    assert_eq!(
        live(cs, hub),
        (vec![], vec![]),
        "{why}: orphans at the service"
    );
}

// ---- 1. secrets_dir full ----

const DISK: u64 = 256 * 1024;

#[test]
fn a_full_secrets_dir_during_enroll_records_nothing_says_so_and_recovers() {
    let cs = ControlService::start();
    let dir = open_tempdir();
    let secrets_dir = dir.path().join("state/secrets");
    let Some(disk) = fault::SmallDisk::mount(&secrets_dir, DISK) else {
        return;
    };
    disk.fill();
    let (d, _st) = start_in(dir, &config_for(&cs, "hub-full"), "", &[]);
    let s = d.wait_status("the store failure reported", |s| {
        s["errors"].to_string().contains("enrollment_not_stored")
    });
    let e = &s["errors"][0];
    assert_eq!(e["component"], "enroll", "{s:#}");
    assert!(
        e["message"].as_str().unwrap().contains("No space left"),
        "{s:#}"
    );
    assert!(
        e["hint"].as_str().unwrap().contains("disk is not full"),
        "{s:#}"
    );
    assert_ne!(s["state"], "ready");
    assert!(consistent(&secrets_dir).is_none(), "nothing half-recorded");
    assert!(!secrets_dir.join("tunnel-token").exists());
    disk.free();
    let s = d.wait_status_within(Duration::from_secs(30), "ready once space returns", |s| {
        ready(s) && s["errors"] == serde_json::json!([])
    });
    one_live_enrollment(&cs, "hub-full", &secrets_dir, "after recovery");
    assert_eq!(
        consistent(&secrets_dir).unwrap()["tunnel_id"],
        s["tunnel_id"]
    );
}

#[test]
fn a_full_secrets_dir_during_rotate_keeps_the_old_keys_says_so_and_recovers() {
    let cs = ControlService::start();
    let dir = open_tempdir();
    let secrets_dir = dir.path().join("state/secrets");
    let Some(disk) = fault::SmallDisk::mount(&secrets_dir, DISK) else {
        return;
    };
    let (d, st) = start_in(dir, &config_for(&cs, "hub-rot"), "", &[]);
    d.wait_status("ready", ready);
    let before = consistent(&secrets_dir).unwrap();
    disk.fill();
    let sock = d.socket.to_str().unwrap().to_owned();
    let (code, out, err) = cli(&["rotate-keys", "--socket", &sock]);
    assert_ne!(code, 0, "{out}{err}");
    let text = format!("{out}{err}");
    assert!(text.contains("No space left"), "{text}");
    assert!(
        text.contains("rotate-keys"),
        "the error says what to do: {text}"
    );
    // The old file is whole and unchanged; the status says what happened.
    assert_eq!(consistent(&secrets_dir).unwrap(), before);
    let s = d.wait_status("the store failure in status", |s| {
        s["errors"].to_string().contains("keys_not_stored")
    });
    assert!(
        s["errors"][0]["hint"]
            .as_str()
            .unwrap()
            .contains("rotate-keys"),
        "{s:#}"
    );
    // The tunnel was never touched.
    assert_eq!(st.of("start").len(), 1);
    assert_eq!(s["tunnel"]["state"], "running");

    disk.free();
    let (code, out, err) = cli(&["rotate-keys", "--socket", &sock]);
    assert_eq!(code, 0, "{out}{err}");
    let s = d.wait_status("clear again", |s| {
        ready(s) && s["errors"] == serde_json::json!([])
    });
    assert_eq!(s["tunnel"]["restarts"], 0);
    one_live_enrollment(&cs, "hub-rot", &secrets_dir, "after the second rotation");
}

/// The disk fills between the two writes of a rotation: the marker fits, the new keys
/// do not, after the service has rotated (and revoked the old key).
#[test]
fn a_disk_full_after_the_service_rotated_uses_the_new_keys_and_finishes_at_restart() {
    let cs = ControlService::start();
    let dir = open_tempdir();
    let secrets_dir = dir.path().join("state/secrets");
    let Some(disk) = fault::SmallDisk::mount(&secrets_dir, DISK) else {
        return;
    };
    let (d, _st) = start_in(dir, &config_for(&cs, "hub-half"), "", &[]);
    d.wait_status("ready", ready);
    let before = consistent(&secrets_dir).unwrap();
    assert!(
        !secrets_dir.join("state.json").exists(),
        "no state.json yet"
    );
    // One page left: state.json takes it, the new enrollment.json finds none.
    let ballast = disk.fill();
    let len = std::fs::metadata(&ballast).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ballast)
        .unwrap()
        .set_len(len - 4096)
        .unwrap();
    let (code, out, err) = cli(&["rotate-keys", "--socket", d.socket.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}{err}");
    let text = format!("{out}{err}");
    assert!(
        text.contains("issued new keys, but they could not be stored"),
        "{text}"
    );
    assert!(text.contains("rotate-keys"), "{text}");
    assert_eq!(consistent(&secrets_dir).unwrap(), before, "nothing torn");
    let s = d.wait_status("the failure in status", |s| {
        s["errors"].to_string().contains("keys_not_stored")
    });
    assert_eq!(s["tunnel"]["state"], "running", "{s:#}");
    assert_ne!(
        live(&cs, "hub-half").1,
        vec![before["r2_access_key_id"].as_str().unwrap().to_owned()],
        "the service rotated"
    );
    disk.free();
    let d = restart(d);
    d.wait_status("ready after the restart", |s| {
        ready(s) && s["errors"] == serde_json::json!([])
    });
    wait_for(
        Duration::from_secs(20),
        "the keys on disk to be the live ones",
        || {
            let e = consistent(&secrets_dir).unwrap();
            live(&cs, "hub-half").1 == vec![e["r2_access_key_id"].as_str().unwrap().to_owned()]
        },
    );
    one_live_enrollment(&cs, "hub-half", &secrets_dir, "after the restart");
}

/// A rustic that fails at once (exit 3), recording each run: every run ends in a
/// backup-state write to secrets_dir.
fn failing_rustic(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let record = dir.join("runs");
    let fake = dir.join("rustic");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho run >> {}\nexit 3\n", record.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    (fake, record)
}

fn backup_state(secrets_dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(secrets_dir.join("backup-state.json")).unwrap())
        .unwrap()
}

/// A daemon with backups on, a rustic that fails at once, and `secrets_dir` on a small
/// disk; returned once the first (failing) run is over. `None` without root.
struct BackupHub {
    daemon: Daemon,
    disk: fault::SmallDisk,
    secrets_dir: std::path::PathBuf,
    record: std::path::PathBuf,
    _standin: Standin,
    _tools: tempfile::TempDir,
    _cs: ControlService,
}

impl BackupHub {
    fn start(hub: &str) -> Option<BackupHub> {
        let cs = ControlService::start();
        let tools = tempfile::tempdir().unwrap();
        let (fake, record) = failing_rustic(tools.path());
        let dir = open_tempdir();
        let secrets_dir = dir.path().join("state/secrets");
        let disk = fault::SmallDisk::mount(&secrets_dir, DISK)?;
        let section = format!(
            "[backup]\nenabled = true\nrustic = \"{}\"\npaths = [\"{}\"]\ninterval = \"1h\"\n",
            fake.display(),
            tools.path().display()
        );
        let cfg = config_for(&cs, hub).replace("[backup]\nenabled = false\n", &section);
        let (daemon, standin) = start_in(dir, &cfg, "", &[]);
        daemon.wait_status_within(Duration::from_secs(60), "the first (failing) run", |s| {
            s["backup"]["state"] == "failed"
        });
        Some(BackupHub {
            daemon,
            disk,
            secrets_dir,
            record,
            _standin: standin,
            _tools: tools,
            _cs: cs,
        })
    }

    /// How many times rustic was run.
    fn runs(&self) -> usize {
        read(&self.record).lines().count()
    }
}

#[test]
fn a_full_secrets_dir_during_a_backup_state_write_tears_nothing_and_recovers() {
    let Some(h) = BackupHub::start("hub-bk") else {
        return;
    };
    let (d, disk, secrets_dir) = (&h.daemon, &h.disk, &h.secrets_dir);
    let runs = || h.runs();
    wait_for(Duration::from_secs(10), "its state on disk", || {
        secrets_dir.join("backup-state.json").exists()
    });
    assert_eq!(backup_state(secrets_dir)["consecutive_failures"], 1);

    disk.fill();
    let before = runs();
    assert_eq!(post(&d.socket, "/v1/backup").status, 202);
    wait_for(Duration::from_secs(30), "a run on the full disk", || {
        runs() > before
    });
    d.wait_status("the run over", |s| s["backup"]["state"] == "failed");
    wait_for(Duration::from_secs(10), "the failed write logged", || {
        d.log().contains("cannot save backup-state.json")
    });
    // The old file whole, nothing half-written beside it; the daemon carries on.
    consistent(secrets_dir);
    assert_eq!(backup_state(secrets_dir)["consecutive_failures"], 1);
    let s = d.wait_status("the tunnel up", |s| s["tunnel"]["state"] == "running");
    assert_eq!(s["tunnel"]["restarts"], 0, "{s:#}");

    disk.free();
    let before = runs();
    assert_eq!(post(&d.socket, "/v1/backup").status, 202);
    wait_for(Duration::from_secs(30), "a run with space again", || {
        runs() > before
    });
    // The count kept in memory reaches the disk: no failure lost.
    wait_for(Duration::from_secs(10), "the state written again", || {
        backup_state(secrets_dir)["consecutive_failures"] == 3
    });
    consistent(secrets_dir);
}

/// Found by the test above: a backup-state.json that could not be written was only
/// logged, so the status did not say the backup history was no longer being recorded.
#[test]
fn a_backup_state_that_cannot_be_written_is_an_error_in_status() {
    let Some(h) = BackupHub::start("hub-bk2") else {
        return;
    };
    let (d, disk, secrets_dir) = (&h.daemon, &h.disk, &h.secrets_dir);
    let runs = || h.runs();
    disk.fill();
    let before = runs();
    assert_eq!(post(&d.socket, "/v1/backup").status, 202);
    wait_for(Duration::from_secs(30), "a run on the full disk", || {
        runs() > before
    });
    let s = d.wait_status("the failed write in the status", |s| {
        s["errors"].to_string().contains("backup_state_not_saved")
    });
    assert!(s["errors"].to_string().contains("backup-state.json"), "{s}");
    // Space returns: the next run saves the history, and the error goes.
    disk.free();
    assert_eq!(post(&d.socket, "/v1/backup").status, 202);
    d.wait_status("saved again", |s| {
        !s["errors"].to_string().contains("backup_state_not_saved")
    });
    assert!(secrets_dir.join("backup-state.json").exists());
}

// ---- 2. secrets_dir read-only ----

#[test]
fn a_read_only_secrets_dir_keeps_the_tunnel_and_the_old_keys() {
    let cs = ControlService::start();
    let dir = open_tempdir();
    let secrets_dir = dir.path().join("state/secrets");
    let (d, st) = start_in(dir, &config_for(&cs, "hub-ro"), "", &[]);
    d.wait_status("ready", ready);
    let pid = d.status()["tunnel"]["pid"].clone();
    let before = consistent(&secrets_dir).unwrap();
    let ro = fault::ReadOnly::make(&secrets_dir);
    let (code, out, err) = cli(&["rotate-keys", "--socket", d.socket.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}{err}");
    let text = format!("{out}{err}");
    assert!(text.contains("secrets_dir is not writable"), "{text}");
    assert!(text.contains("the old keys stay in force"), "{text}");
    assert_eq!(
        consistent(&secrets_dir).unwrap(),
        before,
        "the old keys stay"
    );
    let s = d.wait_status("the failure in status", |s| {
        s["errors"].to_string().contains("keys_not_stored")
    });
    assert_eq!(s["tunnel"]["pid"], pid, "the tunnel keeps running");
    assert_eq!(s["tunnel"]["state"], "running");
    assert_eq!(st.of("start").len(), 1);
    ro.undo();
    let (code, out, err) = cli(&["rotate-keys", "--socket", d.socket.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    d.wait_status("clear", |s| {
        ready(s) && s["errors"] == serde_json::json!([])
    });
    one_live_enrollment(&cs, "hub-ro", &secrets_dir, "after writable again");
}

#[test]
fn a_read_only_secrets_dir_at_enroll_records_nothing_and_recovers() {
    let cs = ControlService::start();
    let dir = open_tempdir();
    let secrets_dir = dir.path().join("state/secrets");
    std::fs::create_dir_all(&secrets_dir).unwrap();
    std::fs::set_permissions(
        &secrets_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let ro = fault::ReadOnly::make(&secrets_dir);
    let (d, _st) = start_in(dir, &config_for(&cs, "hub-ro2"), "", &[]);
    let s = d.wait_status("the store failure reported", |s| {
        s["errors"].to_string().contains("enrollment_not_stored")
    });
    assert!(
        s["errors"][0]["hint"]
            .as_str()
            .unwrap()
            .contains("writable"),
        "{s:#}"
    );
    assert!(consistent(&secrets_dir).is_none());
    ro.undo();
    d.wait_status_within(Duration::from_secs(30), "ready once writable", |s| {
        ready(s) && s["errors"] == serde_json::json!([])
    });
    one_live_enrollment(&cs, "hub-ro2", &secrets_dir, "after recovery");
}

// ---- 3. SIGSTOP past the watchdog ----

fn cloudflared_pids(standin_dir: &Path) -> Vec<i32> {
    let needle = standin_dir.to_str().unwrap().to_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).contains("cloudflared-standin")
                && String::from_utf8_lossy(&environ).contains(&needle)
                && alive(*pid as u32)
        })
        .collect()
}

#[test]
fn sigstopped_past_the_watchdog_it_resumes_pinging_and_supervising() {
    let cs = ControlService::start();
    let dir = open_tempdir();
    let notify = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (d, st) = start_in(
        dir,
        &config_for(&cs, "hub-stop"),
        "",
        &[
            ("NOTIFY_SOCKET", notify.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    d.wait_status("ready", ready);
    let pings = |within: Duration| -> usize {
        let end = Instant::now() + within;
        let mut buf = [0u8; 4096];
        let mut n = 0;
        while Instant::now() < end {
            if let Ok(k) = sock.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..k])
                    .lines()
                    .any(|l| l == "WATCHDOG=1")
            {
                n += 1;
            }
        }
        n
    };
    assert!(pings(Duration::from_secs(1)) >= 1, "pings before the stop");
    d.signal(Signal::SIGSTOP);
    // Stopped for over five watchdog intervals; drain what was sent before the stop.
    std::thread::sleep(Duration::from_millis(2000));
    while sock.recv(&mut [0u8; 4096]).is_ok() {}
    d.signal(Signal::SIGCONT);
    assert!(
        pings(Duration::from_secs(2)) >= 2,
        "WATCHDOG=1 again after SIGCONT"
    );
    let s = d.wait_status("ready after SIGCONT", ready);
    assert_eq!(s["tunnel"]["state"], "running");
    let pids = cloudflared_pids(&st.dir);
    assert_eq!(pids.len(), 1, "one cloudflared: {pids:?} {:?}", st.events());
    assert_eq!(s["tunnel"]["pid"], pids[0]);
    // Still supervised: a crash now is noticed and restarted.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pids[0]), Signal::SIGKILL).unwrap();
    wait_for(Duration::from_secs(20), "a new cloudflared", || {
        st.of("start").len() >= 2
    });
    let s = d.wait_status_within(Duration::from_secs(20), "ready again", |s| {
        ready(s) && s["tunnel"]["pid"] != pids[0]
    });
    wait_for(Duration::from_secs(10), "one cloudflared", || {
        cloudflared_pids(&st.dir).len() == 1
    });
    assert_eq!(s["tunnel"]["pid"], cloudflared_pids(&st.dir)[0]);
}

// ---- 4. SIGKILL at random points ----

fn seed() -> u64 {
    std::env::var("HUBKEEPER_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

fn kill_now(d: &mut Daemon) {
    d.signal(Signal::SIGKILL);
    let _ = d.child.wait();
}

#[test]
fn sigkill_at_random_points_of_enroll_rotate_and_disable_leaves_no_orphans() {
    let seed = seed();
    eprintln!("SIGKILL trials: seed {seed} (HUBKEEPER_FAULT_SEED={seed} reproduces)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let cs = ControlService::start();
    let trials = [("enroll", 40), ("rotate", 30), ("disable", 30)];
    let mut n = 0;
    for (flow, count) in trials {
        for _ in 0..count {
            n += 1;
            let hub = format!("hub-k{n}");
            let delay = Duration::from_millis(rng.u64(0..150));
            let why = format!("trial {n} ({flow}, kill {delay:?} after the trigger, seed {seed})");
            let cfg = config_for(&cs, &hub);
            let dir = open_tempdir();
            let secrets_dir = dir.path().join("state/secrets");
            match flow {
                "enroll" => {
                    let cfg = cfg.replacen("enabled = true", "enabled = false", 1);
                    let (mut d, _st) = start_in(dir, &cfg, "", &[]);
                    set_enabled(&d, true);
                    std::thread::sleep(delay);
                    kill_now(&mut d);
                    let d = restart(d);
                    d.wait_status_within(Duration::from_secs(30), &why, ready);
                    one_live_enrollment(&cs, &hub, &secrets_dir, &why);
                }
                "rotate" => {
                    let (mut d, _st) = start_in(dir, &cfg, "", &[]);
                    d.wait_status(&why, ready);
                    let socket = d.socket.clone();
                    let t = std::thread::spawn(move || {
                        let _ = raw(&socket, b"POST /v1/rotate-keys HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
                    });
                    std::thread::sleep(delay);
                    kill_now(&mut d);
                    t.join().unwrap();
                    let d = restart(d);
                    d.wait_status_within(Duration::from_secs(30), &why, ready);
                    // The keys on disk are the live ones (a rotation cut short is finished).
                    wait_for(Duration::from_secs(20), &why, || {
                        let e = consistent(&secrets_dir).unwrap();
                        live(&cs, &hub).1
                            == vec![e["r2_access_key_id"].as_str().unwrap().to_owned()]
                    });
                    one_live_enrollment(&cs, &hub, &secrets_dir, &why);
                }
                _ => {
                    let (mut d, _st) = start_in(dir, &cfg, "", &[]);
                    d.wait_status(&why, ready);
                    set_enabled(&d, false);
                    std::thread::sleep(delay);
                    kill_now(&mut d);
                    let d = restart(d);
                    d.wait_status_within(Duration::from_secs(30), &why, |s| {
                        s["state"] == "disabled"
                            && s["note"]
                                .as_str()
                                .is_some_and(|n| n.starts_with("disabled "))
                    });
                    nothing_live(&cs, &hub, &secrets_dir, &why);
                    assert_eq!(cs.hub_status(&hub)["enabled"], false, "{why}");
                }
            }
        }
    }
    eprintln!("SIGKILL trials: {n} passed (seed {seed})");
}

/// A proxy in front of the control service that can lose the answer to a rotation
/// after the service has done it: what a daemon killed at that instant sees.
struct LosingProxy {
    url: String,
    lose_rotation: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
}

impl LosingProxy {
    fn start(upstream: &str) -> LosingProxy {
        let upstream = upstream.strip_prefix("http://").unwrap().to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let lose_rotation = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let (lose, seen) = (lose_rotation.clone(), lost.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (upstream, lose, seen) = (upstream.clone(), lose.clone(), seen.clone());
                std::thread::spawn(move || {
                    let mut req = Vec::new();
                    let mut chunk = [0u8; 16384];
                    // One request: the head, then Content-Length bytes of body.
                    let complete = |b: &[u8]| {
                        let end = b.windows(4).position(|w| w == b"\r\n\r\n")?;
                        let head = String::from_utf8_lossy(&b[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap_or(0));
                        (b.len() >= end + 4 + len).then_some(())
                    };
                    while complete(&req).is_none() {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let mut up = std::net::TcpStream::connect(&upstream).unwrap();
                    up.write_all(&req).unwrap();
                    let mut resp = Vec::new();
                    while parse_response(&resp).is_none() {
                        match up.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => resp.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let rotation = String::from_utf8_lossy(&req).contains("rotate-keys");
                    if rotation && lose.load(Ordering::SeqCst) {
                        seen.store(true, Ordering::SeqCst);
                        // Done at the service; the answer never arrives.
                        std::thread::sleep(Duration::from_secs(30));
                        return;
                    }
                    let _ = conn.write_all(&resp);
                });
            }
        });
        LosingProxy {
            url,
            lose_rotation,
            lost,
        }
    }
}

#[test]
fn a_rotation_done_at_the_service_but_never_stored_is_finished_at_the_next_start() {
    let cs = ControlService::start();
    let proxy = LosingProxy::start(&cs.url);
    let dir = open_tempdir();
    let secrets_dir = dir.path().join("state/secrets");
    let cfg = managed_config(&proxy.url, free_port(), "")
        .replace("hub_id = \"hub-1\"", "hub_id = \"hub-lost\"");
    let (mut d, _st) = start_in(dir, &cfg, "", &[]);
    d.wait_status("ready", ready);
    let before = consistent(&secrets_dir).unwrap();
    proxy.lose_rotation.store(true, Ordering::SeqCst);
    let socket = d.socket.clone();
    let t = std::thread::spawn(move || {
        let _ = raw(
            &socket,
            b"POST /v1/rotate-keys HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        );
    });
    wait_for(
        Duration::from_secs(10),
        "the rotation done at the service",
        || proxy.lost.load(Ordering::SeqCst),
    );
    kill_now(&mut d);
    t.join().unwrap();
    // The keys on disk are the revoked ones now; the service holds the new ones.
    assert_eq!(consistent(&secrets_dir).unwrap(), before);
    assert_ne!(
        live(&cs, "hub-lost").1,
        vec![before["r2_access_key_id"].as_str().unwrap().to_owned()]
    );
    proxy.lose_rotation.store(false, Ordering::SeqCst);
    let d = restart(d);
    d.wait_status("ready after the restart", ready);
    wait_for(
        Duration::from_secs(20),
        "the keys on disk to be the live ones",
        || {
            let e = consistent(&secrets_dir).unwrap();
            live(&cs, "hub-lost").1 == vec![e["r2_access_key_id"].as_str().unwrap().to_owned()]
        },
    );
    one_live_enrollment(&cs, "hub-lost", &secrets_dir, "after the restart");
    let s = d.wait_status("no error", |s| {
        ready(s) && s["errors"] == serde_json::json!([])
    });
    assert_eq!(s["tunnel"]["restarts"], 0);
}

// ---- 5. A child that floods its output ----

fn flood_test(behavior: &str, expect_lines: usize, expect_cut: usize) {
    let cs = ControlService::start();
    let (d, st) = start_in(open_tempdir(), &config_for(&cs, "hub-flood"), behavior, &[]);
    wait_for(Duration::from_secs(60), "the flood written", || {
        !st.of("flood_done").is_empty()
    });
    // Every line was drained and forwarded (none lost, none blocking the child).
    wait_for(
        Duration::from_secs(60),
        "the flood in the daemon's log",
        || {
            d.log()
                .lines()
                .filter(|l| l.contains("xxxxxxxxxx") || l.contains("yyyyyyyyyy"))
                .count()
                >= expect_lines
        },
    );
    let s = d.wait_status("ready after the flood", ready);
    assert_eq!(
        s["tunnel"]["restarts"],
        0,
        "not restarted: {:?}",
        st.events()
    );
    assert_eq!(st.of("start").len(), 1);
    let m = procfs::Memory::read(d.pid().as_raw()).unwrap();
    eprintln!("daemon VmHWM after the flood: {} KiB", m.vm_hwm);
    assert!(m.vm_hwm < 64 * 1024, "VmHWM {} KiB", m.vm_hwm);
    // Lines in the log are capped.
    let log = d.log();
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest < testkit_max_line() + 1024,
        "a log line of {longest} bytes"
    );
    if expect_cut > 0 {
        assert!(
            log.contains(&format!("[{expect_cut} more bytes cut]")),
            "the cut is counted"
        );
    }
}

fn testkit_max_line() -> usize {
    8 * 1024
}

#[test]
fn a_child_flooding_stdout_and_stderr_stays_bounded_and_up() {
    flood_test("flood_lines = 12000\nflood_line_bytes = 2000\n", 12000, 0);
}

#[test]
fn a_child_printing_10_mb_without_newline_stays_bounded_and_up() {
    flood_test(
        "flood_unbroken = 10485760\n",
        1,
        10 * 1024 * 1024 - 8 * 1024,
    );
}
