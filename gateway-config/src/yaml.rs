//! A YAML value with its path in the document, so every error and warning can say where it is.
//! Shared by both front-ends, with the value parsers (durations, sizes, string matches, headers).

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde_yaml::Value;

use crate::model::StringMatch;
use crate::{ConfigError, Warning};

/// A value in a document and where it is.
#[derive(Clone)]
pub(crate) struct Node<'a> {
    pub v: &'a Value,
    pub file: &'a str,
    /// A prefix (e.g. `document 4 (VirtualService target)`) shown before the path, if any.
    doc: &'a str,
    /// Dotted path inside the document, e.g. `spec.http[0].route`.
    path: String,
}

pub(crate) type Result<T> = std::result::Result<T, ConfigError>;

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

impl<'a> Node<'a> {
    pub fn root(v: &'a Value, file: &'a str, doc: &'a str) -> Self {
        Node { v, file, doc, path: String::new() }
    }

    /// The full location, e.g. `document 4 (VirtualService target): spec.http[0]`.
    pub fn path(&self) -> String {
        match (self.doc.is_empty(), self.path.is_empty()) {
            (true, true) => "(top level)".to_string(),
            (true, false) => self.path.clone(),
            (false, true) => self.doc.to_string(),
            (false, false) => format!("{}: {}", self.doc, self.path),
        }
    }

