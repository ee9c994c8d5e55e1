//! How a copy ended and what its comparison found: the outcome types, and counters indexed by
//! them. Each counter is an atomic for `/mirrors` beside its Prometheus handle, both held in an
//! [`EnumMap`], so a new outcome or drop reason is one variant here: its counter, its metric
//! series, its `/mirrors` field and its span value follow from the variant and its name.

use std::sync::atomic::{AtomicU64, Ordering};

use enum_map::{Enum, EnumMap};
use metrics::Counter;
use response_diff::Classified;

/// How one copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ShadowOutcome {
    /// The shadow answered (any status) within the mirror's timeout.
    Ok,
    Timeout,
    /// Refused, reset, or the copy's body was abandoned mid-way.
    Error,
    /// Not sent, or abandoned before it was complete, for `DropReason`.
    Dropped(DropReason),
}

/// Why a copy was not sent, or abandoned. The name is the `reason` label of
/// `gateway_mirror_copies_total`, `dropped_<name>` in `/mirrors`, and `mirror.drop_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum DropReason {
    /// `max_in_flight` copies were already running.
    #[strum(serialize = "max_in_flight")]
    InFlightCap,
    /// The request body is larger than the mirror's `max_body`.
    BodyOverCap,
    /// The shadow read the body more slowly than the client sent it.
    BodyBackpressure,
    /// The client's body failed or was abandoned.
    ClientAborted,
    /// The shadow destination is ejected: its last copies got no answer ([`crate::upstream::Ejection`]).
    ShadowEjected,
}

/// Why a request could not be copied at all. Counted by each mirror that would have copied it,
/// in `gateway_mirror_copies_total{outcome="not_eligible"}` only (a request that cannot be
/// copied is no copy: `/mirrors` does not count it). (A `CONNECT` tunnel is not one: no mirror's
/// methods ever take it, so no mirror would have copied it.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum NotEligible {
    /// An upgrade (WebSocket, any `Upgrade` protocol): a copy cannot hold a conversation.
    Upgrade,
}

impl NotEligible {
    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl ShadowOutcome {
    /// `ok`, `timeout`, `error` or `dropped`: the `outcome` label and `mirror.outcome`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The `reason` label: the drop reason, empty for the other outcomes.
    pub fn reason(self) -> &'static str {
        match self {
            ShadowOutcome::Dropped(reason) => reason.as_str(),
            ShadowOutcome::Ok | ShadowOutcome::Timeout | ShadowOutcome::Error => "",
        }
    }

    /// Every outcome, in declaration order (drop reasons in theirs).
    pub fn all() -> impl Iterator<Item = ShadowOutcome> {
        (0..<ShadowOutcome as Enum>::LENGTH).map(ShadowOutcome::from_usize)
    }
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// A non-zero code for a one-byte atomic (0 stands for "no reason yet").
    pub fn code(self) -> u8 {
        // At most a few reasons: far from 255.
        u8::try_from(self.into_usize() + 1).unwrap_or(u8::MAX)
    }

    /// The reason of a [`Self::code`]; `None` for 0 (or a code no reason has).
    pub fn from_code(code: u8) -> Option<Self> {
        let index = usize::from(code).checked_sub(1)?;
        (index < <DropReason as Enum>::LENGTH).then(|| DropReason::from_usize(index))
    }
}

/// What one comparison found, without the details: the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ComparisonResult {
    Match,
    Mismatch,
    /// Every difference was known noise.
    Noise,
    /// Not compared (incomplete, too large, the comparator busy).
    Skipped,
}

impl ComparisonResult {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl From<&Classified> for ComparisonResult {
    fn from(result: &Classified) -> Self {
        match result {
            Classified::Match => ComparisonResult::Match,
            Classified::Mismatch(_) => ComparisonResult::Mismatch,
            Classified::Noise(_) => ComparisonResult::Noise,
            Classified::Skipped(_) => ComparisonResult::Skipped,
        }
    }
}

/// A count kept twice: in an atomic read by `/mirrors`, and in a Prometheus series registered
/// once, so counting allocates nothing.
pub struct Tally {
    count: AtomicU64,
    metric: Counter,
}

impl Tally {
    pub fn new(metric: Counter) -> Self {
        Self { count: AtomicU64::new(0), metric }
    }

    pub fn add(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.metric.increment(1);
    }

    pub fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// One [`Tally`] per value of `K`.
pub struct Tallies<K: enum_map::EnumArray<Tally>>(EnumMap<K, Tally>);

impl<K: enum_map::EnumArray<Tally> + enum_map::EnumArray<u64>> Tallies<K> {
    /// Registers one series per key, with `metric(key)`.
    pub fn register(mut metric: impl FnMut(K) -> Counter) -> Self {
        Self(EnumMap::from_fn(|key| Tally::new(metric(key))))
    }

    pub fn add(&self, key: K) {
        self.0[key].add();
    }

    /// Every count, by key.
    pub fn counts(&self) -> EnumMap<K, u64> {
        EnumMap::from_fn(|key| self.0[key].get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_labels_and_fields_the_report_and_metrics_use() {
        let names: Vec<(&str, &str)> = ShadowOutcome::all().map(|o| (o.as_str(), o.reason())).collect();
        assert_eq!(
            names,
            [
                ("ok", ""),
                ("timeout", ""),
                ("error", ""),
                ("dropped", "max_in_flight"),
                ("dropped", "body_over_cap"),
                ("dropped", "body_backpressure"),
                ("dropped", "client_aborted"),
                ("dropped", "shadow_ejected"),
            ]
        );
        let results: Vec<&str> = [ComparisonResult::Match, ComparisonResult::Mismatch, ComparisonResult::Noise, ComparisonResult::Skipped]
            .map(ComparisonResult::as_str)
            .into();
        assert_eq!(results, ["match", "mismatch", "noise", "skipped"]);
    }

    #[test]
    fn every_drop_reason_has_a_code_that_gives_it_back() {
        for index in 0..<DropReason as Enum>::LENGTH {
            let reason = DropReason::from_usize(index);
            assert_ne!(reason.code(), 0);
            assert_eq!(DropReason::from_code(reason.code()), Some(reason));
        }
        assert_eq!(DropReason::from_code(0), None);
        assert_eq!(DropReason::from_code(u8::MAX), None);
    }
}
