//! A copy's own task: send it with its own deadline, count and trace how it ended, and, when its
//! mirror compares, diff its answer with the primary's on the comparator thread.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::{Method, Request};
use http_body_util::BodyExt;
use response_diff::{Captured, Classified, CopyChanges, SkipReason};
use service_kit::propagation;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tracing::Instrument;
use tracing::instrument::WithSubscriber;

use super::body::{AbortFlag, PrimaryAnswer};
use super::plan::Outgoing;
use crate::capture::{BodyRecord, CaptureSink, Exchange, RequestHead};
use crate::compare::{ComparisonThread, MirrorComparison};
use crate::settings::EjectionSettings;
use crate::stats::{ANSWERED_BODY_BYTES, MirrorStats, MismatchRecord, Observation, Pair, ShadowOutcome, now_epoch_seconds};
use crate::upstream::{BoxBody, Upstream};

/// Why a comparison was skipped when every comparator slot was taken.
pub(super) const COMPARATOR_BUSY: &str = "comparator busy";

/// One planned copy, ready to run.
pub(super) struct Copy {
    pub request: Request<BoxBody>,
    /// The shadow destination: its client, and its ejection state this copy's outcome updates.
    pub upstream: Arc<Upstream>,
    pub ejection: EjectionSettings,
    pub span: tracing::Span,
    pub timeout: Duration,
    pub stats: Arc<MirrorStats>,
    /// Set by the tee when the copy's body was abandoned; `None` for a copy without a body.
    pub abort: Option<Arc<AbortFlag>>,
    /// This copy's place under the mirror's in-flight cap.
    pub permit: OwnedSemaphorePermit,
    pub compare: Option<CompareJob>,
}

/// A second request to the primary's destination, to learn noise.
pub(super) struct NoiseCopy {
    pub request: Request<BoxBody>,
    /// The primary's destination.
    pub upstream: Arc<Upstream>,
    /// What the gateway changed in it, from the primary's request.
    pub changes: CopyChanges,
    /// Picked by the noise share at random (not the warm-up of a new pattern): its differences
    /// estimate how often the primary differs from itself.
    pub sampled: bool,
}

/// The comparison half of a copy: the primary's answer arrives when its body has been sent.
pub(super) struct CompareJob {
    comparer: Arc<MirrorComparison>,
    comparator: Arc<ComparisonThread>,
    /// Held until the result is recorded: bounds the comparisons (and captures) pending.
    _slot: OwnedSemaphorePermit,
    primary: oneshot::Receiver<PrimaryAnswer>,
    pub noise: Option<NoiseCopy>,
    /// What the gateway changed in the copy, from the primary's request (set at spawn).
    pub changes: CopyChanges,
    method: Method,
    path: String,
    request_id: String,
    /// The exchange's record, when the mirror captures.
    capture: Option<CaptureJob>,
}

/// What a capturing mirror keeps of the request until the comparison is done.
pub(super) struct CaptureJob {
    sink: Arc<CaptureSink>,
    started: SystemTime,
    route: String,
    mirror: String,
    method: Method,
    url: String,
    version: http::Version,
    headers: http::HeaderMap,
    /// The copy's body as it is sent; `None` for a request without one.
    body: Option<Arc<Mutex<BodyRecord>>>,
}

impl CaptureJob {
    pub fn new(sink: Arc<CaptureSink>, request: &Outgoing<'_>, mirror: &str) -> Self {
        let host = request.host.and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        Self {
            sink,
            started: SystemTime::now(),
            route: request.route.to_owned(),
            mirror: mirror.to_owned(),
            method: request.method.clone(),
            url: format!("http://{host}{}", request.path_and_query),
            version: request.version,
            headers: request.headers.clone(),
            body: request.has_body.then(Default::default),
        }
    }

    /// The copy's body, recorded (up to the capture's cap) as it goes to the shadow.
    fn record(&self, request: Request<BoxBody>) -> Request<BoxBody> {
        let Some(record) = self.body.clone() else {
            return request;
        };
        let cap = self.sink.spec.max_body_bytes;
        request.map(move |body| {
            body.map_frame(move |frame| {
                if let Some(data) = frame.data_ref() {
                    record.lock().unwrap_or_else(|p| p.into_inner()).add(data, cap);
                }
                frame
            })
            .boxed_unsync()
        })
    }

    /// Offers the finished exchange to the capture file, when the capture wants it.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        self,
        result: Classified,
        primary: Captured,
        shadow: Captured,
        latencies: (Duration, Duration),
        request_id: &str,
        trace_id: String,
    ) {
        if !self.sink.wants(&result, request_id) {
            return;
        }
        let (body, body_truncated) = match &self.body {
            Some(record) => {
                let record = std::mem::take(&mut *record.lock().unwrap_or_else(|p| p.into_inner()));
                (record.kept.freeze(), record.truncated)
            }
            None => (bytes::Bytes::new(), false),
        };
        self.sink.offer(Exchange {
            started: self.started,
            route: self.route,
            mirror: self.mirror,
            request: RequestHead { method: self.method, url: self.url, version: self.version, headers: self.headers, body, body_truncated },
            primary,
            primary_ms: latencies.0.as_secs_f64() * 1e3,
            shadow,
            shadow_ms: latencies.1.as_secs_f64() * 1e3,
            trace_id,
            request_id: request_id.to_owned(),
            result,
        });
    }
}

