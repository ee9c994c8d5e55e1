//! The one duration grammar of the workspace, Istio's (Go's `time.ParseDuration`): one or more
//! `<number><unit>` with units h, m, s, ms, us (µs), ns: `15s`, `500ms`, `1.5s`, `1m30s`. A bare
//! `0` is zero. Routing files and process settings read durations alike.
//!
//! As a serde field: `#[serde(with = "http_rules::duration")]`.

use std::time::Duration;

/// Parses a duration; the error says what is wrong, for a message that names the key.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("empty duration (e.g. 15s, 500ms, 1m)".into());
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("{text:?}: expected a number, e.g. 15s, 500ms, 1m"));
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| format!("{text:?}: {:?} is not a number", &rest[..num_len]))?;
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
            "" => return Err(format!("{text:?}: missing unit (h, m, s, ms, us, ns)")),
            other => return Err(format!("{text:?}: unknown unit {other:?} (h, m, s, ms, us, ns)")),
        };
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).map_err(|_| format!("{text:?}: out of range"))
}

/// Writes a duration the way the configuration writes them: `5s`, `500ms`, `1.5s` stays exact.
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

/// `#[serde(with = "http_rules::duration")]`: reads the grammar above (a bare number of seconds
/// too, as environment variables and YAML integers give), writes [`format`].
pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration such as 15s, 500ms, 1.5s or 1m")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
            parse(text).map_err(E::custom)
        }
        fn visit_u64<E: serde::de::Error>(self, seconds: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(seconds))
        }
        fn visit_i64<E: serde::de::Error>(self, seconds: i64) -> Result<Duration, E> {
            u64::try_from(seconds).map(Duration::from_secs).map_err(|_| E::custom("a duration cannot be negative"))
        }
    }
    deserializer.deserialize_any(Visitor)
}

pub fn serialize<S: serde::Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_durations() {
        assert_eq!(parse("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert!(parse("soon").unwrap_err().contains("expected a number"));
        assert!(parse("5").unwrap_err().contains("missing unit"));
        assert!(parse("5d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn formatting_round_trips() {
        for text in ["5s", "500ms", "1500ms", "250us", "7ns"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
