//! Is the shadow safe to ship? A per-mirror verdict from the evidence of the comparisons:
//! `pass`, `fail`, or `pending` (not enough evidence yet), with the reasons in words and numbers.
//!
//! The verdict is read every few seconds (`gateway verdict --wait`, Flagger, Argo) and a
//! promotion acts on the first pass or fail it sees, so the answers criterion is a sequential
//! test that stays valid however often it is looked at:
//! - **answers, by field**: a compared request differs *beyond noise* when a field differs that
//!   the primary was not seen to differ on against itself (on that path pattern, or on several:
//!   [`response_diff::NoiseFilter`]); one whose every difference is learned noise counts as a
//!   match. The share of requests that differ beyond noise has an always-valid confidence
//!   sequence ([`confidence_sequence`], Robbins' Beta-mixture martingale, error [`ALPHA_ANSWERS`]
//!   over the whole watch): pass when its upper bound is under `max_mismatch_rate`, fail when
//!   its lower bound is over it. For the fields that are noise, Diffy's rule: a noisy field
//!   fails the verdict when the shadow differs on it significantly more often (confidence
//!   sequences at [`ALPHA_NOISY_FIELDS`] / [`MAX_NOISY_FIELDS`] each) than the primary differs
//!   from itself on it, by more than `max_mismatch_rate`.
//! - **latency**: a one-sided Mann-Whitney U test (normal approximation, tie-corrected) of the
//!   shadow's latencies against the primary's scaled by `1 + max_latency_increase`. Fail when the
//!   shadow is significantly slower than that, pass when it is significantly faster than that.
//! - **errors**: the difference of 5xx rates (shadow minus primary) with Newcombe's hybrid score
//!   interval (95%). Pass when its upper bound is under `max_error_rate_increase`, fail when its
//!   lower bound is over it. A copy the shadow never answered (timeout, refused) counts as a
//!   shadow error.
//!
//! (The latency and error tests are fixed-sample tests, not yet always valid.) Skipped
//! comparisons are not evidence either way: [`Evidence`] holds only pairs that were really
//! compared. Evidence is plain counts and samples, so several gateway replicas' evidence
//! [merges](Evidence::merge) before judging. The judging is pure: [`crate::stats`] gathers the
//! evidence, [`latest`] keeps the last verdict for spans and gauges, and `gateway verdict`
//! ([`crate::admin::cli`]) asks running gateways for theirs.

pub mod latest;
mod sequential;
#[cfg(test)]
mod simulation;

use std::collections::BTreeMap;

use gateway_config::VerdictSpec;
use serde::{Deserialize, Serialize};

pub use self::sequential::{confidence_sequence, decide_rate, exceeds_by};

/// Two-sided 95% normal quantile.
const Z95: f64 = 1.959_963_984_540_054;
/// Significance of each one-sided latency test.
const ALPHA: f64 = 0.05;
/// Below this many latency pairs the normal approximation of U is not trusted.
const MIN_LATENCY_SAMPLES: usize = 20;
/// Fields named in a reason.
const TOP_FIELDS: usize = 5;
/// Chance, over a whole watch however often it is read, that the answers criterion decides
/// wrongly (passes a shadow whose real share of differing answers is over the limit, or fails
/// one under it).
pub const ALPHA_ANSWERS: f64 = 0.04;
/// The same for the noisy-field tests together: each of at most [`MAX_NOISY_FIELDS`] fields is
/// tested at `ALPHA_NOISY_FIELDS / MAX_NOISY_FIELDS` (a union bound), so the verdict as a whole
/// fails an identical shadow in at most `ALPHA_ANSWERS + ALPHA_NOISY_FIELDS` = 5% of watches.
pub const ALPHA_NOISY_FIELDS: f64 = 0.01;
/// Noisy fields tested at most (the noise store holds no more).
pub const MAX_NOISY_FIELDS: usize = 256;

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
    /// Compared pairs whose answers were equal (after ignored fields).
    pub matched: u64,
    /// Compared pairs that differed beyond noise: on a field the primary does not differ on.
    pub mismatched: u64,
    /// Compared pairs whose every difference was learned noise: matches for the verdict.
    pub noise: u64,
    /// Among the compared pairs, those whose primary (shadow) answered 5xx.
    pub primary_5xx: u64,
    pub shadow_5xx: u64,
    /// Copies the shadow never answered (timeout, refused, reset): shadow errors.
    pub shadow_failed: u64,
    /// Not evidence, shown so a reader knows what was left out.
    pub skipped: u64,
    /// The primary compared with a second answer of its own, on requests the noise share picked
    /// at random (not the warm-up of new patterns, which would over-weight rare pages): the
    /// denominator of each field's [`FieldCounts::primary`].
    #[serde(default)]
    pub primary_compared: u64,
    /// Per field (array indices written `[*]`): how often it differed, on either comparison.
    pub fields: BTreeMap<String, FieldCounts>,
    /// Per request path pattern ([`response_diff::path_pattern`]): compared and differing.
    #[serde(default)]
    pub patterns: BTreeMap<String, PatternCounts>,
    /// Response times in milliseconds of a uniform sample of the compared pairs; the same index
    /// in both is the same request.
    pub primary_ms: Vec<f64>,
    pub shadow_ms: Vec<f64>,
}

