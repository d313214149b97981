//! `Secret`: a value that must never be printed. Debug and Display redact it, and its
//! memory is wiped on drop.

use std::fmt;
use zeroize::Zeroizing;

/// A secret string (a token, a key, a password).
///
/// There is deliberately no `Display` of the value and no `Serialize`: the only way
/// out is [`Secret::expose`], which makes every use greppable.
///
/// ```
/// use hubkeeper_proto::Secret;
/// let token = Secret::new("tok-123");
/// assert_eq!(format!("{token:?} {token}"), "Secret(<redacted>) <redacted>");
/// assert_eq!(token.expose(), "tok-123");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// Builds a secret from file contents, dropping one trailing newline (editors add
    /// one; tokens never end in one).
    pub fn from_file_contents(mut value: String) -> Self {
        if value.ends_with('\n') {
            value.pop();
            if value.ends_with('\r') {
                value.pop();
            }
        }
        Self::new(value)
    }

    /// The value itself. Callers must not log, format or return it to a client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn one_trailing_newline_is_dropped() {
        assert_eq!(Secret::from_file_contents("tok\n".into()).expose(), "tok");
        assert_eq!(Secret::from_file_contents("tok\r\n".into()).expose(), "tok");
        assert_eq!(Secret::from_file_contents("tok".into()).expose(), "tok");
        assert_eq!(
            Secret::from_file_contents("tok\n\n".into()).expose(),
            "tok\n"
        );
    }
}

/// Serde for the few places where a secret must cross a wire or reach a file (the
/// control API's responses, `enrollment.json`). Opt in per field with
/// `#[serde(with = "hubkeeper_proto::exposed")]`, so every such place is greppable.
pub mod exposed {
    use super::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}
