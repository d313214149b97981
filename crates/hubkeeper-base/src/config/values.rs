//! Value types that config files of both binaries share, each validated when parsed:
//! a log level, an http(s) URL, a non-empty string.

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// An `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(pub url::Url);

impl HttpUrl {
    /// A default written in the source. Parsing a literal can only fail by a typo,
    /// which the defaults tests of each config catch before anything ships.
    #[allow(
        clippy::expect_used,
        reason = "a literal; covered by the defaults tests"
    )]
    pub fn from_static(url: &'static str) -> Self {
        HttpUrl(url::Url::parse(url).expect("a valid URL literal"))
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match url::Url::parse(&s) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
                Ok(HttpUrl(u))
            }
            Ok(_) => Err(serde::de::Error::custom(format!(
                "\"{s}\" is not an http:// or https:// URL"
            ))),
            Err(e) => Err(serde::de::Error::custom(format!(
                "invalid URL \"{s}\": {e}"
            ))),
        }
    }
}

/// A string that must not be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonEmpty(pub String);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() {
            return Err(serde::de::Error::custom("must not be empty"));
        }
        Ok(NonEmpty(s))
    }
}

impl NonEmpty {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_literal_url_parses() {
        assert_eq!(
            HttpUrl::from_static("http://127.0.0.1:8080").0.as_str(),
            "http://127.0.0.1:8080/"
        );
    }
}
