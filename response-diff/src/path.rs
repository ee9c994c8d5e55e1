//! JSON paths: the `ignore_paths` patterns and the names of differing JSON values.

use std::fmt;
use std::str::FromStr;

/// One step of a [`JsonPath`] pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Key(String),
    Index(usize),
    /// `[*]` or `.*`: any one array element or object member.
    Wildcard,
}

/// One step of a concrete location inside a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// A JSON path pattern such as `$.timestamp`, `$.items[*].id`, `$.a.b[2]` or `$['odd key']`.
///
/// Only the subset needed to name values is supported: the root `$`, member names (dotted or
/// bracket-quoted), array indices and the wildcards `[*]` and `.*`. A pattern that matches a value
/// also covers everything below it, so `$.meta` ignores the whole `meta` object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JsonPath(Vec<Segment>);

/// Why a JSON path pattern was rejected; the message names the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON path {path:?}: {reason}")]
pub struct PathError {
    /// The path as given.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl JsonPath {
    /// Whether this pattern names `location` exactly (wildcards standing for one step each).
    pub(crate) fn matches(&self, location: &[Step<'_>]) -> bool {
        self.0.len() == location.len()
            && self.0.iter().zip(location).all(|(seg, step)| match (seg, step) {
                (Segment::Wildcard, _) => true,
                (Segment::Key(k), Step::Key(s)) => k == s,
                (Segment::Index(i), Step::Index(j)) => i == j,
                _ => false,
            })
    }
}

impl FromStr for JsonPath {
    type Err = PathError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| PathError { path: input.to_owned(), reason: reason.to_owned() };
        let rest = input.trim().strip_prefix('$').ok_or_else(|| fail("must start with `$`"))?;
        let chars: Vec<char> = rest.chars().collect();
        let mut segments = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    i += 1;
                    if chars.get(i) == Some(&'.') {
                        return Err(fail("recursive descent `..` is not supported"));
                    }
                    let start = i;
                    while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                        i += 1;
                    }
                    let name: String = chars[start..i].iter().collect();
                    match name.as_str() {
                        "" => return Err(fail("empty member name after `.`")),
                        "*" => segments.push(Segment::Wildcard),
                        _ => segments.push(Segment::Key(name)),
                    }
                }
                '[' => {
                    i += 1;
                    match chars.get(i) {
                        Some(&quote @ ('\'' | '"')) => {
                            i += 1;
                            let mut name = String::new();
                            loop {
                                match chars.get(i) {
                                    None => return Err(fail("unterminated quoted member name")),
                                    Some('\\') => {
                                        let escaped = chars.get(i + 1).ok_or_else(|| fail("unterminated quoted member name"))?;
                                        name.push(*escaped);
                                        i += 2;
                                    }
                                    Some(&c) if c == quote => {
                                        i += 1;
                                        break;
                                    }
                                    Some(&c) => {
                                        name.push(c);
                                        i += 1;
                                    }
                                }
                            }
                            segments.push(Segment::Key(name));
                        }
                        Some('*') => {
                            i += 1;
                            segments.push(Segment::Wildcard);
                        }
                        Some(c) if c.is_ascii_digit() => {
                            let start = i;
                            while i < chars.len() && chars[i].is_ascii_digit() {
                                i += 1;
                            }
                            let digits: String = chars[start..i].iter().collect();
                            let index = digits.parse().map_err(|_| fail("array index out of range"))?;
                            segments.push(Segment::Index(index));
                        }
                        _ => return Err(fail("expected an index, `*` or a quoted name after `[`")),
                    }
                    if chars.get(i) != Some(&']') {
                        return Err(fail("missing `]`"));
                    }
                    i += 1;
                }
                c => return Err(fail(&format!("unexpected character {c:?}"))),
            }
        }
        Ok(JsonPath(segments))
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for segment in &self.0 {
            match segment {
                Segment::Key(k) => write_key(f, k)?,
                Segment::Index(i) => write!(f, "[{i}]")?,
                Segment::Wildcard => f.write_str("[*]")?,
            }
        }
        Ok(())
    }
}

/// Renders a concrete location the way [`JsonPath`] parses it, e.g. `$.items[0].id`.
pub(crate) fn render(location: &[Step<'_>]) -> String {
    struct Render<'a, 'b>(&'a [Step<'b>]);
    impl fmt::Display for Render<'_, '_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("$")?;
            for step in self.0 {
                match step {
                    Step::Key(k) => write_key(f, k)?,
                    Step::Index(i) => write!(f, "[{i}]")?,
                }
            }
            Ok(())
        }
    }
    Render(location).to_string()
}

