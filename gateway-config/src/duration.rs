//! The one duration grammar of the gateway, Istio's (Go's `time.ParseDuration`): one or more
//! `<number><unit>` with units `h`, `m`, `s`, `ms`, `us`, `ns` (`15s`, `500ms`, `1.5s`, `1m30s`);
//! a bare `0` is zero. Routing files and process settings both use it, so a value that works in
//! one works in the other.
//!
//! For serde: `#[serde(with = "gateway_config::duration")]` on a `Duration` field, and
//! `#[serde(with = "gateway_config::duration::option")]` on an `Option<Duration>`.

use std::fmt;
use std::time::Duration;

use serde::Serializer;
use serde::de::{self, Deserializer, Visitor};

/// Parses a duration; the error says what is wrong, for a message naming the key.
pub fn parse(text: &str) -> Result<Duration, String> {
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

/// Formats a duration in the same grammar, exactly: `5s`, `500ms`, `1500us`, `7ns`.
pub fn format(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else if d.as_nanos().is_multiple_of(1_000) {
        format!("{}us", d.as_micros())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as 15s, 500ms, 1.5s or 1m")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(|e| E::custom(format!("bad duration \"{v}\": {e}")))
    }

    // A bare number has no unit; only 0 is unambiguous.
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        self.visit_str(&v.to_string())
    }
}

/// The same for `Option<Duration>` (absent or null is `None`).
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Duration>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 15s, 500ms, 1.5s or 1m")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                super::deserialize(d).map(Some)
            }
        }
        d.deserialize_option(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_grammar() {
        assert_eq!(parse("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert!(parse("15").is_err());
        assert!(parse("s").is_err());
        assert!(parse("1x").is_err());
        assert!(parse("1min").is_err());
        assert!(parse("1..2s").is_err());
        assert!(parse("").is_err());
        assert!(parse("99999999999999999999999h").is_err());
    }

    #[test]
    fn format_round_trips() {
        for d in [Duration::from_secs(5), Duration::from_millis(1500), Duration::from_micros(7), Duration::from_nanos(9), Duration::ZERO] {
            assert_eq!(parse(&format(d)), Ok(d), "{}", format(d));
        }
    }
}
