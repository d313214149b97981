//! Config problems and where they are: `file:line:col: key: message`.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line and column, when the problem has a place in the file.
    pub location: Option<(usize, usize)>,
    /// Dotted key path, e.g. `tunnel.grace_period`.
    pub key: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(key: Option<String>, message: impl Into<String>) -> Self {
        Self {
            location: None,
            key,
            message: message.into(),
        }
    }

    pub fn at(mut self, text: &str, span: Option<Range<usize>>) -> Self {
        self.location = span.map(|s| line_col(text, s.start));
        self
    }
}

/// Every problem found in one config file. Its Display is one problem per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<Diagnostic>,
}

impl ConfigError {
    pub fn single(path: PathBuf, message: impl Into<String>) -> Self {
        Self {
            path,
            problems: vec![Diagnostic::new(None, message)],
        }
    }

    /// One line per problem, as printed by `check-config` and logged on a refused reload.
    pub fn lines(&self) -> Vec<String> {
        self.problems
            .iter()
            .map(|p| {
                let mut s = self.path.display().to_string();
                if let Some((line, col)) = p.location {
                    s.push_str(&format!(":{line}:{col}"));
                }
                s.push_str(": ");
                if let Some(key) = &p.key {
                    s.push_str(key);
                    s.push_str(": ");
                }
                s.push_str(&p.message);
                s
            })
            .collect()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 8), (2, 3));
    }

    #[test]
    fn lines_have_file_line_col_key_message() {
        let e = ConfigError {
            path: "/etc/x.toml".into(),
            problems: vec![Diagnostic {
                location: Some((3, 5)),
                key: Some("tunnel.grace_period".into()),
                message: "bad".into(),
            }],
        };
        assert_eq!(e.lines(), vec!["/etc/x.toml:3:5: tunnel.grace_period: bad"]);
    }
}
