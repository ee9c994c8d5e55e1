//! Promotion: a route's traffic moves to a candidate (the destination of one of its mirrors) in
//! steps, while that mirror's verdict passes, and returns to the configured weights at once when
//! the verdict fails.
//!
//! A [`Promotion`] belongs to one route. Requests only read its current percentage (an atomic)
//! through [`Promotion::choose`]; a ticker task of its own judges the mirror and moves the step
//! (one per `hold` while the verdict passes), so no request ever waits on a verdict. A rollback
//! is final until the configuration of the route changes; a reload that leaves the route as it
//! was keeps the promotion where it is (see [`Promotion::fingerprint`]). With several gateway
//! replicas each promotes on its own evidence: for one decision across replicas, gate an external
//! rollout (Flagger, Argo Rollouts) on `/verdict/<mirror>` instead.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use gateway_config::{PromoteSpec, Route};
use metrics::{Gauge, SharedString};
use serde::{Deserialize, Serialize};

use crate::stats::{MirrorStats, now_epoch_seconds};
use crate::upstream::Upstream;
use crate::verdict::State;

/// History entries kept per promotion (steps are few; this bounds a flapping configuration).
const HISTORY: usize = 32;

pub struct Promotion {
    route: String,
    spec: PromoteSpec,
    candidate: Arc<Upstream>,
    stats: Arc<MirrorStats>,
    /// What the route's configuration was when this promotion started: a reload to the same
    /// fingerprint keeps it.
    fingerprint: String,
    /// Share of the route's requests sent to the candidate now, 0..=100.
    percent: AtomicU32,
    progress: Mutex<Progress>,
    gauge: Gauge,
}

struct Progress {
    /// Index in `spec.steps` of the step in force; `None` before the first.
    step: Option<usize>,
    since: Instant,
    rolled_back: bool,
    history: Vec<Event>,
}

/// One change of the promotion, for `/mirrors`, the page and the logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub at: f64,
    pub percent: u32,
    pub what: String,
}

/// `/mirrors` → `promotions[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionReport {
    pub route: String,
    pub mirror: String,
    pub to: String,
    pub steps: Vec<u32>,
    pub hold_seconds: f64,
    /// Percentage of the route's traffic the candidate receives now.
    pub percent: u32,
    /// 1-based step in force, 0 before the first.
    pub step: usize,
    pub state: PromotionState,
    pub history: Vec<Event>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionState {
    /// For a passing verdict and the hold, before the next step.
    Waiting,
    /// At the last step.
    Complete,
    /// Back at 0% after a failing verdict, until the route's configuration changes.
    RolledBack,
}

impl Promotion {
    /// A promotion at 0% as of `now`, with its ticker. Must run inside a Tokio runtime.
    pub fn start(route: &Route, spec: &PromoteSpec, candidate: Arc<Upstream>, stats: Arc<MirrorStats>, now: Instant) -> Arc<Self> {
        let label = SharedString::from(Arc::<str>::from(route.name.as_str()));
        let promotion = Arc::new(Promotion {
            route: route.name.clone(),
            spec: spec.clone(),
            fingerprint: Self::fingerprint(route, &candidate, &stats),
            gauge: metrics::gauge!("gateway_promotion_percent", "route" => label, "to" => candidate.label.clone()),
            candidate,
            stats,
            percent: AtomicU32::new(0),
            progress: Mutex::new(Progress { step: None, since: now, rolled_back: false, history: Vec::new() }),
        });
        promotion.gauge.set(0.0);
        promotion.record(
            0,
            format!(
                "started: {}% of the traffic once the verdict of mirror {:?} passes for {}",
                spec.steps[0],
                spec.mirror,
                humane(spec.hold)
            ),
        );
        tracing::info!(route = %route.name, to = %promotion.candidate.label, steps = ?spec.steps, hold = ?spec.hold, "promotion started");
        let weak = Arc::downgrade(&promotion);
        let every = (spec.hold / 4).clamp(Duration::from_millis(10), Duration::from_millis(500));
        tokio::spawn(tick_while_alive(weak, every));
        promotion
    }

    /// What must stay equal across a reload for a promotion to carry on: the route's
    /// destinations and weights, the candidate, the steps and hold, and the gating verdict.
    pub fn fingerprint(route: &Route, candidate: &Upstream, stats: &MirrorStats) -> String {
        let weights: Vec<u32> = route.destinations.iter().map(|d| d.weight).collect();
        format!(
            "{:?}|{}|{:?}|{:?}|{}",
            weights,
            candidate.label,
            route.promote.as_ref().map(|p| (&p.steps, p.hold, &p.mirror)),
            stats.limits(),
            route.destinations.len()
        )
    }