impl CompareJob {
    pub fn new(
        comparer: Arc<MirrorComparison>,
        comparator: Arc<ComparisonThread>,
        slot: OwnedSemaphorePermit,
        primary: oneshot::Receiver<PrimaryAnswer>,
        noise: Option<NoiseCopy>,
        request: &Outgoing<'_>,
    ) -> Self {
        Self {
            comparer,
            comparator,
            _slot: slot,
            primary,
            noise,
            changes: CopyChanges::default(),
            method: request.method.clone(),
            path: request.path_and_query.to_string(),
            request_id: request.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned(),
            capture: None,
        }
    }

    pub fn with_capture(mut self, capture: Option<CaptureJob>) -> Self {
        self.capture = capture;
        self
    }
}

impl Copy {
    /// Starts the copy's task; returns at once.
    pub fn spawn(self) {
        let span = self.span.clone();
        // The instrumented future is awaited, so the span is dropped while the dispatcher is set:
        // a span closed outside it would never release its parent (the gateway's server span).
        // Boxed: the copy's future is large, and spawning moves it (measured as the top memmove).
        tokio::spawn(async move { Box::pin(run(self)).instrument(span).await }.with_current_subscriber());
    }
}

async fn run(copy: Copy) {
    let Copy { request, upstream, ejection, span, timeout, stats, abort, permit, compare } = copy;
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    stats.sent();
    let noise = compare.as_ref().and_then(|job| job.noise.as_ref()).is_some();
    let request = match compare.as_ref().and_then(|job| job.capture.as_ref()) {
        Some(capture) => capture.record(request),
        None => request,
    };
    let (outcome, shadow) = tokio::select! {
        biased;
        () = tokio::time::sleep_until(deadline) => (ShadowOutcome::Timeout, None),
        result = send(&upstream, request, compare.as_ref().map(|job| job.comparer.max_body_bytes)) => match result {
            Ok(answered) => (ShadowOutcome::Ok, Some(answered)),
            Err(error) => {
                let outcome = match abort.as_ref().and_then(|flag| flag.get()) {
                    Some(reason) => ShadowOutcome::Dropped(reason),
                    None => ShadowOutcome::Error,
                };
                tracing::debug!(%error, "shadow request failed");
                (outcome, None)
            }
        },
    };
    // The copy no longer holds a connection: free its place under the in-flight cap.
    drop(permit);
    let latency = started.elapsed();
    span.record("mirror.outcome", outcome.as_str());
    span.record("mirror.latency_ms", latency.as_secs_f64() * 1e3);
    if let ShadowOutcome::Dropped(reason) = outcome {
        span.record("mirror.drop_reason", reason.as_str());
    }
    if let Some((captured, _)) = &shadow {
        span.record("http.response.status_code", i64::from(captured.status));
    }
    match outcome {
        ShadowOutcome::Ok => upstream.ejection.answered(),
        ShadowOutcome::Timeout | ShadowOutcome::Error => {
            if let Some(time) = upstream.ejection.failed(&ejection) {
                tracing::warn!(destination = %upstream.label, failures = ejection.consecutive_failures, ejected_for = ?time,
                    "shadow destination ejected: copies to it are dropped until the time is up");
            }
        }
        ShadowOutcome::Dropped(_) => {}
    }
    // Counted once the ejection state has its effect: whoever sees this copy ended (`/mirrors`)
    // sees the ejection it caused, and the next copy is dropped.
    stats.outcome(outcome);
    tracing::debug!(outcome = outcome.as_str(), latency_ms = latency.as_secs_f64() * 1e3, noise, "mirror copy done");
    if let Some(job) = compare {
        compare_copy(job, shadow, &span, &stats, deadline).await;
    }
}

/// Sends a request and reads the whole answer, keeping up to `keep` bytes of the body; with the
/// time to the response headers, measured as the primary's is (so a large body does not make the
/// shadow look slower than it is). A copy goes over the destination's protocol; to an `auto`
/// destination, in the version of the client's request, which the copy was built with.
async fn send(
    upstream: &Upstream,
    request: Request<BoxBody>,
    keep: Option<usize>,
) -> Result<(Captured, Duration), crate::upstream::BoxError> {
    let started = Instant::now();
    let downstream = request.version();
    let response = upstream.send(request, downstream).await?;
    let to_headers = started.elapsed();
    Ok((read_answer(response, keep.unwrap_or(0)).await?, to_headers))
}

