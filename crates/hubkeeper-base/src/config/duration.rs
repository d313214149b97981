//! Durations in the config, written as `"200ms"`, `"30s"`, `"5m"` or `"24h"`.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A `std::time::Duration` that deserializes from a human-readable string.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }

    pub const fn get(self) -> Duration {
        self.0
    }
}

/// Parses `"30s"`, `"5m"`, `"1h 30m"`... Plain numbers are refused: a bare `30` is
/// ambiguous (seconds? minutes?) and a wrong guess is worse than an error.
///
/// ```
/// use std::time::Duration;
/// use hubkeeper_base::config::duration::parse;
/// assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
/// assert!(parse("30").unwrap_err().contains("no unit"));
/// ```
pub fn parse(s: &str) -> Result<Duration, String> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(
            "expected a duration like \"200ms\", \"30s\", \"5m\" or \"24h\", got an empty string"
                .into(),
        );
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "\"{trimmed}\" has no unit: write e.g. \"{trimmed}s\" for seconds or \"{trimmed}m\" for minutes"
        ));
    }
    let d = humantime::parse_duration(trimmed).map_err(|e| {
        format!("invalid duration \"{trimmed}\" ({e}): expected a number with a unit, like \"200ms\", \"30s\", \"5m\" or \"24h\"")
    })?;
    if d > MAX {
        return Err(format!(
            "\"{trimmed}\" is longer than any setting allows (at most 366d): use a shorter duration"
        ));
    }
    Ok(d)
}

/// No setting of either program needs more than a year; the cap keeps every deadline
/// and schedule computed from a duration (an `Instant` plus it, twice a backup
/// interval) far from overflowing.
pub const MAX: Duration = Duration::from_secs(366 * 24 * 3600);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"30s\", \"5m\" or \"24h\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse(v).map(HumanDuration).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// Formats a duration the way cloudflared's flags expect it (`30s`, `1m30s`).
pub fn to_go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    format!("{}s", d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_past_a_year_are_refused_before_anything_computes_with_them() {
        assert_eq!(parse("366d").unwrap(), MAX);
        for huge in ["367d", "10000y", "300000000000y"] {
            let e = parse(huge).unwrap_err();
            assert!(
                e.contains("at most 366d") || e.contains("invalid duration"),
                "{huge}: {e}"
            );
        }
    }

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn refuses_bad_input_with_a_hint() {
        let e = parse("30").unwrap_err();
        assert!(e.contains("no unit") && e.contains("\"30s\""), "{e}");
        let e = parse("5x").unwrap_err();
        assert!(e.contains("invalid duration \"5x\""), "{e}");
        assert!(parse("").is_err());
        assert!(parse("-5s").is_err());
    }

    #[test]
    fn go_duration_format() {
        assert_eq!(to_go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(to_go_duration(Duration::from_millis(1500)), "1500ms");
    }
}