    pub fn matches(&self, fingerprint: &str) -> bool {
        self.fingerprint == fingerprint
    }

    /// The candidate for this request's share of the traffic, or `None`: follow the route's
    /// configured weights.
    pub fn choose(&self) -> Option<&Arc<Upstream>> {
        match self.percent.load(Ordering::Relaxed) {
            0 => None,
            p if p >= 100 || rand::random_range(0..100) < p => Some(&self.candidate),
            _ => None,
        }
    }

    pub fn percent(&self) -> u32 {
        self.percent.load(Ordering::Relaxed)
    }

    /// Judges the gating mirror and moves the promotion as of `now`: back to 0% on a fail, one
    /// step on when the verdict passes and the current step has been held long enough.
    pub fn tick(&self, now: Instant) {
        let Some(verdict) = self.stats.verdict() else {
            return;
        };
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        if progress.rolled_back {
            return;
        }
        match verdict.state {
            State::Fail => {
                progress.rolled_back = true;
                let from = self.percent.swap(0, Ordering::Relaxed);
                self.gauge.set(0.0);
                let reason = verdict.reasons.first().cloned().unwrap_or_default();
                tracing::warn!(route = %self.route, to = %self.candidate.label, from_percent = from, %reason, "promotion rolled back: the candidate's verdict fails");
                drop(progress);
                self.record(0, format!("rolled back from {from}%: {reason}; stays at 0% until the route's configuration changes"));
            }
            State::Pass if now.saturating_duration_since(progress.since) >= self.spec.hold => {
                let next = progress.step.map_or(0, |s| s + 1);
                let Some(&percent) = self.spec.steps.get(next) else {
                    return;
                };
                progress.step = Some(next);
                progress.since = now;
                self.percent.store(percent, Ordering::Relaxed);
                self.gauge.set(f64::from(percent));
                tracing::info!(route = %self.route, to = %self.candidate.label, percent, step = next + 1, "promotion advanced: the verdict passes");
                drop(progress);
                self.record(
                    percent,
                    format!("advanced to {percent}% (step {} of {}): the verdict passes", next + 1, self.spec.steps.len()),
                );
            }
            State::Pass | State::Pending => {}
        }
    }

    fn record(&self, percent: u32, what: String) {
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        if progress.history.len() == HISTORY {
            progress.history.remove(1);
        }
        progress.history.push(Event { at: now_epoch_seconds(), percent, what });
    }

    pub fn report(&self) -> PromotionReport {
        let progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        let step = progress.step.map_or(0, |s| s + 1);
        PromotionReport {
            route: self.route.clone(),
            mirror: self.spec.mirror.clone(),
            to: self.candidate.label.clone(),
            steps: self.spec.steps.clone(),
            hold_seconds: self.spec.hold.as_secs_f64(),
            percent: self.percent(),
            step,
            state: if progress.rolled_back {
                PromotionState::RolledBack
            } else if step == self.spec.steps.len() {
                PromotionState::Complete
            } else {
                PromotionState::Waiting
            },
            history: progress.history.clone(),
        }
    }
}

async fn tick_while_alive(promotion: Weak<Promotion>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        // Gone with the last generation that used it (its route changed or went away).
        let Some(promotion) = promotion.upgrade() else {
            return;
        };
        promotion.tick(Instant::now());
    }
}

fn humane(d: Duration) -> String {
    http_rules::duration::format(d)
}

/// Every route's promotion. Promotions outlive reloads that leave their route as it was; keyed
/// by route name. Held weakly: a promotion lives as long as a routing generation uses it.
#[derive(Default)]
pub struct Promotions {
    by_route: Mutex<std::collections::HashMap<String, Weak<Promotion>>>,
}

impl Promotions {
    /// The route's promotion: the running one when the route is unchanged, else a new one.
    pub fn get(&self, route: &Route, spec: &PromoteSpec, candidate: &Arc<Upstream>, stats: &Arc<MirrorStats>) -> Arc<Promotion> {
        let fingerprint = Promotion::fingerprint(route, candidate, stats);
        let mut map = self.by_route.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = map.get(&route.name).and_then(Weak::upgrade)
            && running.matches(&fingerprint)
        {
            return running;
        }
        let promotion = Promotion::start(route, spec, candidate.clone(), stats.clone(), Instant::now());
        map.insert(route.name.clone(), Arc::downgrade(&promotion));
        promotion
    }

