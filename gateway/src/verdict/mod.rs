//! Is the shadow safe to ship? A per-mirror verdict from the evidence of the comparisons:
//! `pass`, `fail`, or `pending` (not enough evidence yet), with the reasons in words and numbers.
//!
//! Each criterion is decided by a statistical test, never by a point estimate, so a verdict does
//! not flip on a handful of unlucky requests:
//! - **mismatch rate**: the Wilson score interval (95%) of mismatched / compared. Pass when its
//!   upper bound is under `max_mismatch_rate`, fail when its lower bound is over it.
//! - **latency**: a one-sided Mann-Whitney U test (normal approximation, tie-corrected) of the
//!   shadow's latencies against the primary's scaled by `1 + max_latency_increase`. Fail when the
//!   shadow is significantly slower than that, pass when it is significantly faster than that.
//! - **errors**: the difference of 5xx rates (shadow minus primary) with Newcombe's hybrid score
//!   interval (95%). Pass when its upper bound is under `max_error_rate_increase`, fail when its
//!   lower bound is over it. A copy the shadow never answered (timeout, refused) counts as a
//!   shadow error.
//!
//! Noise (differences the primary shows against itself) and skipped comparisons are not evidence
//! either way: [`Evidence`] holds only pairs that were really compared. Evidence is plain counts
//! and samples, so several gateway replicas' evidence [merges](Evidence::merge) before judging.
//! The judging is pure: [`crate::stats`] gathers the evidence, [`latest`] keeps the last
//! verdict for spans and gauges, and `gateway verdict` ([`crate::admin::cli`]) asks running
//! gateways for theirs.

pub mod latest;

use std::collections::BTreeMap;

use gateway_config::VerdictSpec;
use serde::{Deserialize, Serialize};

/// Two-sided 95% normal quantile.
const Z95: f64 = 1.959_963_984_540_054;
/// Significance of each one-sided latency test.
const ALPHA: f64 = 0.05;
/// Below this many latency pairs the normal approximation of U is not trusted.
const MIN_LATENCY_SAMPLES: usize = 20;
/// Fields named in a reason.
const TOP_FIELDS: usize = 3;

/// The thresholds of one mirror's verdict (its `verdict:` configuration).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub min_compared: u64,
    pub max_mismatch_rate: f64,
    pub max_latency_increase: f64,
    pub max_error_rate_increase: f64,
    pub window_seconds: u64,
}

impl From<&VerdictSpec> for Limits {
    fn from(spec: &VerdictSpec) -> Self {
        Limits {
            min_compared: spec.min_compared,
            max_mismatch_rate: spec.max_mismatch_rate,
            max_latency_increase: spec.max_latency_increase,
            max_error_rate_increase: spec.max_error_rate_increase,
            window_seconds: spec.window.as_secs(),
        }
    }
}

/// What one window of comparisons showed. Counts and paired samples only, so that evidence from
/// several replicas adds up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Compared pairs whose answers were equal (after ignored fields and learned noise).
    pub matched: u64,
    pub mismatched: u64,
    /// Among the compared pairs, those whose primary (shadow) answered 5xx.
    pub primary_5xx: u64,
    pub shadow_5xx: u64,
    /// Copies the shadow never answered (timeout, refused, reset): shadow errors.
    pub shadow_failed: u64,
    /// Not evidence, shown so a reader knows what was left out.
    pub noise: u64,
    pub skipped: u64,
    /// How many mismatches each field took part in.
    pub fields: BTreeMap<String, u64>,
    /// Response times in milliseconds of a uniform sample of the compared pairs; the same index
    /// in both is the same request.
    pub primary_ms: Vec<f64>,
    pub shadow_ms: Vec<f64>,
}

impl Evidence {
    pub fn compared(&self) -> u64 {
        self.matched + self.mismatched
    }

