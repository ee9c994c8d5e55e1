//! [`MirrorPlan`]: everything about one request's copies, from the decision to copy to the
//! hand-over of the primary's answer for comparison.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Empty};
use response_diff::{Captured, Classified, CopyChanges, SkipReason};
use service_kit::propagation::{self, SHADOW_HEADER};
use tokio::sync::oneshot;

use super::body::{AnswerWaiter, CaptureBody, CopySender, PrimaryAnswer, TeeBody, copy_channel, hand_over, offer_whole};
use super::send::{COMPARATOR_BUSY, CaptureJob, CompareJob, Copy, NoiseCopy};
use super::{CopyContext, Mirror, sampled};
use crate::bodies::Whole;
use crate::compare::CAPTURES_PER_COMPARISON;
use crate::shadow::{ShadowMarker, shadow_host};
use crate::stats::{DropReason, NotEligible, ShadowOutcome};
use crate::upstream::{BoxBody, BoxError, Upstream};

/// The request as the primary will get it (route, rewrite and proxy headers applied), before the
/// primary's own trace context goes in: each copy carries its own mirror span's context instead.
pub struct Outgoing<'a> {
    pub method: &'a Method,
    pub path_and_query: &'a PathAndQuery,
    pub host: Option<&'a HeaderValue>,
    pub headers: &'a HeaderMap,
    pub has_body: bool,
    /// The body's length when the client declared it.
    pub content_length: Option<u64>,
    pub route: &'a str,
    /// The version the client spoke: a copy to an `auto` destination follows it, as the
    /// primary request does (a gRPC call stays HTTP/2).
    pub version: http::Version,
    /// The client asked to switch protocols ([`crate::upgrade::requested`]).
    pub upgrade: bool,
}

impl Outgoing<'_> {
    /// Why no copy of this request can be made at all: an upgrade is never mirrored, since a copy
    /// cannot hold a conversation. (Nor is a `CONNECT` tunnel, which no mirror's methods take.)
    fn not_eligible(&self) -> Option<NotEligible> {
        self.upgrade.then_some(NotEligible::Upgrade)
    }
}

/// One request's copies. Made once the request head is final; then, in order: [`tee`] the
/// request body, [`spawn`] the copies, [`capture`] the primary's answer for those that compare.
///
/// [`tee`]: MirrorPlan::tee
/// [`spawn`]: MirrorPlan::spawn
/// [`capture`]: MirrorPlan::capture
#[derive(Default)]
pub struct MirrorPlan {
    copies: Vec<Copy>,
    /// The tee's end of each copy that has a body to receive.
    senders: Vec<CopySender>,
    /// The comparing copies, waiting for the primary's answer.
    waiters: Vec<AnswerWaiter>,
    /// How much of the primary's answer to keep: the largest `compare.max_body` among them.
    capture_cap: usize,
}

impl MirrorPlan {
    /// Plans the copies `mirrors` make of `request`: every decision to copy or not is made
    /// here, and a request that is not copied is counted here, by why (not eligible, or dropped
    /// at a cap, which is traced too).
    pub fn new(request: &Outgoing<'_>, mirrors: &[Mirror], primary: &Arc<Upstream>, context: &CopyContext<'_>) -> Self {
        let mut plan = Self::default();
        if mirrors.is_empty() {
            return plan;
        }
        if let Some(reason) = request.not_eligible() {
            // Each mirror that would have copied the request counts it.
            for mirror in mirrors.iter().filter(|mirror| mirror.policy.methods.allows(request.method)) {
                mirror.stats.not_eligible(reason);
            }
            return plan;
        }
        // Loop guard: a copy that comes back through a gateway of this deployment is not copied
        // again. (A client's marker never gets this far: the edge removed it.)
        if request.headers.contains_key(&SHADOW_HEADER) {
            return plan;
        }
        for mirror in mirrors {
            plan.add(request, mirror, primary, context);
        }
        plan
    }

