//! Typed deserialization shared by both front-ends: every document is read into serde structs
//! through `serde_path_to_error` (so an error names the key path where it happened) and
//! `serde_ignored` (so a key the structs do not know is reported by name, never dropped).
//!
//! The value types here do their own checking while they are deserialized (a regex compiles,
//! a percentage is in range, a header name is valid), so the error carries the path of the
//! value that is wrong.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_norway::Value;

use crate::error::{ConfigError, Warning};
use crate::model::{IgnorePath, StringMatch};
use crate::sources::Origin;
use crate::status::ObjectId;

pub(crate) type Result<T> = std::result::Result<T, ConfigError>;

/// Where a document is: its file and its label (`document 4 (VirtualService target)`, or empty
/// for a file of one native document).
#[derive(Clone, Copy)]
pub(crate) struct Doc<'a> {
    pub file: &'a str,
    pub label: &'a str,
    /// The Kubernetes object this document is, if it is one: its errors reject that object
    /// alone ([`crate::status`]); `None` (native documents) makes them refuse the configuration.
    pub object: Option<ObjectId>,
}

impl Doc<'_> {
    /// `label: path`, or whichever of the two is not empty.
    pub fn path(&self, path: &str) -> String {
        match (self.label.is_empty(), path.is_empty() || path == ".") {
            (true, true) => "(top level)".to_string(),
            (true, false) => path.to_string(),
            (false, true) => self.label.to_string(),
            (false, false) => format!("{}: {path}", self.label),
        }
    }

    pub fn err(&self, path: &str, message: impl AsRef<str>) -> ConfigError {
        ConfigError::new(self.file, self.path(path), message).of_object(self.object)
    }

    pub fn warning(&self, path: &str, message: impl AsRef<str>) -> Warning {
        Warning::new(self.file, self.path(path), message)
    }

    /// Where `path` of this document is, for what validation reports later.
    pub fn origin(&self, path: &str) -> Origin {
        Origin { file: self.file.to_string(), path: self.path(path), object: self.object }
    }
}