    /// Adds another replica's (or time slot's) evidence to this one.
    pub fn merge(&mut self, other: &Evidence) {
        self.matched += other.matched;
        self.mismatched += other.mismatched;
        self.primary_5xx += other.primary_5xx;
        self.shadow_5xx += other.shadow_5xx;
        self.shadow_failed += other.shadow_failed;
        self.noise += other.noise;
        self.skipped += other.skipped;
        for (field, count) in &other.fields {
            *self.fields.entry(field.clone()).or_default() += count;
        }
        self.primary_ms.extend_from_slice(&other.primary_ms);
        self.shadow_ms.extend_from_slice(&other.shadow_ms);
    }

    /// The fields that differed most, most first (ties by name).
    pub fn top_fields(&self, n: usize) -> Vec<(&str, u64)> {
        let mut fields: Vec<(&str, u64)> = self.fields.iter().map(|(f, c)| (f.as_str(), *c)).collect();
        fields.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        fields.truncate(n);
        fields
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Pass,
    Fail,
}

impl State {
    pub const ALL: [State; 3] = [State::Pending, State::Pass, State::Fail];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Pass => "pass",
            State::Fail => "fail",
        }
    }

    /// `PASS`, `FAIL`, `PENDING`: how the CLI and the page show it.
    pub fn label(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::Pass => "PASS",
            State::Fail => "FAIL",
        }
    }

    /// Fail over pending over pass: a verdict is as bad as its worst criterion.
    fn worst(self, other: State) -> State {
        let rank = |s: State| match s {
            State::Pass => 0,
            State::Pending => 1,
            State::Fail => 2,
        };
        if rank(other) > rank(self) { other } else { self }
    }
}

/// The decision and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub state: State,
    /// One sentence per criterion (or one saying evidence is still short), failures first.
    pub reasons: Vec<String>,
    pub compared: u64,
    pub limits: Limits,
    /// The criteria, once `min_compared` pairs were compared.
    pub mismatch: Option<Interval>,
    pub latency: Option<Latency>,
    pub errors: Option<Interval>,
}

/// A rate (or a difference of rates) with its 95% interval, and the decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub state: State,
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    pub limit: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub state: State,
    pub samples: usize,
    pub primary_p50_ms: f64,
    pub shadow_p50_ms: f64,
    /// One-sided p-value of "the shadow is slower than the primary plus the allowed increase".
    pub p_slower: f64,
    /// One-sided p-value of "the shadow is faster than the primary plus the allowed increase".
    pub p_within: f64,
}

