//! The command line: cloudflared's flag syntax (Go's `flag` package under urfave/cli)
//! for the two invocations hubkeeper pins (spec §5), and Go durations.

use std::path::PathBuf;
use std::time::Duration;

/// The cloudflared release whose behaviour this stand-in follows.
pub const IMITATED_VERSION: &str = "2026.8.2";

/// cloudflared refuses a grace period above this (`connection.MaxGracePeriod`).
pub const MAX_GRACE_PERIOD: Duration = Duration::from_secs(180);

/// cloudflared's default `--grace-period`.
const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

pub const HELP: &str = "\
NAME:
   cloudflared-standin - a test stand-in for `cloudflared tunnel run` (NOT cloudflared)

USAGE:
   cloudflared-standin tunnel --no-autoupdate --metrics ADDR --grace-period DUR run --token-file PATH
   cloudflared-standin tunnel --no-autoupdate --metrics ADDR --grace-period DUR --config PATH run
   cloudflared-standin --version

It opens no connection to Cloudflare. Tests steer it through $CLOUDFLARED_STANDIN_DIR
(see hubkeeper's README, \"The cloudflared stand-in\").";

pub enum Invocation {
    Version,
    Help,
    Run(RunArgs),
}

pub struct RunArgs {
    pub metrics: String,
    /// Negative Go durations are legal flag values; cloudflared treats them like 0.
    pub grace_period: Duration,
    pub grace_period_text: String,
    pub no_autoupdate: bool,
    pub source: Source,
}

/// Where the tunnel's identity comes from: the two pinned forms.
pub enum Source {
    TokenFile(PathBuf),
    Config(PathBuf),
}

/// A usage error: cloudflared prints it and exits 255.
#[derive(Debug)]
pub struct UsageError(pub String);

/// Flags of one command level, as Go's `flag` package sees them.
struct FlagSet {
    /// How urfave/cli words a parse error at this level: "Incorrect Usage." for a command
    /// with subcommands (`tunnel`), "Incorrect Usage:" for a leaf command (`run`).
    incorrect_usage: &'static str,
    bools: &'static [&'static str],
    values: &'static [&'static str],
}

const TUNNEL_FLAGS: FlagSet = FlagSet {
    incorrect_usage: "Incorrect Usage.",
    bools: &["no-autoupdate"],
    values: &["metrics", "grace-period", "config"],
};

const RUN_FLAGS: FlagSet = FlagSet {
    incorrect_usage: "Incorrect Usage:",
    bools: &[],
    values: &["token-file"],
};

/// Appended to every usage error, so nobody mistakes a flag the stand-in lacks for one
/// cloudflared lacks.
const STANDIN_NOTE: &str = "(cloudflared-standin implements only hubkeeper's pinned invocations: \
`tunnel --no-autoupdate --metrics ADDR --grace-period DUR run --token-file PATH` and \
`tunnel --no-autoupdate --metrics ADDR --grace-period DUR --config PATH run`)";

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(format!("{}\n{STANDIN_NOTE}", msg.into()))
}

enum Parsed {
    Flags {
        bools: Vec<(String, bool)>,
        values: Vec<(String, String)>,
        rest: Vec<String>,
    },
    Help,
}

/// Parses flags until the first non-flag argument, like Go's `flag.FlagSet.Parse`:
/// `-name`, `--name`, `-name=value`, `-name value`; a repeated flag keeps its last value.
fn parse_flags(set: &FlagSet, args: &[String]) -> Result<Parsed, UsageError> {
    let mut bools = Vec::new();
    let mut values = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            i += 1;
            break;
        }
        if arg.len() < 2 || !arg.starts_with('-') {
            break;
        }
        let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(usage(format!(
                "{} bad flag syntax: {arg}",
                set.incorrect_usage
            )));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (body, None),
        };
        if name == "help" || name == "h" {
            return Ok(Parsed::Help);
        }
        if set.bools.contains(&name) {
            let value = match inline.as_deref() {
                None => true,
                Some("1" | "t" | "T" | "true" | "TRUE" | "True") => true,
                Some("0" | "f" | "F" | "false" | "FALSE" | "False") => false,
                Some(v) => {
                    return Err(usage(format!(
                        "{} invalid boolean value \"{v}\" for -{name}: parse error",
                        set.incorrect_usage
                    )));
                }
            };
            bools.push((name.to_owned(), value));
        } else if set.values.contains(&name) {
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i).cloned().ok_or_else(|| {
                        usage(format!(
                            "{} flag needs an argument: -{name}",
                            set.incorrect_usage
                        ))
                    })?
                }
            };
            values.push((name.to_owned(), value));
        } else {
            return Err(usage(format!(
                "{} flag provided but not defined: -{name}",
                set.incorrect_usage
            )));
        }
        i += 1;
    }
    Ok(Parsed::Flags {
        bools,
        values,
        rest: args[i..].to_vec(),
    })
}

