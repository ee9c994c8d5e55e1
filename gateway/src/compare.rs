//! In-line comparison of a shadow's response with the primary's, run off the request path in the
//! mirror's task once both responses are complete. The differ itself is the `response-diff` crate.

use gateway_config::CompareSpec;
use response_diff::{Captured, Classified, DiffOptions, JsonPath, NoiseFilter, PathError};

/// Fields learned as noise per mirror at most (the filter is bounded).
const MAX_NOISE_FIELDS: usize = 256;

/// One mirror's comparison settings and learned noise.
pub struct Comparer {
    options: DiffOptions,
    noise: NoiseFilter,
    /// Share (0..=100) of compared requests also sent a second time to the primary.
    pub noise_percent: f64,
    /// Response bodies are kept up to this many bytes for comparison.
    pub max_body_bytes: usize,
}

impl Comparer {
    pub fn new(spec: &CompareSpec) -> Result<Self, PathError> {
        let ignore_paths = spec.ignore_paths.iter().map(|p| p.parse::<JsonPath>()).collect::<Result<Vec<_>, _>>()?;
        let options = DiffOptions {
            ignore_headers: spec.ignore_headers.clone(),
            ignore_paths,
            redact_values: spec.redact_bodies,
            ..DiffOptions::default()
        };
        Ok(Self {
            options,
            noise: NoiseFilter::new(MAX_NOISE_FIELDS),
            noise_percent: spec.noise_percent,
            max_body_bytes: spec.max_body_bytes,
        })
    }

    /// Primary against shadow, with learned noise taken out.
    pub fn compare(&self, primary: &Captured, shadow: &Captured) -> Classified {
        self.noise.classify(response_diff::compare(primary, shadow, &self.options))
    }

    /// Primary against a second answer of the primary: what differs is noise.
    pub fn learn_noise(&self, first: &Captured, second: &Captured) {
        self.noise.learn(&response_diff::compare(first, second, &self.options));
    }

    pub fn noise_fields(&self) -> Vec<String> {
        self.noise.fields()
    }
}

/// Runs comparisons on a thread of their own at idle scheduling priority (`SCHED_IDLE` on
/// Linux): diffing large bodies takes CPU only when request handling leaves some. At most
/// `slots` comparisons are pending at once; a copy that finds none free is mirrored but not
/// compared (counted as skipped, "comparator busy"), and the primary's answer is then not
/// captured at all. This bounds both the CPU and the memory comparison can take.
pub struct Comparator {
    jobs: std::sync::mpsc::SyncSender<Box<dyn FnOnce() + Send>>,
    slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Comparator {
    pub fn start(slots: usize) -> std::io::Result<Self> {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Box<dyn FnOnce() + Send>>(slots.max(1));
        std::thread::Builder::new().name("comparator".to_owned()).spawn(move || {
            lower_priority();
            // Ends when the gateway (the sender) is dropped.
            for job in queue {
                job();
            }
        })?;
        Ok(Self { jobs, slots: std::sync::Arc::new(tokio::sync::Semaphore::new(slots)) })
    }

    /// A place for one comparison, held until its result has been recorded.
    pub fn reserve(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Runs `work` on the comparator thread. Call only while holding a reserved slot (so the
    /// queue, as long as the slots, always has room).
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Box<dyn FnOnce() + Send> = Box::new(move || {
            let _ = done.send(work());
        });
        self.jobs.try_send(job).ok()?;
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
