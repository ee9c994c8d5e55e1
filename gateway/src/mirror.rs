//! Mirroring: which requests are copied, how a copy is built and marked, and the fire-and-forget
//! task that sends it, traces it, and compares its answer with the primary's.
//!
//! Nothing here is ever awaited by the primary path: a copy is planned synchronously (sampling,
//! a `try_acquire` on the mirror's in-flight cap), then spawned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_config::MirrorPolicy;
use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use response_diff::{Captured, Classified, SkipReason};
use service_kit::propagation::{self, SHADOW_HEADER};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tracing::Instrument;
use tracing::instrument::WithSubscriber;

use crate::body::{AbortFlag, CopyAbort, CopySender, ShadowBody, copy_channel};
use crate::compare::{Comparator, Comparer};

/// Why a comparison was skipped when every comparator slot was taken.
const COMPARATOR_BUSY: &str = "comparator busy";
use crate::report::{DropReason, MirrorStats, MismatchRecord, ShadowOutcome, now_epoch_seconds};
use crate::state::MirrorRuntime;
use crate::upstream::{BoxBody, Upstream};

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

/// The host a copy is sent with: `-shadow` appended before the port, as Envoy does.
pub fn shadow_host(host: &str) -> String {
    if let Some((name, port)) = host.rsplit_once(':') {
        let is_port = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
        // "name:port" or "[v6]:port"; a bare IPv6 address has no port to keep.
        if is_port && (name.ends_with(']') || !name.contains(':')) {
            return format!("{name}-shadow:{port}");
        }
    }
    format!("{host}-shadow")
}

/// What the request path hands to each copy's task.
pub struct Copy {
    pub request: Request<BoxBody>,
    client: Client<HttpConnector, BoxBody>,
    span: tracing::Span,
    timeout: Duration,
    stats: Arc<MirrorStats>,
    abort: Option<Arc<AbortFlag>>,
    permit: OwnedSemaphorePermit,
    compare: Option<CompareJob>,
}

/// The comparison half of a copy: the primary's capture arrives when its body has been sent.
pub struct CompareJob {
    comparer: Arc<Comparer>,
    comparator: Arc<Comparator>,
    /// Held until the result is recorded: bounds the comparisons (and captures) pending.
    _slot: OwnedSemaphorePermit,
    primary: oneshot::Receiver<(Captured, Duration)>,
    /// A second request to the primary's destination, to learn noise.
    noise: Option<(Request<BoxBody>, Client<HttpConnector, BoxBody>)>,
    method: Method,
    path: String,
    request_id: String,
}

/// The parts of the primary request a copy is made from (taken before the primary's own trace
/// context is injected, so each copy carries its own mirror span's context).
pub struct Original<'a> {
    pub method: &'a Method,
    pub path_and_query: &'a PathAndQuery,
    pub host: Option<&'a HeaderValue>,
    pub headers: &'a HeaderMap,
    pub has_body: bool,
    pub content_length: Option<u64>,
    pub route: &'a str,
}