    /// True when no copy was planned.
    pub fn is_empty(&self) -> bool {
        self.copies.is_empty()
    }

    fn add(&mut self, request: &Outgoing<'_>, mirror: &Mirror, primary: &Arc<Upstream>, context: &CopyContext<'_>) {
        let comparator = context.comparator;
        let policy = &mirror.policy;
        // A copy to the destination that answers the primary (a weighted split, a promotion)
        // would compare a version with itself: no evidence, only load.
        if !policy.methods.allows(request.method) || Arc::ptr_eq(&mirror.upstream, primary) {
            return;
        }
        if !sampled(policy.percent, request.headers.get(&policy.sample_header).map(HeaderValue::as_bytes)) {
            return;
        }
        let span = mirror_span(request, mirror);
        let not_sent = |outcome: ShadowOutcome| {
            span.record("mirror.outcome", outcome.as_str());
            if let ShadowOutcome::Dropped(reason) = outcome {
                span.record("mirror.drop_reason", reason.as_str());
            }
            mirror.stats.outcome(outcome);
        };
        if request.content_length.is_some_and(|len| len > policy.max_body_bytes as u64) {
            return not_sent(ShadowOutcome::Dropped(DropReason::BodyOverCap));
        }
        if mirror.upstream.ejection.ejected() {
            return not_sent(ShadowOutcome::Dropped(DropReason::ShadowEjected));
        }
        let Ok(permit) = mirror.in_flight.clone().try_acquire_owned() else {
            return not_sent(ShadowOutcome::Dropped(DropReason::InFlightCap));
        };
        let Some(endpoint) = mirror.upstream.pick() else {
            tracing::debug!(parent: &span, "the shadow destination has no endpoints");
            return not_sent(ShadowOutcome::Error);
        };
        span.record("server.address", endpoint.as_str());
        let (body, abort): (BoxBody, _) = if request.has_body {
            let (sender, body, abort) = copy_channel(policy.max_body_bytes);
            (body.boxed_unsync(), Some((sender, abort)))
        } else {
            (empty(), None)
        };
        let Some(copy) = build_copy(request, mirror, context.marker, endpoint, &span, body) else {
            tracing::debug!(parent: &span, "the copy's host or URI is not valid");
            return not_sent(ShadowOutcome::Error);
        };
        let abort = abort.map(|(sender, abort)| {
            self.senders.push(sender);
            abort
        });
        let compare = mirror.comparer.as_ref().and_then(|comparer| {
            let Some(slot) = comparator.reserve(comparer.max_body_bytes.saturating_mul(CAPTURES_PER_COMPARISON)) else {
                span.record("mirror.diff", "skipped");
                span.record("mirror.diff.skip_reason", COMPARATOR_BUSY);
                mirror.stats.compared(&Classified::Skipped(SkipReason::Incomplete(COMPARATOR_BUSY)), 0.0, || None);
                return None;
            };
            let (waiter, primary_answer) = oneshot::channel();
            self.waiters.push(waiter);
            self.capture_cap = self.capture_cap.max(comparer.max_body_bytes);
            // A second request to the primary teaches what differs between two of its own
            // answers (noise). Only safe methods without a body: a repeated write would be a
            // second write on live state, and a body is teed once.
            let by_share = sampled(comparer.noise_percent, None);
            let picked = by_share || comparer.warming_up(request.method, request.has_body, request.path_and_query.path());
            let noise = (picked && comparer.noise_eligible(request.method, request.has_body))
                .then(|| primary.pick().and_then(|endpoint| build_copy(request, mirror, context.marker, endpoint, &span, empty())))
                .flatten()
                .map(|request| NoiseCopy { request, upstream: primary.clone(), changes: CopyChanges::default(), sampled: by_share });
            let capture = mirror.capture.as_ref().map(|sink| CaptureJob::new(sink.clone(), request, &mirror.policy.name));
            Some(CompareJob::new(comparer.clone(), comparator.clone(), slot, primary_answer, noise, request).with_capture(capture))
        });
        self.copies.push(Copy {
            request: copy,
            upstream: mirror.upstream.clone(),
            ejection: context.ejection,
            span,
            timeout: policy.timeout,
            stats: mirror.stats.clone(),
            abort,
            permit,
            compare,
        });
    }

