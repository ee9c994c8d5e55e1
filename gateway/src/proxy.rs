//! The primary path of one request, as phases over the request (Pingora's `ProxyHttp` is the
//! model): check the request at the edge ([`edge`]), match the route, open the server span,
//! choose the destination and endpoint, rewrite the URI, set the proxy headers, plan the copies,
//! send to the primary under the route's deadlines, answer (or splice an [`upgrade`]). Each phase
//! is a small function with one concern; mirroring is wholly the [`MirrorPlan`]'s; the bodies'
//! concerns (deadlines, a failing client body, request metrics) are wrappers in [`bodies`].
//!
//! [`edge`]: crate::edge
//! [`upgrade`]: crate::upgrade
//! [`bodies`]: crate::bodies
//!
//! [`handle`] is generic over the request body, so the whole path runs in tests on in-memory
//! requests as well as on hyper's `Incoming` bodies.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use gateway_config::{Lookup, RouteHit};
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use service_kit::propagation;
use service_kit::serve::ClientAddr;
use service_kit::tls::TlsConnection;
use tracing::Instrument;

use crate::bodies::{BodyWatch, Deadline, Deadlines, Metered, RequestBody, RequestRecord};
use crate::error::GatewayError;
use crate::mirror::{CopyContext, MirrorPlan, Outgoing};
use crate::settings::{OutlierSettings, RetrySettings};
use crate::state::{CompiledRoute, Shared};
use crate::upstream::retry::{Failure, Policy};
use crate::upstream::{BoxBody, BoxError, Upstream, UpstreamBody, UpstreamError, framing, strip_hop_by_hop};
use crate::{edge, upgrade};

static X_REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: header::HeaderName = header::HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: header::HeaderName = header::HeaderName::from_static("x-forwarded-proto");
/// The client certificate the gateway verified (Envoy's name and form); only the gateway sets it.
static X_FORWARDED_CLIENT_CERT: header::HeaderName = header::HeaderName::from_static("x-forwarded-client-cert");

/// Serves one request on the data-plane listener.
pub async fn handle<B>(shared: Arc<Shared>, mut request: Request<B>) -> Result<Response<BoxBody>, Infallible>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let started = Instant::now();
    // The request id first: the edge checks the shadow marker against it.
    ensure_request_id(request.headers_mut());
    let refused = edge::check(&mut request, &shared.settings.requests, &shared.shadow).err();
    let active = shared.active.load_full();
    let host = request_host(&request);
    // Matching is a pure function of the request head, done first so the span gets its final
    // name (`GET target`): OpenTelemetry spans cannot be renamed once started.
    let secure = request.extensions().get::<Arc<TlsConnection>>().is_some();
    let lookup = match refused {
        None => {
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
            active.table.lookup(secure, request.method(), path, request.headers(), host.as_ref().and_then(|h| h.to_str().ok()))
        }
        Some(_) => Lookup::NoRoute,
    };
    let hit = lookup.hit();
    let span = server_span(&request, hit.as_ref());
    let route = hit.map(|hit| (hit, &active.routes[hit.index]));
    let primary = route.filter(|(hit, _)| hit.route.answer.is_none()).map(|(_, compiled)| compiled.pick().clone());
    // For the warning below: log lines carry no span context (spans are for the exporter).
    let request_id = request.headers().get(&X_REQUEST_ID).cloned();
    // The gateway's own reply to HEAD has no body (a standard method's clone is a copy).
    let method: Method = request.method().clone();
    let metrics = match route {
        Some((_, compiled)) => compiled.request_metrics(primary.as_ref()),
        None => shared.unrouted.clone(),
    };
    // Written when the response ends, or as `client_closed` if this future is dropped first.
    let mut record = RequestRecord::new(metrics, started);
    let response = match (refused, route, &primary) {
        (Some(refused), _, _) => Err(refused),
        (None, Some((hit, compiled)), Some(primary)) => {
            forward(&shared, hit, compiled, primary, host, request).instrument(span.clone()).await
        }
        (None, Some((hit, _)), None) => Ok(answer(&hit, host.as_ref(), request.uri())),
        (None, None, _) if matches!(lookup, Lookup::HttpsRedirect) => Ok(to_https(host.as_ref(), request.uri())),
        _ => Err(GatewayError::NoRoute),
    }
    .unwrap_or_else(|error| {
        let route = hit.map(|hit| hit.route.name.as_str());
        let request_id = request_id.as_ref().and_then(|id| id.to_str().ok());
        tracing::warn!(parent: &span, %error, source = error.source().as_str(), route, request_id, "answered by the gateway");
        error.into_response(&method)
    });
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    record.answered(status);
    let (head, body) = response.into_parts();
    Ok(Response::from_parts(head, Metered::new(body, record).boxed_unsync()))
}

