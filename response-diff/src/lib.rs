//! Compares a shadow service's HTTP response with the primary's, for traffic mirroring.
//!
//! The gateway captures both responses of a mirrored request as [`Captured`] and calls
//! [`compare`], which is pure, synchronous and never panics. It looks at, in order:
//!
//! 1. the **status** code;
//! 2. the **headers**, as ordered lists of values, minus those that differ on every call (`date`,
//!    `server`, ..., the hop-by-hop headers, see [`DEFAULT_IGNORED_HEADERS`]) and
//!    [`DiffOptions::ignore_headers`]; `content-length` is skipped when the bodies differ, and
//!    `content-encoding` always, as bodies are compared decoded; values of
//!    [`DiffOptions::secret_headers`] are shown as `[redacted]`;
//! 3. the **body**, after undoing `content-encoding` (gzip, deflate, br): as JSON (a structural diff
//!    naming each differing value by its JSON path, with [`DiffOptions::ignore_paths`] left out),
//!    else as UTF-8 text (lines aligned by content, then the changed lines token by token, each
//!    difference named by the text around it: `body:text[Queries took {}]`), else as bytes
//!    (hashes and lengths).
//!
//! Responses that differ on every call of the primary itself (timestamps, timings, ids) are
//! handled by [`NoiseFilter`]: the gateway sometimes asks the primary twice,
//! [`NoiseFilter::learn`]s the fields that differed with their evidence per path pattern
//! ([`path_pattern`]: `/shop/customers/1254.json` is `/shop/customers/{id}.json`), and
//! [`NoiseFilter::classify`] drops those fields from later comparisons on that pattern, and on
//! every pattern once a field is noise on several. Differences the gateway itself made in the
//! shadow's copy of the request (its host, marker, trace context) are undone by [`compare_copy`]
//! before diffing.
//!
//! ```
//! use response_diff::{Captured, Classified, DiffOptions, NoiseFilter, compare};
//!
//! let answer = |body: &'static str| Captured { status: 200, body: body.into(), ..Captured::default() };
//! let mut opts = DiffOptions::default();
//! opts.ignore_paths = vec!["$.items[*].id".parse().unwrap()];
//!
//! let noise = NoiseFilter::new(1000);
//! noise.learn("/orders/1", &compare(&answer(r#"{"ts":1}"#), &answer(r#"{"ts":2}"#), &opts));
//!
//! let primary = answer(r#"{"ts":1,"total":2,"items":[{"id":7}]}"#);
//! let shadow = answer(r#"{"ts":3,"total":3,"items":[{"id":8}]}"#);
//! match noise.classify("/orders/2", compare(&primary, &shadow, &opts)) {
//!     Classified::Mismatch(differences) => assert_eq!(differences[0].field, "$.total"),
//!     other => panic!("{other:?}"),
//! }
//! ```

mod decode;
mod echo;
mod json;
mod noise;
mod path;
mod pattern;
mod text;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use echo::CopyChanges;
pub use noise::{
    Classified, LearnedNoise, NOISE_EVERYWHERE_AFTER_PATTERNS, NoiseField, NoiseFilter, NoiseSummary, STABLE_AFTER_SAMPLES, WARM_UP_SAMPLES,
};
pub use path::{JsonPath, PathError, replace_json};
pub use pattern::path_pattern;

/// Headers whose values differ on every call: never compared (nor are the hop-by-hop ones,
/// [`http_rules::HOP_BY_HOP`], which belong to one connection).
pub static DEFAULT_IGNORED_HEADERS: [HeaderName; 4] = [header::DATE, HeaderName::from_static("x-request-id"), header::SERVER, header::AGE];

/// The value shown in place of a secret header's value.
pub const REDACTED: &str = "[redacted]";

/// One HTTP response as captured by the gateway (the body possibly cut at a cap).
#[derive(Clone, Default)]
pub struct Captured {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body was cut at the capture cap: it cannot be compared.
    pub truncated: bool,
}

/// A body as the service answered it, for a person to read beside the parsed view (which may
/// be re-serialised, with keys sorted): decoded from its `content-encoding` when it decodes,
/// shown as text (bytes that are not UTF-8 as the replacement character), cut at a cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnsweredBody {
    pub text: String,
    /// Bytes of the body as decoded (or as captured, when it does not decode).
    pub bytes: usize,
    /// Only the first part is shown: cut here, or at the capture cap already.
    pub cut: bool,
}