fn last<'a>(values: &'a [(String, String)], name: &str) -> Option<&'a str> {
    values
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Parses the arguments after argv[0].
pub fn parse(args: &[String]) -> Result<Invocation, UsageError> {
    match args.first().map(String::as_str) {
        Some("--version" | "-version" | "-v" | "-V" | "version") => return Ok(Invocation::Version),
        Some("--help" | "-help" | "-h" | "help") => return Ok(Invocation::Help),
        Some("tunnel") => {}
        Some(other) => {
            return Err(usage(format!(
                "cloudflared-standin: `{other}` is not implemented here, only `tunnel ... run`"
            )));
        }
        None => {
            return Err(usage(
                "cloudflared-standin: no command given (real cloudflared would run in service mode)",
            ));
        }
    }

    let (tunnel_bools, tunnel_values, rest) = match parse_flags(&TUNNEL_FLAGS, &args[1..])? {
        Parsed::Help => return Ok(Invocation::Help),
        Parsed::Flags {
            bools,
            values,
            rest,
        } => (bools, values, rest),
    };
    match rest.first().map(String::as_str) {
        Some("run") => {}
        Some(other) => {
            return Err(usage(format!(
                "cloudflared-standin: `tunnel {other}` is not implemented here, only `tunnel run`"
            )));
        }
        None => {
            return Err(usage(
                "cloudflared-standin: `tunnel` without `run` is not implemented here",
            ));
        }
    }
    let (run_values, positional) = match parse_flags(&RUN_FLAGS, &rest[1..])? {
        Parsed::Help => return Ok(Invocation::Help),
        Parsed::Flags { values, rest, .. } => (values, rest),
    };
    if !positional.is_empty() {
        return Err(usage(format!(
            "cloudflared-standin: running a tunnel by name or ID ({}) is not implemented here; \
             use --token-file or --config",
            positional.join(" ")
        )));
    }

    let metrics = last(&tunnel_values, "metrics")
        .ok_or_else(|| {
            usage(
                "cloudflared-standin: --metrics ADDR is required here (real cloudflared would \
                 pick a free port in localhost:20241-20245, which a supervisor cannot find reliably)",
            )
        })?
        .to_owned();
    let (grace_period, grace_period_text) = match last(&tunnel_values, "grace-period") {
        None => (DEFAULT_GRACE_PERIOD, "30s".to_owned()),
        Some(text) => {
            let nanos = parse_go_duration(text).map_err(|_| {
                usage(format!(
                    "{} invalid value \"{text}\" for flag -grace-period: parse error",
                    TUNNEL_FLAGS.incorrect_usage
                ))
            })?;
            (nanos_to_duration(nanos), text.to_owned())
        }
    };
    let no_autoupdate = tunnel_bools
        .iter()
        .rev()
        .find(|(n, _)| n == "no-autoupdate")
        .is_some_and(|(_, v)| *v);

    let source = match (
        last(&run_values, "token-file"),
        last(&tunnel_values, "config"),
    ) {
        (Some(token), None) => Source::TokenFile(PathBuf::from(token)),
        (None, Some(config)) => Source::Config(PathBuf::from(config)),
        (Some(_), Some(_)) => {
            return Err(usage(
                "cloudflared-standin: give either `run --token-file` or `--config`, not both \
                 (hubkeeper's pinned invocations never combine them)",
            ));
        }
        (None, None) => {
            return Err(usage(
                "\"cloudflared tunnel run\" requires the ID or name of the tunnel to run as the \
                 last command line argument or in the configuration file.\n\
                 See 'cloudflared tunnel run --help'.",
            ));
        }
    };

    Ok(Invocation::Run(RunArgs {
        metrics,
        grace_period,
        grace_period_text,
        no_autoupdate,
        source,
    }))
}

