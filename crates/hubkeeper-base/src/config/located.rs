//! Typed parsing of a TOML config file with every problem located: the one algorithm
//! behind both config loaders (the daemon's, `load.rs`, and the control service's
//! `control.toml`), which keep only their own rules, paths and secrets.
//!
//! Syntax errors are all collected by toml's recovering parser. Serde stops at its first
//! error, so after each one the offending key is dropped from the parsed document and
//! the typed parse is retried: the admin sees every wrong key in one run, each with
//! `file:line:col`, while the serde structs stay the only description of the format.
//! Key paths are dotted; with [`ArrayPaths::Indexed`], array entries are steps of
//! their own (`provisioner.local.keys[0].access_key_id_file`).

use super::diagnostic::Diagnostic;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A typed value read from a file whose types all fit, perhaps after dropping the keys
/// that did not, with what the caller needs to locate problems of its own.
#[derive(Debug)]
pub struct Located<T> {
    pub value: T,
    /// One problem per dropped key, in file order; empty when every key fit. Not yet
    /// a failure: the caller adds its own problems and decides.
    pub problems: Vec<Diagnostic>,
    /// Where every key in the file is.
    pub spans: SpanIndex,
    /// The keys dropped, so that the caller does not report again (as, say, a missing
    /// section) what is already reported as wrong.
    pub dropped: DroppedKeys,
}

/// Whether array entries are steps in key paths. Each format keeps the names it has
/// always reported: the daemon's config has no arrays of tables and names a wrong entry
/// by its array (`backup.paths`), while `control.toml` has `[[provisioner.local.keys]]`,
/// whose entries have keys of their own to point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayPaths {
    /// `keys[0].access_key_id_file`: `[i]` in a path is an array entry.
    Indexed,
    /// Paths stop at an array's key; `[` is an ordinary character of a (quoted) key.
    Whole,
}

impl ArrayPaths {
    /// What separates the steps of a path.
    fn separators(self) -> &'static [char] {
        match self {
            Self::Indexed => &['.', '['],
            Self::Whole => &['.'],
        }
    }
}

/// Parses `text` into a `T`, or returns every problem found: all syntax errors (in the
/// order toml reports them), or, when some type error could not be dropped and retried
/// past, the type errors found so far, in file order.
pub fn parse<T: DeserializeOwned>(
    text: &str,
    arrays: ArrayPaths,
) -> Result<Located<T>, Vec<Diagnostic>> {
    let (mut table, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return Err(syntax.iter().map(|e| syntax_problem(text, e)).collect());
    }
    // Owned, so that the document can be cloned for each retry and edited in between.
    table.get_mut().make_owned();
    let spans = SpanIndex::build(table.get_ref(), arrays);

    let mut problems = Vec::new();
    let mut dropped = Vec::new();
    let mut next = T::deserialize(toml::de::Deserializer::from(table.clone()));
    let parsed = loop {
        let e = match next {
            Ok(value) => break Some(value),
            Err(e) => e,
        };
        let key = e.span().and_then(|s| spans.deepest_at(s.start));
        problems.push(Diagnostic::new(key.clone(), e.message().trim()).at(text, e.span()));
        // Looking past the problem: a placeholder value that fits the type lets serde go
        // on to the keys after it (a key left out would itself be "missing", and a
        // table dropped for a missing key would hide the other keys it lacks).
        if let Some((k, retried)) = placeholder(&table, &e, key.as_deref(), arrays, text.len()) {
            dropped.push(k);
            table = retried.0;
            next = retried.1;
            continue;
        }
        // A wrong array entry (not a table) goes with its whole array: an entry
        // cannot be removed without renumbering the ones after it.
        let key = key.map(|k| match k.strip_suffix(']') {
            Some(rest) if arrays == ArrayPaths::Indexed => {
                rest[..rest.rfind('[').unwrap_or(rest.len())].to_owned()
            }
            _ => k,
        });
        // Without a key to drop, a retry would fail the same way.
        match key {
            Some(k) if remove_key(table.get_mut(), &k, arrays) => dropped.push(k),
            _ => break None,
        }
        next = T::deserialize(toml::de::Deserializer::from(table.clone()));
    };
    problems.sort_by_key(|d| d.location.unwrap_or((usize::MAX, 0)));
    match parsed {
        Some(value) => Ok(Located {
            value,
            problems,
            spans,
            dropped: DroppedKeys {
                keys: dropped,
                arrays,
            },
        }),
        None => Err(problems),
    }
}