/// How often one field differed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldCounts {
    /// Compared pairs (shadow against primary) it differed in, noise or not.
    pub shadow: u64,
    /// Of those, the ones where it was not learned noise: differences beyond noise.
    pub real: u64,
    /// Primary-against-primary comparisons ([`Evidence::primary_compared`]) it differed in.
    pub primary: u64,
    /// Counts inherited from fields this one replaced when the bounded table was full (so each
    /// count may be over by at most this much).
    #[serde(default)]
    pub overcount: u64,
    /// The first request that showed it differing, with both values.
    #[serde(default)]
    pub example: Option<FieldExample>,
}

/// One request that showed a field differing, and the two values (`None`: absent on that side).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldExample {
    pub method: String,
    pub path: String,
    /// The field as the comparison named it (with its array indices).
    pub field: String,
    pub primary: Option<String>,
    pub shadow: Option<String>,
}

/// Comparisons on one path pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatternCounts {
    pub compared: u64,
    /// Differing beyond noise.
    pub mismatched: u64,
    /// Differing in noise only.
    pub noise: u64,
    #[serde(default)]
    pub overcount: u64,
}

impl PatternCounts {
    /// Share of the pattern's comparisons that matched (noise-only ones included).
    pub fn match_rate(&self) -> Option<f64> {
        (self.compared > 0).then(|| (self.compared - self.mismatched.min(self.compared)) as f64 / self.compared as f64)
    }
}

impl FieldCounts {
    fn merge(&mut self, other: &FieldCounts) {
        self.shadow += other.shadow;
        self.real += other.real;
        self.primary += other.primary;
        self.overcount += other.overcount;
        if self.example.is_none() {
            self.example.clone_from(&other.example);
        }
    }

    /// A noisy field: the primary was seen differing from itself on it.
    pub fn noisy(&self) -> bool {
        self.primary > 0
    }
}

impl Evidence {
    /// Pairs compared: matched, mismatched, and those that differed in noise only.
    pub fn compared(&self) -> u64 {
        self.matched + self.mismatched + self.noise
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
        self.primary_compared += other.primary_compared;
        for (field, counts) in &other.fields {
            self.fields.entry(field.clone()).or_default().merge(counts);
        }
        for (pattern, counts) in &other.patterns {
            let mine = self.patterns.entry(pattern.clone()).or_default();
            mine.compared += counts.compared;
            mine.mismatched += counts.mismatched;
            mine.noise += counts.noise;
            mine.overcount += counts.overcount;
        }
        self.primary_ms.extend_from_slice(&other.primary_ms);
        self.shadow_ms.extend_from_slice(&other.shadow_ms);
    }

