//! What the gateway knows about each mirror ([`MirrorStats`]), kept across reloads under its
//! [`MirrorKey`] in the [`Registry`]. Its parts, each in a module of its own:
//! - [`outcome`]: how copies ended and what comparisons found, counted by enum-indexed tallies
//!   (an atomic for `/mirrors` and a Prometheus series each);
//! - [`recent`]: the last mismatches, bounded in count and bytes;
//! - [`window`]: the evidence window the verdict is decided on, with the latency deltas;
//! - [`report`]: [`MirrorReport`], as `/mirrors` serves it and its readers deserialise it.
//!
//! The verdict itself is judged by [`crate::verdict`]; its latest state is cached there
//! ([`LatestVerdict`]) for the copies' spans and the gauges.

pub mod key;
pub mod outcome;
pub mod recent;
pub mod report;
pub mod window;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use enum_map::EnumMap;
use gateway_config::VerdictSpec;
use metrics::{Counter, Histogram, SharedString};
use response_diff::Classified;

pub use self::key::{MirrorKey, Unresolved};
pub use self::outcome::{ComparisonResult, DropReason, NotEligible, ShadowOutcome};
use self::outcome::{Tallies, Tally};
use self::recent::RecentMismatches;
pub use self::recent::{ANSWERED_BODY_BYTES, MismatchRecord};
pub use self::report::{ComparisonCounts, CopyCounts, LatencyDelta, MirrorReport};
use self::window::{EvidenceWindow, Sample};
pub use self::window::{Observation, Pair, field_family};
use crate::settings::ReportSettings;
use crate::verdict::latest::LatestVerdict;
use crate::verdict::{Limits, Verdict};

/// How far back the report looks when no verdict sets a window.
const DEFAULT_WINDOW: Duration = Duration::from_secs(600);

/// Counters and samples of one mirror of one route.
pub struct MirrorStats {
    pub key: MirrorKey,
    pub destination: String,
    comparing: AtomicBool,
    /// `gateway_mirror_copies_sent_total`.
    sent: Tally,
    /// `gateway_mirror_copies_total{outcome,reason}`.
    outcomes: Tallies<ShadowOutcome>,
    /// `gateway_mirror_comparisons_total{result}`.
    results: Tallies<ComparisonResult>,
    latency_delta: Histogram,
    /// `gateway_mirror_copies_total{outcome="not_eligible",reason}`, registered when first
    /// counted, so a mirror that never saw an upgrade shows no series for it.
    not_eligible: EnumMap<NotEligible, OnceLock<Counter>>,
    labels: (SharedString, SharedString),
    window: Mutex<EvidenceWindow>,
    recent: RecentMismatches,
    verdict: LatestVerdict,
}

impl MirrorStats {
    /// Registers the mirror's Prometheus series, once: counting a copy allocates nothing.
    pub fn new(route: &str, mirror: &str, destination: &str, settings: &ReportSettings) -> Self {
        let (route_label, mirror_label) = (SharedString::from(Arc::<str>::from(route)), SharedString::from(Arc::<str>::from(mirror)));
        let (r, m) = (&route_label, &mirror_label);
        Self {
            key: MirrorKey::new(route, mirror),
            destination: destination.to_owned(),
            comparing: AtomicBool::new(false),
            sent: Tally::new(metrics::counter!("gateway_mirror_copies_sent_total", "route" => r.clone(), "mirror" => m.clone())),
            outcomes: Tallies::register(
                |outcome: ShadowOutcome| metrics::counter!("gateway_mirror_copies_total", "route" => r.clone(), "mirror" => m.clone(), "outcome" => outcome.as_str(), "reason" => outcome.reason()),
            ),
            results: Tallies::register(
                |result: ComparisonResult| metrics::counter!("gateway_mirror_comparisons_total", "route" => r.clone(), "mirror" => m.clone(), "result" => result.as_str()),
            ),
            latency_delta: metrics::histogram!("gateway_mirror_latency_delta_seconds", "route" => r.clone(), "mirror" => m.clone()),
            not_eligible: EnumMap::default(),
            labels: (route_label.clone(), mirror_label.clone()),
            window: Mutex::new(EvidenceWindow::new(DEFAULT_WINDOW, Instant::now())),
            recent: RecentMismatches::new(settings),
            verdict: LatestVerdict::register(r, m),
        }
    }