/// Values tried in place of a wrong or missing one, in order, to see past it. They
/// cover the value types the configs use; none is ever used, since a config with a
/// problem is refused.
const PLACEHOLDERS: &[&str] = &[
    "v = \"placeholder\"",
    "v = \"http://placeholder.invalid/\"",
    "v = \"1s\"",
    "v = \"127.0.0.1:1\"",
    "v = \"/placeholder\"",
    "v = 1",
    "v = false",
    "v = []",
    "v = {}",
];

type Doc<'a> = Spanned<DeTable<'a>>;
type Retried<'a, T> = (Doc<'a>, Result<T, toml::de::Error>);

/// For a wrong value at `key`, or a missing field of the table at `key`: the path of a
/// placeholder that gets serde past this problem, with the document holding it and what
/// serde then says. `None` when no placeholder fits (the caller drops the key instead).
fn placeholder<'a, T: DeserializeOwned>(
    table: &Doc<'a>,
    e: &toml::de::Error,
    key: Option<&str>,
    arrays: ArrayPaths,
    text_len: usize,
) -> Option<(String, Retried<'a, T>)> {
    let span = e.span()?;
    let missing = e
        .message()
        .strip_prefix("missing field `")
        .and_then(|m| m.split_once('`'))
        .map(|(field, _)| field);
    let (path, at) = match (missing, key) {
        (Some(field), Some(k)) => (format!("{k}.{field}"), text_len..text_len),
        (Some(field), None) => (field.to_owned(), text_len..text_len),
        // A whole array entry or table is not guessed at.
        (None, Some(k)) if !k.ends_with(']') => (k.to_owned(), span.clone()),
        (None, _) => return None,
    };
    for candidate in PLACEHOLDERS {
        let Ok(value) = DeTable::parse(candidate) else {
            continue;
        };
        let Some(v) = value.into_inner().remove("v") else {
            continue;
        };
        let mut doc = table.clone();
        if !set_key(
            doc.get_mut(),
            &path,
            Spanned::new(at.clone(), v.into_inner()),
            arrays,
        ) {
            return None;
        }
        let r = T::deserialize(toml::de::Deserializer::from(doc.clone()));
        let same_problem = match &r {
            Ok(_) => false,
            Err(n) => {
                n.span().is_some_and(|s| s.start == at.start)
                    || (n.message() == e.message() && n.span() == e.span())
            }
        };
        if !same_problem {
            return Some((path, (doc, r)));
        }
    }
    None
}

/// Sets the key at `path` (a plain dotted path) to `value`, creating it; false when a
/// step is missing or not a table.
fn set_key<'a>(
    root: &mut DeTable<'a>,
    path: &str,
    value: Spanned<DeValue<'a>>,
    arrays: ArrayPaths,
) -> bool {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (Some(p), l),
        None => (None, path),
    };
    let t = match parent {
        None => root,
        Some(p) => match table_at(root, p, arrays) {
            Some(t) => t,
            None => return false,
        },
    };
    let span = value.span();
    t.insert(
        Spanned::new(span, std::borrow::Cow::Owned(last.to_owned())),
        value,
    );
    true
}

/// The table at `path` (with `[i]` steps when indexed).
fn table_at<'t, 'a>(
    root: &'t mut DeTable<'a>,
    path: &str,
    arrays: ArrayPaths,
) -> Option<&'t mut DeTable<'a>> {
    let mut t = root;
    for part in path.split('.') {
        let (name, idx) = match part.split_once('[') {
            Some((name, idx)) if arrays == ArrayPaths::Indexed => {
                (name, Some(idx.trim_end_matches(']').parse::<usize>().ok()?))
            }
            _ => (part, None),
        };
        let v = t.get_mut(name)?.get_mut();
        let v = match (v, idx) {
            (v, None) => v,
            (DeValue::Array(items), Some(i)) => items.get_mut(i)?.get_mut(),
            _ => return None,
        };
        match v {
            DeValue::Table(inner) => t = inner,
            _ => return None,
        }
    }
    Some(t)
}

/// The keys dropped from the document to get past their type errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedKeys {
    keys: Vec<String>,
    arrays: ArrayPaths,
}

impl DroppedKeys {
    /// Whether `key` was dropped or replaced by a placeholder, itself or with a table or array above
    /// it: its value in the parsed config is a default or a placeholder, not what the file
    /// says.
    pub fn covers(&self, key: &str) -> bool {
        self.keys.iter().any(|d| {
            key.strip_prefix(d.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(self.arrays.separators()))
        })
    }
}

