//! Comparison of a shadow's response with the primary's, off the request path: what one mirror
//! compares and the noise it learned ([`MirrorComparison`], kept across reloads by
//! [`Comparisons`]), and the thread the diffs run on ([`ComparisonThread`]). The differ itself
//! is the `response-diff` crate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gateway_config::CompareSpec;
use http::Method;
use response_diff::{Captured, Classified, Comparison, CopyChanges, DiffOptions, Difference, LearnedNoise, NoiseField, NoiseFilter};
use serde::{Deserialize, Serialize};

use crate::stats::MirrorKey;

/// Fields learned as noise per mirror at most (the filter is bounded).
const MAX_NOISE_FIELDS: usize = 256;

/// One mirror's comparison: what it ignores, how much it keeps, and the noise it learned. Kept
/// across reloads while the mirror's comparison settings stay the same ([`Comparisons`]), so what
/// was learned is not thrown away.
pub struct MirrorComparison {
    options: DiffOptions,
    noise: NoiseFilter,
    /// Share (0..=100) of compared requests also sent a second time to the primary.
    pub noise_percent: f64,
    /// Response bodies are kept up to this many bytes for comparison.
    pub max_body_bytes: usize,
    /// Requests picked for noise learning but not sent twice: a write method, or a body.
    noise_skipped_method: AtomicU64,
    noise_skipped_body: AtomicU64,
    /// Second requests sent to the primary.
    noise_sent: AtomicU64,
}

/// Why a request picked for noise learning was not sent to the primary a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseIneligible {
    /// Only GET, HEAD and OPTIONS are ever repeated on the primary: a repeated write would be a
    /// second write on live state.
    Method,
    /// A body is teed once, to the copies; it cannot be sent again.
    Body,
}

/// What noise learning did for one mirror, for `/mirrors` and the page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NoiseReport {
    /// Second requests sent to the primary.
    pub sent: u64,
    /// Requests picked for noise learning but not eligible, by reason.
    pub not_eligible_method: u64,
    pub not_eligible_body: u64,
    /// Comparisons whose every difference was known noise (not counted as mismatches).
    pub reclassified: u64,
    pub learned: Vec<LearnedNoise>,
    /// Each noisy field with its evidence across path patterns (noise everywhere or not).
    pub fields: Vec<NoiseField>,
    /// The noise store holds all the fields it may; `not_learned` differences of new fields
    /// were left unlearned.
    pub full: bool,
    pub not_learned: u64,
}

impl MirrorComparison {
    pub fn new(spec: &CompareSpec) -> Self {
        let ignore_paths = spec.ignore_paths.iter().map(|p| p.path().clone()).collect();
        let options = DiffOptions {
            ignore_headers: spec.ignore_headers.clone(),
            ignore_paths,
            redact_values: spec.redact_bodies,
            ..DiffOptions::default()
        };
        Self {
            options,
            noise: NoiseFilter::new(MAX_NOISE_FIELDS),
            noise_percent: spec.noise_percent,
            max_body_bytes: spec.max_body_bytes,
            noise_skipped_method: AtomicU64::new(0),
            noise_skipped_body: AtomicU64::new(0),
            noise_sent: AtomicU64::new(0),
        }
    }

    /// Primary against shadow on a request to `path`, the copy's own changes undone and learned
    /// noise taken out.
    /// Whether values are kept out of reports (`redact_bodies`): no body is kept either.
    pub fn redacts(&self) -> bool {
        self.options.redact_values
    }

    /// Beside the result, the differences it took out as learned noise.
    pub fn compare(&self, path: &str, primary: &Captured, shadow: &Captured, changes: &CopyChanges) -> (Classified, Vec<Difference>) {
        self.noise.split(path, response_diff::compare_copy(primary, shadow, &self.options, changes))
    }

    /// Primary against a second answer of the primary: what differs is noise. Returns the
    /// differences (none when the two could not be compared).
    pub fn learn_noise(&self, path: &str, first: &Captured, second: &Captured, changes: &CopyChanges) -> Option<Vec<Difference>> {
        let comparison = response_diff::compare_copy(first, second, &self.options, changes);
        self.noise.learn(path, &comparison);
        match comparison {
            Comparison::Match => Some(Vec::new()),
            Comparison::Mismatch(differences) => Some(differences),
            Comparison::Skipped(_) => None,
        }
    }

    /// Whether a request the share did not pick is still sent to the primary twice: the first
    /// few eligible requests of each new path pattern are, while noise learning is on, so noise
    /// is known before it could be counted as a mismatch (bounded by the noise store).
    pub fn warming_up(&self, method: &Method, has_body: bool, path: &str) -> bool {
        self.noise_percent > 0.0 && eligible(method, has_body).is_ok() && self.noise.wants_sample(path)
    }