    pub fn set_comparing(&self, on: bool) {
        self.comparing.store(on, Ordering::Relaxed);
    }

    /// The mirror's verdict configuration (after every load). A new window length starts the
    /// evidence afresh: it answers a different question.
    pub fn set_verdict(&self, spec: Option<&VerdictSpec>) {
        self.verdict.set_limits(spec.map(Limits::from));
        let length = spec.map_or(DEFAULT_WINDOW, |spec| spec.window);
        let mut window = self.window();
        if window.length() != length {
            *window = EvidenceWindow::new(length, Instant::now());
        }
        drop(window);
        self.verdict();
    }

    /// The verdict's limits, when it has one.
    pub fn limits(&self) -> Option<Limits> {
        self.verdict.limits()
    }

    fn window(&self) -> std::sync::MutexGuard<'_, EvidenceWindow> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The evidence one compared request adds to the verdict: what differed (beyond noise, in
    /// noise, and on the primary against itself), both statuses and both latencies. Skipped
    /// results are not evidence and are ignored here.
    pub fn evidence(&self, observation: &Observation<'_>) {
        if matches!(observation.result, Classified::Skipped(_)) {
            return;
        }
        let now = Instant::now();
        self.window().record(now, Sample::Pair(observation));
        if self.verdict.due(now) {
            self.verdict();
        }
    }

    /// Judges the window's evidence now (and updates [`Self::verdict_state`] and the gauges).
    pub fn verdict(&self) -> Option<Verdict> {
        self.verdict.judge(|| self.window().evidence(Instant::now()))
    }

    /// The state of the latest verdict (`pending`, `pass`, `fail`; `off` without one), as of at
    /// most a second ago while comparisons arrive: cheap enough for every copy's span
    /// (`mirror.verdict`).
    pub fn verdict_state(&self) -> &'static str {
        self.verdict.state()
    }

    /// A copy was sent to the shadow.
    pub fn sent(&self) {
        self.sent.add();
    }

    /// How a copy ended (sent or not).
    pub fn outcome(&self, outcome: ShadowOutcome) {
        self.outcomes.add(outcome);
        // A copy dropped because the shadow is ejected counts as unanswered: the shadow is down,
        // and not sending to it must not make it look healthier to the verdict.
        if matches!(outcome, ShadowOutcome::Timeout | ShadowOutcome::Error | ShadowOutcome::Dropped(DropReason::ShadowEjected)) {
            self.window().record(Instant::now(), Sample::ShadowFailed);
        }
    }

    /// A request this mirror would have copied could not be (Prometheus only).
    pub fn not_eligible(&self, reason: NotEligible) {
        let (route, mirror) = &self.labels;
        self.not_eligible[reason]
            .get_or_init(|| {
                metrics::counter!("gateway_mirror_copies_total", "route" => route.clone(), "mirror" => mirror.clone(), "outcome" => "not_eligible", "reason" => reason.as_str())
            })
            .increment(1);
    }

    /// A comparison result, with the latency delta of the pair (shadow minus primary).
    pub fn compared(&self, result: &Classified, latency_delta_ms: f64, record: impl FnOnce() -> Option<MismatchRecord>) {
        let kind = ComparisonResult::from(result);
        self.results.add(kind);
        let now = Instant::now();
        if kind != ComparisonResult::Skipped {
            self.latency_delta.record(latency_delta_ms / 1e3);
            self.window().record(now, Sample::Delta { ms: latency_delta_ms });
        }
        match kind {
            ComparisonResult::Skipped => self.window().record(now, Sample::Skipped),
            ComparisonResult::Match | ComparisonResult::Noise => {}
            ComparisonResult::Mismatch => {
                if let Some(record) = record() {
                    self.recent.remember(record);
                }
            }
        }
    }

    pub fn report(&self) -> MirrorReport {
        let results = self.results.counts();
        let (matched, mismatched, noise) =
            (results[ComparisonResult::Match], results[ComparisonResult::Mismatch], results[ComparisonResult::Noise]);
        let now = Instant::now();
        let (deltas, evidence) = {
            let window = self.window();
            (window.deltas(now), window.evidence(now))
        };
        MirrorReport {
            route: self.key.route.clone(),
            mirror: self.key.mirror.clone(),
            destination: self.destination.clone(),
            comparing: self.comparing.load(Ordering::Relaxed),
            copies: CopyCounts { sent: self.sent.get(), ended: self.outcomes.counts() },
            comparison: ComparisonCounts { matched, mismatched, noise, skipped: results[ComparisonResult::Skipped] },
            match_rate: (matched + mismatched + noise > 0).then(|| (matched + noise) as f64 / (matched + mismatched + noise) as f64),
            latency_delta_ms: LatencyDelta {
                samples: deltas.samples(),
                p50: deltas.quantile(0.5),
                p99: deltas.quantile(0.99),
                window_seconds: deltas.window.as_secs(),
            },
            recent_mismatches: self.recent.newest_first(),
            verdict: self.verdict(),
            evidence,
        }
    }
}