/// Byte spans of every key and value in the parsed document, by path (array entries,
/// when indexed, spanning the entry), to turn serde's byte offsets into key names and
/// to place the caller's own problems.
#[derive(Debug, Clone)]
pub struct SpanIndex {
    entries: Entries,
    arrays: ArrayPaths,
}

/// Path to (key span, value span).
type Entries = BTreeMap<String, (Range<usize>, Range<usize>)>;

impl SpanIndex {
    fn build(root: &DeTable<'_>, arrays: ArrayPaths) -> Self {
        fn walk_value(v: &Spanned<DeValue<'_>>, path: &str, arrays: ArrayPaths, out: &mut Entries) {
            match v.get_ref() {
                DeValue::Table(inner) => walk(inner, path, arrays, out),
                DeValue::Array(items) if arrays == ArrayPaths::Indexed => {
                    for (i, item) in items.iter().enumerate() {
                        let p = format!("{path}[{i}]");
                        out.insert(p.clone(), (item.span(), item.span()));
                        walk_value(item, &p, arrays, out);
                    }
                }
                _ => {}
            }
        }
        fn walk(t: &DeTable<'_>, prefix: &str, arrays: ArrayPaths, out: &mut Entries) {
            for (k, v) in t.iter() {
                let path = if prefix.is_empty() {
                    k.get_ref().to_string()
                } else {
                    format!("{prefix}.{}", k.get_ref())
                };
                out.insert(path.clone(), (k.span(), v.span()));
                walk_value(v, &path, arrays, out);
            }
        }
        let mut entries = BTreeMap::new();
        walk(root, "", arrays, &mut entries);
        Self { entries, arrays }
    }

    /// The deepest key whose key or value contains byte `pos`.
    fn deepest_at(&self, pos: usize) -> Option<String> {
        self.entries
            .iter()
            .filter(|(_, (k, v))| k.contains(&pos) || v.contains(&pos) || v.start == pos)
            .max_by_key(|(path, _)| path.matches(self.arrays.separators()).count())
            .map(|(path, _)| path.clone())
    }

    /// The span of `key`, or of its closest parent present in the file: a missing key
    /// is reported where its section is.
    pub fn key_span(&self, key: &str) -> Option<Range<usize>> {
        let mut k = key;
        loop {
            if let Some((span, _)) = self.entries.get(k) {
                return Some(span.clone());
            }
            k = &k[..k.rfind(self.arrays.separators())?];
        }
    }
}

/// Removes the key at `path` (with `[i]` array steps before the last key, when indexed)
/// from the parsed document; false when there is no such key.
fn remove_key(root: &mut DeTable<'_>, path: &str, arrays: ArrayPaths) -> bool {
    let mut steps: Vec<(&str, Option<usize>)> = Vec::new();
    for part in path.split('.') {
        match part.split_once('[') {
            Some((name, idx)) if arrays == ArrayPaths::Indexed => {
                let Ok(i) = idx.trim_end_matches(']').parse() else {
                    return false;
                };
                steps.push((name, Some(i)));
            }
            _ => steps.push((part, None)),
        }
    }
    let Some((last, None)) = steps.pop() else {
        return false;
    };
    let mut t = root;
    for (name, idx) in steps {
        let Some(v) = t.get_mut(name).map(Spanned::get_mut) else {
            return false;
        };
        let v = match (v, idx) {
            (v, None) => v,
            (DeValue::Array(items), Some(i)) => match items.get_mut(i) {
                Some(item) => item.get_mut(),
                None => return false,
            },
            _ => return false,
        };
        match v {
            DeValue::Table(inner) => t = inner,
            _ => return false,
        }
    }
    t.remove(last).is_some()
}

/// A syntax error where toml put it. toml reports a dotted key deeper than its limit
/// without a span: that one is placed at the key with the most dots and explained.
fn syntax_problem(text: &str, e: &toml::de::Error) -> Diagnostic {
    let message = e.message().trim();
    if e.span().is_none() && message == "recursion limit" {
        return Diagnostic {
            location: Some((deepest_key_line(text), 1)),
            key: None,
            message: "a key or table header has too many dotted parts (toml allows fewer \
                      than 80): shorten it"
                .into(),
        };
    }
    Diagnostic::new(None, message).at(text, e.span())
}