/// Everything past the route match: the request goes to `primary`, and its copies to the
/// route's mirrors.
async fn forward<B>(
    shared: &Shared,
    hit: RouteHit<'_>,
    route: &CompiledRoute,
    primary: &Arc<Upstream>,
    host: Option<HeaderValue>,
    request: Request<B>,
) -> Result<Response<BoxBody>, GatewayError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut request = request;
    let upgrade = upgrade::requested(&mut request, &hit.route.upgrades);
    let (mut parts, body) = request.into_parts();
    let endpoint = match primary.pick() {
        Some(endpoint) => endpoint.clone(),
        None if primary.unresolved => return Err(GatewayError::BackendNotFound),
        None => return Err(GatewayError::NoHealthyUpstream),
    };
    let backend_headers = route.backend_headers(primary);
    let path_and_query = rewrite(&hit, &parts.uri)?;
    let uri = upstream_uri(&endpoint, &path_and_query)?;
    let host = route.rewrite_authority.clone().or(host);
    proxy_headers(&mut parts.headers, host.as_ref(), parts.extensions.get::<ClientAddr>(), parts.extensions.get::<Arc<TlsConnection>>());
    hit.route.request_headers.apply(&mut parts.headers);
    if let Some(backend) = backend_headers {
        backend.request.apply(&mut parts.headers);
    }
    if let Some(upgrade) = &upgrade {
        upgrade.restore(&mut parts.headers);
    }

    let outgoing = Outgoing {
        method: &parts.method,
        path_and_query: &path_and_query,
        host: host.as_ref(),
        headers: &parts.headers,
        has_body: !body.is_end_stream(),
        content_length: body.size_hint().exact(),
        route: &hit.route.name,
        version: parts.version,
        upgrade: upgrade.is_some(),
    };
    let copies = CopyContext { comparator: &shared.comparator, marker: &shared.shadow, ejection: shared.settings.shadow.ejection };
    let mut plan = MirrorPlan::new(&outgoing, &route.mirrors, primary, &copies);
    let timeouts = &shared.settings.timeouts;
    let deadlines = Deadlines::new(Instant::now(), route.timeout, timeouts.route, timeouts.stream_idle);
    let (body, client_body) = read_client_body(body, shared.settings.requests.buffer_body, &deadlines).await?;
    let body = match body {
        RequestBody::InHand(whole) => {
            plan.tee_whole(&whole);
            RequestBody::InHand(whole)
        }
        RequestBody::Streamed(body) => RequestBody::Streamed(plan.tee(body)),
    };

    let client_span = upstream_span(&parts.method, primary, &endpoint);
    propagation::inject(&client_span, &mut parts.headers);
    parts.uri = uri;
    // An upgrade handshake is HTTP/1.1 whatever the destination speaks.
    let downstream = if upgrade.is_some() { http::Version::HTTP_11 } else { parts.version };
    plan.spawn(&parts.headers);

    let started = Instant::now();
    let sending = Sending {
        primary,
        downstream,
        deadlines,
        span: &client_span,
        client_body,
        policy: &route.retries,
        retries: &shared.settings.retries,
        outlier: &shared.settings.outlier_detection,
    };
    let (mut response, endpoint) = sending.send(parts, body, endpoint, path_and_query).await?;
    let latency = started.elapsed();
    if upgrade.is_none() && response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        // Switched to what the gateway did not ask for: relaying it would leave the client
        // believing in a tunnel the gateway never opens.
        return Err(GatewayError::UpstreamMalformed);
    }
    client_span.record("http.response.status_code", i64::from(response.status().as_u16()));
    // Taken before the hop-by-hop rules remove it (only for an upgrade: no copy per request).
    let upstream_protocol = upgrade.as_ref().and_then(|_| response.headers().get(header::UPGRADE).cloned());
    let status = response.status();
    framing::frame(status, response.headers_mut()).map_err(|_| {
        tracing::warn!(parent: &client_span, destination = %primary.label, endpoint = endpoint.as_str(), "upstream answer with conflicting content-lengths");
        GatewayError::UpstreamMalformed
    })?;
    strip_hop_by_hop(response.headers_mut());
    if let Some(backend) = backend_headers {
        backend.response.apply(response.headers_mut());
    }
    if let Some(upgrade) = upgrade {
        upgrade.finish(&mut response, upstream_protocol);
    }
    let (head, body) = response.into_parts();
    Ok(plan.capture(Response::from_parts(head, Deadline::new(body, deadlines)), latency))
}

