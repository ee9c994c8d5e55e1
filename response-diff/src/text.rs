//! Text bodies (HTML, CSV, plain text) compared by content: lines aligned by their content, then
//! the changed lines compared token by token, so one number that changed inside a line is one
//! difference, named by the text around it rather than by where it sits in the page.
//!
//! A token is a run of whitespace, a word (letters, digits and `_`, joined across `.`, `:` and
//! `-` between two of them, so `3.2ms`, `v0.65.5`, `2026-12-01T10:15:00Z`, a UUID and `col-id` are
//! one token each) or one other character. A word with a digit in it is *variable* (a number, a
//! time, an id, a version). A difference is named `body:text[<template>]`: up to three plain
//! words of its line on each side, variable words written `{}`, and `{}` where the change is:
//! `took 3.2 ms` against `took 4.1 ms` is `body:text[Queries took {} ms]` on every page that has
//! that footer, whatever its length; a version in another place of the page has another name.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use similar::{Algorithm, DiffTag};

use crate::{Difference, shorten};

/// The line diff and the token diffs of one comparison share this much time (the diff of two
/// large unrelated texts can be slow); past it, the diff is coarser, never wrong.
const TIME_BUDGET: Duration = Duration::from_millis(100);
/// Plain words of context kept on each side of a change.
const CONTEXT_WORDS: usize = 3;
/// Tokens of context kept on each side at most (punctuation-heavy markup).
const CONTEXT_TOKENS: usize = 10;
/// Characters of context kept on each side at most.
const CONTEXT_CHARS: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Space { newline: bool },
    Word { variable: bool },
    Other,
}

struct Tokens<'t> {
    text: Vec<&'t str>,
    kind: Vec<Kind>,
}

fn tokenize(s: &str) -> Tokens<'_> {
    let mut tokens = Tokens { text: Vec::new(), kind: Vec::new() };
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    let mut rest = s;
    while let Some(first) = rest.chars().next() {
        let (len, kind) = if first.is_whitespace() {
            let len = rest.find(|c: char| !c.is_whitespace()).unwrap_or(rest.len());
            (len, Kind::Space { newline: rest[..len].contains('\n') })
        } else if word_char(first) {
            let mut len = first.len_utf8();
            let mut chars = rest[len..].chars().peekable();
            while let Some(c) = chars.next() {
                if word_char(c) {
                    len += c.len_utf8();
                } else if matches!(c, '.' | ':' | '-') && chars.peek().is_some_and(|&n| word_char(n)) {
                    len += 1;
                } else {
                    break;
                }
            }
            (len, Kind::Word { variable: rest[..len].bytes().any(|b| b.is_ascii_digit()) })
        } else {
            (first.len_utf8(), Kind::Other)
        };
        tokens.text.push(&rest[..len]);
        tokens.kind.push(kind);
        rest = &rest[len..];
    }
    tokens
}

/// How a token reads in a field name.
fn template(text: &str, kind: Kind) -> &str {
    match kind {
        Kind::Space { .. } => " ",
        Kind::Word { variable: true } => "{}",
        _ => text,
    }
}

/// The template of the text before (`backwards`) or after `at`, and how many plain words it has:
/// within the line, or across line ends with `cross_lines`.
fn context(tokens: &Tokens<'_>, at: usize, backwards: bool, cross_lines: bool) -> (String, usize) {
    let mut parts: Vec<&str> = Vec::new();
    let (mut words, mut chars) = (0, 0);
    let mut index = at;
    loop {
        let next = if backwards { index.checked_sub(1) } else { Some(index).filter(|&i| i < tokens.text.len()) };
        let Some(i) = next else { break };
        let kind = tokens.kind[i];
        let line_end = kind == (Kind::Space { newline: true }) && !cross_lines;
        if line_end || words >= CONTEXT_WORDS || parts.len() >= CONTEXT_TOKENS {
            break;
        }
        let part = template(tokens.text[i], kind);
        if chars + part.len() > CONTEXT_CHARS {
            break;
        }
        if kind == (Kind::Word { variable: false }) {
            words += 1;
        }
        chars += part.len();
        parts.push(part);
        index = if backwards { i } else { i + 1 };
    }
    if backwards {
        parts.reverse();
    }
    let joined: String = parts.concat();
    let trimmed = if backwards { joined.trim_start() } else { joined.trim_end() };
    (trimmed.to_owned(), words)
}

