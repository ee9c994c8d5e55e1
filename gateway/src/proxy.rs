//! The primary path: match a route, rewrite, pick a destination and endpoint, plan the mirrors,
//! forward with a streamed body over a pooled connection, and stream the answer back.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_config::{DestinationId, RouteHit, WeightedDestination};
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use metrics::SharedString;
use response_diff::Captured;
use service_kit::propagation::{self, SHADOW_HEADER};
use service_kit::serve::ClientAddr;
use std::borrow::Cow;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::Shared;
use crate::body::{CaptureBody, OnCaptured, TeeBody};
use crate::compare::Comparator;
use crate::mirror::{self, Original};
use crate::state::Active;
use crate::upstream::{BoxBody, strip_hop_by_hop};

static X_REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: header::HeaderName = header::HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: header::HeaderName = header::HeaderName::from_static("x-forwarded-proto");

/// Why the gateway answered itself instead of relaying the upstream's answer.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no route for this request")]
    NoRoute,
    #[error("upstream did not answer within the route timeout")]
    UpstreamTimeout,
    #[error("upstream unavailable")]
    UpstreamUnavailable,
    #[error("request URI cannot be forwarded")]
    BadRequestUri,
}

impl GatewayError {
    fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            GatewayError::BadRequestUri => StatusCode::BAD_REQUEST,
        }
    }

    /// A short JSON body that names the problem, never internals.
    pub fn into_response(self) -> Response<BoxBody> {
        let body = format!("{{\"error\":\"{self}\"}}");
        let mut response = Response::new(http_body_util::Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync());
        *response.status_mut() = self.status();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

/// Serves one request on the data-plane listener.
pub async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    let started = Instant::now();
    let mut request = request;
    if !request.headers().contains_key(&X_REQUEST_ID) {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        if let Ok(value) = HeaderValue::from_str(&id) {
            request.headers_mut().insert(X_REQUEST_ID.clone(), value);
        }
    }
    // Matching is a pure function of the request head, done first so the span gets its final
    // name (`GET target`): OpenTelemetry spans cannot be renamed once started.
    let active = shared.active.load_full();
    let host = request
        .headers()
        .get(header::HOST)
        .cloned()
        .or_else(|| request.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    let hit = active.table.find(request.method(), request.uri().path(), request.headers(), host.as_ref().and_then(|h| h.to_str().ok()));
    let span = tracing::info_span!(
        "gateway",
        otel.name = %format_args!("{} {}", request.method(), hit.map_or("(no route)", |hit| hit.route.name.as_str())),
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = request.uri().path(),
        http.route = hit.map(|hit| hit.route.name.as_str()),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        request_id = request.headers().get(&X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default(),
        traffic.shadow = tracing::field::Empty,
    );
    propagation::adopt_remote_parent(&span, request.headers());
    if propagation::is_shadow(request.headers()) {
        span.record("traffic.shadow", true);
    }
    // The destination is chosen here so the request's metrics can name it.
    let destination = hit.map(|hit| pick(&hit.route.destinations));
    let response = match (hit, destination) {
        (Some(hit), Some(destination)) => {
            forward(&active, &shared.comparator, hit, destination, host, request).instrument(span.clone()).await
        }
        _ => Err(GatewayError::NoRoute),
    }
    .unwrap_or_else(|error| {
        tracing::warn!(parent: &span, %error, "answered by the gateway");
        error.into_response()
    });
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let (route, destination) = match (hit, destination) {
        (Some(hit), Some(destination)) => (active.route_labels[hit.index].clone(), active.upstreams[destination.0].metric_label.clone()),
        _ => (SharedString::const_str(""), SharedString::const_str("")),
    };
    metrics::histogram!("gateway_request_duration_seconds", "route" => route.clone()).record(started.elapsed().as_secs_f64());
    metrics::counter!("gateway_requests_total", "route" => route, "destination" => destination, "status" => status.as_str().to_owned())
        .increment(1);
    Ok(response)
}

async fn forward(
    active: &Active,
    comparator: &Arc<Comparator>,
    hit: RouteHit<'_>,
    destination: DestinationId,
    host: Option<HeaderValue>,
    request: Request<Incoming>,
) -> Result<Response<BoxBody>, GatewayError> {
    let (mut parts, body) = request.into_parts();
    let route = hit.route;

    let upstream = &active.upstreams[destination.0];
    let endpoint = upstream.pick();
    let original_path = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let path_and_query = match hit.rewrite_path(original_path.as_str()) {
        Cow::Borrowed(_) => original_path.clone(),
        Cow::Owned(rewritten) => match PathAndQuery::try_from(rewritten) {
            Ok(rewritten) => rewritten,
            Err(_) => return Err(GatewayError::BadRequestUri),
        },
    };
    let Ok(uri) = Uri::builder().scheme(Scheme::HTTP).authority(endpoint.clone()).path_and_query(path_and_query.clone()).build() else {
        return Err(GatewayError::BadRequestUri);
    };

    // Upgrades are not proxied (the Upgrade header goes with the hop-by-hop ones) nor mirrored.
    let upgrade = parts.headers.contains_key(header::UPGRADE) || parts.method == http::Method::CONNECT;
    strip_hop_by_hop(&mut parts.headers);
    let host = match &route.rewrite_authority {
        Some(rewritten) => HeaderValue::from_str(rewritten).ok(),
        None => host,
    };
    if let Some(host) = &host {
        parts.headers.insert(header::HOST, host.clone());
    }
    add_forwarded(&mut parts.headers, parts.extensions.get::<ClientAddr>());

    // Copies are planned from the request as the primary will get it, before the primary's own
    // trace context goes in: each copy carries its own mirror span's context instead.
    let mut compare_waiters = Vec::new();
    let mirrors = &active.mirrors[hit.index];
    let (copies, senders) = if route.mirrors.is_empty() || upgrade || parts.headers.contains_key(&SHADOW_HEADER) {
        (Vec::new(), Vec::new())
    } else {
        let original = Original {
            method: &parts.method,
            path_and_query: &path_and_query,
            host: host.as_ref(),
            headers: &parts.headers,
            has_body: !body.is_end_stream(),
            content_length: body.size_hint().exact(),
            route: &route.name,
        };
        mirror::plan(&original, &route.mirrors, mirrors, &active.upstreams, upstream, comparator, &mut compare_waiters)
    };
    let body: BoxBody =
        if senders.is_empty() { body.map_err(Into::into).boxed_unsync() } else { TeeBody::new(body, senders).boxed_unsync() };

    let client_span = tracing::info_span!(
        "upstream",
        otel.name = %format_args!("{} {}", parts.method, upstream.label),
        otel.kind = "client",
        upstream.destination = %upstream.label,
        server.address = endpoint.as_str(),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    propagation::inject(&client_span, &mut parts.headers);
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    let outgoing = Request::from_parts(parts, body);
    let started = Instant::now();
    for copy in copies {
        mirror::spawn(copy);
    }

    let sent = upstream.client().request(outgoing).instrument(client_span.clone());
    let answered = match route.timeout {
        Some(limit) => match tokio::time::timeout(limit, sent).await {
            Ok(answered) => answered,
            Err(_) => {
                client_span.record("otel.status_code", "ERROR");
                return Err(GatewayError::UpstreamTimeout);
            }
        },
        None => sent.await,
    };
    let response = match answered {
        Ok(response) => response,
        Err(error) => {
            client_span.record("otel.status_code", "ERROR");
            tracing::warn!(parent: &client_span, error = %error, source = ?std::error::Error::source(&error), endpoint = endpoint.as_str(), "upstream request failed");
            return Err(GatewayError::UpstreamUnavailable);
        }
    };
    let primary_latency = started.elapsed();
    client_span.record("http.response.status_code", i64::from(response.status().as_u16()));
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = if compare_waiters.is_empty() {
        body.map_err(Into::into).boxed_unsync()
    } else {
        capture(body, &parts, compare_waiters, primary_latency, mirrors)
    };
    Ok(Response::from_parts(parts, body))
}

/// Keeps a copy of the primary's answer for the mirrors that compare, handed over at its end.
fn capture(
    body: Incoming,
    parts: &http::response::Parts,
    waiters: Vec<oneshot::Sender<(Captured, Duration)>>,
    latency: Duration,
    mirrors: &[crate::state::MirrorRuntime],
) -> BoxBody {
    let cap = mirrors.iter().filter_map(|m| m.comparer.as_ref().map(|c| c.max_body_bytes)).max().unwrap_or(0);
    let done: OnCaptured = Box::new(move |captured: Captured| {
        for waiter in waiters {
            let _ = waiter.send((captured.clone(), latency));
        }
    });
    if body.is_end_stream() {
        // An empty body is never polled: hand the capture over now.
        done(Captured { status: parts.status.as_u16(), headers: parts.headers.clone(), body: Bytes::new(), truncated: false });
        return body.map_err(Into::into).boxed_unsync();
    }
    CaptureBody::new(body, parts.status.as_u16(), parts.headers.clone(), cap, done).map_err(Into::into).boxed_unsync()
}

/// Weighted choice among a route's destinations (the common single destination costs nothing).
fn pick(destinations: &[WeightedDestination]) -> DestinationId {
    if let [only] = destinations {
        return only.id;
    }
    let total: u64 = destinations.iter().map(|d| u64::from(d.weight)).sum();
    let mut ticket = rand::random_range(0..total.max(1));
    for destination in destinations {
        if ticket < u64::from(destination.weight) {
            return destination.id;
        }
        ticket -= u64::from(destination.weight);
    }
    destinations[0].id
}

fn add_forwarded(headers: &mut HeaderMap, client: Option<&ClientAddr>) {
    if let Some(ClientAddr(addr)) = client {
        let ip = addr.ip().to_string();
        let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(previous) => format!("{previous}, {ip}"),
            None => ip,
        };
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(X_FORWARDED_FOR.clone(), value);
        }
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_config::DestinationId;

    #[test]
    fn weighted_choice_follows_the_weights() {
        let destinations =
            [WeightedDestination { id: DestinationId(0), weight: 90 }, WeightedDestination { id: DestinationId(1), weight: 10 }];
        let second = (0..10_000).filter(|_| pick(&destinations) == DestinationId(1)).count();
        assert!((700..1_300).contains(&second), "{second}");
        let zero = [WeightedDestination { id: DestinationId(0), weight: 0 }, WeightedDestination { id: DestinationId(1), weight: 5 }];
        assert!((0..100).all(|_| pick(&zero) == DestinationId(1)));
    }
}