/// Phase, instead of forwarding: a route that answers itself (redirect, fixed response).
fn answer(hit: &RouteHit<'_>, host: Option<&HeaderValue>, uri: &Uri) -> Response<BoxBody> {
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    own_reply(hit.respond(host.and_then(|h| h.to_str().ok()), path_and_query).unwrap_or_default())
}

/// Phase, instead of routing: a plain request for a host its Gateway redirects to HTTPS.
fn to_https(host: Option<&HeaderValue>, uri: &Uri) -> Response<BoxBody> {
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    own_reply(gateway_config::https_redirect(host.and_then(|h| h.to_str().ok()), path_and_query))
}

fn own_reply(response: http::Response<Vec<u8>>) -> Response<BoxBody> {
    response.map(|body| http_body_util::Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync())
}

/// Phase: the client's body, watched so that its failure is answered by why it failed (400,
/// 413, 408: [`BodyFailure`](crate::bodies::BodyFailure)), not blamed on the upstream, and read
/// whole first when small (under `buffer`), so a cut one never reaches the upstream or the copies.
async fn read_client_body<B>(body: B, buffer: u64, deadlines: &Deadlines) -> Result<(RequestBody, BodyWatch), GatewayError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Ok(crate::bodies::client_body(body, buffer, deadlines.headers_by(Instant::now())).await?)
}

/// Phase: the primary call, over the client the destination's protocol chooses, until the
/// response headers arrive or the deadlines pass; retried as the route's [`Policy`] and the
/// destination's budget allow, each retry to another endpoint when there is one.
struct Sending<'a> {
    primary: &'a Upstream,
    /// The version the client spoke (`Auto` destinations follow it).
    downstream: http::Version,
    deadlines: Deadlines,
    span: &'a tracing::Span,
    client_body: BodyWatch,
    policy: &'a Policy,
    retries: &'a RetrySettings,
    outlier: &'a OutlierSettings,
}

/// How one attempt ended without an answer to relay: why, and the error that answers the client
/// if it is not retried.
struct Failed {
    failure: Failure,
    error: GatewayError,
}