/// Every mirror's statistics, kept across reloads by [`MirrorKey`].
#[derive(Default)]
pub struct Registry {
    by_mirror: Mutex<HashMap<MirrorKey, Arc<MirrorStats>>>,
}

impl Registry {
    /// The mirror's statistics: those it had before this load, or new ones.
    pub fn get(&self, key: &MirrorKey, destination: &str, report: &ReportSettings) -> Arc<MirrorStats> {
        let mut map = self.by_mirror.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(key.clone()).or_insert_with(|| Arc::new(MirrorStats::new(&key.route, &key.mirror, destination, report))).clone()
    }

    /// Every mirror ever configured, sorted by route then mirror.
    pub fn all(&self) -> Vec<Arc<MirrorStats>> {
        let map = self.by_mirror.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut all: Vec<_> = map.values().cloned().collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }
}

/// Seconds since the Unix epoch, for records.
pub fn now_epoch_seconds() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use response_diff::Difference;

    use super::*;
    use crate::verdict::State;

    fn stats() -> MirrorStats {
        MirrorStats::new("r", "m", "t/v2", &ReportSettings { recent_mismatches: 3, max_bytes: 4096, trace_url: String::new() })
    }

    #[test]
    fn only_mismatches_are_remembered_newest_first() {
        let stats = stats();
        let record = |path: &str| MismatchRecord {
            at: 0.0,
            method: "GET".into(),
            path: path.into(),
            request_id: String::new(),
            trace_id: String::new(),
            primary_status: 200,
            shadow_status: 200,
            differences: Vec::new(),
            primary_body: None,
            shadow_body: None,
        };
        stats.compared(&Classified::Match, 1.0, || Some(record("/match")));
        for n in 0..10 {
            stats.compared(&Classified::Mismatch(Vec::new()), 1.0, || Some(record(&format!("/{n}"))));
        }
        let report = stats.report();
        let paths: Vec<&str> = report.recent_mismatches.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["/9", "/8", "/7"]);
    }

    #[test]
    fn match_rate_and_percentiles() {
        let stats = stats();
        for delta in 1..=100 {
            let result = if delta % 4 == 0 { Classified::Mismatch(Vec::new()) } else { Classified::Match };
            stats.compared(&result, f64::from(delta), || None);
        }
        let report = stats.report();
        assert_eq!(report.match_rate, Some(0.75));
        assert_eq!(report.latency_delta_ms.samples, 100);
        // Histogram buckets are 1% wide: a quantile is exact to that precision.
        let near = |got: Option<f64>, want: f64| got.is_some_and(|got| (got - want).abs() <= want * 0.01);
        assert!(near(report.latency_delta_ms.p50, 50.0), "{:?}", report.latency_delta_ms);
        assert!(near(report.latency_delta_ms.p99, 99.0), "{:?}", report.latency_delta_ms);
    }

    #[test]
    fn percentiles_span_a_faster_and_a_slower_shadow() {
        let stats = stats();
        for delta in -50..50 {
            stats.compared(&Classified::Match, f64::from(delta), || None);
        }
        let report = stats.report();
        let near = |got: Option<f64>, want: f64| got.is_some_and(|got| (got - want).abs() <= want.abs() * 0.01 + 1e-9);
        assert!(near(report.latency_delta_ms.p50, -1.0), "{:?}", report.latency_delta_ms);
        assert!(near(report.latency_delta_ms.p99, 48.0), "{:?}", report.latency_delta_ms);
    }

    #[test]
    fn every_outcome_is_counted_under_its_own_field() {
        let stats = stats();
        stats.sent();
        for outcome in ShadowOutcome::all() {
            stats.outcome(outcome);
        }
        stats.outcome(ShadowOutcome::Dropped(DropReason::ShadowEjected));
        let copies = stats.report().copies;
        assert_eq!((copies.sent, copies[ShadowOutcome::Ok], copies.dropped(), copies.total_ended()), (1, 1, 6, 9));
        assert_eq!(copies[ShadowOutcome::Dropped(DropReason::ShadowEjected)], 2);
        // Timeouts, errors and copies to an ejected shadow are unanswered copies for the verdict.
        assert_eq!(stats.report().evidence.shadow_failed, 4);
    }

    fn pair(status: u16, ms: u64) -> Pair {
        let latency = Duration::from_millis(ms);
        Pair { primary_status: 200, shadow_status: status, primary_latency: latency, shadow_latency: latency }
    }

    #[test]
    fn only_compared_pairs_are_verdict_evidence_and_noise_only_ones_are_matches() {
        let stats = stats();
        assert_eq!(stats.verdict_state(), "off");
        stats.set_verdict(Some(&VerdictSpec { min_compared: 10, ..VerdictSpec::default() }));
        assert_eq!(stats.verdict_state(), "pending");
        for _ in 0..1000 {
            let skipped = Classified::Skipped(response_diff::SkipReason::Incomplete("test"));
            stats.compared(&skipped, 0.0, || None);
            stats.evidence(&Observation::of(&skipped, pair(500, 1)));
        }
        let report = stats.report();
        assert_eq!((report.evidence.compared(), report.evidence.skipped), (0, 1000));
        assert_eq!(report.evidence.shadow_5xx, 0);
        assert_eq!(report.verdict.unwrap().state, State::Pending);
        let noise = Classified::Noise(vec!["$.seq".to_owned()]);
        let seq = [Difference { field: "$.seq".into(), primary: Some("1".into()), shadow: Some("2".into()) }];
        for i in 0..1000 {
            stats.compared(&noise, 1.0, || None);
            stats.evidence(&Observation { noise: &seq, ..Observation::of(&noise, pair(200, 1 + i % 19)) });
        }
        let verdict = stats.verdict().unwrap();
        assert_eq!(verdict.state, State::Pass, "{:?}", verdict.reasons);
        assert_eq!(stats.verdict_state(), "pass");
        let report = stats.report();
        assert_eq!((report.evidence.compared(), report.evidence.noise), (1000, 1000));
        assert_eq!(report.evidence.fields["$.seq"].shadow, 1000);
        assert_eq!(report.evidence.primary_ms.len(), window::PAIRS_PER_SLOT, "the latency sample is bounded");
        let mismatch = Classified::Mismatch(vec![Difference { field: "$.price".into(), primary: None, shadow: None }]);
        for i in 0..100 {
            stats.evidence(&Observation::of(&mismatch, pair(200, 1 + i % 19)));
        }
        let verdict = stats.verdict().unwrap();
        assert_eq!(verdict.state, State::Fail);
        assert!(verdict.reasons[0].contains("$.price (100)"), "{:?}", verdict.reasons);
        assert_eq!(verdict.changed[0].field, "$.price");
        stats.set_verdict(None);
        assert_eq!((stats.verdict_state(), stats.verdict()), ("off", None));
    }

    #[test]
    fn the_report_reads_back_as_it_was_written() {
        let stats = stats();
        stats.set_verdict(Some(&VerdictSpec::default()));
        stats.sent();
        stats.outcome(ShadowOutcome::Ok);
        stats.compared(&Classified::Match, 1.0, || None);
        stats.evidence(&Observation::of(&Classified::Match, pair(200, 3)));
        let report = stats.report();
        let back: MirrorReport = serde_json::from_value(serde_json::to_value(&report).unwrap()).unwrap();
        assert_eq!(back, report);
        assert_eq!(back.key(), MirrorKey::new("r", "m"));
    }
}
