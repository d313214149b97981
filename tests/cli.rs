//! The command line: `check-config` and `run` on every kind of bad config, exit codes
//! (0, 78, 69, 1), and `status` without a daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use support::*;
use testkit as support;

fn check(config: &str) -> (i32, String, String) {
    let d = open_tempdir();
    let p = d.path().join("hk.toml");
    std::fs::write(&p, config).unwrap();
    let out = cli(&["check-config", "--config", p.to_str().unwrap()]);
    // Keep the dir alive until the command ran.
    drop(d);
    out
}

#[test]
fn valid_config_exits_0() {
    let (code, out, err) = check("enabled = false\n");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn missing_config_file_exits_78_with_a_hint() {
    let (code, _, err) = cli(&["check-config", "--config", "/nonexistent/hk.toml"]);
    assert_eq!(code, 78);
    assert!(
        err.contains("/nonexistent/hk.toml: cannot read the config file"),
        "{err}"
    );
    assert!(err.contains("config.example.toml"), "{err}");
}

#[test]
fn config_path_comes_from_the_environment_too() {
    let d = open_tempdir();
    let p = d.path().join("hk.toml");
    std::fs::write(&p, "bogus = 1\n").unwrap();
    let out = std::process::Command::new(&*BIN)
        .arg("check-config")
        .env("HUBKEEPER_CONFIG", &p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hk.toml:1:1: bogus"));
}

#[test]
fn toml_syntax_error_has_line_and_column() {
    let (code, _, err) = check("enabled = false\nmode = \"managed\n");
    assert_eq!(code, 78);
    assert!(err.contains("hk.toml:2:"), "{err}");
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let (code, _, err) =
        check("enabled = false\n[tunnel]\norigin = \"http://127.0.0.1:8080\"\nmetrics_port = 5\n");
    assert_eq!(code, 78);
    assert!(
        err.contains("hk.toml:4:1: tunnel.metrics_port: unknown field `metrics_port`"),
        "{err}"
    );
    assert!(err.contains("expected one of"), "{err}");
}

#[test]
fn wrong_type_says_what_is_expected() {
    let (code, _, err) = check("enabled = \"yes\"\n");
    assert_eq!(code, 78);
    assert!(
        err.contains("hk.toml:1:11: enabled: invalid type: string \"yes\", expected a boolean"),
        "{err}"
    );
}

#[test]
fn bad_duration_says_how_to_write_one() {
    let (code, _, err) =
        check("[tunnel]\ngrace_period = \"30 seconds please\"\nready_timeout = \"60\"\n");
    assert_eq!(code, 78);
    assert!(
        err.contains("hk.toml:2:16: tunnel.grace_period: invalid duration"),
        "{err}"
    );
    assert!(
        err.contains("hk.toml:3:17: tunnel.ready_timeout: \"60\" has no unit"),
        "{err}"
    );
    assert!(err.contains("2 problems"), "{err}");
}

#[test]
fn missing_section_for_the_mode() {
    let (code, _, err) = check("enabled = true\nmode = \"self-managed\"\nhub_id = \"hub-1\"\n");
    assert_eq!(code, 78);
    assert!(
        err.contains(
            "hk.toml:2:1: self_managed: mode = \"self-managed\" needs a [self_managed] section"
        ),
        "{err}"
    );
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let (code, _, err) = check(
        "enabled = true\nsocket_mode = \"rw\"\n[health]\ninterval = \"soon\"\n[backup]\nkeep_daily = -1\n[disable]\nretention = 3\n",
    );
    assert_eq!(code, 78);
    for needle in [
        "socket_mode: invalid mode",
        "health.interval: invalid duration",
        "backup.keep_daily: invalid value: integer `-1`",
        "disable.retention: unknown field",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

fn managed(token_line: &str) -> String {
    format!(
        "enabled = true\nmode = \"managed\"\nhub_id = \"hub-1\"\n[managed]\nurl = \"http://127.0.0.1:9\"\naccount_id = \"a\"\nlicense_id = \"l\"\n{token_line}"
    )
}

#[test]
fn unreadable_secret_file_is_a_config_error() {
    // A directory cannot be read as a file, even by root.
    let d = open_tempdir();
    std::fs::create_dir(d.path().join("token-dir")).unwrap();
    let p = d.path().join("hk.toml");
    std::fs::write(&p, managed("token_file = \"token-dir\"\n")).unwrap();
    let (code, _, err) = cli(&["check-config", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 78);
    assert!(err.contains("managed.token_file: cannot read"), "{err}");
    assert!(err.contains("token-dir"), "{err}");
}

#[test]
fn secret_file_unreadable_for_the_daemon_user() {
    if !is_root() {
        eprintln!("skipped: needs root to run the CLI as another user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let d = open_tempdir();
    let tok = d.path().join("control-token");
    std::fs::write(&tok, "sekrit-value-123").unwrap();
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).unwrap();
    let p = d.path().join("hk.toml");
    std::fs::write(&p, managed("token_file = \"control-token\"\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, err) = cli_as(
        &["check-config", "--config", p.to_str().unwrap()],
        Some(65534),
    );
    assert_eq!(code, 78, "{out}{err}");
    assert!(
        err.contains("managed.token_file: cannot read") && err.contains("Permission denied"),
        "{err}"
    );
    assert!(
        err.contains("make it readable by the user hubkeeper runs as"),
        "{err}"
    );
    assert!(!err.contains("sekrit-value-123"));
}

#[test]
fn missing_token_names_the_credential() {
    let (code, _, err) = check(&managed(""));
    assert_eq!(code, 78);
    assert!(err.contains("LoadCredential=control-token"), "{err}");
}

#[test]
fn token_from_credentials_directory() {
    let d = open_tempdir();
    std::fs::write(d.path().join("control-token"), "tok").unwrap();
    let p = d.path().join("hk.toml");
    std::fs::write(&p, managed("")).unwrap();
    let out = std::process::Command::new(&*BIN)
        .args(["check-config", "--config"])
        .arg(&p)
        .env("CREDENTIALS_DIRECTORY", d.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_exits_78_on_an_invalid_config_before_doing_anything() {
    let d = open_tempdir();
    let p = d.path().join("hk.toml");
    std::fs::write(&p, format!("{BASE}unknown = true\n")).unwrap();
    let (code, _, err) = cli(&["run", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 78);
    assert!(err.contains("unknown: unknown field"), "{err}");
    assert!(
        !d.path().join("run").exists(),
        "no socket dir should be created"
    );
    assert!(
        !d.path().join("state").exists(),
        "no secrets dir should be created"
    );
}

#[test]
fn status_without_a_daemon_exits_69_naming_the_socket() {
    let (code, _, err) = cli(&["status", "--socket", "/tmp/hubkeeper-test-none.sock"]);
    assert_eq!(code, 69);
    assert!(err.contains("/tmp/hubkeeper-test-none.sock"), "{err}");
    // The socket path is read from the config when --socket is not given.
    let d = open_tempdir();
    let p = d.path().join("hk.toml");
    std::fs::write(&p, "socket = \"x/y.sock\"\n").unwrap();
    let (code, _, err) = cli(&["backup", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 69);
    assert!(
        err.contains(&format!("{}/x/y.sock", d.path().display())),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    assert_eq!(cli(&["frobnicate"]).0, 1);
    assert_eq!(cli(&["status", "--bogus"]).0, 1);
    let (code, out, _) = cli(&["--help"]);
    assert_eq!(code, 0);
    for verb in ["run", "status", "check-config", "rotate-keys", "backup"] {
        assert!(out.contains(verb), "{out}");
    }
}

/// The control service's config handed to the daemon: the first line names the right
/// program, then every unknown key follows as usual.
#[test]
fn the_control_services_config_names_hubkeeper_control() {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/hubkeeper-control/control.example.toml"),
    )
    .unwrap();
    for verb in ["check-config", "run"] {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("control.toml");
        std::fs::write(&p, &example).unwrap();
        let (code, _, err) = cli(&[verb, "--config", p.to_str().unwrap()]);
        assert_eq!(code, 78, "{verb}: {err}");
        let first = err.lines().next().unwrap();
        assert!(
            first.contains("config for the control service")
                && first.contains("`hubkeeper-control --config PATH`"),
            "{verb}: {err}"
        );
        assert!(err.contains("listen: unknown field"), "{verb}: {err}");
    }
}

/// Durations past a year and a metrics port 0 are refused at load (issue 8): before, a
/// `backup.interval` of 10000y passed and the daemon panicked after its first backup,
/// and port 0 left the tunnel never ready.
#[test]
fn absurd_durations_and_metrics_port_0_are_config_errors() {
    let (code, _, err) = check(
        "[backup]\ninterval = \"10000y\"\n[tunnel]\nready_timeout = \"300000000000y\"\nmetrics = \"127.0.0.1:0\"\n",
    );
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains(":2:12: backup.interval:") && err.contains("at most 366d"),
        "{err}"
    );
    assert!(err.contains("tunnel.ready_timeout:"), "{err}");
    assert!(
        err.contains("tunnel.metrics: port 0 lets cloudflared pick any port")
            && err.contains("127.0.0.1:20241"),
        "{err}"
    );
}

#[test]
fn a_retention_past_ten_years_is_a_config_error() {
    let (code, _, err) = check("[disable]\nretention_days = 4294967295\n");
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains(":2:1: disable.retention_days:") && err.contains("at most 3650"),
        "{err}"
    );
    let (code, _, err) = check("[disable]\nretention_days = 3650\n");
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_wrong_url_is_reported_beside_the_keys_its_section_lacks() {
    let (code, _, err) = check(
        "enabled = true\nmode = \"managed\"\nhub_id = \"h-1\"\n[managed]\nurl = \"ftp://x\"\n",
    );
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains(":5:7: managed.url: \"ftp://x\" is not an http:// or https:// URL"),
        "{err}"
    );
    assert!(
        err.contains(":4:1: managed: missing field `account_id`"),
        "{err}"
    );
    assert!(
        err.contains(":4:1: managed: missing field `license_id`"),
        "{err}"
    );
    assert!(!err.contains("missing field `url`"), "{err}");
}

#[test]
fn a_key_rotation_more_often_than_hourly_is_a_config_error() {
    let (code, _, err) = check("[r2]\nrotate_every = \"5m\"\n");
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("r2.rotate_every: must be at least 1h"),
        "{err}"
    );
    let (code, _, err) = check("[r2]\nrotate_every = \"90d\"\n");
    assert_eq!(code, 0, "{err}");
}
