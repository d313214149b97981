//! The names the service gives things: hostnames, bucket names, tunnel and key names,
//! a hub's backup prefix, and the checks on the ids clients send.

/// Longest subdomain part kept, so `<subdomain>-<n>` fits a DNS label (63) with room
/// for any counter.
const MAX_SUBDOMAIN: usize = 40;
/// Bucket names are 3-63 characters; leave room for a `-<n>` collision suffix.
const MAX_BUCKET_BASE: usize = 56;
const MAX_ACCOUNT_ID: usize = 64;
const MAX_LICENSE_ID: usize = 128;

/// Lowercase `a-z 0-9 -` only, runs of anything else turned into one `-`, no `-` at
/// either end, at most `max` characters.
pub fn sanitize_label(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(max);
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// The subdomain part of a hub's hostname: the requested one, sanitized, or the hub id.
pub fn subdomain(requested: Option<&str>, hub_id: &str) -> String {
    let s = requested.map_or_else(String::new, |r| sanitize_label(r, MAX_SUBDOMAIN));
    if s.is_empty() {
        sanitize_label(hub_id, MAX_SUBDOMAIN)
    } else {
        s
    }
}

pub fn hostname(subdomain: &str, n: i64, zone: &str) -> String {
    format!("{subdomain}-{n}.{zone}")
}

/// The bucket name for an account, before collision handling: `attempt` 0 is the base
/// name, later attempts add `-2`, `-3`... (two account ids can sanitize alike, and
/// sharing a bucket across accounts would be a leak).
pub fn bucket(account_id: &str, attempt: u32) -> String {
    let mut base = sanitize_label(&format!("hubkeeper-{account_id}"), MAX_BUCKET_BASE);
    if base == "hubkeeper" {
        base.push_str("-account");
    }
    if attempt == 0 {
        base
    } else {
        format!("{base}-{}", attempt + 1)
    }
}

/// Tunnel names must be unique among live tunnels of the account: the generation makes
/// a re-enrolled hub's tunnel distinct from a previous one that may still be deleting.
pub fn tunnel(hub_id: &str, generation: i64) -> String {
    format!("hubkeeper-{hub_id}-{generation}")
}

pub fn key(hub_id: &str, generation: i64) -> String {
    format!("hubkeeper-{hub_id}-{generation}-r2")
}

/// Where a hub's rustic repository lives in the bucket (spec §6: root
/// `/hubkeeper/<hub_id>`).
pub fn backup_prefix(hub_id: &str) -> String {
    format!("hubkeeper/{hub_id}/")
}

/// Account ids end up in bucket names and logs: printable ASCII without spaces.
pub fn check_account_id(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= MAX_ACCOUNT_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid account_id: use 1-{MAX_ACCOUNT_ID} of A-Z, a-z, 0-9, '-', '_' and '.'"
        ))
    }
}

pub fn check_license_id(s: &str) -> Result<(), String> {
    let ok = !s.trim().is_empty()
        && s.len() <= MAX_LICENSE_ID
        && s.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid license_id: use 1-{MAX_LICENSE_ID} printable ASCII characters without spaces"
        ))
    }
}

/// Longest origin URL accepted in an enroll.
const MAX_ORIGIN: usize = 2048;

/// A hub's origin: an absolute http(s) URL with a host, as a tunnel ingress takes it.
/// Returns it as the ingress's `service`: a bare host without the trailing `/` a URL
/// parser adds (cloudflared's examples, and what its validation expects).
pub fn check_origin(s: &str) -> Result<String, String> {
    let parsed = (s.len() <= MAX_ORIGIN)
        .then(|| url::Url::parse(s).ok())
        .flatten()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    match parsed {
        Some(u) if u.path() == "/" && u.query().is_none() && u.fragment().is_none() => {
            Ok(u.as_str().trim_end_matches('/').to_owned())
        }
        Some(u) => Ok(u.as_str().to_owned()),
        None => Err(format!(
            "invalid origin: use an http:// or https:// URL with a host, at most {MAX_ORIGIN} characters (like http://127.0.0.1:8080)"
        )),
    }
}

/// A DNS zone: dot-separated labels of `a-z 0-9 -`, at most 253 characters, leaving
/// room for the hostname label.
pub fn check_zone(s: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if s.len() <= 253 - 64 && s.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "invalid zone \"{s}\": expected a lowercase DNS name like \"example.com\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_are_dns_labels() {
        assert_eq!(subdomain(Some("Acme Corp!"), "hub-1"), "acme-corp");
        assert_eq!(subdomain(Some("--"), "hub-1"), "hub-1");
        assert_eq!(subdomain(None, "hub-1"), "hub-1");
        assert_eq!(subdomain(Some("ünï"), "hub-1"), "n");
        let long = subdomain(Some(&"a-".repeat(60)), "h");
        assert!(
            long.len() <= MAX_SUBDOMAIN && !long.ends_with('-'),
            "{long}"
        );
        assert_eq!(hostname("acme", 7, "example.com"), "acme-7.example.com");
    }

    #[test]
    fn bucket_names_are_valid_and_distinguishable() {
        assert_eq!(bucket("acct-123", 0), "hubkeeper-acct-123");
        assert_eq!(bucket("Acct_123", 1), "hubkeeper-acct-123-2");
        assert_eq!(bucket("___", 0), "hubkeeper-account");
        let long = bucket(&"x".repeat(64), 9);
        assert!(long.len() <= 63, "{long}");
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_account_id("acct-123").is_ok());
        assert!(check_account_id("a b").is_err());
        assert!(check_account_id("").is_err());
        assert!(check_license_id("lic-456").is_ok());
        assert!(check_license_id(" ").is_err());
        assert!(check_zone("example.com").is_ok());
        assert!(check_zone("Example.com").is_err());
        assert!(check_zone("a..b").is_err());
    }

    #[test]
    fn origins() {
        assert!(check_origin("http://127.0.0.1:8080").is_ok());
        assert!(check_origin("https://hub.internal/").is_ok());
        for bad in ["ftp://x", "127.0.0.1:8080", "http://", "unix:/run/hub.sock"] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }
}