impl Captured {
    /// The body as answered, at most `max` bytes of it (cut on a character boundary).
    pub fn answered_body(&self, max: usize) -> AnsweredBody {
        let decoded = decode::decode(&self.body, &decode::codings(&self.headers)).unwrap_or_else(|_| self.body.to_vec());
        let mut end = decoded.len().min(max);
        // A character cut at the cap: step back to its start (at most 3 bytes).
        if let Err(e) = std::str::from_utf8(&decoded[..end])
            && e.error_len().is_none()
            && end < decoded.len()
        {
            end = e.valid_up_to();
        }
        let text = String::from_utf8_lossy(&decoded[..end]).into_owned();
        AnsweredBody { text, bytes: decoded.len(), cut: self.truncated || end < decoded.len() }
    }
}

/// What to leave out of a comparison and how much of it to show.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Compared by no one, in addition to [`DEFAULT_IGNORED_HEADERS`].
    pub ignore_headers: Vec<HeaderName>,
    /// JSON values (and everything below them) left out of the body comparison.
    pub ignore_paths: Vec<JsonPath>,
    /// Report which fields differ, never their values (the status code is still shown).
    pub redact_values: bool,
    /// Headers still compared but whose values are never stored or shown.
    pub secret_headers: Vec<HeaderName>,
    /// At most this many differences are reported (at least one is, whatever this says).
    pub max_differences: usize,
    /// Values longer than this many characters are cut, ending in `…`.
    pub max_value_len: usize,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            ignore_headers: Vec::new(),
            ignore_paths: Vec::new(),
            redact_values: false,
            secret_headers: http_rules::SECRET_HEADERS.to_vec(),
            max_differences: 20,
            max_value_len: 120,
        }
    }
}

/// The outcome of comparing a shadow response with the primary's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Comparison {
    Match,
    /// Never empty; at most [`DiffOptions::max_differences`] long.
    Mismatch(Vec<Difference>),
    Skipped(SkipReason),
}

/// One differing field.
///
/// `field` is `status`, `header:<name>`, a JSON path such as `$.user.name` (an array whose length
/// changed shows `array of N` on each side), `body:text[<template>]` (a piece of text, named by
/// up to three words of its line on each side with numbers and ids written `{}`, and `{}` where
/// the change is, so the name does not depend on where in the page it is) or `body` (bytes:
/// values are a short SHA-256 and the length).
///
/// `None` means **absent** on that side (a header it did not send, a JSON key it did not have,
/// text it did not contain); a value that is there but not shown (a secret header, or every
/// value under [`DiffOptions::redact_values`]) is **hidden**: `Some(REDACTED)`.
/// Deserialisable too: the gateway's admin API is read back by its CLI and tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub field: String,
    pub primary: Option<String>,
    pub shadow: Option<String>,
}

impl Difference {
    /// A changed value, or something one side has and the other has not.
    pub fn change(&self) -> Change {
        if self.primary.is_some() && self.shadow.is_some() { Change::Value } else { Change::Presence }
    }

    /// Whether a side's value is there but not shown.
    pub fn hidden(side: &Option<String>) -> bool {
        side.as_deref() == Some(REDACTED)
    }
}

/// How a field differs: noise is learned for each apart, so that a value that changes on every
/// answer (a timing) does not hide the field disappearing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Both sides have it, with different values.
    Value,
    /// One side has it, the other has not.
    Presence,
}