/// Clamps a signed Go duration to a `Duration`: a negative grace period or drain means none.
pub fn nanos_to_duration(nanos: i64) -> Duration {
    Duration::from_nanos(nanos.max(0) as u64)
}

/// Parses a Go duration (`time.ParseDuration`): an optional sign, then one or more
/// decimal numbers each with a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), e.g. `30s`,
/// `1500ms`, `1m30s`, `1.5h`; a bare `0` is allowed. Returns nanoseconds.
pub fn parse_go_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration \"{text}\"");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration \"{text}\"")),
            other => {
                return Err(format!(
                    "time: unknown unit \"{other}\" in duration \"{text}\""
                ));
            }
        };
        // Go keeps about 18 significant digits; more cannot change an int64 of nanoseconds.
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        let frac: u128 = if frac_digits.is_empty() {
            0
        } else {
            frac_digits.parse().map_err(|_| invalid())?
        };
        let scale = 10u128.pow(frac_digits.len() as u32);
        total = int
            .checked_mul(unit_nanos)
            .and_then(|v| v.checked_add(frac * unit_nanos / scale))
            .and_then(|v| v.checked_add(total))
            .filter(|v| *v <= i64::MAX as u128)
            .ok_or_else(invalid)?;
        rest = after;
    }
    let total = total as i64;
    Ok(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn go_durations() {
        let ms = 1_000_000;
        assert_eq!(parse_go_duration("30s"), Ok(30_000 * ms));
        assert_eq!(parse_go_duration("1500ms"), Ok(1500 * ms));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000 * ms));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000 * ms));
        assert_eq!(parse_go_duration(".5s"), Ok(500 * ms));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("-2s"), Ok(-2000 * ms));
        assert_eq!(parse_go_duration("3µs"), Ok(3000));
        for bad in [
            "",
            "30",
            "s",
            "1x",
            "1.s.",
            "-",
            ".s",
            "1h 30m",
            "9999999999h",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pinned_forms_parse() {
        let Ok(Invocation::Run(r)) = parse(&args(
            "tunnel --no-autoupdate --metrics 127.0.0.1:1 --grace-period 1m30s run --token-file /t",
        )) else {
            panic!("managed form refused");
        };
        assert!(r.no_autoupdate);
        assert_eq!(r.grace_period, Duration::from_secs(90));
        assert!(matches!(r.source, Source::TokenFile(p) if p == std::path::Path::new("/t")));

        let Ok(Invocation::Run(r)) = parse(&args(
            "tunnel --no-autoupdate --metrics=127.0.0.1:1 -grace-period=5s --config /c run",
        )) else {
            panic!("self-managed form refused");
        };
        assert_eq!(r.metrics, "127.0.0.1:1");
        assert!(matches!(r.source, Source::Config(p) if p == std::path::Path::new("/c")));
    }

    #[test]
    fn flags_at_the_wrong_level_are_refused() {
        for bad in [
            "tunnel --metrics 127.0.0.1:1 --token-file /t run",
            "tunnel --metrics 127.0.0.1:1 run --grace-period 1s --token-file /t",
            "tunnel --metrics 127.0.0.1:1 run --token-file",
            "tunnel --metrics 127.0.0.1:1 run --token-file /t extra",
            "tunnel --no-autoupdate=maybe --metrics 127.0.0.1:1 run --token-file /t",
            "tunnel --metrics 127.0.0.1:1 --grace-period 30 run --token-file /t",
            "tunnel run --token-file /t",
            "tunnel --metrics 127.0.0.1:1 run",
            "--no-autoupdate tunnel --metrics 127.0.0.1:1 run --token-file /t",
        ] {
            assert!(parse(&args(bad)).is_err(), "accepted: {bad}");
        }
    }
}
