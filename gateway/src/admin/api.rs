//! The admin API's types: what `/mirrors`, `/verdict/<name>` and `/config` answer, written by
//! the admin listener and read back by `gateway verdict` and the tests, so no reader re-derives
//! a field from untyped JSON. The JSON field names are a contract (the README, docs/CONTRACT.md,
//! the Flagger and Argo Rollouts examples read them): a type here changes only with them.
//!
//! The parts' own report types are re-exported, so one module is the whole API.

use std::collections::BTreeMap;
use std::path::PathBuf;

use gateway_config::{Destination, ObjectStatus, Route, Warning};
use serde::{Deserialize, Serialize, Serializer};

pub use crate::compare::NoiseReport;
pub use crate::promote::{Event, PromotionReport, PromotionState};
pub use crate::stats::{
    ComparisonCounts, CopyCounts, DropReason, LatencyDelta, MirrorKey, MirrorReport, MismatchRecord, ShadowOutcome, Unresolved,
};
pub use crate::verdict::{Evidence, Limits, State, Verdict};

/// `GET /mirrors`: every mirror's report, what noise learning did per comparing mirror, and the
/// promotions in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "MirrorsText")]
pub struct MirrorsDocument {
    /// Every mirror ever configured, by route then mirror.
    pub mirrors: Vec<MirrorReport>,
    /// Per mirror that compares (`route/mirror` in JSON): second requests sent, requests not
    /// eligible and why, mismatches reclassified as noise, fields learned per path pattern.
    #[serde(serialize_with = "keyed_by_text")]
    pub noise: BTreeMap<MirrorKey, NoiseReport>,
    /// Per mirror that compares: the fields learned as noise.
    #[serde(serialize_with = "keyed_by_text")]
    pub noise_fields: BTreeMap<MirrorKey, Vec<String>>,
    pub promotions: Vec<PromotionReport>,
}

impl MirrorsDocument {
    /// The report of the mirror `name` names: `mirror` alone, or `route/mirror`.
    pub fn mirror(&self, name: &str) -> Result<&MirrorReport, Unresolved> {
        MirrorKey::lookup(name, &self.mirrors, MirrorReport::key)
    }

    /// The promotion of `route`, when it has one in force.
    pub fn promotion(&self, route: &str) -> Option<&PromotionReport> {
        self.promotions.iter().find(|p| p.route == route)
    }
}

/// `/mirrors` as JSON has it: map keys as `route/mirror` text, resolved against `mirrors`
/// (names may hold a `/`, so the text is never split).
#[derive(Deserialize)]
struct MirrorsText {
    mirrors: Vec<MirrorReport>,
    #[serde(default)]
    noise: BTreeMap<String, NoiseReport>,
    #[serde(default)]
    noise_fields: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    promotions: Vec<PromotionReport>,
}

impl TryFrom<MirrorsText> for MirrorsDocument {
    type Error = String;

    fn try_from(text: MirrorsText) -> Result<Self, String> {
        let keys: BTreeMap<String, MirrorKey> = text.mirrors.iter().map(|m| (m.key().to_string(), m.key())).collect();
        fn resolve<V>(keys: &BTreeMap<String, MirrorKey>, field: &str, map: BTreeMap<String, V>) -> Result<BTreeMap<MirrorKey, V>, String> {
            map.into_iter()
                .map(|(text, value)| match keys.get(&text) {
                    Some(key) => Ok((key.clone(), value)),
                    None => Err(format!("{field}: {text:?} is none of the mirrors listed")),
                })
                .collect()
        }
        Ok(Self {
            noise: resolve(&keys, "noise", text.noise)?,
            noise_fields: resolve(&keys, "noise_fields", text.noise_fields)?,
            mirrors: text.mirrors,
            promotions: text.promotions,
        })
    }
}

fn keyed_by_text<V: Serialize, S: Serializer>(map: &BTreeMap<MirrorKey, V>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(map.iter().map(|(key, value)| (key.to_string(), value)))
}