impl Sending<'_> {
    /// Sends the request to `endpoint`, then to others while the policy retries; returns the
    /// answer and the endpoint that gave it.
    async fn send(
        self,
        parts: http::request::Parts,
        body: RequestBody,
        mut endpoint: Authority,
        path_and_query: PathAndQuery,
    ) -> Result<(Response<UpstreamBody>, Authority), GatewayError> {
        let _in_flight = self.primary.retry_budget.request();
        // What a retry sends again: only a body in hand can be (a streamed one is sent once).
        let replay = match &body {
            RequestBody::InHand(whole) if self.policy.retries > 0 => {
                Some((whole.clone(), parts.method.clone(), parts.version, parts.headers.clone()))
            }
            _ => None,
        };
        let method = parts.method.clone();
        let mut request = Request::from_parts(
            parts,
            match body {
                RequestBody::InHand(whole) => whole.body(),
                RequestBody::Streamed(body) => body,
            },
        );
        let mut tried: Vec<Authority> = Vec::new();
        let mut retry = None;
        loop {
            let outcome = self.attempt(request, &endpoint).await;
            let reason = match &outcome {
                Ok(response) => self.policy.retries_answer(response.status(), response.headers()),
                Err(failed) => self.policy.retries_failure(failed.failure, &method).then(|| failed.failure.as_str()),
            };
            let retried = tried.len() as u32;
            let within_deadline = self.deadlines.total.is_none_or(|total| Instant::now() < total);
            let (Some(reason), Some((whole, method, version, headers))) = (reason, &replay) else {
                return self.relay(outcome, endpoint);
            };
            if retried >= self.policy.retries || !within_deadline || self.client_body.failure().is_some() {
                return self.relay(outcome, endpoint);
            }
            drop(retry.take());
            let Some(allowed) = self.primary.retry_budget.retry(self.retries) else {
                metrics::counter!("gateway_upstream_retry_budget_exceeded_total", "destination" => self.primary.metric_label.clone())
                    .increment(1);
                tracing::info!(parent: self.span, destination = %self.primary.label, reason, "retry refused: the destination's retry budget is spent");
                return self.relay(outcome, endpoint);
            };
            retry = Some(allowed);
            metrics::counter!("gateway_upstream_retries_total", "destination" => self.primary.metric_label.clone(), "reason" => reason)
                .increment(1);
            tracing::info!(parent: self.span, destination = %self.primary.label, endpoint = endpoint.as_str(), reason, retry = retried + 1, "retrying the upstream request");
            drop(outcome);
            tokio::time::sleep(self.policy.backoff(retried + 1)).await;
            tried.push(endpoint.clone());
            endpoint = self.primary.pick_other(&tried).unwrap_or(&endpoint).clone();
            self.span.record("upstream.retries", i64::from(retried + 1));
            self.span.record("server.address", endpoint.as_str());
            let uri = upstream_uri(&endpoint, &path_and_query)?;
            let mut again = Request::new(whole.body());
            *again.method_mut() = method.clone();
            *again.uri_mut() = uri;
            *again.version_mut() = *version;
            *again.headers_mut() = headers.clone();
            request = again;
        }
    }

    /// One attempt, under the route's deadlines and the policy's per-try timeout; its outcome
    /// goes to the endpoint's health.
    async fn attempt(&self, request: Request<BoxBody>, endpoint: &Authority) -> Result<Response<UpstreamBody>, Failed> {
        let now = Instant::now();
        let per_try = self.policy.per_try_timeout.map(|timeout| now + timeout);
        let (by, own) = match (self.deadlines.headers_by(now), per_try) {
            (Some(route), Some(attempt)) if attempt < route => (Some(attempt), true),
            (None, Some(attempt)) => (Some(attempt), true),
            (route, _) => (route, false),
        };
        let sent = self.primary.send(request, self.downstream).instrument(self.span.clone());
        let answered = match by {
            Some(by) => match tokio::time::timeout_at(by.into(), sent).await {
                Ok(answered) => answered,
                Err(_) => {
                    self.health(endpoint, true);
                    let failure = if own { Failure::Timeout } else { Failure::Other };
                    return Err(Failed { failure, error: GatewayError::UpstreamTimeout });
                }
            },
            None => sent.await,
        };
        let error = match answered {
            Ok(response) => {
                self.health(endpoint, self.counts_as_failure(response.status()));
                return Ok(response);
            }
            Err(error) => error,
        };
        if let Some(failure) = self.client_body.failure() {
            tracing::info!(parent: self.span, error = %error, %failure, "the client's request body failed; upstream request reset");
            return Err(Failed { failure: Failure::Other, error: GatewayError::ClientBody(failure) });
        }
        if self.primary.cluster_dns && is_dns_failure(&error) {
            // No such Service: the configuration's fault, not the endpoint's (no health count).
            tracing::warn!(parent: self.span, destination = %self.primary.label, endpoint = endpoint.as_str(), "the Service's cluster DNS name does not resolve: no such Service (500)");
            return Err(Failed { failure: Failure::Other, error: GatewayError::BackendNotFound });
        }
        let failure = Failure::of(&error);
        tracing::warn!(parent: self.span, error = %error, source = ?std::error::Error::source(&error), destination = %self.primary.label, endpoint = endpoint.as_str(), reason = failure.as_str(), "upstream request failed");
        self.health(endpoint, failure.is_gateway_failure());
        let error = match error {
            UpstreamError::HeadTooLarge => GatewayError::UpstreamMalformed,
            _ => GatewayError::UpstreamUnavailable,
        };
        Err(Failed { failure, error })
    }

    /// Whether an answer of `status` counts against the endpoint: 502, 503 and 504 (a gateway
    /// error), or any 5xx when the destination's rule says so (Istio `consecutive5xxErrors`).
    fn counts_as_failure(&self, status: http::StatusCode) -> bool {
        match self.primary.outlier {
            Some(policy) if policy.all_5xx => status.is_server_error(),
            _ => matches!(status.as_u16(), 502..=504),
        }
    }

    /// An attempt's outcome to its endpoint's health: a failure (no connection, reset, no answer
    /// in time, [`Self::counts_as_failure`]) counts towards ejecting it; anything else ends its
    /// run. The destination's own rule, when it has one, replaces the settings' but `max_time`.
    fn health(&self, endpoint: &Authority, failed: bool) {
        let endpoints = self.primary.endpoints();
        if !failed {
            endpoints.answered(endpoint);
            return;
        }
        let settings = match self.primary.outlier {
            Some(policy) => OutlierSettings {
                consecutive_failures: policy.consecutive_errors,
                base_time: policy.base_ejection_time,
                max_ejection_percent: policy.max_ejection_percent,
                ..*self.outlier
            },
            None => *self.outlier,
        };
        if let Some(time) = endpoints.failed(endpoint, &settings) {
            metrics::counter!("gateway_upstream_ejections_total", "destination" => self.primary.metric_label.clone(), "endpoint" => endpoint.to_string()).increment(1);
            tracing::warn!(destination = %self.primary.label, endpoint = endpoint.as_str(), seconds = time.as_secs(), "upstream endpoint ejected: it failed too many times in a row");
        }
    }

    /// The outcome of the last attempt, as the client gets it.
    fn relay(
        &self,
        outcome: Result<Response<UpstreamBody>, Failed>,
        endpoint: Authority,
    ) -> Result<(Response<UpstreamBody>, Authority), GatewayError> {
        match outcome {
            Ok(response) => Ok((response, endpoint)),
            Err(Failed { error, .. }) => {
                self.span.record("otel.status_code", "ERROR");
                Err(error)
            }
        }
    }
}

