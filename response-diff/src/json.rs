//! Structural comparison of two JSON documents.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::path::{JsonPath, Step, render};

/// One differing JSON value: where, and the two sides rendered as compact JSON (absent = `None`).
pub(crate) struct JsonDifference {
    pub(crate) path: String,
    pub(crate) primary: Option<String>,
    pub(crate) shadow: Option<String>,
}

/// Walks both documents together: objects by key (order-insensitive), arrays by index. A change
/// of array length is one difference at the array's path with the two lengths; the common
/// elements are still compared. Stops after `limit` differences.
pub(crate) fn diff(primary: &Value, shadow: &Value, ignore: &[JsonPath], limit: usize, value_len: Option<usize>) -> Vec<JsonDifference> {
    let mut walk = Walk { ignore, limit, value_len, out: Vec::new(), location: Vec::new() };
    walk.value(primary, shadow);
    walk.out
}

struct Walk<'v, 'i> {
    ignore: &'i [JsonPath],
    limit: usize,
    /// How many characters of each value to keep; `None`: values are redacted, never rendered.
    value_len: Option<usize>,
    out: Vec<JsonDifference>,
    location: Vec<Step<'v>>,
}

impl<'v> Walk<'v, '_> {
    fn full(&self) -> bool {
        self.out.len() >= self.limit
    }

    fn ignored(&self) -> bool {
        self.ignore.iter().any(|p| p.matches(&self.location))
    }

    fn show(&self, v: &Value) -> String {
        self.value_len.map(|max| compact(v, max)).unwrap_or_default()
    }

    fn push(&mut self, primary: Option<String>, shadow: Option<String>) {
        if !self.full() {
            self.out.push(JsonDifference { path: render(&self.location), primary, shadow });
        }
    }

    fn value(&mut self, primary: &'v Value, shadow: &'v Value) {
        if self.full() || self.ignored() {
            return;
        }
        match (primary, shadow) {
            (Value::Object(a), Value::Object(b)) => {
                let keys: BTreeSet<&'v String> = a.keys().chain(b.keys()).collect();
                for key in keys {
                    if self.full() {
                        return;
                    }
                    self.location.push(Step::Key(key));
                    match (a.get(key.as_str()), b.get(key.as_str())) {
                        (Some(x), Some(y)) => self.value(x, y),
                        (x, y) => {
                            if !self.ignored() {
                                self.push(x.map(|v| self.show(v)), y.map(|v| self.show(v)));
                            }
                        }
                    }
                    self.location.pop();
                }
            }
            (Value::Array(a), Value::Array(b)) => {
                if a.len() != b.len() {
                    self.push(Some(length(a.len())), Some(length(b.len())));
                }
                for (index, (x, y)) in a.iter().zip(b).enumerate() {
                    if self.full() {
                        return;
                    }
                    self.location.push(Step::Index(index));
                    self.value(x, y);
                    self.location.pop();
                }
            }
            (Value::Number(x), Value::Number(y)) if same_number(x, y) => {}
            (x, y) if x == y => {}
            (x, y) => self.push(Some(self.show(x)), Some(self.show(y))),
        }
    }
}

/// `1` and `1.0` are the same number to a JSON consumer; big integers are compared exactly.
fn same_number(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return a == b;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => x == y,
    }
}

fn length(n: usize) -> String {
    format!("array of {n}")
}

/// Compact JSON, cut at `max` characters (with `…`) without serialising all of a huge value.
fn compact(v: &Value, max: usize) -> String {
    /// Keeps the first bytes written and fails once it has enough, ending serialisation early.
    struct Prefix {
        buf: Vec<u8>,
        cap: usize,
    }
    impl std::io::Write for Prefix {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            let room = self.cap.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&data[..data.len().min(room)]);
            if data.len() > room {
                return Err(std::io::Error::other("enough"));
            }
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // A char is at most 4 bytes: this many bytes always hold `max + 1` characters if there are.
    let mut prefix = Prefix { buf: Vec::new(), cap: max.saturating_add(1).saturating_mul(4) };
    let _ = serde_json::to_writer(&mut prefix, v);
    crate::shorten(&String::from_utf8_lossy(&prefix.buf), max)
}
