//! Time on the wire: RFC 3339 in UTC to the second, the one format every timestamp in
//! the status object, the enrollment and the control service's records uses.

use std::time::SystemTime;

/// `2026-11-23T10:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Parses what [`rfc3339`] wrote (strict RFC 3339, UTC).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s).ok()
}