    /// The promotions in force, by route.
    pub fn all(&self) -> Vec<Arc<Promotion>> {
        let map = self.by_route.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = map.values().filter_map(Weak::upgrade).collect();
        all.sort_by(|a, b| a.route.cmp(&b.route));
        all
    }
}

#[cfg(test)]
mod tests {
    use gateway_config::{DestinationId, VerdictSpec, load_str};
    use response_diff::{Classified, Difference};

    use super::*;
    use crate::settings::ReportSettings;
    use crate::stats::{Observation, Pair};

    fn pair(ms: u64) -> Pair {
        let latency = Duration::from_millis(ms);
        Pair { primary_status: 200, shadow_status: 200, primary_latency: latency, shadow_latency: latency }
    }

    #[test]
    fn steps_advance_only_on_a_passing_verdict_and_a_fail_rolls_back_for_good() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = runtime.enter();
        let loaded = load_str(
            "t.yaml",
            "services: { app: { v1: [127.0.0.1:1], v2: [127.0.0.1:2] } }\nroutes:\n  - { name: app, to: app/v1, mirrors: [{ to: app/v2, compare: true, verdict: { min_compared: 10 } }], promote: { to: app/v2, steps: [30, 100], hold: 1ms } }\n",
        )
        .unwrap();
        let route = &loaded.table.routes[0];
        let spec = route.promote.clone().unwrap();
        assert_eq!(spec.destination, DestinationId(1));
        let settings = crate::settings::UpstreamSettings::defaults();
        let candidate = Arc::new(Upstream::new(loaded.table.destination(spec.destination), &settings));
        let stats = Arc::new(MirrorStats::new(
            "app",
            "app/v2",
            "app/v2",
            &ReportSettings { recent_mismatches: 1, max_bytes: 1024, trace_url: String::new() },
        ));
        stats.set_verdict(Some(&VerdictSpec {
            min_compared: 10,
            max_latency_increase: 3.0,
            max_mismatch_rate: 0.2,
            max_error_rate_increase: 0.2,
            ..VerdictSpec::default()
        }));
        let t0 = Instant::now();
        let promotion = Promotion::start(route, &spec, candidate, stats.clone(), t0);
        // The promotion's clock: the hold is 1 ms.
        let at = |ms: u64| t0 + Duration::from_millis(ms);

        // Pending: no step, however long the hold has been over.
        promotion.tick(at(2));
        assert_eq!((promotion.percent(), promotion.choose().is_none()), (0, true));
        for i in 0..100 {
            stats.evidence(&Observation::of(&Classified::Match, pair(1 + i % 19)));
        }
        promotion.tick(at(3));
        assert_eq!(promotion.percent(), 30);
        let chosen = (0..10_000).filter(|_| promotion.choose().is_some()).count();
        assert!((2_500..3_500).contains(&chosen), "about 30%: {chosen}");
        // Not yet held long enough: the step stays.
        promotion.tick(at(3));
        assert_eq!(promotion.percent(), 30);
        promotion.tick(at(5));
        assert_eq!((promotion.percent(), promotion.report().state), (100, PromotionState::Complete));

        let mismatch = Classified::Mismatch(vec![Difference { field: "$.x".into(), primary: None, shadow: None }]);
        for i in 0..100 {
            stats.evidence(&Observation::of(&mismatch, pair(1 + i % 19)));
        }
        promotion.tick(at(5));
        assert_eq!((promotion.percent(), promotion.report().state), (0, PromotionState::RolledBack));
        // Even a passing verdict later does not resume it.
        stats.set_verdict(Some(&VerdictSpec { window: Duration::from_secs(60), ..VerdictSpec::default() }));
        for i in 0..1000 {
            stats.evidence(&Observation::of(&Classified::Match, pair(1 + i % 19)));
        }
        promotion.tick(at(7));
        assert_eq!(promotion.percent(), 0);
        let history: Vec<String> = promotion.report().history.into_iter().map(|e| e.what).collect();
        assert_eq!(history.len(), 4, "{history:?}");
        assert!(history[3].starts_with("rolled back from 100%: fail: 50% of answers differ beyond noise (100 of 200;"), "{history:?}");
    }
}
