//! The hub id: validated once where it enters (config, control API requests), so
//! everything downstream can put it in names without checking again.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// A hub id: it ends up in bucket names, hostnames and repository paths, so it is
/// restricted to what all of those accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId(String);

impl HubId {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if s.is_empty() || s.len() > 40 || !ok_chars || s.starts_with('-') || s.ends_with('-') {
            return Err(format!(
                "invalid hub_id \"{s}\": use 1-40 lowercase letters, digits and '-', not starting or ending with '-'"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HubId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for HubId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HubId::parse(&s).map_err(serde::de::Error::custom)
    }
}
