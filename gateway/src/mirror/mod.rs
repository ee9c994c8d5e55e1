//! Mirroring: which requests are copied, how a copy is built and marked, the fire-and-forget
//! task that sends it, and the comparison of its answer with the primary's.
//!
//! One owner: [`MirrorPlan`] is made for a request once its head is final, and owns everything
//! about that request's copies to the end: whether it can be copied at all (and the count when
//! not), the tee senders feeding their bodies, the copies' tasks, and the waiters that receive
//! the primary's answer for comparison. The request path calls `new`, `tee`, `spawn` and
//! `capture` on it and knows nothing else of mirroring. A copy's marks (the signed `x-shadow`,
//! the `-shadow` host) are [`crate::shadow`]'s, which also takes them off where a client forged them.
//!
//! Nothing here is ever awaited by the primary path: a copy is planned synchronously (sampling,
//! a `try_acquire` on the mirror's in-flight cap), then spawned.

mod body;
mod plan;
pub mod send;

use std::sync::Arc;

use gateway_config::MirrorPolicy;
use tokio::sync::Semaphore;

use crate::capture::CaptureSink;
use crate::compare::{ComparisonThread, MirrorComparison};
use crate::settings::EjectionSettings;
use crate::shadow::ShadowMarker;
use crate::stats::MirrorStats;
use crate::upstream::Upstream;

pub use plan::{MirrorPlan, Outgoing};

/// One mirror of a compiled route: its policy and what it needs at run time.
pub struct Mirror {
    pub policy: MirrorPolicy,
    /// The shadow destination's pool.
    pub upstream: Arc<Upstream>,
    /// Copies in flight; `try_acquire` only: at the cap a copy is dropped, never queued.
    pub in_flight: Arc<Semaphore>,
    /// Outlives reloads (kept by route and mirror name).
    pub stats: Arc<MirrorStats>,
    pub comparer: Option<Arc<MirrorComparison>>,
    /// Records compared exchanges (`capture:`), when set.
    pub capture: Option<Arc<CaptureSink>>,
}

impl Mirror {
    pub fn new(policy: MirrorPolicy, upstream: Arc<Upstream>, stats: Arc<MirrorStats>, comparer: Option<Arc<MirrorComparison>>) -> Self {
        let in_flight = Arc::new(Semaphore::new(policy.max_in_flight));
        Self { policy, upstream, in_flight, stats, comparer, capture: None }
    }

    pub fn with_capture(mut self, capture: Option<Arc<CaptureSink>>) -> Self {
        self.capture = capture;
        self
    }
}

/// What every request's copies share, lent to each [`MirrorPlan`] by the request path.
pub struct CopyContext<'a> {
    /// Where comparisons run, off the request workers.
    pub comparator: &'a Arc<ComparisonThread>,
    /// Signs each copy's `x-shadow`.
    pub marker: &'a ShadowMarker,
    /// When a shadow that stops answering is ejected.
    pub ejection: EjectionSettings,
}

/// Whether a request with this value of the sample header falls in the mirrored `percent`.
/// Keyed on the value (FNV-1a), so retries of one request id are all mirrored or none, and every
/// gateway replica decides alike.
pub fn sampled(percent: f64, key: Option<&[u8]>) -> bool {
    if percent >= 100.0 {
        return true;
    }
    if percent <= 0.0 {
        return false;
    }
    let bucket = match key {
        Some(key) => key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)) % 10_000,
        None => rand::random_range(0..10_000),
    };
    (bucket as f64) < percent * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_consistent_per_key_and_close_to_the_percentage() {
        let keys: Vec<String> = (0..20_000).map(|i| format!("request-{i}")).collect();
        let hits = keys.iter().filter(|k| sampled(25.0, Some(k.as_bytes()))).count();
        assert!((4_500..5_500).contains(&hits), "{hits} of 20000 at 25%");
        for key in keys.iter().take(100) {
            assert_eq!(sampled(33.3, Some(key.as_bytes())), sampled(33.3, Some(key.as_bytes())));
        }
        assert!(sampled(100.0, None) && !sampled(0.0, Some(b"x")));
    }
}
