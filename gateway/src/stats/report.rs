//! What `/mirrors` says about one mirror ([`MirrorReport`]), as the gateway writes it and as its
//! CLI and tests read it back: every type here serialises and deserialises to the same JSON.

use std::fmt;
use std::ops::Index;

use enum_map::EnumMap;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::key::MirrorKey;
use super::outcome::ShadowOutcome;
use super::recent::MismatchRecord;
use crate::verdict::{Evidence, Verdict};

/// `/mirrors` entry for one mirror.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MirrorReport {
    pub route: String,
    pub mirror: String,
    pub destination: String,
    pub comparing: bool,
    pub copies: CopyCounts,
    pub comparison: ComparisonCounts,
    /// (matched + noise) / (matched + mismatched + noise): a comparison that differed in learned
    /// noise only is a match; skipped ones are not counted either way.
    pub match_rate: Option<f64>,
    /// Shadow minus primary response time, milliseconds, over the recent compared requests.
    pub latency_delta_ms: LatencyDelta,
    pub recent_mismatches: Vec<MismatchRecord>,
    /// The decision, when the mirror has a verdict (it compares, and `verdict` is not off).
    pub verdict: Option<Verdict>,
    /// What the verdict is decided on, over the window: counts and paired latency samples, so
    /// `gateway verdict` can add up several replicas' evidence before deciding.
    #[serde(default)]
    pub evidence: Evidence,
}

impl MirrorReport {
    pub fn key(&self) -> MirrorKey {
        MirrorKey::new(&self.route, &self.mirror)
    }
}

/// Copies sent, and how every copy planned ended, by [`ShadowOutcome`]. In JSON: `sent`, one
/// field per outcome (`ok`, `timeout`, `error`), `dropped` (all reasons) and `dropped_<reason>`
/// per drop reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CopyCounts {
    pub sent: u64,
    pub ended: EnumMap<ShadowOutcome, u64>,
}

impl CopyCounts {
    /// Copies that have ended, whatever the way: once it equals the copies planned, none is in
    /// flight.
    pub fn total_ended(&self) -> u64 {
        self.ended.values().sum()
    }

    /// Copies dropped, for any reason.
    pub fn dropped(&self) -> u64 {
        self.ended.iter().filter(|(outcome, _)| matches!(outcome, ShadowOutcome::Dropped(_))).map(|(_, n)| n).sum()
    }

    /// The JSON field of an outcome's count.
    fn field(outcome: ShadowOutcome) -> String {
        match outcome {
            ShadowOutcome::Dropped(reason) => format!("dropped_{}", reason.as_str()),
            other => other.as_str().to_owned(),
        }
    }
}

impl Index<ShadowOutcome> for CopyCounts {
    type Output = u64;

    fn index(&self, outcome: ShadowOutcome) -> &u64 {
        &self.ended[outcome]
    }
}

impl Serialize for CopyCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("sent", &self.sent)?;
        for (outcome, count) in self.ended.iter().filter(|(outcome, _)| !matches!(outcome, ShadowOutcome::Dropped(_))) {
            map.serialize_entry(outcome.as_str(), count)?;
        }
        map.serialize_entry("dropped", &self.dropped())?;
        for (outcome, count) in self.ended.iter().filter(|(outcome, _)| matches!(outcome, ShadowOutcome::Dropped(_))) {
            map.serialize_entry(&Self::field(outcome), count)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for CopyCounts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = CopyCounts;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("copy counts by outcome")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CopyCounts, A::Error> {
                let mut counts = CopyCounts::default();
                while let Some(field) = map.next_key::<String>()? {
                    if field == "sent" {
                        counts.sent = map.next_value()?;
                    } else if let Some(outcome) = ShadowOutcome::all().find(|o| CopyCounts::field(*o) == field) {
                        counts.ended[outcome] = map.next_value()?;
                    } else {
                        // `dropped` is the sum of the others; a newer gateway's outcome is skipped.
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(counts)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComparisonCounts {
    pub matched: u64,
    pub mismatched: u64,
    pub noise: u64,
    pub skipped: u64,
}

impl ComparisonCounts {
    /// Comparison results of every kind: a copy whose comparison is recorded counts here once.
    pub fn total(&self) -> u64 {
        self.matched + self.mismatched + self.noise + self.skipped
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyDelta {
    /// Compared pairs in the window.
    pub samples: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    /// How far back the samples go (at most).
    pub window_seconds: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::DropReason;

    #[test]
    fn copy_counts_keep_their_json_fields_and_read_back() {
        let mut counts = CopyCounts { sent: 7, ..CopyCounts::default() };
        counts.ended[ShadowOutcome::Ok] = 4;
        counts.ended[ShadowOutcome::Timeout] = 1;
        counts.ended[ShadowOutcome::Dropped(DropReason::InFlightCap)] = 2;
        counts.ended[ShadowOutcome::Dropped(DropReason::ShadowEjected)] = 3;
        let json = serde_json::to_string(&counts).unwrap();
        assert_eq!(
            json,
            r#"{"sent":7,"ok":4,"timeout":1,"error":0,"dropped":5,"dropped_max_in_flight":2,"dropped_body_over_cap":0,"dropped_body_backpressure":0,"dropped_client_aborted":0,"dropped_shadow_ejected":3}"#
        );
        let back: CopyCounts = serde_json::from_str(&json).unwrap();
        assert_eq!(back, counts);
        assert_eq!((back.dropped(), back.total_ended()), (5, 10));
        let newer: CopyCounts = serde_json::from_str(r#"{"sent":1,"ok":1,"dropped_some_new_reason":4}"#).unwrap();
        assert_eq!((newer.sent, newer[ShadowOutcome::Ok], newer.total_ended()), (1, 1, 1));
    }
}
