//! Rollouts watched continuously: the answers criterion judged after every comparison, as
//! `gateway verdict --wait`, Flagger and Argo read it, and what the first decision (or any fail
//! over the whole window) would have done.
//!
//! Each simulated answer carries noise the way Datasette's do: a timing in 60% of answers that
//! differs on every pair (primary against shadow and primary against itself alike) and an id in
//! 30% that differs on a third of them; 2% of requests are also compared primary against
//! primary (the default `noise_percent`). A shadow that "changes `q` of answers" differs beyond
//! noise on a stable field in a share `q` of them. The window is [`WINDOW`] comparisons (at 7
//! requests a second, the default 10-minute window).

use super::*;

/// Comparisons per rollout.
const WINDOW: u64 = 4000;

/// xorshift64*: deterministic, no dependency on a generator's version.
struct Rng(u64);

impl Rng {
    fn chance(&mut self, p: f64) -> bool {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((x >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// What one watched rollout showed.
struct Watched {
    /// The first decision and when (comparisons).
    first: Option<(State, u64)>,
    /// A fail was read at some point of the window.
    failed_ever: bool,
}

fn watch(changed: f64, rng: &mut Rng) -> Watched {
    let limits = Limits::from(&VerdictSpec::default());
    let mut e = Evidence::default();
    let (mut first, mut failed_ever) = (None, false);
    for n in 1..=WINDOW {
        let mut noisy = false;
        for (field, present, differs) in [("$.query_ms", 0.6, 1.0), ("$.request_id", 0.3, 1.0 / 3.0)] {
            if rng.chance(present) && rng.chance(differs) {
                e.fields.entry(field.to_owned()).or_default().shadow += 1;
                noisy = true;
            }
        }
        if rng.chance(0.02) {
            e.primary_compared += 1;
            for (field, present, differs) in [("$.query_ms", 0.6, 1.0), ("$.request_id", 0.3, 1.0 / 3.0)] {
                if rng.chance(present) && rng.chance(differs) {
                    e.fields.entry(field.to_owned()).or_default().primary += 1;
                }
            }
        }
        if rng.chance(changed) {
            e.mismatched += 1;
            let price = e.fields.entry("$.price".to_owned()).or_default();
            price.shadow += 1;
            price.real += 1;
        } else if noisy {
            e.noise += 1;
        } else {
            e.matched += 1;
        }
        let state = answers_state(&limits, &e);
        if state != State::Pending && first.is_none() {
            first = Some((state, n));
        }
        failed_ever |= state == State::Fail;
    }
    Watched { first, failed_ever }
}

fn rollouts(changed: f64, count: usize, seed: u64) -> Vec<Watched> {
    let mut rng = Rng(seed);
    (0..count).map(|_| watch(changed, &mut rng)).collect()
}

fn share(watched: &[Watched], test: impl Fn(&Watched) -> bool) -> f64 {
    watched.iter().filter(|w| test(w)).count() as f64 / watched.len() as f64
}

#[test]
fn an_identical_shadow_watched_for_its_whole_window_fails_in_at_most_5_percent_and_passes() {
    let watched = rollouts(0.0, 200, 0x1d3e_17ca1);
    let failed = share(&watched, |w| w.failed_ever);
    assert!(failed <= 0.05, "failed in {failed}");
    // It passes, on the first decision, after about 500 comparisons.
    let passed: Vec<u64> = watched.iter().filter_map(|w| w.first.filter(|(s, _)| *s == State::Pass).map(|(_, n)| n)).collect();
    assert_eq!(passed.len(), watched.len());
    assert!(passed.iter().all(|n| (480..=600).contains(n)), "{:?}", &passed[..10]);
}

#[test]
fn a_shadow_at_the_limit_watched_for_its_whole_window_fails_in_at_most_5_percent() {
    // The hardest case for a test watched continuously: a true share exactly at the 1% limit.
    let watched = rollouts(0.01, 200, 0xa7_11_1e);
    let failed = share(&watched, |w| w.failed_ever);
    assert!(failed <= 0.05, "failed in {failed}");
}

#[test]
fn a_shadow_that_changes_2_percent_of_answers_is_caught_within_the_window_in_95_percent() {
    let watched = rollouts(0.02, 250, 0xc4a_96ed);
    let caught = share(&watched, |w| matches!(w.first, Some((State::Fail, _))));
    assert!(caught >= 0.95, "caught in {caught}");
    // Never passed first.
    assert_eq!(share(&watched, |w| matches!(w.first, Some((State::Pass, _)))), 0.0);
}