    /// The fields that differed beyond noise, `status` first, then most first (ties by name).
    pub fn top_fields(&self, n: usize) -> Vec<(&str, &FieldCounts)> {
        let mut fields: Vec<(&str, &FieldCounts)> = self.fields.iter().filter(|(_, c)| c.real > 0).map(|(f, c)| (f.as_str(), c)).collect();
        fields.sort_by(|a, b| (b.0 == "status").cmp(&(a.0 == "status")).then(b.1.real.cmp(&a.1.real)).then(a.0.cmp(b.0)));
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
    /// The criteria, once `min_compared` pairs were compared. `mismatch` is the share of
    /// answers that differ beyond noise, with its always-valid confidence sequence.
    pub mismatch: Option<Interval>,
    pub latency: Option<Latency>,
    pub errors: Option<Interval>,
    /// The fields that changed: those that differed beyond noise (`status` first, then most
    /// first), and the noisy fields the shadow differs on more than the primary does.
    #[serde(default)]
    pub changed: Vec<ChangedField>,
}

/// A field that differed in the shadow's answers more than in the primary's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangedField {
    pub field: String,
    /// Compared pairs it differed in beyond noise, and in all (noise included), of `compared`.
    pub real: u64,
    pub shadow: u64,
    /// Primary-against-primary comparisons it differed in, of `primary_compared`.
    pub primary: u64,
    pub primary_compared: u64,
    /// A noisy field whose shadow rate is significantly over the primary's own (Diffy's rule).
    pub noisy: bool,
    pub example: Option<FieldExample>,
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
    let answers = judge_answers(limits, evidence);
    let mut verdict = Verdict {
        state: State::Pending,
        reasons: Vec::new(),
        compared,
        limits: *limits,
        mismatch: None,
        latency: None,
        errors: None,
        changed: answers.changed.clone(),
    };
    if compared < limits.min_compared.max(1) {
        let mut reason = format!(
            "{compared} of the {} compared requests needed before deciding ({} with noise only count as matches; skipped {} do not count)",
            limits.min_compared.max(1),
            evidence.noise,
            evidence.skipped
        );
        if evidence.mismatched > 0 {
            reason.push_str(&format!("; {} differ beyond noise so far: {}", evidence.mismatched, fields_text(evidence)));
        }
        verdict.reasons.push(reason);
        return verdict;
    }
    let mut reasons: Vec<(State, String)> = Vec::new();