    /// Whether a request picked for noise learning may be sent to the primary again; counted.
    pub fn noise_eligible(&self, method: &Method, has_body: bool) -> bool {
        let verdict = eligible(method, has_body);
        let counter = match verdict {
            Ok(()) => &self.noise_sent,
            Err(NoiseIneligible::Method) => &self.noise_skipped_method,
            Err(NoiseIneligible::Body) => &self.noise_skipped_body,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        verdict.is_ok()
    }

    pub fn noise_fields(&self) -> Vec<String> {
        self.noise.fields()
    }

    pub fn noise_report(&self) -> NoiseReport {
        let summary = self.noise.summary();
        NoiseReport {
            sent: self.noise_sent.load(Ordering::Relaxed),
            not_eligible_method: self.noise_skipped_method.load(Ordering::Relaxed),
            not_eligible_body: self.noise_skipped_body.load(Ordering::Relaxed),
            reclassified: self.noise.reclassified(),
            learned: self.noise.learned(),
            fields: summary.fields,
            full: summary.full,
            not_learned: summary.not_learned,
        }
    }
}

/// Every mirror's comparison, kept across reloads by [`MirrorKey`] while its settings are unchanged.
#[derive(Default)]
pub struct Comparisons {
    /// With the comparison settings (serialised) each was made for.
    by_mirror: Mutex<HashMap<MirrorKey, (String, Arc<MirrorComparison>)>>,
}

impl Comparisons {
    /// The mirror's comparison: the running one when its settings are unchanged, else a new one.
    pub fn get(&self, key: &MirrorKey, spec: &CompareSpec) -> Arc<MirrorComparison> {
        let settings = serde_json::to_string(spec).unwrap_or_default();
        let mut map = self.by_mirror.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((same, kept)) = map.get(key)
            && *same == settings
        {
            return kept.clone();
        }
        let comparison = Arc::new(MirrorComparison::new(spec));
        map.insert(key.clone(), (settings, comparison.clone()));
        comparison
    }
}

fn eligible(method: &Method, has_body: bool) -> Result<(), NoiseIneligible> {
    if !(method == Method::GET || method == Method::HEAD || method == Method::OPTIONS) {
        Err(NoiseIneligible::Method)
    } else if has_body {
        Err(NoiseIneligible::Body)
    } else {
        Ok(())
    }
}

/// Runs comparisons on a thread of their own at idle scheduling priority (`SCHED_IDLE` on
/// Linux): diffing large bodies takes CPU only when request handling leaves some. Comparisons
/// queue for it within a memory bound: each reserves, for as long as it is pending, the bytes
/// its captures may take at most (the primary's answer, the shadow's and a second primary
/// answer, each up to the mirror's `compare.max_body`), out of `compare.max_pending_bytes`, and
/// once they are complete keeps only what they took while it waits for the thread. A copy that
/// finds no room left is mirrored but not compared (counted as skipped, "comparator
/// busy"), and the primary's answer is then not captured at all.
pub struct ComparisonThread {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
    /// The byte budget, in KiB.
    budget: std::sync::Arc<tokio::sync::Semaphore>,
    budget_kib: usize,
}

/// Captures one comparison may hold at most: the primary's answer, the shadow's, and the
/// primary's second answer when it learns noise.
pub const CAPTURES_PER_COMPARISON: usize = 3;

impl ComparisonThread {
    pub fn start(max_pending_bytes: usize) -> std::io::Result<Self> {
        // The queue's length is bounded by the byte budget: each job holds a reservation.
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new().name("comparator".to_owned()).spawn(move || {
            lower_priority();
            // Ends when the gateway (the sender) is dropped.
            for job in queue {
                job();
            }
        })?;
        let budget_kib = max_pending_bytes.div_ceil(1024).clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        Ok(Self { jobs, budget: std::sync::Arc::new(tokio::sync::Semaphore::new(budget_kib)), budget_kib })
    }

    /// Room for one comparison whose captures hold at most `bytes`, held until its result has
    /// been recorded. One larger than the whole budget takes all of it (it runs alone).
    pub fn reserve(&self, bytes: usize) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let kib = bytes.div_ceil(1024).clamp(1, self.budget_kib);
        self.budget.clone().try_acquire_many_owned(u32::try_from(kib).unwrap_or(u32::MAX)).ok()
    }

    /// Gives back what a reservation holds beyond `bytes`, once its captures are complete: a
    /// comparison waiting for the thread then holds the bytes its answers really took, not
    /// `compare.max_body` each, so many small ones can queue.
    pub fn shrink(reservation: &mut tokio::sync::OwnedSemaphorePermit, bytes: usize) {
        let keep = bytes.div_ceil(1024).max(1);
        let held = reservation.num_permits();
        if held > keep {
            drop(reservation.split(held - keep));
        }
    }

    /// Runs `work` on the comparator thread (call while holding a reservation).
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Box<dyn FnOnce() + Send> = Box::new(move || {
            let _ = done.send(work());
        });
        self.jobs.send(job).ok()?;
        result.await.ok()
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(error) = thread_priority::set_thread_priority_and_policy(thread_priority::thread_native_id(), ThreadPriority::Min, idle) {
        tracing::warn!(?error, "the comparator thread keeps normal priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {
    let _ = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn comparisons_queue_within_the_byte_budget_and_give_it_back() {
        let mib = 1024 * 1024;
        let comparator = ComparisonThread::start(64 * mib).unwrap();
        // With the default 1 MiB `compare.max_body`, 21 comparisons may be pending at once (the
        // old count limit skipped the third).
        let held: Vec<_> = (0..21).map(|_| comparator.reserve(CAPTURES_PER_COMPARISON * mib)).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(comparator.reserve(CAPTURES_PER_COMPARISON * mib).is_none(), "the 22nd finds no room");
        // What is left is still room for a small one ...
        assert!(comparator.reserve(1024).is_some());
        drop(held);
        // A reservation shrunk to what its answers took gives the rest back.
        let mut big = comparator.reserve(60 * mib).unwrap();
        assert!(comparator.reserve(5 * mib).is_none());
        ComparisonThread::shrink(&mut big, 10 * 1024);
        assert_eq!(big.num_permits(), 10);
        assert!(comparator.reserve(50 * mib).is_some());
        drop(big);
        // ... and a comparison larger than the whole budget runs alone.
        let alone = comparator.reserve(100 * mib);
        assert!(alone.is_some() && comparator.reserve(1).is_none());
        drop(alone);
        assert_eq!(comparator.run(|| 6 * 7).await, Some(42), "jobs run on the comparator thread");
    }
}