    /// The request body on its way to the primary, teed to the copies that take it.
    pub fn tee<B>(&mut self, body: B) -> BoxBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if self.senders.is_empty() {
            body.map_err(Into::into).boxed_unsync()
        } else {
            TeeBody::new(body, std::mem::take(&mut self.senders)).boxed_unsync()
        }
    }

    /// [`MirrorPlan::tee`] for a body already in hand: the copies get it whole, now (a
    /// reference-counted frame each, never waited for).
    pub fn tee_whole(&mut self, whole: &Whole) {
        if !self.senders.is_empty() {
            offer_whole(std::mem::take(&mut self.senders), whole.data());
        }
    }

    /// Starts every copy in a task of its own; returns at once. `primary` is the primary's
    /// request head as sent: a comparing copy keeps what the gateway changed in it (host, marker,
    /// trace context, the mirror's header changes), to tell those from the shadow's differences.
    pub fn spawn(&mut self, primary: &HeaderMap) {
        for mut copy in self.copies.drain(..) {
            if let Some(job) = copy.compare.as_mut() {
                job.changes = CopyChanges::between(primary, copy.request.headers());
                if let Some(noise) = job.noise.as_mut() {
                    noise.changes = CopyChanges::between(primary, noise.request.headers());
                }
            }
            copy.spawn();
        }
    }

    /// The primary's answer on its way to the client; the comparing copies get it (up to their
    /// cap) when its body has been sent in full. `latency` is the primary's time to headers.
    pub fn capture<B>(self, response: Response<B>, latency: Duration) -> Response<BoxBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = response.into_parts();
        if self.waiters.is_empty() {
            return Response::from_parts(parts, body.map_err(Into::into).boxed_unsync());
        }
        if body.is_end_stream() {
            // An empty body is never polled: hand the answer over now.
            let captured = Captured { status: parts.status.as_u16(), headers: parts.headers.clone(), body: Bytes::new(), truncated: false };
            hand_over(self.waiters, PrimaryAnswer { captured, latency });
            return Response::from_parts(parts, body.map_err(Into::into).boxed_unsync());
        }
        let body = CaptureBody::new(body, parts.status.as_u16(), parts.headers.clone(), latency, self.capture_cap, self.waiters);
        Response::from_parts(parts, body.map_err(Into::into).boxed_unsync())
    }
}

fn empty() -> BoxBody {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync()
}

fn mirror_span(request: &Outgoing<'_>, mirror: &Mirror) -> tracing::Span {
    tracing::info_span!(
        "mirror",
        otel.name = "mirror",
        otel.kind = "client",
        traffic.shadow = true,
        mirror.name = %mirror.policy.name,
        mirror.destination = %mirror.upstream.label,
        mirror.outcome = tracing::field::Empty,
        mirror.drop_reason = tracing::field::Empty,
        mirror.latency_ms = tracing::field::Empty,
        mirror.diff = tracing::field::Empty,
        mirror.diff.fields = tracing::field::Empty,
        mirror.diff.skip_reason = tracing::field::Empty,
        http.request.method = %request.method,
        http.response.status_code = tracing::field::Empty,
        server.address = tracing::field::Empty,
        route = request.route,
        mirror.verdict = mirror.stats.verdict_state(),
    )
}