/// `GET /verdict/<name>`: the mirror's verdict (200 when it passes, 412 otherwise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictAnswer {
    pub route: String,
    pub mirror: String,
    /// `pending`, `pass` or `fail`; `off` (`None`) when the mirror has no verdict.
    #[serde(with = "state_or_off")]
    pub state: Option<State>,
    pub reasons: Vec<String>,
    /// The whole verdict; absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

impl VerdictAnswer {
    pub fn new(key: &MirrorKey, verdict: Option<Verdict>) -> Self {
        let (route, mirror) = (key.route.clone(), key.mirror.clone());
        match verdict {
            Some(verdict) => Self { route, mirror, state: Some(verdict.state), reasons: verdict.reasons.clone(), verdict: Some(verdict) },
            None => Self {
                route,
                mirror,
                state: None,
                reasons: vec!["this mirror has no verdict: it does not compare answers, or its verdict is off".to_owned()],
                verdict: None,
            },
        }
    }
}

/// A name that names no mirror (404) or several (409), with the mirrors it could be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub error: String,
    /// `route/mirror` of every mirror there is (404), or of those the name is on (409).
    pub mirrors: Vec<String>,
}

/// `GET /config`: the files, the reload status, and the routing table in force.
#[derive(Debug, Serialize)]
pub struct ConfigDocument<'a> {
    pub files: &'a [PathBuf],
    /// Seconds since the Unix epoch.
    pub loaded_at: u64,
    pub reloads: u64,
    pub last_reload_error: Option<String>,
    pub warnings: &'a [Warning],
    /// Every Kubernetes object with its conditions: accepted, rejected (with the reason) or
    /// scoped out.
    pub objects: &'a [ObjectStatus],
    pub routes: &'a [Route],
    pub destinations: &'a [Destination],
}

/// A verdict state, or `off` for none.
mod state_or_off {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::verdict::State;

    pub fn serialize<S: Serializer>(state: &Option<State>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(state.map_or("off", State::as_str))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<State>, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "off" => Ok(None),
            _ => State::ALL
                .into_iter()
                .find(|s| s.as_str() == text)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("no verdict state {text:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_keyed_by_route_slash_mirror_and_read_back_by_the_mirrors_listed() {
        let stats = crate::stats::MirrorStats::new(
            "ns/vs",
            "app/v2",
            "app/v2",
            &crate::settings::ReportSettings { recent_mismatches: 1, max_bytes: 1024, trace_url: String::new() },
        );
        let key = MirrorKey::new("ns/vs", "app/v2");
        let document = MirrorsDocument {
            mirrors: vec![stats.report()],
            noise: BTreeMap::from([(key.clone(), NoiseReport { sent: 3, ..NoiseReport::default() })]),
            noise_fields: BTreeMap::from([(key.clone(), vec!["$.seq".to_owned()])]),
            promotions: Vec::new(),
        };
        let json = serde_json::to_value(&document).unwrap();
        assert_eq!(json["noise"]["ns/vs/app/v2"]["sent"], 3);
        assert_eq!(json["noise_fields"]["ns/vs/app/v2"], serde_json::json!(["$.seq"]));
        let back: MirrorsDocument = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, document);
        assert_eq!(back.mirror("app/v2").map(MirrorReport::key), Ok(key));
        let mut stray = json;
        stray["noise"]["nowhere/v2"] = stray["noise"]["ns/vs/app/v2"].clone();
        assert!(serde_json::from_value::<MirrorsDocument>(stray).is_err(), "a key that is none of the mirrors");
    }

    #[test]
    fn a_mirror_without_a_verdict_answers_off_and_no_verdict_field() {
        let answer = VerdictAnswer::new(&MirrorKey::new("r", "m"), None);
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["state"], "off");
        assert!(json.get("verdict").is_none(), "{json}");
        assert_eq!(serde_json::from_value::<VerdictAnswer>(json).unwrap(), answer);
    }
}