/// Judges one mirror's evidence.
pub fn judge(limits: &Limits, evidence: &Evidence) -> Verdict {
    let compared = evidence.compared();
    let mut verdict =
        Verdict { state: State::Pending, reasons: Vec::new(), compared, limits: *limits, mismatch: None, latency: None, errors: None };
    if compared < limits.min_compared.max(1) {
        let mut reason = format!(
            "{compared} of the {} compared requests needed before deciding (noise {} and skipped {} do not count)",
            limits.min_compared.max(1),
            evidence.noise,
            evidence.skipped
        );
        if evidence.mismatched > 0 {
            reason.push_str(&format!("; {} mismatched so far, {}", evidence.mismatched, fields_text(evidence)));
        }
        verdict.reasons.push(reason);
        return verdict;
    }
    let mut reasons: Vec<(State, String)> = Vec::new();

    let (lower, upper) = wilson(evidence.mismatched, compared);
    let mismatch = Interval {
        state: decide(lower, upper, limits.max_mismatch_rate),
        estimate: evidence.mismatched as f64 / compared as f64,
        lower,
        upper,
        limit: limits.max_mismatch_rate,
    };
    let observed = format!(
        "mismatch rate {} ({} of {compared}), 95% interval {}–{}",
        percent(mismatch.estimate),
        evidence.mismatched,
        percent(lower),
        percent(upper)
    );
    reasons.push((
        mismatch.state,
        match mismatch.state {
            State::Pass => format!("{observed}, under the {} limit", percent(mismatch.limit)),
            State::Fail => format!("{observed}, over the {} limit; {}", percent(mismatch.limit), fields_text(evidence)),
            State::Pending => format!("{observed} still includes the {} limit: more comparisons needed", percent(mismatch.limit)),
        },
    ));
    verdict.mismatch = Some(mismatch);

    let allowed = format!("+{}", percent(limits.max_latency_increase));
    let samples = evidence.primary_ms.len().min(evidence.shadow_ms.len());
    if samples < MIN_LATENCY_SAMPLES {
        reasons.push((State::Pending, format!("latency: {samples} paired samples, {MIN_LATENCY_SAMPLES} needed")));
    } else {
        let (primary, shadow) = (&evidence.primary_ms[..samples], &evidence.shadow_ms[..samples]);
        let scaled: Vec<f64> = primary.iter().map(|p| p * (1.0 + limits.max_latency_increase)).collect();
        let test = mann_whitney(shadow, &scaled);
        let state = if test.p_greater < ALPHA {
            State::Fail
        } else if test.p_less < ALPHA {
            State::Pass
        } else {
            State::Pending
        };
        let latency = Latency {
            state,
            samples,
            primary_p50_ms: median(primary),
            shadow_p50_ms: median(shadow),
            p_slower: test.p_greater,
            p_within: test.p_less,
        };
        let observed = format!(
            "latency p50 {:.2} ms vs primary {:.2} ms ({}) over {samples} pairs",
            latency.shadow_p50_ms,
            latency.primary_p50_ms,
            signed_percent(latency.shadow_p50_ms / latency.primary_p50_ms - 1.0)
        );
        reasons.push((
            state,
            match state {
                State::Fail => {
                    format!("{observed}: slower than the allowed {allowed} (one-sided Mann-Whitney p={})", p_text(test.p_greater))
                }
                State::Pass => format!("{observed}: within the allowed {allowed} (one-sided Mann-Whitney p={})", p_text(test.p_less)),
                State::Pending => format!(
                    "{observed}: cannot tell yet whether it is within the allowed {allowed} (p={} slower, p={} within)",
                    p_text(test.p_greater),
                    p_text(test.p_less)
                ),
            },
        ));
        verdict.latency = Some(latency);
    }

    let shadow_trials = compared + evidence.shadow_failed;
    let shadow_errors = evidence.shadow_5xx + evidence.shadow_failed;
    let (lower, upper) = rate_difference(shadow_errors, shadow_trials, evidence.primary_5xx, compared);
    let errors = Interval {
        state: decide(lower, upper, limits.max_error_rate_increase),
        estimate: shadow_errors as f64 / shadow_trials as f64 - evidence.primary_5xx as f64 / compared as f64,
        lower,
        upper,
        limit: limits.max_error_rate_increase,
    };
    let failed = match evidence.shadow_failed {
        0 => String::new(),
        n => format!(", {n} unanswered"),
    };
    let observed = format!(
        "errors: shadow {} ({} 5xx{failed} of {shadow_trials}) vs primary {} ({} of {compared}), difference {} points, 95% interval {} to {}",
        percent(shadow_errors as f64 / shadow_trials as f64),
        evidence.shadow_5xx,
        percent(evidence.primary_5xx as f64 / compared as f64),
        evidence.primary_5xx,
        signed_points(errors.estimate),
        signed_points(lower),
        signed_points(upper),
    );
    let limit = format!("{} points", signed_points(limits.max_error_rate_increase));
    reasons.push((
        errors.state,
        match errors.state {
            State::Pass => format!("{observed}, under the {limit} limit"),
            State::Fail => format!("{observed}, over the {limit} limit"),
            State::Pending => format!("{observed} still includes the {limit} limit: more comparisons needed"),
        },
    ));
    verdict.errors = Some(errors);

    verdict.state = reasons.iter().fold(State::Pass, |state, (s, _)| state.worst(*s));
    reasons.sort_by_key(|(state, _)| match state {
        State::Fail => 0,
        State::Pending => 1,
        State::Pass => 2,
    });
    verdict.reasons = reasons.into_iter().map(|(state, reason)| format!("{}: {reason}", state.as_str())).collect();
    verdict
}

/// Pass under the limit, fail over it, pending while the interval holds it.
fn decide(lower: f64, upper: f64, limit: f64) -> State {
    if upper < limit {
        State::Pass
    } else if lower > limit {
        State::Fail
    } else {
        State::Pending
    }
}