/// Plans the copies of one request. Returns the copies to spawn and, for requests with a body,
/// the tee senders feeding their bodies. Drops (at a cap) are counted and traced here.
pub fn plan(
    original: &Original<'_>,
    policies: &[MirrorPolicy],
    runtimes: &[MirrorRuntime],
    upstreams: &[Upstream],
    primary_upstream: &Upstream,
    comparator: &Arc<Comparator>,
    compare_waiters: &mut Vec<oneshot::Sender<(Captured, Duration)>>,
) -> (Vec<Copy>, Vec<CopySender>) {
    let mut copies = Vec::new();
    let mut senders = Vec::new();
    for (policy, runtime) in policies.iter().zip(runtimes) {
        if !policy.methods.allows(original.method) {
            continue;
        }
        if !sampled(policy.percent, original.headers.get(&policy.sample_header).map(HeaderValue::as_bytes)) {
            continue;
        }
        let upstream = &upstreams[policy.destination.0];
        let span = tracing::info_span!(
            "mirror",
            otel.name = "mirror",
            otel.kind = "client",
            traffic.shadow = true,
            mirror.name = %policy.name,
            mirror.destination = %upstream.label,
            mirror.outcome = tracing::field::Empty,
            mirror.drop_reason = tracing::field::Empty,
            mirror.latency_ms = tracing::field::Empty,
            mirror.diff = tracing::field::Empty,
            mirror.diff.fields = tracing::field::Empty,
            mirror.diff.skip_reason = tracing::field::Empty,
            http.request.method = %original.method,
            http.response.status_code = tracing::field::Empty,
            server.address = tracing::field::Empty,
            route = original.route,
        );
        let drop_copy = |reason: DropReason| {
            span.record("mirror.outcome", "dropped");
            span.record("mirror.drop_reason", reason.as_str());
            runtime.stats.outcome(ShadowOutcome::Dropped(reason));
        };
        if original.content_length.is_some_and(|len| len > policy.max_body_bytes as u64) {
            drop_copy(DropReason::BodyOverCap);
            continue;
        }
        let Ok(permit) = runtime.in_flight.clone().try_acquire_owned() else {
            drop_copy(DropReason::InFlightCap);
            continue;
        };
        let endpoint = upstream.pick();
        span.record("server.address", endpoint.as_str());
        let (body, abort): (BoxBody, _) = if original.has_body {
            let (sender, body, abort): (CopySender, ShadowBody, _) = copy_channel(policy.max_body_bytes);
            senders.push(sender);
            (body.boxed_unsync(), Some(abort))
        } else {
            (Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync(), None)
        };
        let Some(request) = build_copy(original, policy, &runtime.marker, endpoint, &span, body) else {
            drop_copy(DropReason::ClientAborted);
            continue;
        };
        let slot = runtime.comparer.as_ref().and_then(|_| {
            let slot = comparator.reserve();
            if slot.is_none() {
                span.record("mirror.diff", "skipped");
                span.record("mirror.diff.skip_reason", COMPARATOR_BUSY);
                runtime.stats.compared(&Classified::Skipped(SkipReason::Incomplete(COMPARATOR_BUSY)), 0.0, || None);
            }
            slot
        });
        let compare = runtime.comparer.as_ref().zip(slot).map(|(comparer, slot)| {
            let (tx, rx) = oneshot::channel();
            compare_waiters.push(tx);
            let noise = (!original.has_body && sampled(comparer.noise_percent, None))
                .then(|| {
                    let noise_endpoint = primary_upstream.pick();
                    build_copy(
                        original,
                        policy,
                        &runtime.marker,
                        noise_endpoint,
                        &span,
                        Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync(),
                    )
                    .map(|request| (request, primary_upstream.client().clone()))
                })
                .flatten();
            CompareJob {
                comparer: comparer.clone(),
                comparator: comparator.clone(),
                _slot: slot,
                primary: rx,
                noise,
                method: original.method.clone(),
                path: original.path_and_query.to_string(),
                request_id: original.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned(),
            }
        });
        copies.push(Copy {
            request,
            client: upstream.client().clone(),
            span,
            timeout: policy.timeout,
            stats: runtime.stats.clone(),
            abort,
            permit,
            compare,
        });
    }
    (copies, senders)
}

/// The copy's request: same method, path and headers; `-shadow` host, `x-shadow`, header
/// changes, and the mirror span's trace context.
fn build_copy(
    original: &Original<'_>,
    policy: &MirrorPolicy,
    marker: &HeaderValue,
    endpoint: &Authority,
    span: &tracing::Span,
    body: BoxBody,
) -> Option<Request<BoxBody>> {
    let uri =
        Uri::builder().scheme(Scheme::HTTP).authority(endpoint.clone()).path_and_query(original.path_and_query.clone()).build().ok()?;
    let mut headers = original.headers.clone();
    if let Some(host) = original.host {
        let host = match (policy.shadow_host_suffix, host.to_str()) {
            (true, Ok(host)) => HeaderValue::from_str(&shadow_host(host)).ok()?,
            _ => host.clone(),
        };
        headers.insert(HOST, host);
    }
    headers.insert(SHADOW_HEADER, marker.clone());
    for name in &policy.remove_headers {
        headers.remove(name);
    }
    for (name, value) in &policy.set_headers {
        headers.insert(name.clone(), value.clone());
    }
    propagation::inject(span, &mut headers);
    let mut request = Request::builder().method(original.method.clone()).uri(uri).body(body).ok()?;
    *request.headers_mut() = headers;
    Some(request)
}

