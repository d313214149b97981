//! Backups with the real rustic against an rclone S3 store, through the daemon in
//! managed mode: the profile works with the plain rustic CLI (snapshots, restore),
//! retention, failures rustic does not report itself (killed, unreadable files, a hung
//! store), one run at a time, stop on disable, overdue, missing rustic, retry backoff.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};
use support::s3::free_port;
use support::stack::*;
use support::*;
use testkit as support;

/// Backups run real rustic: on a loaded two-core machine they take far longer than a
/// status change.
const BACKUP_WAIT: Duration = Duration::from_secs(120);

fn rustic_bin() -> PathBuf {
    support::s3::rustic()
}

/// Files to back up: text, binary, nested, empty.
fn make_data(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    std::fs::write(dir.join("notes.txt"), "hub data\n".repeat(1000)).unwrap();
    let bin: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("sub/blob.bin"), bin).unwrap();
    std::fs::write(dir.join("sub/deeper/empty"), "").unwrap();
}

fn backup_section(data: &Path, extra: &str) -> String {
    format!(
        "[backup]\nenabled = true\nrustic = \"{}\"\npaths = [\"{}\"]\ninterval = \"1h\"\n{extra}",
        rustic_bin().display(),
        data.display()
    )
}

/// A ready hub whose first backup is done.
fn hub(extra_backup: &str) -> (ControlService, Daemon, PathBuf) {
    let cs = ControlService::start();
    let data = tempfile::tempdir().unwrap().keep();
    make_data(&data);
    let cfg = managed_config(&cs.url, free_port(), "").replace(
        "[backup]\nenabled = false\n",
        &backup_section(&data, extra_backup),
    );
    let (d, _st) = start_managed(&cfg, "");
    // The first verify follows the first backup at once: tests start once it is done
    // too, so the runs they start meet no verify.
    d.wait_status_within(BACKUP_WAIT, "the first backup and verify", |s| {
        s["backup"]["last_snapshot_id"].is_string()
            && (s["backup"]["last_verified"].is_string()
                || s["backup"]["verify_state"] == "disabled")
    });
    (cs, d, data)
}

fn profile(d: &Daemon) -> PathBuf {
    secrets(d).join("rustic/profile")
}

