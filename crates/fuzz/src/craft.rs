//! The shared generators: hostile strings, numbers and durations, JSON that is almost
//! right (wrong types, huge numbers, deep nesting, control characters, bad escapes),
//! and byte-level mutations. Everything draws from an `Unstructured`, so a run is a
//! function of its bytes: the driver's seeded RNG, or a coverage-guided fuzzer.

use arbitrary::{Result, Unstructured};

pub type U<'a, 'b> = &'a mut Unstructured<'b>;

/// Strings that break naive parsers, renderers and terminals.
pub const NASTY: &[&str] = &[
    "",
    " ",
    "\t",
    "\0",
    "\u{1b}[2J\u{1b}[1;1HREADY",
    "\r\n",
    "\n",
    "\r",
    "\u{7f}",
    "\u{202e}",
    "\u{feff}",
    "\u{fffd}",
    "\u{10ffff}",
    "é",
    "🙂",
    "%00",
    "%2F",
    "%2e%2e",
    "%",
    "%zz",
    "..",
    "../",
    "/",
    "//",
    "\\",
    "\"",
    "'",
    "${HOME}",
    "$(id)",
    "a=b",
    "&",
    "?",
    "#",
    ";",
    ",",
    "=",
    "[",
    "]",
    "{",
    "}",
    "*",
    "hub-1",
    "hub-dev",
    "HUB",
    "-hub",
    "hub-",
    "a.b",
    "xn--",
    "localhost",
    "127.0.0.1",
    "[::1]",
    "http://",
    "https://x",
    "ftp://x",
    "http://127.0.0.1:0",
    "http://[::1]:8787/",
    "http://user:pass@127.0.0.1/",
    "1",
    "0",
    "-1",
    "true",
    "null",
];

/// Numbers at the edges of every integer and float type serde or TOML may map to.
pub const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "2",
    "127",
    "128",
    "255",
    "256",
    "511",
    "0777",
    "1000",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "0.0",
    "-0.0",
    "0.5",
    "1.5",
    "1e3",
    "1e19",
    "1e20",
    "1e308",
    "1.7976931348623157e308",
    "1e309",
    "-1e308",
    "5e-324",
    "1e-400",
    "nan",
    "inf",
    "-inf",
    "1_000",
    "0x10",
    "0o17",
    "0b101",
];

/// Durations in humantime's syntax, the valid and the absurd.
pub const DURATIONS: &[&str] = &[
    "0s",
    "0",
    "1ns",
    "1us",
    "1ms",
    "1s",
    "5s",
    "30s",
    "5m",
    "1h",
    "24h",
    "1d",
    "1w",
    "1M",
    "1y",
    "10000y",
    "300000000000y",
    "584542046090y",
    "18446744073709551615s",
    "18446744073709551616s",
    "99999999999999999999h",
    "1y 1s",
    "1h 1h 1h",
    "-5s",
    "+5s",
    "5",
    "1.5s",
    "5 s",
    "s",
    "",
    " ",
    "5sec",
    "5 seconds",
    "1e9s",
];

/// A string: one of the nasty ones, a word, random text, or a very long run.
pub fn text(u: U) -> Result<String> {
    Ok(match u.int_in_range(0..=9u8)? {
        0..=3 => (*u.choose(NASTY)?).to_owned(),
        4 => (*u.choose(DURATIONS)?).to_owned(),
        5 => (*u.choose(NUMBERS)?).to_owned(),
        6 => {
            let bytes: &[u8] = u.arbitrary()?;
            String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned()
        }
        7 => {
            let c = *u.choose(&['a', '\n', '\0', 'é', '"', '\\', '\u{1b}', ' '])?;
            let n = *u.choose(&[64usize, 255, 256, 1024, 8192, 8193, 70_000])?;
            std::iter::repeat_n(c, n).collect()
        }
        _ => {
            let a = (*u.choose(NASTY)?).to_owned();
            let b = (*u.choose(NASTY)?).to_owned();
            format!("{a}hub{b}")
        }
    })
}