    let mismatch = answers.interval;
    let observed = format!(
        "{} of answers differ beyond noise ({} of {compared}; {} more differed in learned noise only), {}% confidence sequence {}–{}",
        percent(mismatch.estimate),
        evidence.mismatched,
        evidence.noise,
        (100.0 * (1.0 - ALPHA_ANSWERS)).round(),
        percent(mismatch.lower),
        percent(mismatch.upper)
    );
    let changed = match evidence.mismatched {
        0 => String::new(),
        _ => format!("; changed: {}", fields_text(evidence)),
    };
    reasons.push((
        mismatch.state,
        match mismatch.state {
            State::Pass => format!("{observed}, under the {} limit{changed}", percent(mismatch.limit)),
            State::Fail => format!("{observed}, over the {} limit{changed}", percent(mismatch.limit)),
            State::Pending => format!("{observed} still includes the {} limit: more comparisons needed{changed}", percent(mismatch.limit)),
        },
    ));
    verdict.mismatch = Some(mismatch);
    for field in answers.changed.iter().filter(|f| f.noisy) {
        reasons.push((
            State::Fail,
            format!(
                "noisy field {} differs in {} of the shadow's answers ({} of {compared}) but in {} of the primary's own ({} of {}): more than the {} allowed",
                field.field,
                percent(field.shadow as f64 / compared as f64),
                field.shadow,
                percent(field.primary as f64 / field.primary_compared.max(1) as f64),
                field.primary,
                field.primary_compared,
                percent(limits.max_mismatch_rate)
            ),
        ));
    }

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

/// The answers criterion: the share of answers differing beyond noise against the limit, and
/// Diffy's rule on each noisy field. Cheap (no sorting of samples), so it can be judged after
/// every comparison.
pub struct Answers {
    pub interval: Interval,
    pub changed: Vec<ChangedField>,
}

/// Fields listed in [`Verdict::changed`] at most.
const CHANGED_FIELDS: usize = 20;

pub fn judge_answers(limits: &Limits, evidence: &Evidence) -> Answers {
    let (compared, limit) = (evidence.compared(), limits.max_mismatch_rate);
    let (lower, upper) = confidence_sequence(evidence.mismatched, compared, ALPHA_ANSWERS, limit);
    let interval = Interval {
        state: decide_rate(evidence.mismatched, compared, limit, ALPHA_ANSWERS, limit),
        estimate: if compared == 0 { 0.0 } else { evidence.mismatched as f64 / compared as f64 },
        lower,
        upper,
        limit,
    };
    let changed_field = |field: &str, counts: &FieldCounts, noisy: bool| ChangedField {
        field: field.to_owned(),
        real: counts.real,
        shadow: counts.shadow,
        primary: counts.primary,
        primary_compared: evidence.primary_compared,
        noisy,
        example: counts.example.clone(),
    };
    let mut changed: Vec<ChangedField> =
        evidence.top_fields(CHANGED_FIELDS).into_iter().map(|(field, counts)| changed_field(field, counts, false)).collect();
    let mut noisy: Vec<ChangedField> = noisy_changed(limits, evidence).map(|(field, counts)| changed_field(field, counts, true)).collect();
    noisy.sort_by(|a, b| b.shadow.cmp(&a.shadow).then(a.field.cmp(&b.field)));
    changed.extend(noisy);
    Answers { interval, changed }
}

/// The state of the answers criterion alone, in time linear in the noisy fields (no search):
/// what [`judge`] decides on it, for a reader that looks after every comparison.
pub fn answers_state(limits: &Limits, evidence: &Evidence) -> State {
    let compared = evidence.compared();
    if compared < limits.min_compared.max(1) {
        return State::Pending;
    }
    if noisy_changed(limits, evidence).next().is_some() {
        return State::Fail;
    }
    let limit = limits.max_mismatch_rate;
    decide_rate(evidence.mismatched, compared, limit, ALPHA_ANSWERS, limit)
}

/// Diffy's rule, for the fields the primary differs on by itself: changed when the shadow's
/// rate is over the primary's by more than the limit, both with their confidence sequences.
fn noisy_changed<'e>(limits: &Limits, evidence: &'e Evidence) -> impl Iterator<Item = (&'e str, &'e FieldCounts)> {
    let (compared, limit, primary_compared) = (evidence.compared(), limits.max_mismatch_rate, evidence.primary_compared);
    let alpha = ALPHA_NOISY_FIELDS / MAX_NOISY_FIELDS as f64 / 2.0;
    let decided = compared >= limits.min_compared.max(1) && primary_compared > 0;
    evidence
        .fields
        .iter()
        .filter(move |(_, counts)| {
            decided && counts.noisy() && exceeds_by(counts.shadow, compared, counts.primary, primary_compared, limit, alpha)
        })
        .take(MAX_NOISY_FIELDS)
        .map(|(field, counts)| (field.as_str(), counts))
}