/// Starts the copy's task; returns at once.
pub fn spawn(copy: Copy) {
    let span = copy.span.clone();
    // The instrumented future is awaited, so the span is dropped while the dispatcher is set:
    // a span closed outside it would never release its parent (the gateway's server span).
    // Boxed: the copy's future is large, and spawning moves it (measured as the top memmove).
    tokio::spawn(async move { Box::pin(run(copy)).instrument(span).await }.with_current_subscriber());
}

async fn run(copy: Copy) {
    let Copy { request, client, span, timeout, stats, abort, permit, compare } = copy;
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    stats.sent();
    let noise = compare.as_ref().and_then(|job| job.noise.as_ref()).is_some();
    let (outcome, shadow) = tokio::select! {
        biased;
        () = tokio::time::sleep_until(deadline) => (ShadowOutcome::Timeout, None),
        result = send(&client, request, compare.as_ref().map(|job| job.comparer.max_body_bytes)) => match result {
            Ok(captured) => (ShadowOutcome::Ok, Some((captured, started.elapsed()))),
            Err(error) => {
                let outcome = match abort.as_ref().map(|flag| flag.get()) {
                    Some(CopyAbort::OverCap) => ShadowOutcome::Dropped(DropReason::BodyOverCap),
                    Some(CopyAbort::Backpressure) => ShadowOutcome::Dropped(DropReason::BodyBackpressure),
                    Some(CopyAbort::ClientAborted) => ShadowOutcome::Dropped(DropReason::ClientAborted),
                    _ => ShadowOutcome::Error,
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
    stats.outcome(outcome);
    tracing::debug!(outcome = outcome.as_str(), latency_ms = latency.as_secs_f64() * 1e3, noise, "mirror copy done");
    if let Some(job) = compare {
        compare_copy(job, shadow, &span, &stats, deadline).await;
    }
}

/// Sends a request and reads the whole answer, keeping up to `keep` bytes of the body.
async fn send(
    client: &Client<HttpConnector, BoxBody>,
    request: Request<BoxBody>,
    keep: Option<usize>,
) -> Result<Captured, crate::upstream::BoxError> {
    let response = client.request(request).await?;
    let (parts, mut body) = response.into_parts();
    let cap = keep.unwrap_or(0);
    let mut kept = bytes::BytesMut::new();
    let mut truncated = false;
    // Read to the end either way, so the pooled connection can be reused.
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let room = cap.saturating_sub(kept.len());
            truncated |= data.len() > room;
            kept.extend_from_slice(&data[..data.len().min(room)]);
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
    let CompareJob { comparer, comparator, _slot, primary, noise, method, path, request_id } = job;
    let skip = |why: &'static str| {
        span.record("mirror.diff", "skipped");
        span.record("mirror.diff.skip_reason", why);
        stats.compared(&Classified::Skipped(SkipReason::Incomplete(why)), 0.0, || None);
    };
    let Some((shadow, shadow_latency)) = shadow else {
        return skip("shadow did not answer");
    };
    // The primary's body may still be streaming to the client: wait for it, within the mirror's time.
    let primary = match tokio::time::timeout_at(deadline + Duration::from_secs(30), primary).await {
        Ok(Ok(primary)) => primary,
        _ => return skip("primary response incomplete"),
    };
    let again = match noise {
        Some((request, client)) => {
            tokio::time::timeout_at(deadline, send(&client, request, Some(comparer.max_body_bytes))).await.ok().and_then(Result::ok)
        }
        None => None,
    };
    let (primary, primary_latency) = primary;
    let (primary_status, shadow_status) = (primary.status, shadow.status);
    // The diff itself runs on the comparator's idle-priority thread, never on a request worker.
    let diffed = comparator
        .run(move || {
            if let Some(again) = again {
                comparer.learn_noise(&primary, &again);
            }
            comparer.compare(&primary, &shadow)
        })
        .await;
    let Some(result) = diffed else {
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
        }),
        _ => None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shadow_host_keeps_the_port() {
        assert_eq!(shadow_host("target"), "target-shadow");
        assert_eq!(shadow_host("target:8090"), "target-shadow:8090");
        assert_eq!(shadow_host("10.0.0.1:80"), "10.0.0.1-shadow:80");
        assert_eq!(shadow_host("[::1]:80"), "[::1]-shadow:80");
    }

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