/// `.name` for plain identifiers, `['name']` (with `\` escapes) for anything else.
fn write_key(f: &mut fmt::Formatter<'_>, key: &str) -> fmt::Result {
    let plain = !key.is_empty()
        && key != "*"
        && key.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        write!(f, ".{key}")
    } else {
        f.write_str("['")?;
        for c in key.chars() {
            if c == '\'' || c == '\\' {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("']")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> JsonPath {
        s.parse().unwrap()
    }

    #[test]
    fn parses_the_supported_forms() {
        assert_eq!(p("$").0, vec![]);
        assert_eq!(p("$.a.b[2]").0, vec![Segment::Key("a".into()), Segment::Key("b".into()), Segment::Index(2)]);
        assert_eq!(p("$.items[*].id").0, vec![Segment::Key("items".into()), Segment::Wildcard, Segment::Key("id".into())]);
        assert_eq!(p("$.*").0, vec![Segment::Wildcard]);
        assert_eq!(p("$['odd key']").0, vec![Segment::Key("odd key".into())]);
        assert_eq!(p(r#"$["it's"]"#).0, vec![Segment::Key("it's".into())]);
        assert_eq!(p(r"$['a\'b']").0, vec![Segment::Key("a'b".into())]);
    }

    #[test]
    fn display_round_trips() {
        for s in ["$", "$.a.b[2]", "$.items[*].id", "$['odd key']", r"$['a\'b']", "$['1st']"] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
        assert_eq!(p("$.*").to_string(), "$[*]");
    }

    #[test]
    fn errors_name_the_bad_path() {
        for bad in ["a.b", "$.", "$..a", "$[", "$[x]", "$['a", "$[1", "$a", "$[99999999999999999999999]"] {
            let err = bad.parse::<JsonPath>().unwrap_err();
            assert_eq!(err.path, bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn matching_with_wildcards() {
        let loc = [Step::Key("items"), Step::Index(3), Step::Key("id")];
        assert!(p("$.items[*].id").matches(&loc));
        assert!(p("$.items[3].id").matches(&loc));
        assert!(p("$.*[*].*").matches(&loc));
        assert!(!p("$.items[2].id").matches(&loc));
        assert!(!p("$.items[*]").matches(&loc));
        assert!(!p("$.items.id").matches(&loc));
        assert!(!p("$['3']").matches(&[Step::Index(3)]));
        assert_eq!(render(&loc), "$.items[3].id");
        assert_eq!(render(&[Step::Key("odd key")]), "$['odd key']");
    }
}

/// Replaces every value of `value` that one of `paths` names with `with` (for redacting a
/// recorded body); returns whether any was.
pub fn replace_json(value: &mut serde_json::Value, paths: &[JsonPath], with: &serde_json::Value) -> bool {
    fn walk(value: &mut serde_json::Value, location: &[Step<'_>], paths: &[JsonPath], with: &serde_json::Value) -> bool {
        if paths.iter().any(|p| p.matches(location)) {
            *value = with.clone();
            return true;
        }
        let mut inner: Vec<Step<'_>> = location.iter().map(Step::reborrow).collect();
        let mut any = false;
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    inner.push(Step::Key(key));
                    any |= walk(child, &inner, paths, with);
                    inner.pop();
                }
            }
            serde_json::Value::Array(items) => {
                for (i, child) in items.iter_mut().enumerate() {
                    inner.push(Step::Index(i));
                    any |= walk(child, &inner, paths, with);
                    inner.pop();
                }
            }
            _ => {}
        }
        any
    }
    !paths.is_empty() && walk(value, &[], paths, with)
}

impl Step<'_> {
    fn reborrow(&self) -> Step<'_> {
        match self {
            Step::Key(k) => Step::Key(k),
            Step::Index(i) => Step::Index(*i),
        }
    }
}

#[cfg(test)]
mod replace_tests {
    use super::*;

    #[test]
    fn named_values_are_replaced_at_any_depth_and_others_kept() {
        let mut value = serde_json::json!({"card": "4111", "items": [{"token": "a", "n": 1}, {"token": "b"}], "name": "Ann"});
        let paths: Vec<JsonPath> = ["$.card", "$.items[*].token"].iter().map(|p| p.parse().unwrap()).collect();
        assert!(replace_json(&mut value, &paths, &serde_json::json!("[redacted]")));
        assert_eq!(
            value,
            serde_json::json!({"card": "[redacted]", "items": [{"token": "[redacted]", "n": 1}, {"token": "[redacted]"}], "name": "Ann"})
        );
        assert!(!replace_json(&mut value, &["$.absent".parse().unwrap()], &serde_json::Value::Null));
    }
}