/// `status (3), $.rows[*].city (12)`: the fields that differed beyond noise, status first.
fn fields_text(evidence: &Evidence) -> String {
    let top = evidence.top_fields(TOP_FIELDS);
    if top.is_empty() {
        return "no field recorded".to_owned();
    }
    let list: Vec<String> = top.iter().map(|(field, counts)| format!("{field} ({})", counts.real)).collect();
    list.join(", ")
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
            fields: if k > 0 { BTreeMap::from([("$.price".to_owned(), real(k))]) } else { BTreeMap::new() },
            primary_ms,
            shadow_ms,
            ..Evidence::default()
        }
    }

    /// A field that differed beyond noise `k` times.
    fn real(k: u64) -> FieldCounts {
        FieldCounts { shadow: k, real: k, ..FieldCounts::default() }
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
    fn answers_boundaries_at_one_percent_with_the_confidence_sequence() {
        let mismatch = |n, k| judge(&limits(), &evidence(n, k, same)).mismatch.unwrap().state;
        // No difference: the upper bound drops under 1% at about 500 comparisons (the price of
        // a test that may be read after every one: a fixed-sample Wilson bound would say 381).
        assert_eq!(mismatch(480, 0), State::Pending);
        assert_eq!(mismatch(520, 0), State::Pass);
        // 8 of 100 are over 1% for sure; 6 of 100 are not yet.
        assert_eq!(mismatch(100, 6), State::Pending);
        assert_eq!(mismatch(100, 8), State::Fail);
        // 2% of 2,000 is over it; 1.5% is not yet.
        assert_eq!(mismatch(2000, 30), State::Pending);
        assert_eq!(mismatch(2000, 40), State::Fail);
    }

    #[test]
    fn answers_with_noise_only_count_as_matches() {
        let mut e = evidence(0, 0, same);
        e.noise = 600;
        e.fields.insert("$.query_ms".to_owned(), FieldCounts { shadow: 600, primary: 12, ..FieldCounts::default() });
        e.primary_compared = 12;
        let verdict = judge(&limits(), &e);
        assert_eq!(verdict.mismatch.unwrap().state, State::Pass, "{:?}", verdict.reasons);
        assert!(verdict.changed.is_empty(), "{:?}", verdict.changed);
    }

    #[test]
    fn a_noisy_field_the_shadow_differs_on_far_more_than_the_primary_fails_by_name() {
        let mut e = evidence(0, 0, same);
        e.noise = 2000;
        // The primary differs from itself on `$.seq` in a tenth of its answers; the shadow in all.
        e.fields.insert("$.seq".to_owned(), FieldCounts { shadow: 2000, primary: 10, ..FieldCounts::default() });
        e.fields.insert("$.query_ms".to_owned(), FieldCounts { shadow: 2000, primary: 100, ..FieldCounts::default() });
        e.primary_compared = 100;
        let verdict = judge(&limits(), &e);
        assert_eq!(verdict.state, State::Fail, "{:?}", verdict.reasons);
        let names: Vec<&str> = verdict.changed.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["$.seq"]);
        assert!(
            verdict.reasons[0].starts_with(
                "fail: noisy field $.seq differs in 100% of the shadow's answers (2000 of 2000) but in 10% of the primary's own (10 of 100)"
            ),
            "{:?}",
            verdict.reasons
        );
    }

    #[test]
    fn a_fail_names_the_changed_fields_status_first_with_counts() {
        let mut e = evidence(200, 30, same);
        e.fields = BTreeMap::from([
            ("$.price".to_owned(), real(30)),
            ("status".to_owned(), real(2)),
            ("$.currency".to_owned(), real(4)),
            ("$.a".to_owned(), real(1)),
            ("$.query_ms".to_owned(), FieldCounts { shadow: 200, primary: 4, ..FieldCounts::default() }),
        ]);
        let verdict = judge(&limits(), &e);
        assert_eq!(verdict.state, State::Fail);
        assert!(
            verdict.reasons[0].starts_with("fail: 15% of answers differ beyond noise (30 of 200;")
                && verdict.reasons[0].ends_with("over the 1% limit; changed: status (2), $.price (30), $.currency (4), $.a (1)"),
            "{:?}",
            verdict.reasons
        );
        let names: Vec<&str> = verdict.changed.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["status", "$.price", "$.currency", "$.a"]);
    }

    #[test]
    fn nothing_is_decided_before_min_compared() {
        let mut e = evidence(99, 50, same);
        e.skipped = 500;
        let verdict = judge(&limits(), &e);
        assert_eq!(verdict.state, State::Pending);
        assert_eq!(
            verdict.reasons,
            [
                "99 of the 100 compared requests needed before deciding (0 with noise only count as matches; skipped 500 do not count); 50 differ beyond noise so far: $.price (50)"
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
        let half = evidence(300, 0, same);
        assert_eq!(judge(&limits(), &half).mismatch.unwrap().state, State::Pending);
        let mut both = half.clone();
        both.merge(&half);
        assert_eq!(both.compared(), 600);
        assert_eq!(both.primary_ms.len(), 600);
        assert_eq!(judge(&limits(), &both).mismatch.unwrap().state, State::Pass);
    }
}