/// Wilson score interval (95%) of `k` successes in `n` trials. Unlike the normal (Wald)
/// interval it stays inside 0..=1 and is not degenerate at 0 or n, which is where a good shadow is.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p, z2) = (n as f64, k as f64 / n as f64, Z95 * Z95);
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// 95% interval of `k1/n1 - k2/n2` by Newcombe's hybrid score method (his method 10), built from
/// the two Wilson intervals: good coverage at the small rates 5xx answers have.
pub fn rate_difference(k1: u64, n1: u64, k2: u64, n2: u64) -> (f64, f64) {
    let rate = |k: u64, n: u64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let (p1, p2) = (rate(k1, n1), rate(k2, n2));
    let ((l1, u1), (l2, u2)) = (wilson(k1, n1), wilson(k2, n2));
    let d = p1 - p2;
    (d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(), d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt())
}

/// Result of a Mann-Whitney U test of `x` against `y`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of `x`: how many (x, y) pairs have x > y, ties counting a half.
    pub u: f64,
    /// One-sided p-value of "x tends to be greater than y".
    pub p_greater: f64,
    /// One-sided p-value of "x tends to be less than y".
    pub p_less: f64,
}

/// Mann-Whitney U with the normal approximation, the tie correction of the variance and a
/// continuity correction (as scipy's `mannwhitneyu(method="asymptotic")`).
pub fn mann_whitney(x: &[f64], y: &[f64]) -> MannWhitney {
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    let mut all: Vec<(f64, bool)> = x.iter().map(|v| (*v, true)).chain(y.iter().map(|v| (*v, false))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum_x, mut ties, mut i) = (0.0, 0.0, 0);
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1..=j+1 share their average.
        let (count, average) = ((j - i + 1) as f64, (i + j + 2) as f64 / 2.0);
        rank_sum_x += all[i..=j].iter().filter(|(_, is_x)| *is_x).count() as f64 * average;
        ties += count.powi(3) - count;
        i = j + 1;
    }
    let u = rank_sum_x - n1 * (n1 + 1.0) / 2.0;
    let n = n1 + n2;
    let mean = n1 * n2 / 2.0;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if variance <= 0.0 || !variance.is_finite() {
        return MannWhitney { u, p_greater: 1.0, p_less: 1.0 };
    }
    let sd = variance.sqrt();
    MannWhitney { u, p_greater: 1.0 - normal_cdf((u - mean - 0.5) / sd), p_less: normal_cdf((u - mean + 0.5) / sd) }
}

fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 }
}

fn fields_text(evidence: &Evidence) -> String {
    let top = evidence.top_fields(TOP_FIELDS);
    if top.is_empty() {
        return "no field recorded".to_owned();
    }
    let list: Vec<String> = top.iter().map(|(field, count)| format!("{field} ({count})")).collect();
    format!("differing most: {}", list.join(", "))
}

