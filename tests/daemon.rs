//! The real daemon process: start-up refusals, the socket's life, signals, and config
//! reloads by file change and SIGHUP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use nix::sys::signal::Signal;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;
use support::*;
use testkit as support;

#[test]
fn serves_every_pinned_status_key_and_stops_cleanly_on_sigterm() {
    let mut d = Daemon::start("");
    let s = d.status();
    for k in hubkeeper::status::PINNED_KEYS {
        assert!(s.get(k).is_some(), "missing {k} in {s:#}");
    }
    assert_eq!(s["state"], "disabled");
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    let h = get(&d.socket, "/v1/health");
    assert_eq!(h.status, 503);
    assert_eq!(h.json(), serde_json::json!({"state": "disabled"}));

    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    let secrets = d.dir.path().join("state/secrets");
    assert_eq!(std::fs::metadata(&secrets).unwrap().mode() & 0o777, 0o700);

    d.signal(Signal::SIGTERM);
    let st = d.wait_exit();
    assert_eq!(st.code(), Some(0), "{}", d.log());
    assert!(!d.socket.exists(), "socket must be removed on exit");
    assert!(d.log().contains("SIGTERM"), "{}", d.log());
}

#[test]
fn sigint_also_shuts_down_gracefully() {
    let mut d = Daemon::start("");
    d.signal(Signal::SIGINT);
    assert_eq!(d.wait_exit().code(), Some(0));
    assert!(!d.socket.exists());
}

const SELF_MANAGED: &str = "enabled = true\nmode = \"self-managed\"\nhub_id = \"hub-7f3a\"\n[self_managed]\naccount_id = \"a\"\napi_token_file = \"tok\"\nzone = \"example.com\"\nhostname = \"hub.example.com\"\n";

#[test]
fn enabled_mode_reports_error_honestly_until_implemented() {
    let d = Daemon::start_with_files(SELF_MANAGED, &[("tok", "cf-token")]);
    let s = d.status();
    assert_eq!(s["state"], "error");
    assert_eq!(s["enabled"], true);
    assert_eq!(s["mode"], "self-managed");
    assert_eq!(s["hub_id"], "hub-7f3a");
    let e = &s["errors"][0];
    assert_eq!(e["code"], "mode_not_available");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("not available in this build")
    );
    assert!(!e["hint"].as_str().unwrap().is_empty());
}

#[test]
fn socket_mode_and_group_are_applied() {
    if !is_root() {
        eprintln!("skipped: chown to another group needs root");
        return;
    }
    // `daemon` (gid 1) exists on every Debian system.
    let d = Daemon::start("socket_mode = \"0640\"\nsocket_group = \"daemon\"\n");
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640);
    assert_eq!(meta.gid(), 1);
}

#[test]
fn unknown_socket_group_is_refused_with_a_clear_error() {
    let mut d = Daemon::spawn(
        open_tempdir(),
        &format!("{BASE}socket_group = \"no-such-group-xyz\"\n"),
        &[],
    );
    assert_eq!(d.wait_exit().code(), Some(1));
    assert!(
        d.log()
            .contains("socket_group \"no-such-group-xyz\" does not exist"),
        "{}",
        d.log()
    );
}

#[test]
fn a_stale_socket_is_replaced() {
    let dir = open_tempdir();
    std::fs::create_dir(dir.path().join("run")).unwrap();
    // Bind and drop a listener: the file stays, nobody listens.
    let stale = dir.path().join("run/hk.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let d = Daemon::spawn(dir, BASE, &[]);
    d.wait_serving();
    assert_eq!(d.status()["state"], "disabled");
    assert!(d.log().contains("stale socket"), "{}", d.log());
}

#[test]
fn a_socket_in_use_by_a_live_daemon_is_refused() {
    let first = Daemon::start("");
    // A second daemon with the same socket path, but its own secrets dir.
    let dir2 = open_tempdir();
    let cfg = format!(
        "socket = \"{}\"\nsecrets_dir = \"state/secrets\"\n",
        first.socket.display()
    );
    let mut second = Daemon::spawn(dir2, &cfg, &[]);
    assert_eq!(second.wait_exit().code(), Some(1));
    assert!(
        second.log().contains("is in use by a running daemon"),
        "{}",
        second.log()
    );
    // The first one is untouched.
    assert_eq!(first.status()["state"], "disabled");
}

#[test]
fn a_regular_file_at_the_socket_path_is_not_deleted() {
    let dir = open_tempdir();
    std::fs::create_dir(dir.path().join("run")).unwrap();
    std::fs::write(dir.path().join("run/hk.sock"), "precious").unwrap();
    let mut d = Daemon::spawn(dir, BASE, &[]);
    assert_eq!(d.wait_exit().code(), Some(1));
    assert!(
        d.log().contains("exists and is not a socket"),
        "{}",
        d.log()
    );
    assert_eq!(
        std::fs::read_to_string(d.dir.path().join("run/hk.sock")).unwrap(),
        "precious"
    );
}

#[test]
fn socket_dir_that_cannot_be_created() {
    let dir = open_tempdir();
    // "run" is a file, so run/hk.sock's directory cannot exist.
    std::fs::write(dir.path().join("run"), "").unwrap();
    let mut d = Daemon::spawn(dir, BASE, &[]);
    assert_eq!(d.wait_exit().code(), Some(1));
    assert!(
        d.log().contains("cannot create the socket directory"),
        "{}",
        d.log()
    );
}

#[test]
fn secrets_dir_with_a_wide_mode_is_refused() {
    let dir = open_tempdir();
    let s = dir.path().join("state/secrets");
    std::fs::create_dir_all(&s).unwrap();
    std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o750)).unwrap();
    let mut d = Daemon::spawn(dir, BASE, &[]);
    assert_eq!(d.wait_exit().code(), Some(1));
    assert!(
        d.log().contains("has mode 0750") && d.log().contains("chmod 700"),
        "{}",
        d.log()
    );
    assert!(
        !d.dir.path().join("run/hk.sock").exists(),
        "must refuse before serving"
    );
}