/// Deserializes `value` as `T`. Errors name the key path; keys `T` does not declare are
/// returned (as paths such as `spec.http[0].retries`) for the caller to report.
pub(crate) fn typed<T: DeserializeOwned>(value: Value, doc: Doc<'_>) -> Result<(T, Vec<String>)> {
    let mut ignored = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| ignored.push(ignored_path(&path));
    let de = serde_ignored::Deserializer::new(value, &mut record);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(t) => Ok((t, ignored)),
        Err(e) => Err(doc.err(&e.path().to_string(), plain_words(&one_line(e.inner())))),
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" and "missing field `x`" in the words
/// the rest of the messages use.
fn plain_words(message: &str) -> String {
    let names = |list: &str| list.split(", ").map(|n| n.trim_matches('`')).collect::<Vec<_>>().join(", ");
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((key, expected)) = rest.split_once('`')
    {
        return match expected.strip_prefix(", expected one of ").or_else(|| expected.strip_prefix(", expected ")) {
            Some(list) => format!("unknown key \"{key}\" (expected one of: {})", names(list)),
            None => format!("unknown key \"{key}\" (no keys are expected here)"),
        };
    }
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some(key) = rest.strip_suffix('`')
    {
        return format!("required key \"{key}\" is missing");
    }
    message.to_string()
}

/// `spec.http[0].retries`, the same shape `serde_path_to_error` writes.
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => {
            let parent = ignored_path(parent);
            if parent.is_empty() { key.clone() } else { format!("{parent}.{key}") }
        }
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

pub(crate) fn one_line(e: &dyn fmt::Display) -> String {
    e.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The YAML type of a value, for messages.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Forwards every scalar form to `$target` through `IntoDeserializer`, and a map through
/// `MapAccessDeserializer`: used by the "this or that" shapes below.
macro_rules! forward_scalars {
    ($build:ident) => {
        fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
            self.$build(v.into_deserializer())
        }
        fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Self::Value, E> {
            self.$build(v.into_deserializer())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
            self.$build(v.into_deserializer())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
            self.$build(v.into_deserializer())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Self::Value, E> {
            self.$build(v.into_deserializer())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Self::Value, E> {
            self.$build(v.into_deserializer())
        }
    };
}

/// A list, or a single item taken as a list of one (`hosts: api` or `hosts: [api, web]`).
#[derive(Debug)]
pub(crate) struct OneOrMany<T> {
    pub items: Vec<T>,
    /// Written as a list (`methods: [GET]`), not as one item (`methods: GET`).
    pub list: bool,
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany { items: Vec::new(), list: true }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T> V<T> {
            fn one<'de, D: Deserializer<'de>>(self, d: D) -> std::result::Result<OneOrMany<T>, D::Error>
            where
                T: Deserialize<'de>,
            {
                Ok(OneOrMany { items: vec![T::deserialize(d)?], list: false })
            }
        }
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("one item or a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany { items, list: true })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Self::Value, A::Error> {
                self.one(MapAccessDeserializer::new(map))
            }
            forward_scalars!(one);
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A short scalar form or the full mapping (`to: target/v2` or `to: {to: target/v2, weight: 10}`).
#[derive(Debug)]
pub(crate) enum ShortOrMap<S, M> {
    Short(S),
    Map(M),
}

impl<'de, S: Deserialize<'de>, M: Deserialize<'de>> Deserialize<'de> for ShortOrMap<S, M> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<S, M>(PhantomData<(S, M)>);
        impl<S, M> V<S, M> {
            fn short<'de, D: Deserializer<'de>>(self, d: D) -> std::result::Result<ShortOrMap<S, M>, D::Error>
            where
                S: Deserialize<'de>,
            {
                S::deserialize(d).map(ShortOrMap::Short)
            }
        }
        impl<'de, S: Deserialize<'de>, M: Deserialize<'de>> Visitor<'de> for V<S, M> {
            type Value = ShortOrMap<S, M>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Self::Value, A::Error> {
                M::deserialize(MapAccessDeserializer::new(map)).map(ShortOrMap::Map)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> std::result::Result<Self::Value, A::Error> {
                self.short(SeqAccessDeserializer::new(seq))
            }
            forward_scalars!(short);
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A mapping, in the order written; keys are strings unless `K` says more (e.g. [`HName`]).
#[derive(Debug)]
pub(crate) struct Ordered<V, K = String>(pub Vec<(K, V)>);

impl<V, K> Default for Ordered<V, K> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>, K: Deserialize<'de>> Deserialize<'de> for Ordered<V, K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Vis<V, K>(PhantomData<(V, K)>);
        impl<'de, V: Deserialize<'de>, K: Deserialize<'de>> Visitor<'de> for Vis<V, K> {
            type Value = Ordered<V, K>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key()? {
                    out.push((key, map.next_value()?));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(Vis(PhantomData))
    }
}

impl Ordered<Scalar> {
    /// Labels, selectors: the mapping as strings.
    pub fn strings(&self) -> std::collections::BTreeMap<String, String> {
        self.0.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()
    }
}

/// Text written as a string, number or boolean (labels and header values are often bare).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A whole number >= 0, written as a number or a numeric string.
struct Whole(u64);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Whole;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number >= 0")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Whole, E> {
                Ok(Whole(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Whole, E> {
                u64::try_from(v).map(Whole).map_err(|_| E::custom(format!("expected a whole number >= 0, found {v}")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Whole, E> {
                Err(E::custom(format!("expected a whole number >= 0, found {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Whole, E> {
                v.trim().parse().map(Whole).map_err(|_| E::custom(format!("expected a whole number >= 0, found \"{v}\"")))
            }
        }
        d.deserialize_any(V)
    }
}

macro_rules! whole_newtype {
    ($name:ident, $t:ty) => {
        #[derive(Debug, Clone, Copy)]
        pub(crate) struct $name(pub $t);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let Whole(n) = Whole::deserialize(d)?;
                <$t>::try_from(n).map($name).map_err(|_| de::Error::custom(format!("{n} is too large")))
            }
        }
    };
}

whole_newtype!(U32, u32);
whole_newtype!(Count, usize);

/// A TCP port, 1..=65535.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let Whole(n) = Whole::deserialize(d)?;
        match u16::try_from(n) {
            Ok(0) => Err(de::Error::custom("port 0 is not a valid port")),
            Ok(p) => Ok(Port(p)),
            Err(_) => Err(de::Error::custom(format!("port {n} is out of range 1..=65535"))),
        }
    }
}

/// A percentage in 0..=100: a number, or a string such as `"12.5"` or `"12.5%"`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Percent(pub f64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = f64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<f64, E> {
                Ok(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<f64, E> {
                v.trim().trim_end_matches('%').trim().parse().map_err(|_| E::custom(format!("expected a number, found \"{v}\"")))
            }
        }
        let p = d.deserialize_any(V)?;
        check_percent(p).map(Percent).map_err(de::Error::custom)
    }
}

pub(crate) fn check_percent(p: f64) -> std::result::Result<f64, String> {
    if (0.0..=100.0).contains(&p) { Ok(p) } else { Err(format!("percentage {p} is out of range 0..=100")) }
}

/// A duration in the workspace's one grammar ([`http_rules::duration`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let Scalar(text) = Scalar::deserialize(d)?;
        // Istio writes durations with a unit: a bare number is an error here, not seconds.
        http_rules::duration::parse(&text).map(Dur).map_err(|e| de::Error::custom(format!("bad duration {e}")))
    }
}

/// Bytes: `65536`, `64KiB`, `1MiB`, `1MB`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Size(pub usize);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let Scalar(text) = Scalar::deserialize(d)?;
        parse_size(&text).map(Size).map_err(|e| de::Error::custom(format!("bad size \"{text}\": {e}")))
    }
}

/// Byte sizes: a whole number, optionally with B, KiB, MiB, GiB (1024-based) or KB, MB, GB.
pub fn parse_size(text: &str) -> std::result::Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err("expected a number of bytes, e.g. 65536, 64KiB, 1MiB".into());
    }
    let n: u64 = digits.parse().map_err(|_| "too large".to_string())?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "Ki" => 1 << 10,
        "MiB" | "Mi" => 1 << 20,
        "GiB" | "Gi" => 1 << 30,
        "KB" | "kB" | "K" | "k" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        other => {
            return Err(format!("unknown unit \"{other}\" (B, KiB, MiB, GiB, KB, MB, GB)"));
        }
    };
    n.checked_mul(factor).and_then(|b| usize::try_from(b).ok()).ok_or_else(|| "too large".to_string())
}