/// The connection failed because the endpoint's name does not resolve: the resolver's error
/// under the connect error (std's `getaddrinfo` failure, or a connector's `dns error`).
fn is_dns_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        let text = e.to_string();
        if text == "dns error" || text.starts_with("failed to lookup address information") {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Phase: every request gets an `x-request-id` (kept when the client sent one).
fn ensure_request_id(headers: &mut HeaderMap) {
    if !headers.contains_key(&X_REQUEST_ID) {
        let mut id = [0_u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id);
        if let Ok(value) = HeaderValue::from_str(id) {
            headers.insert(X_REQUEST_ID.clone(), value);
        }
    }
}

/// The authority the client asked for: `Host`, or the absolute-form URI's.
fn request_host<B>(request: &Request<B>) -> Option<HeaderValue> {
    request.headers().get(header::HOST).cloned().or_else(|| request.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()))
}

fn server_span<B>(request: &Request<B>, hit: Option<&RouteHit<'_>>) -> tracing::Span {
    let route = hit.map(|hit| hit.route.name.as_str());
    let span = tracing::info_span!(
        "gateway",
        otel.name = %format_args!("{} {}", request.method(), route.unwrap_or("(no route)")),
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = request.uri().path(),
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        request_id = request.headers().get(&X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default(),
        traffic.shadow = tracing::field::Empty,
        tls.protocol.version = tracing::field::Empty,
        tls.client.certificate_presented = tracing::field::Empty,
    );
    if let Some(tls) = request.extensions().get::<Arc<TlsConnection>>() {
        span.record("tls.protocol.version", tls.protocol_version);
        span.record("tls.client.certificate_presented", tls.client_certificate.is_some());
    }
    propagation::adopt_remote_parent(&span, request.headers());
    if propagation::is_shadow(request.headers()) {
        span.record("traffic.shadow", true);
    }
    span
}

fn upstream_span(method: &http::Method, primary: &Upstream, endpoint: &Authority) -> tracing::Span {
    tracing::info_span!(
        "upstream",
        otel.name = %format_args!("{} {}", method, primary.label),
        otel.kind = "client",
        upstream.destination = %primary.label,
        server.address = endpoint.as_str(),
        upstream.retries = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Phase: the route's URI rewrite (Istio semantics: the matched prefix is replaced).
fn rewrite(hit: &RouteHit<'_>, uri: &Uri) -> Result<PathAndQuery, GatewayError> {
    let original = uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    match hit.rewrite_path(original.as_str()) {
        Cow::Borrowed(_) => Ok(original),
        Cow::Owned(rewritten) => PathAndQuery::try_from(rewritten).map_err(|_| GatewayError::BadRequestUri),
    }
}

fn upstream_uri(endpoint: &Authority, path_and_query: &PathAndQuery) -> Result<Uri, GatewayError> {
    Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(endpoint.clone())
        .path_and_query(path_and_query.clone())
        .build()
        .map_err(|_| GatewayError::BadRequestUri)
}

/// Phase: hop-by-hop headers out (but `TE: trailers`, which gRPC needs end to end, as Envoy
/// keeps it); `Host` (rewritten or the client's), `X-Forwarded-For` and `X-Forwarded-Proto` in;
/// a client's `X-Forwarded-Client-Cert` out, the one for the certificate verified on this
/// connection in (Envoy's `SANITIZE_SET`).
fn proxy_headers(headers: &mut HeaderMap, host: Option<&HeaderValue>, client: Option<&ClientAddr>, tls: Option<&Arc<TlsConnection>>) {
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    strip_hop_by_hop(headers);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(host) = host {
        headers.insert(header::HOST, host.clone());
    }
    if let Some(ClientAddr(addr)) = client {
        let previous = headers.get(&X_FORWARDED_FOR).filter(|v| v.to_str().is_ok());
        if let Some(value) = forwarded_for(previous, addr.ip()) {
            headers.insert(X_FORWARDED_FOR.clone(), value);
        }
    }
    let proto = if tls.is_some() { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    match tls.and_then(|tls| tls.client_certificate.as_ref()) {
        Some(certificate) => {
            headers.insert(X_FORWARDED_CLIENT_CERT.clone(), certificate.clone());
        }
        None => {
            headers.remove(&X_FORWARDED_CLIENT_CERT);
        }
    }
}

/// `previous, ip` (or `ip`), written into one buffer that becomes the header value without a
/// copy: this runs on every request, where `to_string` and `format!` showed in the profile.
fn forwarded_for(previous: Option<&HeaderValue>, ip: std::net::IpAddr) -> Option<HeaderValue> {
    use std::io::Write as _;
    let mut value = Vec::with_capacity(previous.map_or(0, |p| p.len() + 2) + 39);
    if let Some(previous) = previous {
        value.extend_from_slice(previous.as_bytes());
        value.extend_from_slice(b", ");
    }
    write!(value, "{ip}").ok()?;
    HeaderValue::from_maybe_shared(Bytes::from(value)).ok()
}

#[cfg(test)]
mod tests {
    //! The request path on in-memory requests: no socket, no upstream.

    use http::StatusCode;
    use http_body_util::Full;
    use service_kit::settings::{Layered, Sources};

    use super::*;
    use crate::settings::GatewaySettings;

    fn shared(config: &str) -> Arc<Shared> {
        let settings = GatewaySettings::load(Sources::default()).expect("default settings");
        let loaded = gateway_config::load_str("test.yaml", config).expect("valid configuration");
        Arc::new(Shared::new(settings, loaded, None).expect("gateway state"))
    }

    async fn answer(shared: &Arc<Shared>, request: Request<Full<Bytes>>) -> (StatusCode, String) {
        let response = handle(shared.clone(), request).await.unwrap_or_else(|never| match never {});
        let status = response.status();
        let body = response.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    const CONFIG: &str =
        "services: { up: [127.0.0.1:9] }\nroutes:\n  - name: api\n    match: { prefix: /api/ }\n    rewrite: /v1/\n    to: up\n";

    #[tokio::test]
    async fn a_request_no_route_matches_gets_404_with_a_json_body() {
        let shared = shared(CONFIG);
        let request = Request::get("/elsewhere").header("host", "example.com").body(Full::new(Bytes::new())).unwrap();
        let (status, body) = answer(&shared, request).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, r#"{"error":"no route for this request"}"#);
    }

    #[test]
    fn the_rewrite_replaces_the_matched_prefix_and_keeps_the_query() {
        let shared = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async { shared(CONFIG) });
        let active = shared.active.load();
        let uri: Uri = "/api/items?q=1".parse().unwrap();
        let hit = active.table.find(&http::Method::GET, uri.path(), &HeaderMap::new(), Some("example.com")).expect("the api route");
        assert_eq!(rewrite(&hit, &uri).unwrap().as_str(), "/v1/items?q=1");
        let upstream = upstream_uri(&"10.0.0.1:80".parse().unwrap(), &rewrite(&hit, &uri).unwrap()).unwrap();
        assert_eq!(upstream.to_string(), "http://10.0.0.1:80/v1/items?q=1");
    }

    #[test]
    fn the_forwarded_for_value_is_the_address_as_std_writes_it() {
        for ip in ["0.0.0.0", "1.2.3.4", "9.10.99.100", "255.255.255.255", "127.0.0.1", "::1", "2001:db8::7", "::ffff:10.0.0.1"] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(forwarded_for(None, ip).unwrap(), ip.to_string().as_str());
            let previous = HeaderValue::from_static("10.1.1.1, 10.2.2.2");
            assert_eq!(forwarded_for(Some(&previous), ip).unwrap(), format!("10.1.1.1, 10.2.2.2, {ip}").as_str());
        }
    }

    #[test]
    fn proxy_headers_drop_hop_by_hop_ones_and_add_forwarding() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", "x-private".parse().unwrap());
        headers.insert("x-private", "1".parse().unwrap());
        headers.insert("x-forwarded-for", "10.1.1.1".parse().unwrap());
        let client = ClientAddr("192.0.2.7:5555".parse().unwrap());
        headers.insert("x-forwarded-client-cert", "Hash=forged".parse().unwrap());
        proxy_headers(&mut headers, Some(&HeaderValue::from_static("shop.internal")), Some(&client), None);
        assert!(!headers.contains_key("x-private") && !headers.contains_key("connection"));
        assert_eq!(headers["host"], "shop.internal");
        assert_eq!(headers["x-forwarded-for"], "10.1.1.1, 192.0.2.7");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert!(!headers.contains_key("x-forwarded-client-cert"), "a client cannot claim a certificate");
    }

    #[test]
    fn over_tls_the_proto_is_https_and_only_the_verified_certificate_is_forwarded() {
        let verified = Arc::new(TlsConnection {
            protocol_version: "1.3",
            alpn: None,
            client_certificate: Some(HeaderValue::from_static("Hash=abc;DNS=client.test")),
        });
        let anonymous = Arc::new(TlsConnection { client_certificate: None, protocol_version: "1.2", alpn: None });
        for (tls, expected) in [(&verified, Some("Hash=abc;DNS=client.test")), (&anonymous, None)] {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-client-cert", "Hash=forged".parse().unwrap());
            proxy_headers(&mut headers, None, None, Some(tls));
            assert_eq!(headers["x-forwarded-proto"], "https");
            assert_eq!(headers.get("x-forwarded-client-cert").map(|v| v.to_str().unwrap()), expected);
        }
    }

    #[test]
    fn te_trailers_survives_the_hop_by_hop_rules_and_other_te_values_do_not() {
        let mut grpc = HeaderMap::new();
        grpc.insert("te", "gzip, Trailers".parse().unwrap());
        proxy_headers(&mut grpc, None, None, None);
        assert_eq!(grpc["te"], "trailers");
        let mut other = HeaderMap::new();
        other.insert("te", "gzip".parse().unwrap());
        proxy_headers(&mut other, None, None, None);
        assert!(!other.contains_key("te"));
    }

    #[tokio::test]
    async fn requests_refused_at_the_edge_never_reach_routing() {
        let shared = shared(CONFIG);
        let trace = Request::builder().method("TRACE").uri("/api/x").header("host", "a").body(Full::new(Bytes::new())).unwrap();
        assert_eq!(answer(&shared, trace).await, (StatusCode::METHOD_NOT_ALLOWED, r#"{"error":"method not allowed"}"#.into()));
        // A request without `Host` is the listener's to refuse: `service_kit::serve`'s
        // `the_listener_answers_a_request_without_host_itself_and_the_service_never_sees_it`.
        let escaped = Request::get("/api/../elsewhere").header("host", "a").body(Full::new(Bytes::new())).unwrap();
        assert_eq!(answer(&shared, escaped).await.0, StatusCode::NOT_FOUND, "normalised to /elsewhere before matching");
    }

    #[test]
    fn every_request_gets_a_request_id_and_a_client_one_is_kept() {
        let mut headers = HeaderMap::new();
        ensure_request_id(&mut headers);
        assert_eq!(headers["x-request-id"].len(), 36);
        let mut given = HeaderMap::new();
        given.insert("x-request-id", "abc".parse().unwrap());
        ensure_request_id(&mut given);
        assert_eq!(given["x-request-id"], "abc");
    }
}