#[test]
fn secrets_dir_owned_by_someone_else_is_refused() {
    if !is_root() {
        eprintln!("skipped: chown needs root");
        return;
    }
    let dir = open_tempdir();
    let s = dir.path().join("state/secrets");
    std::fs::create_dir_all(&s).unwrap();
    std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o700)).unwrap();
    nix::unistd::chown(&s, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let mut d = Daemon::spawn(dir, BASE, &[]);
    assert_eq!(d.wait_exit().code(), Some(1));
    assert!(d.log().contains("is owned by uid 65534"), "{}", d.log());
}

const BAD_EDIT: &str = "enabled = true\n[health]\ninterval = \"often\"\n";

#[test]
fn editing_the_file_reloads_without_a_signal() {
    let d = Daemon::start("");
    assert_eq!(d.status()["state"], "disabled");
    std::fs::write(d.dir.path().join("tok"), "t").unwrap();
    save_like_an_editor(
        &d.config,
        &format!(
            "{BASE}enabled = true\nmode = \"self-managed\"\nhub_id = \"hub-2\"\n[self_managed]\naccount_id = \"a\"\napi_token_file = \"tok\"\nzone = \"example.com\"\nhostname = \"h.example.com\"\n"
        ),
    );
    let s = d.wait_status("the enabled config", |s| s["enabled"] == true);
    assert_eq!(s["hub_id"], "hub-2");
    assert_eq!(s["state"], "error");
}

#[test]
fn an_invalid_edit_is_refused_and_the_last_good_config_stays() {
    let d = Daemon::start("hub_id = \"hub-good\"\n");
    save_like_an_editor(&d.config, &format!("{BASE}{BAD_EDIT}"));
    let s = d.wait_status("config errors", |s| {
        s["errors"].as_array().is_some_and(|e| !e.is_empty())
    });
    // Still the old config: disabled, old hub id.
    assert_eq!(s["enabled"], false);
    assert_eq!(s["hub_id"], "hub-good");
    let errors = s["errors"].as_array().unwrap();
    assert!(errors.iter().all(|e| e["component"] == "config"), "{s:#}");
    let text = serde_json::to_string(errors).unwrap();
    assert!(
        text.contains("hk.toml:5:12: health.interval: invalid duration"),
        "{text}"
    );
    assert!(
        d.log()
            .contains("the new config is invalid and was not applied"),
        "{}",
        d.log()
    );

    // A good config clears them.
    save_like_an_editor(&d.config, &format!("{BASE}hub_id = \"hub-new\"\n"));
    let s = d.wait_status("errors cleared", |s| {
        s["errors"].as_array().is_some_and(|e| e.is_empty())
    });
    assert_eq!(s["hub_id"], "hub-new");
}

#[test]
fn sighup_reloads_an_in_place_write() {
    let d = Daemon::start("");
    // Overwrite in place (not rename) and signal; the watcher would also see it, but
    // SIGHUP must work on its own: check the log says SIGHUP.
    std::fs::write(&d.config, format!("{BASE}hub_id = \"hub-hup\"\n")).unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_status("hub id after SIGHUP", |s| s["hub_id"] == "hub-hup");
    wait_for(Duration::from_secs(5), "SIGHUP in log", || {
        d.log().contains("SIGHUP")
    });
}

#[test]
fn a_symlink_swap_is_seen() {
    let dir = open_tempdir();
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    std::fs::write(&a, format!("{BASE}hub_id = \"hub-a\"\n")).unwrap();
    std::fs::write(&b, format!("{BASE}hub_id = \"hub-b\"\n")).unwrap();
    let link = dir.path().join("hk.toml");
    std::os::unix::fs::symlink(&a, &link).unwrap();
    let d = Daemon::spawn_at(dir, link.clone(), &[]);
    d.wait_serving();
    assert_eq!(d.status()["hub_id"], "hub-a");
    // Swap atomically: new link, renamed over the old one.
    let tmp = d.dir.path().join("hk.toml.new");
    std::os::unix::fs::symlink(&b, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    d.wait_status("hub id from the new link target", |s| {
        s["hub_id"] == "hub-b"
    });
}