/// Reads a whole answer, keeping up to `cap` bytes of its body; trailers (gRPC's `grpc-status`)
/// join the headers, to be compared as the primary's are. `gateway replay` reads its answers so too.
pub async fn read_answer<B>(response: http::Response<B>, cap: usize) -> Result<Captured, crate::upstream::BoxError>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: Into<crate::upstream::BoxError>,
{
    let (mut parts, body) = response.into_parts();
    let mut body = std::pin::pin!(body);
    let mut kept = bytes::BytesMut::new();
    let mut truncated = false;
    // Read to the end either way, so the pooled connection can be reused.
    while let Some(frame) = body.frame().await {
        match frame.map_err(Into::into)?.into_data() {
            Ok(data) => {
                let room = cap.saturating_sub(kept.len());
                truncated |= data.len() > room;
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
            // Trailers (gRPC's grpc-status) are compared as headers, as the primary's are.
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    parts.headers.extend(trailers);
                }
            }
        }
    }
    Ok(Captured { status: parts.status.as_u16(), headers: parts.headers, body: kept.freeze(), truncated })
}

async fn compare_copy(
    job: CompareJob,
    shadow: Option<(Captured, Duration)>,
    span: &tracing::Span,
    stats: &MirrorStats,
    deadline: tokio::time::Instant,
) {
    let CompareJob { comparer, comparator, _slot: mut slot, primary, noise, changes, method, path, request_id, capture } = job;
    let skip = |why: &'static str| {
        span.record("mirror.diff", "skipped");
        span.record("mirror.diff.skip_reason", why);
        stats.compared(&Classified::Skipped(SkipReason::Incomplete(why)), 0.0, || None);
    };
    let Some((shadow, shadow_latency)) = shadow else {
        return skip("shadow did not answer");
    };
    // The primary's body may still be streaming to the client: wait for it, within the mirror's time.
    let PrimaryAnswer { captured: primary, latency: primary_latency } =
        match tokio::time::timeout_at(deadline + Duration::from_secs(30), primary).await {
            Ok(Ok(answer)) => answer,
            _ => return skip("primary response incomplete"),
        };
    let again = match noise {
        Some(NoiseCopy { request, upstream, changes, sampled }) => {
            tokio::time::timeout_at(deadline, send(&upstream, request, Some(comparer.max_body_bytes)))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|(again, _)| (again, changes, sampled))
        }
        None => None,
    };
    // Every answer is in: wait for the comparator holding only the bytes they took.
    let held = primary.body.len() + shadow.body.len() + again.as_ref().map_or(0, |(again, _, _)| again.body.len());
    ComparisonThread::shrink(&mut slot, held);
    let (primary_status, shadow_status) = (primary.status, shadow.status);
    // The diff itself runs on the comparator's idle-priority thread, never on a request worker.
    let route_path = path.clone();
    let diffed = comparator
        .run(move || {
            let primary_again = again.and_then(|(again, noise_changes, sampled)| {
                let differences = comparer.learn_noise(&route_path, &primary, &again, &noise_changes);
                // Only the randomly picked ones estimate how often the primary differs.
                differences.filter(|_| sampled)
            });
            let (result, noise) = comparer.compare(&route_path, &primary, &shadow, &changes);
            // What each side really sent, for the mismatch record (not the parsed view).
            let bodies = (matches!(result, Classified::Mismatch(_)) && !comparer.redacts())
                .then(|| (primary.answered_body(ANSWERED_BODY_BYTES), shadow.answered_body(ANSWERED_BODY_BYTES)));
            (result, noise, primary_again, bodies, primary, shadow)
        })
        .await;
    let Some((result, noise, primary_again, bodies, primary, shadow)) = diffed else {
        return skip(COMPARATOR_BUSY);
    };
    if let Classified::Skipped(reason) = &result {
        span.record("mirror.diff.skip_reason", reason.to_string().as_str());
    }
    span.record("mirror.diff", result.label());
    let fields: Vec<&str> = match &result {
        Classified::Mismatch(differences) => differences.iter().map(|d| d.field.as_str()).collect(),
        Classified::Noise(fields) => fields.iter().map(String::as_str).collect(),
        _ => Vec::new(),
    };
    if !fields.is_empty() {
        span.record("mirror.diff.fields", fields.join(",").as_str());
    }
    let delta_ms = (shadow_latency.as_secs_f64() - primary_latency.as_secs_f64()) * 1e3;
    stats.compared(&result, delta_ms, || match &result {
        Classified::Mismatch(differences) => Some(MismatchRecord {
            at: now_epoch_seconds(),
            method: method.to_string(),
            path: path.clone(),
            request_id: request_id.clone(),
            trace_id: propagation::trace_id(span).unwrap_or_default(),
            primary_status,
            shadow_status,
            differences: differences.clone(),
            primary_body: bodies.as_ref().map(|(primary, _)| primary.clone()),
            shadow_body: bodies.as_ref().map(|(_, shadow)| shadow.clone()),
        }),
        _ => None,
    });
    stats.evidence(&Observation {
        method: method.as_str(),
        path: &path,
        result: &result,
        noise: &noise,
        primary_again: primary_again.as_deref(),
        pair: Pair { primary_status, shadow_status, primary_latency, shadow_latency },
    });
    if let Some(capture) = capture {
        let trace_id = propagation::trace_id(span).unwrap_or_default();
        capture.finish(result, primary, shadow, (primary_latency, shadow_latency), &request_id, trace_id);
    }
}
