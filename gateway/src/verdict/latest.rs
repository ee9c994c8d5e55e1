//! The latest verdict of one mirror, kept so that reading it costs an atomic load: every copy's
//! span carries its state (`mirror.verdict`), and `gateway_mirror_verdict{state}` shows it. It
//! is judged again at most once a [`REFRESH`] as comparisons arrive, and whenever asked.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use metrics::{Gauge, SharedString};

use super::{Evidence, Limits, State, Verdict, judge};

/// The verdict behind [`LatestVerdict::state`] is recomputed at most this often as comparisons
/// arrive.
pub const REFRESH: Duration = Duration::from_secs(1);

/// `state` when the mirror has no verdict.
const NO_VERDICT: u8 = u8::MAX;

pub struct LatestVerdict {
    /// The mirror's `verdict:` thresholds; `None`: it has no verdict.
    limits: Mutex<Option<Limits>>,
    /// The last verdict's state, by [`state_code`].
    state: AtomicU8,
    judged_at: Mutex<Option<Instant>>,
    /// `gateway_mirror_verdict{state}`: 1 for the current state, 0 for the others (by `State::ALL`).
    gauges: [Gauge; 3],
}

impl LatestVerdict {
    /// No verdict yet; its gauges registered once under `route` and `mirror`.
    pub fn register(route: &SharedString, mirror: &SharedString) -> Self {
        Self {
            limits: Mutex::new(None),
            state: AtomicU8::new(NO_VERDICT),
            judged_at: Mutex::new(None),
            gauges: State::ALL.map(|state| metrics::gauge!("gateway_mirror_verdict", "route" => route.clone(), "mirror" => mirror.clone(), "state" => state.as_str())),
        }
    }

    pub fn set_limits(&self, limits: Option<Limits>) {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    /// The verdict's limits, when it has one.
    pub fn limits(&self) -> Option<Limits> {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether new evidence at `now` is to be judged: at most once a [`REFRESH`]. Counts as judged.
    pub fn due(&self, now: Instant) -> bool {
        let mut judged_at = self.judged_at.lock().unwrap_or_else(|p| p.into_inner());
        let due = judged_at.is_none_or(|at| now.saturating_duration_since(at) >= REFRESH);
        if due {
            *judged_at = Some(now);
        }
        due
    }

    /// Judges `evidence` (asked for only when there is a verdict) and keeps the result's state.
    pub fn judge(&self, evidence: impl FnOnce() -> Evidence) -> Option<Verdict> {
        let verdict = self.limits().map(|limits| judge(&limits, &evidence()));
        let state = verdict.as_ref().map(|v| v.state);
        self.state.store(state.map_or(NO_VERDICT, state_code), Ordering::Relaxed);
        for (gauge, s) in self.gauges.iter().zip(State::ALL) {
            gauge.set(if Some(s) == state { 1.0 } else { 0.0 });
        }
        verdict
    }

    /// The state of the latest verdict (`pending`, `pass`, `fail`; `off` without one).
    pub fn state(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            NO_VERDICT => "off",
            code => State::ALL[usize::from(code)].as_str(),
        }
    }
}

fn state_code(state: State) -> u8 {
    State::ALL.iter().position(|s| *s == state).map_or(NO_VERDICT, |i| i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_evidence_is_judged_at_most_once_a_refresh() {
        let latest = LatestVerdict::register(&SharedString::const_str("r"), &SharedString::const_str("m"));
        let t0 = Instant::now();
        assert!(latest.due(t0));
        assert!(!latest.due(t0 + REFRESH / 2));
        assert!(latest.due(t0 + REFRESH));
        assert!(!latest.due(t0 + REFRESH + REFRESH / 2));
    }
}
