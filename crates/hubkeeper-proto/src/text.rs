//! Text that came from elsewhere (a peer's answer, a child's output, a file), made safe
//! to show: control and bidi-override characters escaped, so no terminal or log line can
//! be forged with it, and the length capped, so no answer can bloat the status.

use std::borrow::Cow;

/// How long a message or hint in `errors[]` may be, in characters.
pub const MAX_MESSAGE: usize = 1024;

/// Characters that move a cursor, end a line, recolour a terminal or reorder text.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every unsafe character written as `\u{..}`.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` cut to at most `max` characters, saying how much was left out.
pub fn clip(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((at, _)) => Cow::Owned(format!("{}… ({} more bytes)", &s[..at], s.len() - at)),
    }
}

/// Both: what any foreign text becomes before it is shown or stored for showing.
pub fn shown(s: &str, max: usize) -> String {
    // Cut first so a huge input is not escaped whole; escaping can lengthen it again.
    clip(&printable(&clip(s, max)), max).into_owned()
}

/// Whether `s` is a DNS hostname: dot-separated labels of letters, digits and inner
/// hyphens, each 1-63 long, 253 in all, not all-numeric at the end.
pub fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && !s
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("plain"), "plain");
        assert_eq!(
            printable("a\x1b[2Jb\r\nc\u{202E}"),
            "a\\u{1b}[2Jb\\u{d}\\u{a}c\\u{202e}"
        );
    }

    #[test]
    fn long_text_is_clipped_with_a_count() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcdef", 3), "abc… (3 more bytes)");
        assert_eq!(clip("ééé", 1), "é… (4 more bytes)");
        let huge = "x".repeat(5 << 20);
        assert!(shown(&huge, MAX_MESSAGE).len() < MAX_MESSAGE + 40);
        let esc = "\x1b".repeat(5000);
        assert!(shown(&esc, 100).chars().count() <= 100 + 30);
    }

    #[test]
    fn hostnames() {
        for ok in ["acme-1.hub.test", "a.b", "x", "a-b.example.com."] {
            assert!(is_hostname(ok), "{ok}");
        }
        for bad in [
            "",
            "a..b",
            "-a.b",
            "a-.b",
            "a b.c",
            "a\x1b.c",
            "a\n.c",
            "1.2.3.4",
            &"a".repeat(64),
            "ex_ample.com",
        ] {
            assert!(!is_hostname(bad), "{bad:?}");
        }
    }
}