/// `0.0123` as `1.23%`, trimmed: `1%`, `0.5%`.
fn percent(fraction: f64) -> String {
    let text = format!("{:.2}", fraction * 100.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

fn signed_percent(fraction: f64) -> String {
    if fraction >= 0.0 { format!("+{}", percent(fraction)) } else { format!("-{}", percent(-fraction)) }
}

/// A difference of rates in percentage points.
fn signed_points(fraction: f64) -> String {
    let points = fraction * 100.0;
    if points >= 0.0 { format!("+{points:.2}") } else { format!("{points:.2}") }
}

fn p_text(p: f64) -> String {
    if p < 0.0001 { "<0.0001".to_owned() } else { format!("{p:.4}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::from(&VerdictSpec::default())
    }

    /// `n` compared pairs, `k` of them mismatched on `$.price`, with latencies from `latency(i)`.
    fn evidence(n: u64, k: u64, latency: impl Fn(usize) -> (f64, f64)) -> Evidence {
        let (primary_ms, shadow_ms) = (0..n as usize).map(latency).unzip();
        Evidence {
            matched: n - k,
            mismatched: k,
            fields: if k > 0 { BTreeMap::from([("$.price".to_owned(), k)]) } else { BTreeMap::new() },
            primary_ms,
            shadow_ms,
            ..Evidence::default()
        }
    }

    /// Latencies that spread like real ones (1 to 20 ms), the shadow the same.
    fn same(i: usize) -> (f64, f64) {
        let ms = 1.0 + (i * 7 % 19) as f64;
        (ms, ms)
    }

    #[test]
    fn wilson_interval_matches_the_formula_at_known_points() {
        // Reference values from the closed form, computed independently.
        let (l, u) = wilson(0, 381);
        assert_eq!(l, 0.0);
        assert!((u - 0.009_981_925_628).abs() < 1e-9, "{u}");
        let (l, u) = wilson(3, 100);
        assert!((l - 0.010_254_524_024).abs() < 1e-9 && (u - 0.084_519_364_290).abs() < 1e-9, "{l} {u}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn mismatch_rate_boundaries_at_one_percent() {
        let mismatch = |n, k| judge(&limits(), &evidence(n, k, same)).mismatch.unwrap().state;
        // No mismatch: the upper bound 3.84/(n+3.84) drops under 1% at n = 381.
        assert_eq!(mismatch(380, 0), State::Pending);
        assert_eq!(mismatch(381, 0), State::Pass);
        // Out of 100: 2 mismatches are compatible with 1% (lower bound 0.55%), 3 are not (1.03%).
        assert_eq!(mismatch(100, 2), State::Pending);
        assert_eq!(mismatch(100, 3), State::Fail);
        assert_eq!(mismatch(400, 7), State::Pending);
        assert_eq!(mismatch(400, 8), State::Fail);
    }

    #[test]
    fn a_fail_names_the_fields_that_differ_most() {
        let mut e = evidence(200, 30, same);
        e.fields = BTreeMap::from([("$.price".to_owned(), 30), ("$.currency".to_owned(), 4), ("$.a".to_owned(), 1), ("$.b".to_owned(), 1)]);
        let verdict = judge(&limits(), &e);
        assert_eq!(verdict.state, State::Fail);
        assert!(
            verdict.reasons[0].starts_with("fail: mismatch rate 15% (30 of 200)")
                && verdict.reasons[0].ends_with("over the 1% limit; differing most: $.price (30), $.currency (4), $.a (1)"),
            "{:?}",
            verdict.reasons
        );
    }

    #[test]
    fn nothing_is_decided_before_min_compared_and_noise_is_not_evidence() {
        let mut e = evidence(99, 50, same);
        e.noise = 10_000;
        e.skipped = 500;
        let verdict = judge(&limits(), &e);
        assert_eq!(verdict.state, State::Pending);
        assert_eq!(
            verdict.reasons,
            [
                "99 of the 100 compared requests needed before deciding (noise 10000 and skipped 500 do not count); 50 mismatched so far, differing most: $.price (50)"
            ]
        );
        assert_eq!(judge(&limits(), &evidence(0, 0, same)).state, State::Pending);
    }

    #[test]
    fn mann_whitney_matches_a_hand_computed_example() {
        // x = [1, 2, 3.5], y = [3.5, 4, 5, 6]: U(x) counts x > y pairs: only the 3.5 tie, a half.
        let test = mann_whitney(&[1.0, 2.0, 3.5], &[3.5, 4.0, 5.0, 6.0]);
        assert_eq!(test.u, 0.5);
        // mean 6, variance 12/12 * (8 - (8 - 2) / 42) = 7.857142..., z = (0.5 - 6 + 0.5) / sd.
        let sd = (8.0_f64 - 6.0 / 42.0).sqrt();
        assert!((test.p_less - normal_cdf(-5.0 / sd)).abs() < 1e-12);
        assert!((test.p_less - 0.037_231).abs() < 1e-5, "{}", test.p_less);
        assert!((test.p_greater - (1.0 - normal_cdf(-6.0 / sd))).abs() < 1e-12);
        // All equal: no evidence either way.
        let flat = mann_whitney(&[1.0; 30], &[1.0; 30]);
        assert_eq!((flat.p_greater, flat.p_less), (1.0, 1.0));
    }

    #[test]
    fn latency_boundaries_against_the_allowed_increase() {
        let latency = |factor: f64| judge(&limits(), &evidence(400, 0, |i| (same(i).0, same(i).0 * factor))).latency.unwrap();
        // 400 pairs spread over 1..19 ms. The shadow at the primary's speed is well within +20%.
        assert_eq!(latency(1.0).state, State::Pass);
        // Exactly +20%: every shadow sample ties its scaled primary: no evidence either way.
        let at_limit = latency(1.2);
        assert_eq!(at_limit.state, State::Pending);
        assert!(at_limit.p_slower > 0.4 && at_limit.p_within > 0.4, "{at_limit:?}");
        // Twice as slow: a fail.
        assert_eq!(latency(2.0).state, State::Fail);
        // The boundaries of this sample: pass up to +12%, fail from +28%, pending between (the
        // ranks move in steps because the sample has 19 distinct values).
        assert_eq!(latency(1.12).state, State::Pass);
        assert_eq!(latency(1.13).state, State::Pending);
        assert_eq!(latency(1.27).state, State::Pending);
        assert_eq!(latency(1.28).state, State::Fail);
    }

    #[test]
    fn too_few_latency_samples_are_pending_not_judged() {
        let mut e = evidence(400, 0, |i| (same(i).0, same(i).0 * 5.0));
        e.primary_ms.truncate(19);
        assert_eq!(judge(&limits(), &e).latency, None);
        assert!(judge(&limits(), &e).reasons.iter().any(|r| r == "pending: latency: 19 paired samples, 20 needed"));
    }

    #[test]
    fn error_rate_difference_boundaries() {
        let errors = |n: u64, primary: u64, shadow: u64, unanswered: u64| {
            let mut e = evidence(n, 0, same);
            (e.primary_5xx, e.shadow_5xx, e.shadow_failed) = (primary, shadow, unanswered);
            judge(&limits(), &e).errors.unwrap()
        };
        // Clean on both sides: the interval's upper bound, the shadow's Wilson bound 3.84/(n+3.84),
        // drops under 0.5 points at n = 765.
        assert_eq!(errors(764, 0, 0, 0).state, State::Pending);
        assert_eq!(errors(765, 0, 0, 0).state, State::Pass);
        // Out of 1000: 5xx on 12 shadow answers vs none on the primary is over +0.5 points
        // (interval +0.56 to +2.09), on 11 not yet (+0.48 to +1.96).
        assert_eq!(errors(1000, 0, 11, 0).state, State::Pending);
        assert_eq!(errors(1000, 0, 12, 0).state, State::Fail);
        // Unanswered copies are shadow errors too.
        assert_eq!(errors(1000, 0, 0, 14).state, State::Fail);
        // The same 5xx rate on both sides is no increase.
        assert_eq!(errors(2000, 40, 40, 0).state, State::Pending);
        assert_eq!(errors(20_000, 400, 400, 0).state, State::Pass);
    }

    #[test]
    fn a_clean_shadow_passes_on_every_criterion() {
        let verdict = judge(&limits(), &evidence(1000, 0, same));
        assert_eq!(verdict.state, State::Pass, "{:?}", verdict.reasons);
        assert_eq!(verdict.reasons.len(), 3);
        assert!(verdict.reasons.iter().all(|r| r.starts_with("pass: ")), "{:?}", verdict.reasons);
    }

    #[test]
    fn merged_evidence_decides_what_neither_half_could() {
        let half = evidence(250, 0, same);
        assert_eq!(judge(&limits(), &half).mismatch.unwrap().state, State::Pending);
        let mut both = half.clone();
        both.merge(&half);
        assert_eq!(both.compared(), 500);
        assert_eq!(both.primary_ms.len(), 500);
        assert_eq!(judge(&limits(), &both).mismatch.unwrap().state, State::Pass);
    }
}