/// The copy's request: same method, path and headers; `-shadow` host, `x-shadow`, the mirror's
/// header changes, and the mirror span's trace context.
fn build_copy(
    request: &Outgoing<'_>,
    mirror: &Mirror,
    marker: &ShadowMarker,
    endpoint: &Authority,
    span: &tracing::Span,
    body: BoxBody,
) -> Option<Request<BoxBody>> {
    let policy = &mirror.policy;
    let uri =
        Uri::builder().scheme(Scheme::HTTP).authority(endpoint.clone()).path_and_query(request.path_and_query.clone()).build().ok()?;
    let mut headers = request.headers.clone();
    if let Some(host) = request.host {
        let host = match (policy.shadow_host_suffix, host.to_str()) {
            (true, Ok(host)) => HeaderValue::from_str(&shadow_host(host)).ok()?,
            _ => host.clone(),
        };
        headers.insert(HOST, host);
    }
    let request_id = request.headers.get("x-request-id").map_or(&b""[..], HeaderValue::as_bytes);
    headers.insert(SHADOW_HEADER, marker.sign(&policy.name, request_id)?);
    for name in &policy.remove_headers {
        headers.remove(name);
    }
    for (name, value) in &policy.set_headers {
        headers.insert(name.clone(), value.clone());
    }
    propagation::inject(span, &mut headers);
    let mut copy = Request::builder().method(request.method.clone()).uri(uri).version(request.version).body(body).ok()?;
    *copy.headers_mut() = headers;
    Some(copy)
}

#[cfg(test)]
mod tests {
    //! Planning on in-memory requests: which copies a request gets, and what they look like.

    use service_kit::settings::{Layered, Sources};

    use super::*;
    use crate::compare::ComparisonThread;
    use crate::settings::GatewaySettings;
    use crate::stats::MirrorStats;

    const CONFIG: &str = r#"
services:
  shop: { v1: [127.0.0.1:9], v2: [127.0.0.1:10] }
routes:
  - name: shop
    to: shop/v1
    mirrors:
      - to: shop/v2
        name: v2
        max_in_flight: 1
        max_body: 10
        shadow_host: true
        headers: { set: { x-env: shadow }, remove: [authorization] }
"#;

    /// The first route of `config`, its mirrors made as the gateway makes them (without
    /// comparison), and what their plans share.
    struct Route {
        primary: Arc<Upstream>,
        mirrors: Vec<Mirror>,
        comparator: Arc<ComparisonThread>,
        marker: ShadowMarker,
        settings: GatewaySettings,
    }

    fn route(config: &str) -> Route {
        let settings = GatewaySettings::load(Sources::default()).expect("default settings");
        let table = gateway_config::load_str("test.yaml", config).expect("config").table;
        let route = &table.routes[0];
        let upstream = |id: gateway_config::DestinationId| Arc::new(Upstream::new(&table.destinations[id.0], &settings.upstream));
        let mirrors = route
            .mirrors
            .iter()
            .map(|policy| {
                let stats = Arc::new(MirrorStats::new(&route.name, &policy.name, "", &settings.report));
                Mirror::new(policy.clone(), upstream(policy.destination), stats, None)
            })
            .collect();
        Route {
            primary: upstream(route.destinations[0].id),
            mirrors,
            comparator: Arc::new(ComparisonThread::start(settings.compare.max_pending_bytes).unwrap()),
            marker: ShadowMarker::new(&settings.shadow).unwrap(),
            settings,
        }
    }

    fn outgoing<'a>(method: &'a Method, headers: &'a HeaderMap, content_length: Option<u64>, upgrade: bool) -> Outgoing<'a> {
        static PATH: PathAndQuery = PathAndQuery::from_static("/cart?id=1");
        static HOST: HeaderValue = HeaderValue::from_static("shop.example.com:8080");
        Outgoing {
            method,
            path_and_query: &PATH,
            host: Some(&HOST),
            headers,
            has_body: content_length.is_some(),
            content_length,
            route: "shop",
            version: http::Version::HTTP_11,
            upgrade,
        }
    }

    impl Route {
        fn plan_for(&self, request: &Outgoing<'_>) -> MirrorPlan {
            let context = CopyContext { comparator: &self.comparator, marker: &self.marker, ejection: self.settings.shadow.ejection };
            MirrorPlan::new(request, &self.mirrors, &self.primary, &context)
        }