/// Why two responses were not compared.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
pub enum SkipReason {
    /// A body was cut at the capture cap, or would decompress past the decoding cap.
    #[error("body over the size cap")]
    BodyOverCap,
    /// A `content-encoding` that is unknown, or a body that does not decode with it.
    #[error("undecodable content-encoding: {0}")]
    UndecodableEncoding(String),
    /// One of the two answers never completed (the shadow timed out or failed, or the
    /// primary's body was not fully delivered): there is nothing to compare.
    #[error("incomplete: {0}")]
    Incomplete(&'static str),
}

/// [`compare`] for a shadow that answered a copy of the request the gateway changed: the
/// changes ([`CopyChanges`]) echoed in the answers are undone first, so identical services
/// compare as identical even when they echo their request.
pub fn compare_copy(primary: &Captured, shadow: &Captured, opts: &DiffOptions, changes: &CopyChanges) -> Comparison {
    match echo::undo(primary, shadow, changes) {
        Some((primary, shadow)) => compare(&primary, &shadow, opts),
        None => compare(primary, shadow, opts),
    }
}

/// Compares `shadow` with `primary`: status, then headers, then body (see the crate docs).
///
/// When a body cannot be compared ([`Comparison::Skipped`]), a differing status or header is
/// still reported as a [`Comparison::Mismatch`]: a real difference should not hide behind a cap.
pub fn compare(primary: &Captured, shadow: &Captured, opts: &DiffOptions) -> Comparison {
    let limit = opts.max_differences.max(1);
    let mut differences = Vec::new();
    if primary.status != shadow.status {
        differences.push(Difference {
            field: "status".to_owned(),
            primary: Some(primary.status.to_string()),
            shadow: Some(shadow.status.to_string()),
        });
    }

    let body =
        if primary.truncated || shadow.truncated { Err(SkipReason::BodyOverCap) } else { compare_bodies(primary, shadow, opts, limit) };

    let mut ignored: Vec<&HeaderName> = DEFAULT_IGNORED_HEADERS.iter().chain(&http_rules::HOP_BY_HOP).chain(&opts.ignore_headers).collect();
    // Bodies are compared decoded, so how they were encoded on the wire is not a difference.
    ignored.push(&header::CONTENT_ENCODING);
    if body.as_ref().map_or(true, |body| body.raw_differ) {
        ignored.push(&header::CONTENT_LENGTH);
    }
    compare_headers(primary, shadow, opts, &ignored, &mut differences);

    match body {
        Err(reason) if differences.is_empty() => return Comparison::Skipped(reason),
        Err(_) => {}
        Ok(body) => differences.extend(body.differences),
    }
    if differences.is_empty() {
        return Comparison::Match;
    }
    differences.truncate(limit);
    if opts.redact_values {
        let hide = |side: &mut Option<String>| {
            if side.is_some() {
                *side = Some(REDACTED.to_owned());
            }
        };
        for d in differences.iter_mut().filter(|d| d.field != "status") {
            hide(&mut d.primary);
            hide(&mut d.shadow);
        }
    }
    Comparison::Mismatch(differences)
}

fn compare_headers(primary: &Captured, shadow: &Captured, opts: &DiffOptions, ignored: &[&HeaderName], out: &mut Vec<Difference>) {
    let mut names: Vec<&HeaderName> = primary.headers.keys().chain(shadow.headers.keys()).filter(|name| !ignored.contains(name)).collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    let secret = |name: &HeaderName| opts.secret_headers.contains(name);
    for name in names {
        let a: Vec<&[u8]> = primary.headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
        let b: Vec<&[u8]> = shadow.headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
        if a == b {
            continue;
        }
        let show = |values: &[&[u8]]| -> Option<String> {
            if values.is_empty() {
                None
            } else if secret(name) {
                Some(REDACTED.to_owned())
            } else {
                Some(shorten(&header_values(values), opts.max_value_len))
            }
        };
        out.push(Difference { field: format!("header:{name}"), primary: show(&a), shadow: show(&b) });
    }
}

/// One value as is; several as a JSON array, so that `a, b` and `["a", "b"]` stay apart.
fn header_values(values: &[&[u8]]) -> String {
    let values: Vec<String> = values.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect();
    match values.as_slice() {
        [one] => one.clone(),
        many => serde_json::to_string(many).unwrap_or_default(),
    }
}

struct BodyComparison {
    differences: Vec<Difference>,
    /// The bodies as captured differ (so `content-length` may too).
    raw_differ: bool,
}

fn compare_bodies(primary: &Captured, shadow: &Captured, opts: &DiffOptions, limit: usize) -> Result<BodyComparison, SkipReason> {
    let codings = (decode::codings(&primary.headers), decode::codings(&shadow.headers));
    let raw_differ = primary.body != shadow.body;
    let mut result = BodyComparison { differences: Vec::new(), raw_differ };
    if !raw_differ && codings.0 == codings.1 {
        return Ok(result);
    }
    let a = decode::decode(&primary.body, &codings.0)?;
    let b = decode::decode(&shadow.body, &codings.1)?;
    if a == b {
        return Ok(result);
    }
    let value_len = (!opts.redact_values).then_some(opts.max_value_len);
    result.differences = match (serde_json::from_slice::<serde_json::Value>(&a), serde_json::from_slice::<serde_json::Value>(&b)) {
        (Ok(x), Ok(y)) => json::diff(&x, &y, &opts.ignore_paths, limit, value_len)
            .into_iter()
            .map(|d| Difference { field: d.path, primary: d.primary, shadow: d.shadow })
            .collect(),
        _ => match (std::str::from_utf8(&a), std::str::from_utf8(&b)) {
            (Ok(x), Ok(y)) => text::diff(x, y, limit, opts.max_value_len, opts.redact_values),
            _ => vec![Difference { field: "body".to_owned(), primary: Some(fingerprint(&a)), shadow: Some(fingerprint(&b)) }],
        },
    };
    Ok(result)
}

/// `sha256:0123abcd… (123 bytes)`: enough to tell bodies apart without showing them.
fn fingerprint(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}… ({} bytes)", body.len())
}

/// Cuts `s` to `max` characters, marking the cut with `…`.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

#[cfg(test)]
mod tests;
