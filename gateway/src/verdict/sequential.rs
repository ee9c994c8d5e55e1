//! An always-valid confidence sequence for a rate: an interval that holds the true rate at
//! every number of observations at once, with probability at least `1 - alpha`, so it may be
//! read after every comparison and acted on at the first read that decides.
//!
//! Robbins' mixture martingale for Bernoulli observations: after `k` successes in `n`,
//! `M(p) = B(a + k, b + n - k) / B(a, b) / (p^k (1 - p)^(n - k))` (the Beta(a, b)-mixture of the
//! likelihood over the likelihood at `p`) is a non-negative martingale with mean 1 under the
//! true `p`; by Ville's inequality it ever reaches `1 / alpha` with probability at most
//! `alpha`. The sequence is every `p` whose `M(p)` is still under `1 / alpha`: an interval, since
//! `log M` is convex in `p`, always holding `k / n`. The prior only moves where the power goes:
//! centred on the limit being tested, the sequence is narrowest there.

use super::State;

/// `ln B(a, b)`.
fn ln_beta(a: f64, b: f64) -> f64 {
    libm::lgamma(a) + libm::lgamma(b) - libm::lgamma(a + b)
}

/// `ln M(p)` for `k` in `n`, given `ln_marginal`, the Beta(a, b) mixture's part
/// ([`ln_marginal`]), which does not depend on `p`.
fn ln_mixture(k: f64, n: f64, p: f64, ln_marginal: f64) -> f64 {
    let likelihood = if k > 0.0 { k * p.ln() } else { 0.0 } + if n > k { (n - k) * (1.0 - p).ln() } else { 0.0 };
    ln_marginal - likelihood
}

/// `ln (B(1 + k, b + n - k) / B(1, b))`, the prior being Beta(1, b), whose `B(1, b)` is `1 / b`.
fn ln_marginal(k: f64, n: f64, b: f64) -> f64 {
    ln_beta(1.0 + k, b + n - k) + b.ln()
}

/// The `1 - alpha` confidence sequence of a rate after `k` of `n`, with the mixture's prior
/// centred on `prior_mean` (Beta(1, 1/prior_mean - 1); 0.5 is the uniform prior). `(0, 1)`
/// before any observation.
pub fn confidence_sequence(k: u64, n: u64, alpha: f64, prior_mean: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let mean = prior_mean.clamp(1e-4, 0.5);
    let b = 1.0 / mean - 1.0;
    let (k, n) = (k.min(n) as f64, n as f64);
    let threshold = (1.0 / alpha).ln();
    let estimate = k / n;
    let marginal = ln_marginal(k, n, b);
    let beyond = |p: f64| ln_mixture(k, n, p, marginal) >= threshold;
    // Bisection on each side of the estimate, where ln M rises monotonically away from it.
    let bound = |mut inside: f64, mut out: f64| {
        // 48 halvings: within 4e-15 of the bound.
        for _ in 0..48 {
            let mid = (inside + out) / 2.0;
            if beyond(mid) {
                out = mid;
            } else {
                inside = mid;
            }
        }
        inside
    };
    let lower = if k == 0.0 || !beyond(f64::MIN_POSITIVE) { 0.0 } else { bound(estimate, 0.0) };
    let upper = if k == n || !beyond(1.0 - f64::EPSILON) { 1.0 } else { bound(estimate, 1.0) };
    (lower, upper)
}

/// Where `limit` lies against the `1 - alpha` confidence sequence of `k` in `n` (prior centred
/// on `prior_mean`): [`State::Fail`] when the rate is over the limit for sure (the whole
/// sequence above it), [`State::Pass`] when it is under, pending while the sequence holds it.
/// The same decision as comparing [`confidence_sequence`]'s bounds with the limit, in constant
/// time (no search), so it can be made after every comparison.
pub fn decide_rate(k: u64, n: u64, limit: f64, alpha: f64, prior_mean: f64) -> State {
    match outside(k, n, limit, alpha, prior_mean) {
        Some(Side::Below) => State::Fail,
        Some(Side::Above) => State::Pass,
        None => State::Pending,
    }
}

/// Which side of the confidence sequence `x` lies on, if outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Under the lower bound: the rate is over `x` for sure.
    Below,
    /// Over the upper bound: the rate is under `x` for sure.
    Above,
}

/// Whether `x` is outside the `1 - alpha` confidence sequence of `k` in `n`, and on which side;
/// constant time.
pub fn outside(k: u64, n: u64, x: f64, alpha: f64, prior_mean: f64) -> Option<Side> {
    if n == 0 || x <= 0.0 || x >= 1.0 {
        return None;
    }
    let b = 1.0 / prior_mean.clamp(1e-4, 0.5) - 1.0;
    let (k, n) = (k.min(n) as f64, n as f64);
    if ln_mixture(k, n, x, ln_marginal(k, n, b)) < (1.0 / alpha).ln() {
        None
    } else if k / n > x {
        Some(Side::Below)
    } else {
        Some(Side::Above)
    }
}