/// rustic as an admin would run it, with the profile hubkeeper wrote.
fn admin_rustic(d: &Daemon, args: &[&str]) -> String {
    let out = Command::new(rustic_bin())
        .arg("-P")
        .arg(profile(d))
        .arg("--no-progress")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rustic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Snapshot ids, whatever grouping rustic printed.
fn snapshot_ids(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut ids = Vec::new();
    for item in v.as_array().unwrap() {
        let snaps = item
            .get("snapshots")
            .and_then(|s| s.as_array())
            .cloned()
            .unwrap_or_else(|| vec![item.clone()]);
        for s in snaps {
            ids.push(s["id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

fn same_tree(a: &Path, b: &Path) {
    for entry in walk(a) {
        let rel = entry.strip_prefix(a).unwrap();
        let other = b.join(rel);
        assert_eq!(
            std::fs::read(&entry).unwrap(),
            std::fs::read(&other).unwrap_or_default(),
            "{}",
            rel.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn rustic_pids(profile: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let argv = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if argv.contains("rustic")
                && argv.contains(&profile.display().to_string())
                && !argv.contains("snapshots")
                && let Ok(pid) = e.file_name().to_string_lossy().parse()
            {
                pids.push(pid);
            }
        }
    }
    pids
}

#[test]
fn the_first_backup_runs_at_once_and_restores_with_the_plain_rustic_cli() {
    let (_cs, d, data) = hub("");
    let s = d.wait_status_within(BACKUP_WAIT, "ready", |s| s["state"] == "ready");
    let id = s["backup"]["last_snapshot_id"].as_str().unwrap().to_owned();
    assert_eq!(s["backup"]["state"], "idle");
    assert!(s["backup"]["last_success"].is_string());
    assert!(s["backup"]["next_run"].is_string());
    assert_eq!(s["backup"]["last_error"], serde_json::Value::Null);

    let ids = snapshot_ids(&admin_rustic(&d, &["snapshots", "--json"]));
    assert!(
        ids.iter()
            .any(|i| i.starts_with(&id) || id.starts_with(i.as_str())),
        "{ids:?} vs {id}"
    );
    let restored = tempfile::tempdir().unwrap();
    admin_rustic(
        &d,
        &[
            "restore",
            &format!("{id}:{}", data.display()),
            restored.path().to_str().unwrap(),
        ],
    );
    same_tree(&data, restored.path());

    use std::os::unix::fs::MetadataExt;
    for f in ["rustic/profile.toml", "rustic/password"] {
        assert_eq!(
            std::fs::metadata(secrets(&d).join(f)).unwrap().mode() & 0o777,
            0o600,
            "{f}"
        );
    }
    let m = get(&d.socket, "/metrics").text();
    assert!(
        !m.contains("hubkeeper_backup_last_success_timestamp_seconds 0\n"),
        "{m}"
    );
    assert!(m.contains("hubkeeper_backup_last_bytes_added "), "{m}");
}

#[test]
fn retention_keeps_exactly_what_the_keep_rules_say() {
    let (_cs, d, _data) = hub("keep_daily = 2\nkeep_weekly = 0\nkeep_monthly = 0\n");
    // Older snapshots on four earlier days, made by an admin with the same profile.
    let day = 24 * 3600;
    for n in 1..=4u64 {
        let t = SystemTime::now() - Duration::from_secs(n * day);
        let when = humantime::format_rfc3339_seconds(t)
            .to_string()
            .replace('T', " ")
            .replace('Z', "+0000");
        admin_rustic(&d, &["backup", "--time", &when]);
    }
    let yesterday = snapshot_ids(&admin_rustic(&d, &["snapshots", "--json"]));
    assert_eq!(yesterday.len(), 5);
    // A second backup today; then forget keeps the latest of each of 2 days.
    let first = d.status()["backup"]["last_snapshot_id"].clone();
    assert_eq!(post(&d.socket, "/v1/backup").status, 202);
    let s = d.wait_status_within(BACKUP_WAIT, "the second backup", |s| {
        s["backup"]["last_snapshot_id"] != first && s["backup"]["state"] == "idle"
    });
    let kept = snapshot_ids(&admin_rustic(&d, &["snapshots", "--json"]));
    assert_eq!(kept.len(), 2, "{kept:?}");
    let latest = s["backup"]["last_snapshot_id"].as_str().unwrap();
    assert!(
        kept.iter()
            .any(|k| latest.starts_with(k.as_str()) || k.starts_with(latest)),
        "{kept:?} lacks {latest}"
    );
}

#[test]
fn a_rustic_killed_mid_run_is_a_failure_though_it_exits_0() {
    let (cs, d, data) = hub("");
    let first = d.status()["backup"]["last_snapshot_id"].clone();
    // More to upload, and a store that holds rustic mid-run.
    std::fs::write(data.join("more.bin"), vec![7u8; 4 << 20]).unwrap();
    cs.s3.signal(Signal::SIGSTOP);
    assert_eq!(post(&d.socket, "/v1/backup").status, 202);
    let mut pids = Vec::new();
    wait_for(Duration::from_secs(20), "rustic to run", || {
        pids = rustic_pids(&profile(&d));
        !pids.is_empty()
    });
    // One at a time.
    let again = post(&d.socket, "/v1/backup");
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["error"]["code"], "backup_running");
    for pid in &pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGTERM);
    }
    cs.s3.signal(Signal::SIGCONT);
    let s = d.wait_status_within(BACKUP_WAIT, "a failed backup", |s| {
        s["backup"]["state"] == "failed"
    });
    assert_eq!(s["backup"]["last_snapshot_id"], first, "no new snapshot");
    assert!(
        s["backup"]["last_error"]
            .as_str()
            .unwrap()
            .contains("backup_failed"),
        "{s:#}"
    );
    assert_eq!(s["state"], "degraded");
    assert!(s["errors"].to_string().contains("backup_failed"));
}

#[test]
fn a_hung_store_hits_the_backup_timeout_and_rustic_is_killed() {
    let (cs, d, _data) = hub("");
    // A short timeout, set by a reload once the first backup is done.
    let text = std::fs::read_to_string(&d.config).unwrap();
    save_like_an_editor(
        &d.config,
        &text.replace(
            "interval = \"1h\"\n",
            "interval = \"1h\"\ntimeout = \"2s\"\n",
        ),
    );
    wait_for(Duration::from_secs(10), "the reload", || {
        d.log().contains("config reloaded")
    });
    cs.s3.signal(Signal::SIGSTOP);
    assert_eq!(post(&d.socket, "/v1/backup").status, 202);
    let s = d.wait_status_within(BACKUP_WAIT, "the timeout", |s| {
        s["backup"]["state"] == "failed"
    });
    cs.s3.signal(Signal::SIGCONT);
    assert!(
        s["backup"]["last_error"]
            .as_str()
            .unwrap()
            .contains("backup_timeout"),
        "{s:#}"
    );
    wait_for(Duration::from_secs(40), "rustic to be gone", || {
        rustic_pids(&profile(&d)).is_empty()
    });
}

#[test]
fn disabling_stops_a_running_backup() {
    let (cs, d, _data) = hub("");
    cs.s3.signal(Signal::SIGSTOP);
    assert_eq!(post(&d.socket, "/v1/backup").status, 202);
    d.wait_status_within(BACKUP_WAIT, "running", |s| {
        s["backup"]["state"] == "running"
    });
    let text = std::fs::read_to_string(&d.config).unwrap().replacen(
        "enabled = true",
        "enabled = false",
        1,
    );
    save_like_an_editor(&d.config, &text);
    cs.s3.signal(Signal::SIGCONT);
    let s = d.wait_status_within(BACKUP_WAIT, "disabled", |s| {
        s["state"] == "disabled" && s["backup"]["state"] == "disabled"
    });
    assert!(
        s["backup"]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("backup_stopped")
            || s["backup"]["last_error"].is_null(),
        "{s:#}"
    );
    wait_for(Duration::from_secs(40), "rustic to be gone", || {
        rustic_pids(&profile(&d)).is_empty()
    });
}

#[test]
fn rustic_missing_and_overdue_degrade_with_hints_and_retry_with_backoff() {
    let cs = ControlService::start();
    let dir = open_tempdir();
    std::fs::write(dir.path().join("control-token"), CONTROL_TOKEN).unwrap();
    // A last success three days ago: overdue at once (interval 1d).
    let secrets_dir = dir.path().join("state/secrets");
    std::fs::create_dir_all(&secrets_dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secrets_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let long_ago =
        humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(3 * 86400))
            .to_string();
    std::fs::write(
        secrets_dir.join("backup-state.json"),
        format!("{{\"last_success\":\"{long_ago}\",\"last_snapshot_id\":\"abc\"}}"),
    )
    .unwrap();
    let data = dir.path().join("data");
    make_data(&data);
    let cfg = managed_config(&cs.url, free_port(), "").replace(
        "[backup]\nenabled = false\n",
        &format!("[backup]\nenabled = true\nrustic = \"/nonexistent/rustic\"\npaths = [\"{}\"]\ninterval = \"24h\"\n", data.display()),
    );
    let sdir = dir.path().join("standin");
    std::fs::create_dir(&sdir).unwrap();
    write_edge(&sdir, &cfg);
    let d = Daemon::spawn(
        dir,
        &cfg,
        &[("CLOUDFLARED_STANDIN_DIR", sdir.to_str().unwrap())],
    );
    d.wait_serving();
    let s = d.wait_status_within(BACKUP_WAIT, "failed and overdue", |s| {
        s["backup"]["state"] == "failed" && s["errors"].to_string().contains("backup_overdue")
    });
    assert_eq!(s["state"], "degraded", "{s:#}");
    let missing = s["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["code"] == "rustic_missing")
        .expect("rustic_missing");
    assert!(missing["hint"].as_str().unwrap().contains("install rustic"));
    // Retried later, not in a loop: the next run is a minute away and no second
    // attempt happens meanwhile.
    let next = humantime::parse_rfc3339(s["backup"]["next_run"].as_str().unwrap()).unwrap();
    assert!(next > SystemTime::now() + Duration::from_secs(30), "{s:#}");
    let failures = |d: &Daemon| {
        get(&d.socket, "/metrics")
            .text()
            .lines()
            .find(|l| l.starts_with("hubkeeper_backup_failures "))
            .map(str::to_owned)
    };
    assert_eq!(failures(&d).as_deref(), Some("hubkeeper_backup_failures 1"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(failures(&d).as_deref(), Some("hubkeeper_backup_failures 1"));
}

#[test]
fn a_missed_run_is_caught_up_at_start() {
    let (_cs, mut d, _data) = hub("");
    let first = d.status()["backup"]["last_snapshot_id"].clone();
    d.signal(Signal::SIGTERM);
    d.wait_exit();
    // Pretend the last success was two intervals ago.
    let path = secrets(&d).join("backup-state.json");
    let mut st: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
    st["last_success"] =
        humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(2 * 3600))
            .to_string()
            .into();
    std::fs::write(&path, serde_json::to_vec(&st).unwrap()).unwrap();
    let d = restart(d);
    d.wait_status_within(BACKUP_WAIT, "the caught-up backup", |s| {
        s["backup"]["last_snapshot_id"] != first && s["backup"]["state"] == "idle"
    });
}

#[test]
fn unreadable_files_make_a_partial_backup_with_their_count() {
    if !is_root() {
        eprintln!("skipped: needs root to run the daemon as another user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    const NOBODY: u32 = 65534;
    let cs = ControlService::start();
    let dir = open_tempdir();
    let root = dir.path().to_path_buf();
    std::fs::write(root.join("control-token"), CONTROL_TOKEN).unwrap();
    let data = root.join("data");
    make_data(&data);
    // Root's file, unreadable for the daemon's user: rustic only WARNs and exits 0.
    std::fs::write(data.join("private.db"), "not for hubkeeper").unwrap();
    std::fs::set_permissions(
        data.join("private.db"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::create_dir(root.join("standin")).unwrap();
    std::fs::create_dir(root.join("cache")).unwrap();
    let cfg = managed_config(&cs.url, free_port(), "")
        .replace("[backup]\nenabled = false\n", &backup_section(&data, ""));
    std::fs::write(root.join("hk.toml"), &cfg).unwrap();
    write_edge(&root.join("standin"), &cfg);
    // Everything else belongs to the daemon's user, as the package would arrange.
    chown_tree(&root, NOBODY, &data.join("private.db"));
    let env = [
        (
            "CLOUDFLARED_STANDIN_DIR",
            root.join("standin").to_str().unwrap().to_owned(),
        ),
        (
            "CACHE_DIRECTORY",
            root.join("cache").to_str().unwrap().to_owned(),
        ),
        ("HOME", root.to_str().unwrap().to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = Daemon::spawn_as(dir, root.join("hk.toml"), &env, Some(NOBODY));
    d.wait_serving();
    let s = d.wait_status_within(BACKUP_WAIT, "a partial backup", |s| {
        s["errors"].to_string().contains("backup_partial")
    });
    assert!(
        s["backup"]["last_snapshot_id"].is_string(),
        "the snapshot exists: {s:#}"
    );
    assert_eq!(s["backup"]["state"], "idle");
    let e = s["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["code"] == "backup_partial")
        .unwrap();
    assert!(
        e["message"].as_str().unwrap().contains("1 warnings")
            || e["message"].as_str().unwrap().contains("warnings"),
        "{e}"
    );
    assert!(e["hint"].as_str().unwrap().contains("unreadable"));
    assert_eq!(s["state"], "degraded");
}

fn chown_tree(p: &Path, uid: u32, except: &Path) {
    if p != except {
        nix::unistd::chown(
            p,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(uid)),
        )
        .unwrap();
    }
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            chown_tree(&e.path(), uid, except);
        }
    }
}

/// `POST /v1/rotate-keys` answers only when the rotation is done (spec §9): the rustic
/// profile an admin uses already holds the new key, and an R2 check with the new keys
/// has run. Health checks run hourly here, so the only check after the request is the
/// one the rotation caused.
#[test]
fn rotate_keys_answers_when_the_profile_and_an_r2_check_use_the_new_keys() {
    let cs = ControlService::start();
    let data = tempfile::tempdir().unwrap().keep();
    make_data(&data);
    let cfg = managed_config(&cs.url, free_port(), "")
        .replace("[backup]\nenabled = false\n", &backup_section(&data, ""))
        .replace("[health]\ninterval = \"1s\"", "[health]\ninterval = \"1h\"");
    assert!(cfg.contains("interval = \"1h\"\ndns_resolver"), "{cfg}");
    let (d, _st) = start_managed(&cfg, "");
    let s = d.wait_status_within(BACKUP_WAIT, "the first backup and check", |s| {
        s["backup"]["last_snapshot_id"].is_string() && s["checks"]["r2"]["ok"] == true
    });
    let first_check = humantime::parse_rfc3339(s["checks"]["r2"]["at"].as_str().unwrap()).unwrap();
    // Status times have one-second resolution: start in a later second than that check.
    wait_for(Duration::from_secs(3), "the next second", || {
        SystemTime::now() >= first_check + Duration::from_secs(1)
    });
    let asked = SystemTime::now();
    let old_key = std::fs::read_to_string(secrets(&d).join("rustic/profile.toml")).unwrap();

    let r = post(&d.socket, "/v1/rotate-keys");
    assert_eq!(r.status, 200, "{}", r.text());

    // Checked right at the answer, with no waiting: the answer is the promise.
    let enrollment: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(secrets(&d).join("enrollment.json")).unwrap(),
    )
    .unwrap();
    let new_key = enrollment["r2_access_key_id"].as_str().unwrap();
    let profile = std::fs::read_to_string(secrets(&d).join("rustic/profile.toml")).unwrap();
    assert!(
        profile.contains(new_key),
        "profile still has the old key:\n{profile}"
    );
    assert_ne!(profile, old_key);
    let body = r.json();
    let checked = humantime::parse_rfc3339(body["checks"]["r2"]["at"].as_str().unwrap()).unwrap();
    assert!(
        checked + Duration::from_secs(1) > asked,
        "the answer's R2 check ({checked:?}) is older than the request ({asked:?}): {body:#}"
    );
    // The admin's rustic works with the profile at once.
    let out = admin_rustic(&d, &["snapshots", "--json"]);
    assert!(
        out.contains(s["backup"]["last_snapshot_id"].as_str().unwrap()),
        "{out}"
    );
}

/// rustic runs at `backup.nice` and with its `oom_score_adj` at 0 whatever hubkeeper's
/// own is (children inherit it; the unit sets -500 so that under memory pressure the
/// OOM killer takes the backup, not the tunnel). Lowering a score needs privilege this
/// test may lack, so it moves the daemon's the other way (300): rustic must still run
/// at 0. A stand-in rustic records what it was given.
#[test]
fn rustic_runs_niced_and_with_its_own_oom_score() {
    let cs = ControlService::start();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    let fake = dir.path().join("rustic");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$(cat /proc/self/oom_score_adj) $(cut -d' ' -f19 /proc/self/stat)\" >> {}\nexit 3\n",
            record.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let section = format!(
        "[backup]\nenabled = true\nrustic = \"{}\"\npaths = [\"{}\"]\ninterval = \"1h\"\nnice = 7\n",
        fake.display(),
        dir.path().display()
    );
    let cfg =
        managed_config(&cs.url, free_port(), "").replace("[backup]\nenabled = false\n", &section);
    let (d, _st) = start_managed(&cfg, "");
    // For every child forked from now on, as the unit's OOMScoreAdjust= does.
    std::fs::write(format!("/proc/{}/oom_score_adj", d.child.id()), "300").unwrap();
    d.wait_status_within(BACKUP_WAIT, "the first (failing) run", |s| {
        s["backup"]["state"] == "failed"
    });
    let runs = || {
        std::fs::read_to_string(&record)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before = runs();
    assert_eq!(post(&d.socket, "/v1/backup").status, 202);
    wait_for(BACKUP_WAIT, "a run after the adjustment", || {
        runs() > before
    });
    let text = std::fs::read_to_string(&record).unwrap();
    assert_eq!(
        text.lines().last().unwrap(),
        "0 7",
        "oom_score_adj and nice of rustic:\n{text}"
    );
    let daemon_adj =
        std::fs::read_to_string(format!("/proc/{}/oom_score_adj", d.child.id())).unwrap();
    assert_eq!(daemon_adj.trim(), "300");
}

/// A stand-in rustic from a shell script: `body` runs after it records its process
/// group (`$$`: rustic leads its own group) in `<dir>/groups`, one line per run.
fn fake_rustic(dir: &Path, body: &str) -> PathBuf {
    let fake = dir.join("rustic");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho $$ >> {}\n{body}\n",
            dir.join("groups").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    fake
}

fn fake_hub(dir: &Path, fake: &Path, extra: &str) -> (ControlService, Daemon) {
    let cs = ControlService::start();
    let section = format!(
        "[backup]\nenabled = true\nrustic = \"{}\"\npaths = [\"{}\"]\ninterval = \"1h\"\n{extra}",
        fake.display(),
        dir.display()
    );
    let cfg =
        managed_config(&cs.url, free_port(), "").replace("[backup]\nenabled = false\n", &section);
    let (d, _st) = start_managed(&cfg, "");
    (cs, d)
}

/// The process groups the stand-in rustic ran in, oldest first.
fn groups(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("groups"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Live (not zombie) processes in process group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // After the command name's closing parenthesis: state, ppid, pgrp.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && f[0] != "Z" && f[2].parse() == Ok(pgid) {
            out.push(pid);
        }
    }
    out
}

/// Issue 8: a rustic that exits but leaves a background process holding its stdout
/// kept the backup "running" past `backup.timeout` (the run waited for the pipe to
/// close, outside the deadline), every `POST /v1/backup` answered 409, and SIGTERM
/// hung. The deadline covers the pipes, and the whole group is killed.
#[test]
fn a_background_process_holding_rustics_stdout_ends_at_the_timeout_and_dies_with_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_rustic(dir.path(), "sleep 1000 &\nexit 0");
    let (_cs, mut d) = fake_hub(dir.path(), &fake, "timeout = \"3s\"\n");
    let s = d.wait_status_within(Duration::from_secs(60), "the timeout", |s| {
        s["backup"]["state"] == "failed"
    });
    assert!(
        s["backup"]["last_error"]
            .as_str()
            .unwrap()
            .contains("backup_timeout"),
        "{s:#}"
    );
    let first = groups(dir.path())[0];
    wait_for(
        Duration::from_secs(40),
        "the first group to be gone",
        || group_members(first).is_empty(),
    );
    // Not stuck "running": a new backup is accepted.
    let r = post(&d.socket, "/v1/backup");
    assert_eq!(r.status, 202, "{}", r.text());
    wait_for(Duration::from_secs(20), "the second run", || {
        groups(dir.path()).len() >= 2 && !group_members(groups(dir.path())[1]).is_empty()
    });
    let second = groups(dir.path())[1];
    // SIGTERM during a run whose background process holds the pipe.
    d.signal(Signal::SIGTERM);
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = d.pid();
    std::thread::spawn(move || {
        // Polls /proc: the test thread keeps `d` to read the exit status after.
        while Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(45))
        .expect("the daemon to exit after SIGTERM");
    let status = d.wait_exit();
    assert!(status.success(), "{status:?}\n{}", d.log());
    wait_for(
        Duration::from_secs(10),
        "the second group to be gone",
        || group_members(second).is_empty(),
    );
}

/// Issue 8: rustic's stdout was read whole into memory. A flood with no newline ends
/// the run with a clear failure once over the cap, and the daemon's memory stays
/// bounded.
#[test]
fn a_rustic_flooding_stdout_fails_cleanly_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    // The first run fails at once; once `flood` exists, a run prints 64 MiB without a
    // newline and exits 0 as a rustic that "succeeded".
    let fake = fake_rustic(
        dir.path(),
        &format!(
            "[ -e {} ] || exit 3\nhead -c 67108864 /dev/zero | tr '\\0' x\nexit 0",
            dir.path().join("flood").display()
        ),
    );
    let (_cs, d) = fake_hub(dir.path(), &fake, "");
    d.wait_status_within(Duration::from_secs(60), "the first run", |s| {
        s["backup"]["state"] == "failed"
    });
    let pid = d.pid().as_raw();
    // Resets the peak (VmHWM) to the current RSS: the flood's peak is measured alone.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let before = testkit::procfs::Memory::read(pid).unwrap();
    std::fs::write(dir.path().join("flood"), "").unwrap();
    assert_eq!(post(&d.socket, "/v1/backup").status, 202);
    let s = d.wait_status_within(Duration::from_secs(90), "the flood's failure", |s| {
        groups(dir.path()).len() >= 2
            && s["backup"]["state"] == "failed"
            && s["backup"]["last_error"].to_string().contains("stdout")
    });
    let err = s["backup"]["last_error"].as_str().unwrap();
    assert!(err.contains("backup_failed"), "{s:#}");
    let after = testkit::procfs::Memory::read(pid).unwrap();
    let grown_kib = after.vm_hwm.saturating_sub(before.vm_rss);
    eprintln!(
        "daemon RSS before {} KiB, peak {} KiB during a 64 MiB flood",
        before.vm_rss, after.vm_hwm
    );
    assert!(
        grown_kib < 24 * 1024,
        "the daemon's peak RSS grew by {grown_kib} KiB"
    );
    assert!(
        s["errors"].to_string().len() < 16 * 1024,
        "the flood is not copied into errors[]"
    );
    wait_for(
        Duration::from_secs(40),
        "the flood's group to be gone",
        || group_members(groups(dir.path())[1]).is_empty(),
    );
}

fn metric(d: &Daemon, prefix: &str) -> Option<String> {
    get(&d.socket, "/metrics")
        .text()
        .lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_owned)
}

/// Issue 8 item 5: a verify (`rustic check --read-data-subset`) runs once a backup
/// exists, sets `last_verified` (status, metrics, `hubkeeper status`), and the time is
/// kept across a restart like `last_success`.
#[test]
fn a_verify_runs_after_the_first_backup_and_last_verified_survives_a_restart() {
    let (_cs, mut d, _data) = hub("verify_subset = \"1/1\"\n");
    let s = d.wait_status_within(BACKUP_WAIT, "the first verify", |s| {
        s["backup"]["last_verified"].is_string()
    });
    let verified = s["backup"]["last_verified"].clone();
    assert_eq!(s["backup"]["verify_state"], "idle", "{s:#}");
    // The default interval is a week.
    let next = humantime::parse_rfc3339(s["backup"]["next_verify"].as_str().unwrap()).unwrap();
    assert!(
        next > SystemTime::now() + Duration::from_secs(6 * 86400),
        "{s:#}"
    );
    assert!(!s["errors"].to_string().contains("verify"), "{s:#}");
    assert_eq!(
        metric(&d, "hubkeeper_backup_verify_total{result=\"ok\"}").as_deref(),
        Some("hubkeeper_backup_verify_total{result=\"ok\"} 1")
    );
    assert!(
        !metric(&d, "hubkeeper_backup_last_verified_timestamp_seconds")
            .unwrap()
            .ends_with(" 0.0"),
    );
    let (code, out, _) = cli(&["status", "--socket", d.socket.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  verify  idle, last verified "), "{out}");

    d.signal(Signal::SIGTERM);
    d.wait_exit();
    let d = restart(d);
    let s = d.wait_status_within(BACKUP_WAIT, "the status after the restart", |s| {
        s["backup"]["verify_state"] == "idle"
    });
    assert_eq!(s["backup"]["last_verified"], verified, "{s:#}");
    assert_eq!(
        metric(&d, "hubkeeper_backup_verify_total{result=\"ok\"}").as_deref(),
        Some("hubkeeper_backup_verify_total{result=\"ok\"} 1")
    );
}

/// The data files (packs) of the hub's repository in the S3 stand-in's storage.
fn data_packs(cs: &ControlService) -> Vec<PathBuf> {
    walk(&cs.s3.data)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/hubkeeper/hub-1/data/"))
        .collect()
}

/// A damaged pack in the store makes the verify fail, with the error and a hint in
/// status, a failed `verify_state`, and the failure counted.
#[test]
fn a_damaged_pack_fails_the_verify_with_the_error_in_status() {
    let (cs, d, _data) = hub("verify_interval = \"10s\"\nverify_subset = \"100%\"\n");
    d.wait_status_within(BACKUP_WAIT, "the first verify", |s| {
        s["backup"]["last_verified"].is_string()
    });
    let packs = data_packs(&cs);
    assert!(
        !packs.is_empty(),
        "no data pack under {}",
        cs.s3.data.display()
    );
    for p in &packs {
        let mut bytes = std::fs::read(p).unwrap();
        let mid = bytes.len() / 2;
        let end = (mid + 16).min(bytes.len());
        for b in &mut bytes[mid..end] {
            *b ^= 0xff;
        }
        std::fs::write(p, bytes).unwrap();
    }
    let s = d.wait_status_within(BACKUP_WAIT, "a failed verify", |s| {
        s["backup"]["verify_state"] == "failed"
    });
    let e = s["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["code"] == "backup_verify_failed")
        .unwrap_or_else(|| panic!("no backup_verify_failed in {s:#}"));
    assert_eq!(e["component"], "backup");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("rustic check failed"),
        "{e}"
    );
    assert!(e["hint"].as_str().unwrap().contains("repair index"), "{e}");
    assert!(
        !e["message"].as_str().unwrap().contains("<unknown>"),
        "no backtrace: {e}"
    );
    assert_eq!(s["state"], "degraded", "{s:#}");
    assert_eq!(
        metric(&d, "hubkeeper_backup_verify_total{result=\"failed\"}").as_deref(),
        Some("hubkeeper_backup_verify_total{result=\"failed\"} 1")
    );
    // Turning verifies off clears what they reported.
    let text = std::fs::read_to_string(&d.config).unwrap();
    save_like_an_editor(
        &d.config,
        &text.replace("verify_interval = \"10s\"", "verify_interval = \"off\""),
    );
    let s = d.wait_status_within(BACKUP_WAIT, "verifies off", |s| {
        s["backup"]["verify_state"] == "disabled"
    });
    assert!(
        !s["errors"].to_string().contains("backup_verify_failed"),
        "{s:#}"
    );
    assert_eq!(s["backup"]["next_verify"], serde_json::Value::Null, "{s:#}");
}

/// A verify and a backup never run at once: a wrapper around the real rustic records
/// each call's start and end and notes any call that starts while another runs; the
/// verify waits at a gate the test opens, and a backup asked for meanwhile is queued
/// (202) and starts only after the verify ends.
#[test]
fn a_backup_asked_for_during_a_verify_is_queued_and_never_overlaps_it() {
    let dir = tempfile::tempdir().unwrap();
    let d_ = dir.path().display();
    let wrapper = dir.path().join("rustic");
    std::fs::write(
        &wrapper,
        format!(
            r#"#!/bin/sh
case " $* " in *" check "*) what=check ;; *" forget "*) what=forget ;; *" backup "*) what=backup ;; *) what=other ;; esac
[ -e {d_}/busy ] && echo "OVERLAP $what" >> {d_}/calls
touch {d_}/busy
echo "start $what" >> {d_}/calls
if [ $what = check ]; then while [ ! -e {d_}/release ]; do sleep 0.1; done; fi
{real} "$@"
rc=$?
rm -f {d_}/busy
echo "end $what $rc" >> {d_}/calls
exit $rc
"#,
            real = rustic_bin().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    make_data(&data);
    let cs = ControlService::start();
    let section = format!(
        "[backup]\nenabled = true\nrustic = \"{}\"\npaths = [\"{}\"]\ninterval = \"1h\"\nverify_subset = \"1/1\"\n",
        wrapper.display(),
        data.display()
    );
    let cfg =
        managed_config(&cs.url, free_port(), "").replace("[backup]\nenabled = false\n", &section);
    let (d, _st) = start_managed(&cfg, "");
    let calls = || std::fs::read_to_string(dir.path().join("calls")).unwrap_or_default();
    let s = d.wait_status_within(BACKUP_WAIT, "the verify at the gate", |s| {
        s["backup"]["verify_state"] == "running" && calls().contains("start check")
    });
    assert_ne!(s["backup"]["state"], "running", "{s:#}");
    let first = s["backup"]["last_snapshot_id"].clone();
    assert!(first.is_string(), "{s:#}");
    let r = post(&d.socket, "/v1/backup");
    assert_eq!(r.status, 202, "queued: {}", r.text());
    // Queued, not started: the verify still holds the only place.
    let s = d.status();
    assert_eq!(s["backup"]["verify_state"], "running", "{s:#}");
    assert_ne!(s["backup"]["state"], "running", "{s:#}");
    assert_eq!(calls().matches("start backup").count(), 1, "{}", calls());
    std::fs::write(dir.path().join("release"), "").unwrap();
    d.wait_status_within(BACKUP_WAIT, "the queued backup", |s| {
        s["backup"]["last_snapshot_id"] != first && s["backup"]["state"] == "idle"
    });
    let log = calls();
    assert!(!log.contains("OVERLAP"), "{log}");
    let lines: Vec<&str> = log.lines().collect();
    let end_check = lines
        .iter()
        .position(|l| l.starts_with("end check"))
        .unwrap();
    let second_backup = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("start backup"))
        .nth(1)
        .map(|(i, _)| i)
        .unwrap();
    assert!(end_check < second_backup, "{log}");
    assert!(lines[end_check].ends_with(" 0"), "the verify passed: {log}");
}