/// The field name of a change at `start..end` of `tokens`: the words of its line around it, or,
/// when its line has none (`<td>12</td>`), the words of the lines around.
fn field_name(tokens: &Tokens<'_>, start: usize, end: usize) -> String {
    let (mut before, b) = context(tokens, start, true, false);
    let (mut after, a) = context(tokens, end, false, false);
    if a + b == 0 {
        before = context(tokens, start, true, true).0;
        after = context(tokens, end, false, true).0;
    }
    format!("body:text[{before}{{}}{after}]")
}

/// The template of a whole line (for lines only one side has).
fn line_template(line: &str) -> String {
    let tokens = tokenize(line.trim());
    let mut out = String::new();
    for (text, kind) in tokens.text.iter().zip(&tokens.kind) {
        let part = template(text, *kind);
        if out.len() + part.len() > 2 * CONTEXT_CHARS {
            out.push('…');
            break;
        }
        out.push_str(part);
    }
    out
}

/// The differences between two texts, at most `limit`, each field named once.
/// With `redact`, field names show a short hash of their template instead of the text (which
/// comes from the body): the same template has the same name, nothing of the body is shown.
pub(crate) fn diff(primary: &str, shadow: &str, limit: usize, max_len: usize, redact: bool) -> Vec<Difference> {
    let deadline = Instant::now() + TIME_BUDGET;
    let lines = similar::TextDiff::configure().timeout(TIME_BUDGET).diff_lines(primary, shadow);
    let mut out = Out { seen: HashSet::new(), differences: Vec::new(), limit, max_len, redact };
    for op in lines.ops() {
        let (tag, old, new) = op.as_tag_tuple();
        if tag == DiffTag::Equal {
            continue;
        }
        if old.is_empty() || new.is_empty() {
            let old_text: String = old.clone().filter_map(|i| lines.old_slice(i)).collect();
            let new_text: String = new.clone().filter_map(|i| lines.new_slice(i)).collect();
            // Lines only one side has: one difference per line, named by the line's template.
            let (text, primary_side) = if old.is_empty() { (&new_text, false) } else { (&old_text, true) };
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let value = Some(line.trim().to_owned());
                let (p, s) = if primary_side { (value, None) } else { (None, value) };
                if !out.push(format!("body:text[{}]", line_template(line)), p, s) {
                    return out.differences;
                }
            }
            continue;
        }
        // The changed lines with the equal line on each side, for their words to name a change
        // in a line that has none (`<td>`, `12`).
        let same = |a: Option<usize>, b: Option<usize>| match (a, b) {
            (Some(a), Some(b)) => lines.old_slice(a).filter(|line| lines.new_slice(b) == Some(*line)),
            _ => None,
        };
        let before = same(old.start.checked_sub(1), new.start.checked_sub(1));
        let after = same(Some(old.end), Some(new.end));
        let old_text: String = before.into_iter().chain(old.clone().filter_map(|i| lines.old_slice(i))).chain(after).collect();
        let new_text: String = before.into_iter().chain(new.clone().filter_map(|i| lines.new_slice(i))).chain(after).collect();
        if !tokens_diff(&old_text, &new_text, deadline, &mut out) {
            return out.differences;
        }
    }
    out.differences
}

struct Out {
    seen: HashSet<String>,
    differences: Vec<Difference>,
    limit: usize,
    max_len: usize,
    redact: bool,
}

impl Out {
    /// Adds a difference unless its field is already named; `false` once the limit is reached.
    fn push(&mut self, field: String, primary: Option<String>, shadow: Option<String>) -> bool {
        if self.differences.len() >= self.limit {
            return false;
        }
        let field = if self.redact { format!("body:text[#{}]", short_hash(&field)) } else { field };
        if self.seen.insert(field.clone()) {
            let cut = |v: Option<String>| v.map(|v| shorten(&v, self.max_len));
            self.differences.push(Difference { field, primary: cut(primary), shadow: cut(shadow) });
        }
        self.differences.len() < self.limit
    }
}

