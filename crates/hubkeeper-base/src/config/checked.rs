//! The way every config of ours is checked before its secrets are read: located parsing
//! (every syntax and type problem at once), relative paths made absolute, the
//! cross-field rules placed at their keys, all problems in file order, and a file that
//! belongs to the other program named as such first. Each binary brings its model, its
//! rules and which keys only the other program's config has.

use super::diagnostic::{ConfigError, Diagnostic};
use super::file::wrong_program;
use super::located::{self, ArrayPaths, Located, SpanIndex};
use serde::de::DeserializeOwned;
use std::path::Path;

/// A config file's text and what to say when it is the other program's.
#[derive(Debug, Clone, Copy)]
pub struct ConfigText<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    pub arrays: ArrayPaths,
    /// Top-level keys only the other program's config has.
    pub foreign_keys: &'a [&'a str],
    /// The other program, as a person would name it ("the control service").
    pub other_program: &'a str,
    /// How to run the other program with this file.
    pub other_command: &'a str,
}

/// A config that parsed and passed its rules, with where each key is, so that later
/// problems (an unreadable secret file) are reported at their keys too.
#[derive(Debug)]
pub struct Checked<'a, T> {
    pub value: T,
    spans: SpanIndex,
    text: ConfigText<'a>,
}

impl<'a> ConfigText<'a> {
    /// Parses `T`, lets `fix` adjust it (relative paths), runs `rules` (problems as
    /// (key, message)); a problem about a key absent from the file is placed at the
    /// first of `fallback_keys` present (what required it), else at its section.
    pub fn check<T: DeserializeOwned>(
        self,
        fix: impl FnOnce(&mut T),
        rules: impl FnOnce(&T) -> Vec<(String, String)>,
        fallback_keys: &[&str],
    ) -> Result<Checked<'a, T>, ConfigError> {
        let Located {
            value: mut cfg,
            mut problems,
            spans,
            dropped,
        } = located::parse::<T>(self.text, self.arrays).map_err(|p| self.error(p))?;
        fix(&mut cfg);
        for (key, message) in rules(&cfg) {
            // A key already reported as wrong is not reported again as missing.
            if !dropped.covers(&key) {
                let span = spans
                    .key_span(&key)
                    .or_else(|| fallback_keys.iter().find_map(|k| spans.key_span(k)));
                problems.push(Diagnostic::new(Some(key), message).at(self.text, span));
            }
        }
        if !problems.is_empty() {
            return Err(self.error(problems));
        }
        Ok(Checked {
            value: cfg,
            spans,
            text: self,
        })
    }

    fn error(&self, mut problems: Vec<Diagnostic>) -> ConfigError {
        problems.sort_by_key(|d| d.location.unwrap_or((usize::MAX, 0)));
        if let Some(d) = wrong_program(
            self.text,
            self.foreign_keys,
            self.other_program,
            self.other_command,
        ) {
            problems.insert(0, d);
        }
        ConfigError {
            path: self.path.to_path_buf(),
            problems,
        }
    }
}

impl<T> Checked<'_, T> {
    /// Problems found after the checks, as (key, message), each placed at its key.
    pub fn error(&self, problems: Vec<(String, String)>) -> ConfigError {
        self.text.error(
            problems
                .into_iter()
                .map(|(key, message)| {
                    let span = self.spans.key_span(&key);
                    Diagnostic::new(Some(key), message).at(self.text.text, span)
                })
                .collect(),
        )
    }
}
