//! Log lines in cloudflared's console format (zerolog's `ConsoleWriter`) on stderr:
//! `2026-08-20T10:00:00Z INF Registered tunnel connection connIndex=0 location=standin01`.
//!
//! Nothing secret ever reaches these functions: callers pass ids, paths and addresses.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy)]
pub enum Level {
    Inf,
    Wrn,
    Err,
}

/// Writes one log line. A closed stderr must not kill the stand-in (hubkeeper may drop
/// the pipe's read end); `eprintln!` would panic there, so errors are ignored.
pub fn log(level: Level, msg: &str, fields: &[(&str, &str)]) {
    let level = match level {
        Level::Inf => "INF",
        Level::Wrn => "WRN",
        Level::Err => "ERR",
    };
    let mut line = format!("{} {level} {msg}", rfc3339_now());
    for (key, value) in fields {
        line.push(' ');
        line.push_str(key);
        line.push('=');
        line.push_str(&quote_if_needed(value));
    }
    line.push('\n');
    let _ = std::io::stderr().write_all(line.as_bytes());
}

pub fn info(msg: &str, fields: &[(&str, &str)]) {
    log(Level::Inf, msg, fields);
}

pub fn warn(msg: &str, fields: &[(&str, &str)]) {
    log(Level::Wrn, msg, fields);
}

pub fn error(msg: &str, fields: &[(&str, &str)]) {
    log(Level::Err, msg, fields);
}

/// Prints a message plainly, as urfave/cli does with the error that ends the program.
pub fn plain(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// zerolog quotes a value (Go `%q` style) when it holds spaces or quotes.
fn quote_if_needed(value: &str) -> String {
    if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
        serde_json::to_string(value).unwrap_or_default()
    } else {
        value.to_owned()
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ` (UTC), without pulling in a date crate.
fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(super::civil_from_days(20_685), (2026, 8, 20));
    }
}