#[derive(Debug, Clone)]
pub(crate) struct HName(pub HeaderName);

impl<'de> Deserialize<'de> for HName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let Scalar(s) = Scalar::deserialize(d)?;
        header_name(&s).map(HName).map_err(de::Error::custom)
    }
}

pub(crate) fn header_name(s: &str) -> std::result::Result<HeaderName, String> {
    HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("invalid header name \"{s}\""))
}

/// A header name where Istio also takes the `:authority` pseudo-header (header matches,
/// `headers.request.set`). JWT claims (`@request.auth.claims.*`) are refused by name: routing
/// on them needs Istio's RequestAuthentication, which is not implemented.
#[derive(Debug, Clone)]
pub(crate) enum IstioHeader {
    Name(HeaderName),
    Authority,
}

impl<'de> Deserialize<'de> for IstioHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let Scalar(s) = Scalar::deserialize(d)?;
        if s.eq_ignore_ascii_case(":authority") {
            return Ok(IstioHeader::Authority);
        }
        if s.starts_with("@request.auth.claims") {
            return Err(de::Error::custom(format!(
                "\"{s}\": JWT claim routing is not implemented (it needs Istio's RequestAuthentication)"
            )));
        }
        if s.starts_with(':') {
            return Err(de::Error::custom(format!("pseudo-header \"{s}\" is not implemented here (`:authority` is)")));
        }
        header_name(&s).map(IstioHeader::Name).map_err(de::Error::custom)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct HValue(pub HeaderValue);

impl<'de> Deserialize<'de> for HValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let Scalar(s) = Scalar::deserialize(d)?;
        HeaderValue::from_str(&s).map(HValue).map_err(|_| de::Error::custom(format!("invalid header value \"{s}\"")))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct MethodName(pub Method);

impl<'de> Deserialize<'de> for MethodName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let Scalar(s) = Scalar::deserialize(d)?;
        method(&s).map(MethodName).map_err(de::Error::custom)
    }
}

pub(crate) fn method(s: &str) -> std::result::Result<Method, String> {
    let upper = s.to_ascii_uppercase();
    Method::from_bytes(upper.as_bytes()).map_err(|_| format!("invalid method \"{s}\""))
}

/// A regex, compiled for full-match semantics where it is written.
#[derive(Debug, Clone)]
pub(crate) struct RegexText(pub StringMatch);

impl<'de> Deserialize<'de> for RegexText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let Scalar(text) = Scalar::deserialize(d)?;
        let bad = |why: String| de::Error::custom(format!("bad regex \"{text}\": {why}"));
        let translated = translate_re2(&text).map_err(bad)?;
        StringMatch::regex(&translated).map(RegexText).map_err(|e| bad(one_line(&e)))
    }
}