/// Whether the rate `k1 / n1` is over the rate `k2 / n2` by more than `margin` for sure: the
/// lower bound of the first's confidence sequence over the upper bound of the second's plus
/// `margin` (each at `alpha`, uniform prior). Searches for one bound only when the estimates
/// leave the question open.
pub fn exceeds_by(k1: u64, n1: u64, k2: u64, n2: u64, margin: f64, alpha: f64) -> bool {
    if n1 == 0 || n2 == 0 {
        return false;
    }
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    // The first's lower bound is at most p1, the second's upper bound at least p2; and when
    // p2 + margin is inside the first's sequence, the first's lower bound is under it.
    if p1 - p2 <= margin || outside(k1, n1, p2 + margin, alpha, 0.5) != Some(Side::Below) {
        return false;
    }
    let (lower, _) = confidence_sequence(k1, n1, alpha, 0.5);
    outside(k2, n2, lower - margin, alpha, 0.5) == Some(Side::Above)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_holds_the_estimate_and_narrows() {
        let (l, u) = confidence_sequence(0, 0, 0.05, 0.01);
        assert_eq!((l, u), (0.0, 1.0));
        let mut last = 1.0;
        for n in [10, 100, 1000, 10_000] {
            let (l, u) = confidence_sequence(n / 10, n, 0.05, 0.5);
            assert!(l < 0.1 && 0.1 < u, "{n}: {l} {u}");
            assert!(u - l < last, "{n}: narrower");
            last = u - l;
        }
    }

    #[test]
    fn the_bounds_are_where_the_martingale_reaches_one_over_alpha() {
        // No difference in n: the upper bound solves 1/(1 + b/... ) closed form for a = 1:
        // M(p) = B(1, b + n) / B(1, b) / (1 - p)^n = b / (b + n) / (1 - p)^n.
        let (n, b, alpha) = (500.0_f64, 99.0_f64, 0.04_f64);
        let (_, upper) = confidence_sequence(0, 500, alpha, 0.01);
        let expected = 1.0 - (b / (b + n) * alpha).powf(1.0 / n);
        assert!((upper - expected).abs() < 1e-9, "{upper} {expected}");
        // Around 500 clean comparisons take the upper bound under 1%.
        assert!(confidence_sequence(0, 470, alpha, 0.01).1 > 0.01);
        assert!(confidence_sequence(0, 520, alpha, 0.01).1 < 0.01);
        // Symmetric in successes and failures under the uniform prior.
        let (l, u) = confidence_sequence(30, 100, 0.05, 0.5);
        let (l2, u2) = confidence_sequence(70, 100, 0.05, 0.5);
        assert!((l - (1.0 - u2)).abs() < 1e-9 && (u - (1.0 - l2)).abs() < 1e-9);
    }

    #[test]
    fn one_rate_exceeds_another_by_a_margin_only_beyond_both_sequences() {
        let by_bounds = |k1, n1, k2, n2| confidence_sequence(k1, n1, 0.01, 0.5).0 - confidence_sequence(k2, n2, 0.01, 0.5).1 > 0.01;
        for (k1, n1, k2, n2) in
            [(2000, 2000, 10, 100), (1200, 2000, 30, 100), (900, 2000, 40, 100), (50, 100, 45, 100), (0, 10, 0, 10), (600, 1000, 1, 20)]
        {
            assert_eq!(exceeds_by(k1, n1, k2, n2, 0.01, 0.01), by_bounds(k1, n1, k2, n2), "{k1}/{n1} against {k2}/{n2}");
        }
        assert!(exceeds_by(2000, 2000, 10, 100, 0.01, 0.01));
        assert!(!exceeds_by(60, 100, 55, 100, 0.01, 0.01));
        assert!(!exceeds_by(5, 0, 0, 10, 0.01, 0.01));
    }

    #[test]
    fn the_constant_time_decision_agrees_with_the_bounds() {
        for n in [1_u64, 10, 100, 500, 520, 2000] {
            for k in [0, 1, n / 100, n / 50, n / 10, n] {
                let (l, u) = confidence_sequence(k, n, 0.04, 0.01);
                let by_bounds = if u < 0.01 {
                    State::Pass
                } else if l > 0.01 {
                    State::Fail
                } else {
                    State::Pending
                };
                assert_eq!(decide_rate(k, n, 0.01, 0.04, 0.01), by_bounds, "{k} of {n}: {l} {u}");
            }
        }
    }
}