/// Quotes `s` as a JSON string, usually correctly, sometimes not.
fn json_string(u: U, s: &str, out: &mut String) -> Result<()> {
    match u.int_in_range(0..=15u8)? {
        0 => {
            // Raw control characters and bad escapes.
            out.push('"');
            out.push_str(s);
            out.push_str(u.choose(&["\\ud800", "\\x41", "\\", "\\u12", "\n", "\u{1}", ""])?);
            out.push('"');
        }
        1 => {
            // Unterminated.
            out.push('"');
            out.push_str(s);
        }
        _ => out.push_str(&serde_json::Value::from(s).to_string()),
    }
    Ok(())
}

/// A JSON value; objects take their keys mostly from `keys` (the fields the parser
/// expects), so most inputs reach the typed layer instead of stopping at syntax.
pub fn json_value(u: U, keys: &[&str], depth: u32, out: &mut String) -> Result<()> {
    let kind = if depth >= 4 {
        u.int_in_range(0..=4u8)?
    } else {
        u.int_in_range(0..=9u8)?
    };
    match kind {
        0 => out.push_str(u.choose(&["null", "true", "false", "tru", "nul"])?),
        1 => out.push_str(u.choose(NUMBERS)?),
        2 => {
            let n: i64 = u.arbitrary()?;
            out.push_str(&n.to_string());
        }
        3 | 4 => {
            let s = text(u)?;
            json_string(u, &s, out)?;
        }
        5 => {
            out.push('[');
            let n = u.int_in_range(0..=4u8)?;
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                json_value(u, keys, depth + 1, out)?;
            }
            out.push(']');
        }
        6 => {
            // Deep nesting, closed or not.
            let n = *u.choose(&[16usize, 127, 128, 129, 1000, 5000, 100_000])?;
            let (open, close) = *u.choose(&[("[", "]"), ("{\"a\":", "}")])?;
            out.push_str(&open.repeat(n));
            out.push('1');
            if u.arbitrary()? {
                out.push_str(&close.repeat(n));
            }
        }
        _ => json_object(u, keys, depth + 1, out)?,
    }
    Ok(())
}

/// A JSON object with (mostly) the expected keys, in any order, some missing, some twice.
pub fn json_object(u: U, keys: &[&str], depth: u32, out: &mut String) -> Result<()> {
    out.push('{');
    let n = u.int_in_range(0..=(keys.len() as u8 + 2))?;
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        let key = if !keys.is_empty() && u.int_in_range(0..=5u8)? > 0 {
            (*u.choose(keys)?).to_owned()
        } else {
            text(u)?
        };
        json_string(u, &key, out)?;
        out.push(':');
        json_value(u, keys, depth, out)?;
    }
    out.push('}');
    Ok(())
}

/// Byte-level damage: flips, insertions, deletions, truncation, duplication.
pub fn mutate(u: U, data: &mut Vec<u8>) -> Result<()> {
    let rounds = u.int_in_range(1..=4u8)?;
    for _ in 0..rounds {
        let len = data.len();
        match u.int_in_range(0..=6u8)? {
            0 if len > 0 => {
                let i = u.choose_index(len)?;
                data[i] ^= 1 << u.int_in_range(0..=7u8)?;
            }
            1 => {
                let i = u.int_in_range(0..=len)?;
                let ins: &[u8] = u.choose(&[
                    b"\0" as &[u8],
                    b"\xff",
                    b"\xc3",
                    b"\r\n",
                    b"\n",
                    b"\"",
                    b"[",
                    b"{",
                    b"=",
                    b"'''",
                    b"\"\"\"",
                    b"\\u0000",
                    b"%",
                    b" ",
                ])?;
                data.splice(i..i, ins.iter().copied());
            }
            2 if len > 0 => {
                let a = u.choose_index(len)?;
                let b = u.int_in_range(a..=len)?;
                data.drain(a..b);
            }
            3 => {
                let i = u.int_in_range(0..=len)?;
                data.truncate(i);
            }
            4 if len > 0 => {
                let a = u.choose_index(len)?;
                let b = u.int_in_range(a..=len.min(a + 256))?;
                let copy = data[a..b].to_vec();
                let at = u.int_in_range(0..=len)?;
                data.splice(at..at, copy);
            }
            5 if len > 0 => {
                let i = u.choose_index(len)?;
                data[i] = u.arbitrary()?;
            }
            _ => {}
        }
    }
    Ok(())
}