/// The 1-based line whose key (before any `=`) has the most dots.
fn deepest_key_line(text: &str) -> usize {
    text.lines()
        .enumerate()
        .max_by_key(|(i, l)| {
            let key = l.split('=').next().unwrap_or("");
            // The first of equal lines wins.
            (key.matches('.').count(), std::cmp::Reverse(*i))
        })
        .map_or(1, |(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        name: String,
        #[serde(default)]
        size: u32,
        section: Option<Section>,
        #[serde(default)]
        pairs: Vec<Pair>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Section {
        #[serde(default)]
        on: bool,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Pair {
        a: u32,
        #[serde(default)]
        b: u32,
    }

    /// `line:col: key: message` for each problem.
    fn shown(problems: &[Diagnostic]) -> Vec<String> {
        problems
            .iter()
            .map(|d| {
                let (l, c) = d.location.expect("every problem here has a place");
                format!(
                    "{l}:{c}: {}: {}",
                    d.key.as_deref().unwrap_or("-"),
                    d.message
                )
            })
            .collect()
    }

    #[test]
    fn a_key_nested_too_deep_is_placed_and_explained() {
        // Found by the fuzz target `config`: toml reports this without a span, and the
        // diagnostic said only "recursion limit", nowhere.
        let deep = format!("[{}b]", "a.".repeat(100));
        for text in [
            format!("name = \"x\"\n{deep}\nsize = 1\n"),
            format!("name = \"x\"\n\n{}b = 1\n", "a.".repeat(100)),
        ] {
            let problems = parse::<Doc>(&text, ArrayPaths::Indexed).unwrap_err();
            let shown = shown(&problems);
            assert_eq!(shown.len(), 1, "{shown:?}");
            assert!(
                shown[0].starts_with(&format!(
                    "{}:1: -: ",
                    2 + usize::from(text.contains("\n\n"))
                )),
                "{shown:?}"
            );
            assert!(shown[0].contains("too many dotted parts"), "{shown:?}");
        }
    }

    #[test]
    fn a_clean_file_parses_with_no_problems() {
        let text = "name = \"x\"\n[section]\non = true\n[[pairs]]\na = 1\n";
        let l = parse::<Doc>(text, ArrayPaths::Indexed).unwrap();
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(l.value.name, "x");
        assert!(l.value.section.unwrap().on);
        assert_eq!(l.value.pairs, vec![Pair { a: 1, b: 0 }]);
        assert!(!l.dropped.covers("name"));
    }

    #[test]
    fn all_problems_are_found_at_once_in_file_order() {
        let text = "bogus = 1\nsize = \"big\"\n[section]\non = \"yes\"\nfoo = 2\n";
        let l = parse::<Doc>(text, ArrayPaths::Indexed).unwrap();
        assert_eq!(
            shown(&l.problems),
            [
                "1:1: bogus: unknown field `bogus`, expected one of `name`, `size`, `section`, `pairs`",
                "2:8: size: invalid type: string \"big\", expected u32",
                "4:6: section.on: invalid type: string \"yes\", expected a boolean",
                "5:1: section.foo: unknown field `foo`, expected `on` or `tags`",
            ]
        );
        // What was wrong now holds a placeholder, and the caller is told so.
        assert!(l.dropped.covers("size"));
        assert!(l.dropped.covers("section.on"));
        assert!(!l.dropped.covers("section"));
        assert!(!l.dropped.covers("name"));
    }

    #[test]
    fn a_bad_key_in_an_array_of_tables_is_named_by_its_entry() {
        let text = "[[pairs]]\na = 1\n[[pairs]]\na = 2\nc = 3\n";
        let l = parse::<Doc>(text, ArrayPaths::Indexed).unwrap();
        assert_eq!(
            shown(&l.problems),
            ["5:1: pairs[1].c: unknown field `c`, expected `a` or `b`"]
        );
        // Only that key went: both entries are still there.
        assert_eq!(
            l.value.pairs,
            vec![Pair { a: 1, b: 0 }, Pair { a: 2, b: 0 }]
        );
        assert!(l.dropped.covers("pairs[1].c"));
        assert!(!l.dropped.covers("pairs[1]"));
        assert_eq!(
            l.spans.key_span("pairs[1].c"),
            text.find("c = 3").map(|s| s..s + 1)
        );
    }

    #[test]
    fn a_wrong_array_entry_drops_its_whole_array() {
        let text = "[section]\ntags = [\"a\", 5]\n";
        let l = parse::<Doc>(text, ArrayPaths::Indexed).unwrap();
        let problems = shown(&l.problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("2:14: section.tags[1]: invalid type: integer `5`"),
            "{problems:?}"
        );
        assert_eq!(l.value.section.unwrap().tags, Vec::<String>::new());
        assert!(l.dropped.covers("section.tags"));
        assert!(l.dropped.covers("section.tags[0]"));
        assert!(!l.dropped.covers("section.tagsx"));
    }

    #[test]
    fn whole_array_paths_name_a_wrong_entry_by_its_array() {
        let text = "[section]\ntags = [\"a\", 5]\nbogus = 1\n";
        let l = parse::<Doc>(text, ArrayPaths::Whole).unwrap();
        assert_eq!(
            shown(&l.problems),
            [
                "2:14: section.tags: invalid type: integer `5`, expected a string",
                "3:1: section.bogus: unknown field `bogus`, expected `on` or `tags`",
            ]
        );
        assert!(l.dropped.covers("section.tags"));
        // `[` is no step of a path here, but part of a (quoted) key.
        assert!(!l.dropped.covers("section.tags[0]"));
    }

    #[test]
    fn an_entry_missing_a_key_is_named_and_covered() {
        let text = "[[pairs]]\na = 1\n[[pairs]]\nb = 1\n";
        let l = parse::<Doc>(text, ArrayPaths::Indexed).unwrap();
        assert_eq!(shown(&l.problems), ["3:1: pairs[1]: missing field `a`"]);
        assert!(l.dropped.covers("pairs[1].a"));
        assert!(!l.dropped.covers("pairs[0]"));
    }

    #[test]
    fn a_wrong_value_does_not_hide_the_keys_its_table_lacks() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Top {
            section: Option<Needs>,
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Needs {
            url: Http,
            id: String,
            license: String,
        }
        #[derive(Debug)]
        struct Http;
        impl<'de> Deserialize<'de> for Http {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                if s.starts_with("http://") {
                    Ok(Http)
                } else {
                    Err(serde::de::Error::custom("not an http URL"))
                }
            }
        }
        let l = parse::<Top>("[section]\nurl = \"ftp://x\"\n", ArrayPaths::Indexed).unwrap();
        assert_eq!(
            shown(&l.problems),
            [
                "1:1: section: missing field `id`",
                "1:1: section: missing field `license`",
                "2:7: section.url: not an http URL",
            ]
        );
    }

    #[test]
    fn a_key_missing_from_the_top_table_is_reported_with_the_rest() {
        // `a` is missing from the top table itself: a placeholder takes its place, and the
        // wrong `b` is found too.
        let text = "# pair\nb = \"x\"\n";
        let problems = parse::<Pair>(text, ArrayPaths::Indexed).unwrap().problems;
        let shown: Vec<_> = problems
            .iter()
            .map(|d| (d.location, d.key.as_deref(), d.message.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                (Some((1, 1)), None, "missing field `a`"),
                (
                    Some((2, 5)),
                    Some("b"),
                    "invalid type: string \"x\", expected u32"
                ),
            ]
        );
    }

    #[test]
    fn syntax_errors_are_all_reported_with_their_places() {
        let problems = parse::<Doc>("name = \nsize = 'x\n", ArrayPaths::Indexed).unwrap_err();
        assert!(problems.len() >= 2, "{problems:?}");
        assert!(problems.iter().all(|d| d.key.is_none()));
        assert_eq!(problems[0].location.map(|(l, _)| l), Some(1));
        assert!(
            problems
                .iter()
                .any(|d| d.location.map(|(l, _)| l) == Some(2))
        );
    }

    #[test]
    fn a_missing_key_is_placed_at_its_closest_parent_in_the_file() {
        let text = "name = \"x\"\n[section]\non = true\n[[pairs]]\na = 1\n";
        let l = parse::<Doc>(text, ArrayPaths::Indexed).unwrap();
        let at = |s: &str| text.find(s).map(|i| i..i + s.len());
        assert_eq!(l.spans.key_span("name"), at("name"));
        assert_eq!(l.spans.key_span("section.tags"), at("section"));
        assert_eq!(l.spans.key_span("pairs[0].b"), l.spans.key_span("pairs[0]"));
        assert_eq!(l.spans.key_span("absent.key"), None);
    }
}