    pub fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.file, self.path(), message.into())
    }

    pub fn warning(&self, message: impl Into<String>) -> Warning {
        Warning::new(self.file, self.path(), message.into())
    }

    fn at(&self, v: &'a Value, path: String) -> Node<'a> {
        Node { v, file: self.file, doc: self.doc, path }
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) }
    }

    /// A child by key; `None` when absent or null.
    pub fn get(&self, key: &str) -> Option<Node<'a>> {
        let v = self.v.as_mapping()?.get(key)?;
        if v.is_null() {
            return None;
        }
        Some(self.at(v, self.child_path(key)))
    }

    /// A child position that does not exist yet, for errors about a missing key.
    pub fn missing(&self, key: &str) -> ConfigError {
        ConfigError::new(self.file, self.at(self.v, self.child_path(key)).path(), "required key is missing")
    }

    pub fn require(&self, key: &str) -> Result<Node<'a>> {
        self.get(key).ok_or_else(|| self.missing(key))
    }

    /// The entries of a mapping with string keys, in order.
    pub fn entries(&self) -> Result<Vec<(String, Node<'a>)>> {
        let map = self.v.as_mapping().ok_or_else(|| self.err(format!("expected a mapping, found {}", kind_of(self.v))))?;
        map.iter()
            .map(|(k, v)| {
                let key = scalar_to_string(k).ok_or_else(|| self.err(format!("keys must be strings, found {}", kind_of(k))))?;
                let path = self.child_path(&key);
                Ok((key, self.at(v, path)))
            })
            .collect()
    }

    pub fn is_mapping(&self) -> bool {
        self.v.is_mapping()
    }

    pub fn is_seq(&self) -> bool {
        self.v.is_sequence()
    }

    /// The items of a list.
    pub fn seq(&self) -> Result<Vec<Node<'a>>> {
        let seq = self.v.as_sequence().ok_or_else(|| self.err(format!("expected a list, found {}", kind_of(self.v))))?;
        Ok(seq.iter().enumerate().map(|(i, v)| self.at(v, format!("{}[{i}]", self.path))).collect())
    }

    /// A list, or a single item taken as a list of one.
    pub fn one_or_many(&self) -> Result<Vec<Node<'a>>> {
        if self.is_seq() { self.seq() } else { Ok(vec![self.at(self.v, self.path.clone())]) }
    }

    /// Errors on the first key not in `allowed`, naming it.
    pub fn deny_unknown(&self, allowed: &[&str]) -> Result<()> {
        for (key, child) in self.entries()? {
            if !allowed.contains(&key.as_str()) {
                return Err(child.err(format!("unknown key \"{key}\" (expected one of: {})", allowed.join(", "))));
            }
        }
        Ok(())
    }

    /// A warning for each key not in `handled`: Istio fields this gateway does not implement.
    pub fn warn_unhandled(&self, handled: &[&str], warnings: &mut Vec<Warning>) {
        let Ok(entries) = self.entries() else { return };
        for (key, child) in entries {
            if !handled.contains(&key.as_str()) && !child.v.is_null() {
                warnings.push(child.warning("not implemented by this gateway; ignored"));
            }
        }
    }

    pub fn str(&self) -> Result<&'a str> {
        self.v.as_str().ok_or_else(|| self.err(format!("expected a string, found {}", kind_of(self.v))))
    }

    /// A string, number or boolean, as text (labels and header values are often written bare).
    pub fn scalar(&self) -> Result<String> {
        scalar_to_string(self.v).ok_or_else(|| self.err(format!("expected a string or number, found {}", kind_of(self.v))))
    }

    pub fn bool(&self) -> Result<bool> {
        match self.v {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s == "true" => Ok(true),
            Value::String(s) if s == "false" => Ok(false),
            other => Err(self.err(format!("expected true or false, found {}", kind_of(other)))),
        }
    }

    pub fn u64(&self) -> Result<u64> {
        match self.v {
            Value::Number(n) => n.as_u64().ok_or_else(|| self.err(format!("expected a whole number >= 0, found {n}"))),
            Value::String(s) => s.trim().parse().map_err(|_| self.err(format!("expected a whole number >= 0, found \"{s}\""))),
            other => Err(self.err(format!("expected a number, found {}", kind_of(other)))),
        }
    }

    pub fn u32(&self) -> Result<u32> {
        let n = self.u64()?;
        u32::try_from(n).map_err(|_| self.err(format!("{n} is too large")))
    }

    pub fn usize(&self) -> Result<usize> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| self.err(format!("{n} is too large")))
    }

    pub fn port(&self) -> Result<u16> {
        let n = self.u64()?;
        match u16::try_from(n) {
            Ok(0) => Err(self.err("port 0 is not a valid port")),
            Ok(p) => Ok(p),
            Err(_) => Err(self.err(format!("port {n} is out of range 1..=65535"))),
        }
    }

    pub fn f64(&self) -> Result<f64> {
        let n = match self.v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().trim_end_matches('%').trim().parse().ok(),
            _ => None,
        };
        n.ok_or_else(|| self.err(format!("expected a number, found {}", kind_of(self.v))))
    }

    /// A percentage in 0..=100.
    pub fn percent(&self) -> Result<f64> {
        let p = self.f64()?;
        if !(0.0..=100.0).contains(&p) {
            return Err(self.err(format!("percentage {p} is out of range 0..=100")));
        }
        Ok(p)
    }

    pub fn duration(&self) -> Result<Duration> {
        let text = self.scalar()?;
        parse_duration(&text).map_err(|e| self.err(format!("bad duration \"{text}\": {e}")))
    }

    /// Bytes: `65536`, `64KiB`, `1MiB`, `1MB`.
    pub fn size(&self) -> Result<usize> {
        let text = self.scalar()?;
        parse_size(&text).map_err(|e| self.err(format!("bad size \"{text}\": {e}")))
    }

    pub fn header_name(&self) -> Result<HeaderName> {
        let s = self.str()?;
        HeaderName::from_bytes(s.as_bytes()).map_err(|_| self.err(format!("invalid header name \"{s}\"")))
    }

    pub fn header_value(&self) -> Result<HeaderValue> {
        let s = self.scalar()?;
        HeaderValue::from_str(&s).map_err(|_| self.err(format!("invalid header value \"{s}\"")))
    }

    pub fn method(&self) -> Result<Method> {
        let s = self.str()?;
        let upper = s.to_ascii_uppercase();
        Method::from_bytes(upper.as_bytes()).map_err(|_| self.err(format!("invalid method \"{s}\"")))
    }

    /// `{exact|prefix|regex: value}`, exactly one kind.
    pub fn string_match(&self) -> Result<StringMatch> {
        self.deny_unknown(&["exact", "prefix", "regex"])?;
        let entries = self.entries()?;
        let mut found = entries.iter().filter(|(_, v)| !v.v.is_null());
        let Some((kind, value)) = found.next() else {
            return Err(self.err("expected one of exact, prefix or regex"));
        };
        if let Some((other, _)) = found.next() {
            return Err(self.err(format!("\"{kind}\" and \"{other}\" both given; a match takes exactly one of exact, prefix or regex")));
        }
        let value_node = value.clone();
        let text = value_node.scalar()?;
        match kind.as_str() {
            "exact" => Ok(StringMatch::Exact(text)),
            "prefix" => Ok(StringMatch::Prefix(text)),
            _ => StringMatch::regex(&text).map_err(|e| value_node.err(format!("bad regex \"{text}\": {}", one_line(&e)))),
        }
    }
}

pub(crate) fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

fn scalar_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Go/Istio style durations: one or more `<number><unit>` with units h, m, s, ms, us, ns
/// (`15s`, `500ms`, `1m30s`, `0.5s`). A bare `0` is zero.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("empty".into());
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err("expected a number, e.g. 15s, 500ms, 1m".into());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| format!("\"{}\" is not a number", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let seconds = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            "" => return Err("missing unit (h, m, s, ms, us, ns)".into()),
            other => return Err(format!("unknown unit \"{other}\" (h, m, s, ms, us, ns)")),
        };
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).map_err(|_| "out of range".to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("1..2s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999999h").is_err());
    }

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
}