/// RE2 (Istio's and Envoy's regex dialect) syntax that Rust's `regex` lacks, translated:
/// `\Q...\E` quotes a literal span, and a pattern of just `*` (which Istio accepts) means any
/// value. `\C` (one byte, even inside a UTF-8 character) has no equivalent and is refused.
pub(crate) fn translate_re2(pattern: &str) -> std::result::Result<String, String> {
    if pattern == "*" {
        return Ok(".*".to_string());
    }
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Q') => {
                let mut literal = String::new();
                while let Some(c) = chars.next() {
                    if c == '\\' && chars.peek() == Some(&'E') {
                        chars.next();
                        break;
                    }
                    literal.push(c);
                }
                out.push_str(&regex::escape(&literal));
            }
            Some('C') => return Err("\\C (any single byte) is not supported; use . for any character".to_string()),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Ok(out)
}

/// A header or query parameter condition: `{exact|prefix|regex: value}`, or `{}` for "present
/// with any value" (Istio).
#[derive(Debug, Clone)]
pub(crate) struct Presence(pub StringMatch);

impl<'de> Deserialize<'de> for Presence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = RawMatch::deserialize(d)?;
        if raw.exact.is_none() && raw.prefix.is_none() && raw.regex.is_none() {
            return Ok(Presence(StringMatch::Present));
        }
        raw.into_match().map(|m| Presence(m.0)).map_err(de::Error::custom)
    }
}

/// `{exact|prefix|regex: value}`, exactly one kind.
#[derive(Debug, Clone)]
pub(crate) struct MatchSpec(pub StringMatch);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    exact: Option<Scalar>,
    prefix: Option<Scalar>,
    regex: Option<RegexText>,
}

/// A `uri` match, where Istio's `{}` (no kind given) is every path (Envoy's prefix `/`).
#[derive(Debug, Clone)]
pub(crate) struct UriMatch(pub Option<StringMatch>);

impl<'de> Deserialize<'de> for UriMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = RawMatch::deserialize(d)?;
        if raw.exact.is_none() && raw.prefix.is_none() && raw.regex.is_none() {
            return Ok(UriMatch(None));
        }
        raw.into_match().map(|m| UriMatch(Some(m.0))).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for MatchSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        RawMatch::deserialize(d)?.into_match().map_err(de::Error::custom)
    }
}

impl RawMatch {
    fn into_match(self) -> std::result::Result<MatchSpec, String> {
        let raw = self;
        let mut found = Vec::new();
        if let Some(Scalar(s)) = raw.exact {
            found.push(("exact", StringMatch::Exact(s)));
        }
        if let Some(Scalar(s)) = raw.prefix {
            found.push(("prefix", StringMatch::Prefix(s)));
        }
        if let Some(RegexText(r)) = raw.regex {
            found.push(("regex", r));
        }
        match found.len() {
            0 => Err("expected one of exact, prefix or regex".to_string()),
            1 => Ok(MatchSpec(found.remove(0).1)),
            _ => Err(format!("\"{}\" and \"{}\" both given; a match takes exactly one of exact, prefix or regex", found[0].0, found[1].0)),
        }
    }
}

/// A JSON path to ignore in comparisons, parsed where it is written.
#[derive(Debug, Clone)]
pub(crate) struct JsonPathText(pub IgnorePath);

impl<'de> Deserialize<'de> for JsonPathText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        json_path(text.trim()).map(JsonPathText).map_err(de::Error::custom)
    }
}

pub(crate) fn json_path(p: &str) -> std::result::Result<IgnorePath, String> {
    IgnorePath::parse(p).map_err(|e| format!("invalid JSON path \"{p}\": {}, e.g. $.timestamp or $.items[*].id", one_line(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999999").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn re2_syntax_rust_lacks_is_translated() {
        assert_eq!(translate_re2("*").unwrap(), ".*");
        assert_eq!(translate_re2(r"\Q/a.b+c\E/[0-9]+").unwrap(), r"/a\.b\+c/[0-9]+");
        assert_eq!(translate_re2(r"\Qx*").unwrap(), r"x\*");
        assert_eq!(translate_re2(r"\\Q").unwrap(), r"\\Q");
        assert!(translate_re2(r"a\Cb").unwrap_err().contains("\\C"));
        let m = StringMatch::regex(&translate_re2(r"\Q/v1.0\E/.*").unwrap()).unwrap();
        assert!(m.matches("/v1.0/x"));
        assert!(!m.matches("/v1x0/x"));
    }

    #[test]
    fn json_paths_are_parsed_not_just_prefixed() {
        assert!(json_path("$.timestamp").is_ok());
        assert!(json_path("$.items[*].id").is_ok());
        assert!(json_path("$[").is_err());
        assert!(json_path("timestamp").is_err());
    }
}