        fn plan(&self, method: &Method, headers: &HeaderMap, content_length: Option<u64>) -> MirrorPlan {
            self.plan_for(&outgoing(method, headers, content_length, false))
        }

        fn copies(&self) -> serde_json::Value {
            serde_json::to_value(&self.mirrors[0].stats.report().copies).unwrap()
        }
    }

    #[tokio::test]
    async fn a_copy_is_marked_and_changed_as_its_mirror_says() {
        let route = route(CONFIG);
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer secret".parse().unwrap());
        headers.insert("x-request-id", "r-1".parse().unwrap());
        let plan = route.plan(&Method::GET, &headers, None);
        let [copy] = plan.copies.as_slice() else { panic!("one copy planned") };
        let request = &copy.request;
        assert_eq!(request.uri().to_string(), "http://127.0.0.1:10/cart?id=1");
        assert_eq!(request.headers()["host"], "shop.example.com-shadow:8080");
        assert!(request.headers()["x-shadow"].to_str().unwrap().starts_with("v2; t="), "the mirror's name, signed");
        assert_eq!(request.headers()["x-env"], "shadow");
        assert_eq!(request.headers()["x-request-id"], "r-1");
        assert!(!request.headers().contains_key("authorization"));
        assert!(plan.senders.is_empty() && plan.waiters.is_empty(), "no body to tee, nothing compared");
    }

    #[tokio::test]
    async fn writes_are_not_copied_by_a_mirror_of_safe_methods() {
        let route = route(CONFIG);
        assert!(route.plan(&Method::POST, &HeaderMap::new(), Some(3)).is_empty());
        assert!(route.plan(&Method::DELETE, &HeaderMap::new(), None).is_empty());
        assert!(!route.plan(&Method::HEAD, &HeaderMap::new(), None).is_empty());
    }

    #[tokio::test]
    async fn a_copy_over_the_in_flight_cap_or_the_body_cap_is_dropped_and_counted() {
        let route = route(&CONFIG.replace("max_body: 10", "max_body: 10\n        methods: all"));
        let first = route.plan(&Method::GET, &HeaderMap::new(), None);
        assert!(!first.is_empty(), "the first copy takes the only place");
        assert!(route.plan(&Method::GET, &HeaderMap::new(), None).is_empty(), "the second finds none");
        drop(first);
        assert!(route.plan(&Method::PUT, &HeaderMap::new(), Some(11)).is_empty(), "a declared body over max_body");
        let with_body = route.plan(&Method::PUT, &HeaderMap::new(), Some(10));
        assert_eq!(with_body.senders.len(), 1, "a body within the cap is teed");
        let counted = route.copies();
        assert_eq!((counted["dropped_max_in_flight"].as_u64(), counted["dropped_body_over_cap"].as_u64()), (Some(1), Some(1)));
    }

    #[tokio::test]
    async fn an_upgrade_is_not_eligible_and_each_mirror_that_would_copy_it_counts_it() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let series =
            |reason: &str| format!(r#"gateway_mirror_copies_total{{route="shop",mirror="v2",outcome="not_eligible",reason="{reason}"}}"#);
        metrics::with_local_recorder(&recorder, || {
            let route = route(CONFIG);
            let none = HeaderMap::new();
            assert!(!route.plan(&Method::GET, &none, None).is_empty(), "the same GET, not an upgrade, is copied");
            assert!(handle.render().lines().all(|line| !line.contains("not_eligible")), "no series before one is counted");
            assert!(route.plan_for(&outgoing(&Method::GET, &none, None, true)).is_empty());
            assert!(route.plan_for(&outgoing(&Method::POST, &none, None, true)).is_empty(), "a write this mirror never copies");
            assert!(route.plan_for(&outgoing(&Method::CONNECT, &none, None, false)).is_empty(), "no mirror's methods take CONNECT");
            let text = handle.render();
            assert!(text.contains(&format!("{} 1", series("upgrade"))), "{text}");
            assert_eq!(text.matches("not_eligible").count(), 1, "{text}");
        });
    }
}