/// 12 hex digits of the SHA-256 of `s`.
fn short_hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Token differences of one block of changed lines; `false` once the limit is reached.
fn tokens_diff(old_text: &str, new_text: &str, deadline: Instant, out: &mut Out) -> bool {
    let (a, b) = (tokenize(old_text), tokenize(new_text));
    let ops = similar::capture_diff_slices_deadline(Algorithm::Myers, &a.text, &b.text, Some(deadline));
    for op in ops {
        let (tag, old, new) = op.as_tag_tuple();
        if tag == DiffTag::Equal {
            continue;
        }
        // Named from the primary's side (the shadow's when the change is a deletion at the end).
        let field = field_name(&a, old.start, old.end);
        let side = |tokens: &Tokens<'_>, range: std::ops::Range<usize>| -> Option<String> {
            let text: String = tokens.text[range].concat();
            (!text.is_empty()).then_some(text)
        };
        if !out.push(field, side(&a, old), side(&b, new)) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(a: &str, b: &str) -> Vec<(String, Option<String>, Option<String>)> {
        diff(a, b, 20, 120, false).into_iter().map(|d| (d.field, d.primary, d.shadow)).collect()
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn tokens_keep_numbers_versions_times_and_ids_whole() {
        let t = tokenize("took 3.2ms v0.65.5 at 2026-12-01T10:15:00Z id=3f2b9c1e-aa00 col-id.");
        let words: Vec<&str> = t.text.iter().zip(&t.kind).filter(|(_, k)| matches!(k, Kind::Word { .. })).map(|(t, _)| *t).collect();
        assert_eq!(words, ["took", "3.2ms", "v0.65.5", "at", "2026-12-01T10:15:00Z", "id", "3f2b9c1e-aa00", "col-id"]);
        assert_eq!(t.text.concat(), "took 3.2ms v0.65.5 at 2026-12-01T10:15:00Z id=3f2b9c1e-aa00 col-id.");
    }

    #[test]
    fn one_number_in_a_line_is_one_difference_named_by_its_text() {
        let a = "<p>Hello</p>\n&middot; Queries took 11.708ms\n</footer>\n";
        let b = "<p>Hello</p>\n&middot; Queries took 7.339ms\n</footer>\n";
        assert_eq!(fields(a, b), [("body:text[middot; Queries took {}]".to_owned(), some("11.708ms"), some("7.339ms"))]);
    }

    #[test]
    fn the_name_does_not_depend_on_the_line_or_the_page_length() {
        let footer = |n: usize, ms: &str| format!("{}<footer>Queries took {ms}ms</footer>\n", "<tr><td>row</td></tr>\n".repeat(n));
        let short = fields(&footer(3, "1.5"), &footer(3, "2.5"));
        let long = fields(&footer(300, "9.1"), &footer(300, "0.4"));
        assert_eq!(short.len(), 1);
        assert_eq!(short[0].0, long[0].0);
        assert_eq!(short[0].0, "body:text[footer>Queries took {}</footer>]");
    }

    #[test]
    fn a_version_and_a_timing_on_one_page_are_two_fields() {
        let page = |v: &str, ms: &str| {
            format!("<footer>Powered by <a title=\"Datasette {v}\">Datasette</a>\n&middot; Queries took {ms}ms\n</footer>\n")
        };
        let got = fields(&page("v0.64.8", "1.1"), &page("v0.65.5", "2.2"));
        let names: Vec<&str> = got.iter().map(|(f, _, _)| f.as_str()).collect();
        assert_eq!(names, ["body:text[a title=\"Datasette {}\">Datasette</a>]", "body:text[middot; Queries took {}]"]);
        assert_eq!((got[0].1.as_deref(), got[0].2.as_deref()), (Some("v0.64.8"), Some("v0.65.5")));
    }

    #[test]
    fn lines_only_one_side_has_are_named_by_their_template() {
        let got = fields("a\nrow 17 paid\nz\n", "a\nz\n");
        assert_eq!(got, [("body:text[row {} paid]".to_owned(), some("row 17 paid"), None)]);
        let got = fields("a\n", "a\nnew line\n");
        assert_eq!(got, [("body:text[new line]".to_owned(), None, some("new line"))]);
    }

    #[test]
    fn a_field_is_named_once_and_the_limit_holds() {
        let a = (0..50).map(|i| format!("<td>{i}</td>\n")).collect::<String>();
        let b = (0..50).map(|i| format!("<td>{}</td>\n", i + 100)).collect::<String>();
        let got = fields(&a, &b);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "body:text[<td>{}</td>]");
        // Each line a word of its own: a field each.
        let word = |i: usize| -> String { i.to_string().bytes().map(|d| char::from(b'a' + d - b'0')).collect() };
        let a = (0..50).map(|i| format!("<td class={}>x</td>\n", word(i))).collect::<String>();
        let b = (0..50).map(|i| format!("<td class={}>y</td>\n", word(i))).collect::<String>();
        assert_eq!(diff(&a, &b, 5, 120, false).len(), 5);
    }

    #[test]
    fn unrelated_large_texts_finish_in_time() {
        let a: String = (0..20_000).map(|i| format!("line {i} {}\n", i * 7)).collect();
        let b: String = (0..20_000).map(|i| format!("other {} text\n", i * 13)).collect();
        let started = Instant::now();
        let got = diff(&a, &b, 20, 120, false);
        assert!(!got.is_empty());
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
