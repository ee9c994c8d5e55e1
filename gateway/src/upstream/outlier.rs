//! Endpoint health: outlier ejection, as Envoy's `upstream/outlier_detection_impl.cc` holds it
//! beside the cluster, not beside the features that send to it. A shadow destination is ejected
//! whole (the copies' outcomes feed it, under `shadow.ejection`); a primary destination's
//! endpoints each have their own [`Ejection`] (`outlier_detection`, in
//! [`super::endpoints::Endpoints`]), fed by the primary's attempts.
//!
//! After `consecutive_failures` requests in a row got no answer (refused, reset, timed out), the
//! destination is ejected: copies to it are dropped at once for an ejection time that grows with
//! each ejection, as Envoy's outlier detection ejects a host after five consecutive gateway
//! failures for `base_ejection_time` x the number of times it was ejected.
//!
//! A shadow that is down then costs the gateway nothing per request (no connection attempt, no
//! task), instead of a failed connect for every copy; once the time is up, copies flow again and
//! the first ones probe it. An answer of any status ends the run of failures and the growth.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::settings::EjectionSettings;

/// The ejection state of one destination, shared by every request sent to it; kept with its pool
/// across reloads.
#[derive(Debug)]
pub struct Ejection {
    /// Times are nanoseconds since `epoch`, so that the state fits in atomics.
    epoch: Instant,
    /// Until when copies are dropped (0: not ejected).
    until: AtomicU64,
    /// Copies in a row that got no answer.
    failures: AtomicU32,
    /// Ejections since the destination last answered.
    ejections: AtomicU32,
}

impl Default for Ejection {
    fn default() -> Self {
        Self { epoch: Instant::now(), until: AtomicU64::new(0), failures: AtomicU32::new(0), ejections: AtomicU32::new(0) }
    }
}

impl Ejection {
    /// Whether copies are to be dropped now.
    pub fn ejected(&self) -> bool {
        self.ejected_at(Instant::now())
    }

    pub(super) fn ejected_at(&self, now: Instant) -> bool {
        match self.until.load(Ordering::Relaxed) {
            0 => false,
            until => self.nanos(now) < until,
        }
    }

    /// A copy was answered (whatever its status): the run of failures ends.
    pub fn answered(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) != 0 {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A copy got no answer. Returns how long the destination is now ejected for, when this
    /// failure ejected it.
    pub fn failed(&self, settings: &EjectionSettings) -> Option<Duration> {
        self.failed_at(Instant::now(), settings)
    }

    fn failed_at(&self, now: Instant, settings: &EjectionSettings) -> Option<Duration> {
        self.failed_at_unless(now, settings, || false)
    }

    /// [`Ejection::failed`], but not ejecting when `capped` says so (too many of the
    /// destination's endpoints are ejected already): the run of failures is kept, so the next
    /// failure asks again.
    pub(super) fn failed_at_unless(&self, now: Instant, settings: &EjectionSettings, capped: impl FnOnce() -> bool) -> Option<Duration> {
        if settings.consecutive_failures == 0 || self.ejected_at(now) {
            // Requests sent before the ejection still fail while it lasts: they do not extend it.
            return None;
        }
        if self.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1) < settings.consecutive_failures || capped() {
            return None;
        }
        self.failures.store(0, Ordering::Relaxed);
        let times = self.ejections.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let time = settings.base_time.saturating_mul(times).min(settings.max_time);
        self.until.store(self.nanos(now + time).max(1), Ordering::Relaxed);
        Some(time)
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: EjectionSettings =
        EjectionSettings { consecutive_failures: 3, base_time: Duration::from_secs(30), max_time: Duration::from_secs(75) };

    #[test]
    fn consecutive_failures_eject_for_a_time_that_grows_up_to_the_maximum() {
        let ejection = Ejection::default();
        let t0 = Instant::now();
        assert_eq!(ejection.failed_at(t0, &SETTINGS), None);
        assert_eq!(ejection.failed_at(t0, &SETTINGS), None);
        assert_eq!(ejection.failed_at(t0, &SETTINGS), Some(Duration::from_secs(30)));
        assert!(ejection.ejected_at(t0 + Duration::from_secs(29)));
        // Copies already in flight fail during the ejection without extending it.
        assert_eq!(ejection.failed_at(t0 + Duration::from_secs(1), &SETTINGS), None);
        let t1 = t0 + Duration::from_secs(30);
        assert!(!ejection.ejected_at(t1), "the time is up: copies probe the shadow again");
        for _ in 0..2 {
            assert_eq!(ejection.failed_at(t1, &SETTINGS), None);
        }
        assert_eq!(ejection.failed_at(t1, &SETTINGS), Some(Duration::from_secs(60)));
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..2 {
            ejection.failed_at(t2, &SETTINGS);
        }
        assert_eq!(ejection.failed_at(t2, &SETTINGS), Some(Duration::from_secs(75)), "capped at max_time");
    }

    #[test]
    fn an_answer_ends_the_run_of_failures_and_resets_the_growth() {
        let ejection = Ejection::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            ejection.failed_at(t0, &SETTINGS);
        }
        let t1 = t0 + Duration::from_secs(30);
        ejection.answered();
        for _ in 0..2 {
            assert_eq!(ejection.failed_at(t1, &SETTINGS), None);
        }
        ejection.answered();
        for _ in 0..2 {
            assert_eq!(ejection.failed_at(t1, &SETTINGS), None);
        }
        assert_eq!(ejection.failed_at(t1, &SETTINGS), Some(Duration::from_secs(30)), "the growth starts over after an answer");
    }

    #[test]
    fn zero_consecutive_failures_never_ejects() {
        let ejection = Ejection::default();
        let never = EjectionSettings { consecutive_failures: 0, ..SETTINGS };
        for _ in 0..100 {
            assert_eq!(ejection.failed(&never), None);
        }
        assert!(!ejection.ejected());
    }
}
