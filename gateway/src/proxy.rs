//! The primary path of one request, as phases over the request (Pingora's `ProxyHttp` is the
//! model): match the route, open the server span, choose the destination and endpoint, rewrite
//! the URI, set the proxy headers, plan the copies, send to the primary, answer. Each phase is a
//! small function with one concern; mirroring is wholly the [`MirrorPlan`]'s.
//!
//! [`handle`] is generic over the request body, so the whole path runs in tests on in-memory
//! requests as well as on hyper's `Incoming` bodies.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use gateway_config::RouteHit;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use metrics::SharedString;
use service_kit::propagation;
use service_kit::serve::ClientAddr;
use tracing::Instrument;

use crate::mirror::{MirrorPlan, Outgoing};
use crate::state::{CompiledRoute, Shared};
use crate::upstream::{BoxBody, BoxError, Upstream, strip_hop_by_hop};

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
    #[error("no healthy upstream")]
    NoHealthyUpstream,
    #[error("request URI cannot be forwarded")]
    BadRequestUri,
}

impl GatewayError {
    fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            GatewayError::NoHealthyUpstream => StatusCode::SERVICE_UNAVAILABLE,
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
pub async fn handle<B>(shared: Arc<Shared>, mut request: Request<B>) -> Result<Response<BoxBody>, Infallible>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let started = Instant::now();
    ensure_request_id(request.headers_mut());
    // Before routing: a client's shadow marker goes, so its request is routed, mirrored and
    // compared as the live traffic it is.
    let client = request.extensions().get::<ClientAddr>().map(|ClientAddr(addr)| addr.ip());
    shared.shadow.screen(request.headers_mut(), client);
    let active = shared.active.load_full();
    let host = request_host(&request);
    // Matching is a pure function of the request head, done first so the span gets its final
    // name (`GET target`): OpenTelemetry spans cannot be renamed once started.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let hit = active.table.find(request.method(), path, request.headers(), host.as_ref().and_then(|h| h.to_str().ok()));
    let span = server_span(&request, hit.as_ref());
    let route = hit.map(|hit| (hit, &active.routes[hit.index]));
    let primary = route.filter(|(hit, _)| hit.route.answer.is_none()).map(|(_, compiled)| compiled.pick().clone());
    let response = match (route, &primary) {
        (Some((hit, compiled)), Some(primary)) => forward(&shared, hit, compiled, primary, host, request).instrument(span.clone()).await,
        (Some((hit, _)), None) => Ok(answer(&hit, host.as_ref(), request.uri())),
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
    let labels = match (route, &primary) {
        (Some((_, compiled)), Some(primary)) => (compiled.label.clone(), primary.metric_label.clone()),
        // A route that answers itself has no destination.
        (Some((_, compiled)), None) => (compiled.label.clone(), SharedString::const_str("")),
        _ => (SharedString::const_str(""), SharedString::const_str("")),
    };
    record_request(labels, status, started);
    Ok(response)
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
    let (mut parts, body) = request.into_parts();
    let endpoint = primary.pick().ok_or(GatewayError::NoHealthyUpstream)?.clone();
    let path_and_query = rewrite(&hit, &parts.uri)?;
    let uri = upstream_uri(&endpoint, &path_and_query)?;
    let host = route.rewrite_authority.clone().or(host);
    let upgrade = parts.headers.contains_key(header::UPGRADE) || parts.method == http::Method::CONNECT;
    proxy_headers(&mut parts.headers, host.as_ref(), parts.extensions.get::<ClientAddr>());
    hit.route.request_headers.apply(&mut parts.headers);

    let mut plan = if upgrade || route.mirrors.is_empty() {
        // Upgrades and tunnels are not proxied (Upgrade is hop-by-hop) nor mirrored.
        MirrorPlan::default()
    } else {
        let outgoing = Outgoing {
            method: &parts.method,
            path_and_query: &path_and_query,
            host: host.as_ref(),
            headers: &parts.headers,
            has_body: !body.is_end_stream(),
            content_length: body.size_hint().exact(),
            route: &hit.route.name,
        };
        MirrorPlan::new(&outgoing, &route.mirrors, primary, shared)
    };
    let body = plan.tee(body);

    let client_span = upstream_span(&parts.method, primary, &endpoint);
    propagation::inject(&client_span, &mut parts.headers);
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    plan.spawn(&parts.headers);

    let started = Instant::now();
    let response = send(primary, Request::from_parts(parts, body), route.timeout, &client_span, &endpoint).await?;
    let latency = started.elapsed();
    client_span.record("http.response.status_code", i64::from(response.status().as_u16()));
    let (mut head, body) = response.into_parts();
    strip_hop_by_hop(&mut head.headers);
    Ok(plan.capture(Response::from_parts(head, body), latency))
}

/// Phase, instead of forwarding: a route that answers itself (redirect, fixed response).
fn answer(hit: &RouteHit<'_>, host: Option<&HeaderValue>, uri: &Uri) -> Response<BoxBody> {
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let response = hit.respond(host.and_then(|h| h.to_str().ok()), path_and_query).unwrap_or_default();
    response.map(|body| http_body_util::Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync())
}

/// Phase: the primary call, within the route's timeout.
async fn send(
    primary: &Upstream,
    request: Request<BoxBody>,
    timeout: Option<std::time::Duration>,
    span: &tracing::Span,
    endpoint: &Authority,
) -> Result<Response<hyper::body::Incoming>, GatewayError> {
    let sent = primary.client().request(request).instrument(span.clone());
    let answered = match timeout {
        Some(limit) => tokio::time::timeout(limit, sent).await.map_err(|_| {
            span.record("otel.status_code", "ERROR");
            GatewayError::UpstreamTimeout
        })?,
        None => sent.await,
    };
    answered.map_err(|error| {
        span.record("otel.status_code", "ERROR");
        tracing::warn!(parent: span, error = %error, source = ?std::error::Error::source(&error), endpoint = endpoint.as_str(), "upstream request failed");
        GatewayError::UpstreamUnavailable
    })
}

/// Phase: every request gets an `x-request-id` (kept when the client sent one).
fn ensure_request_id(headers: &mut HeaderMap) {
    if !headers.contains_key(&X_REQUEST_ID) {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        if let Ok(value) = HeaderValue::from_str(&id) {
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
    );
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

/// Phase: hop-by-hop headers out; `Host` (rewritten or the client's), `X-Forwarded-For` and
/// `X-Forwarded-Proto` in.
fn proxy_headers(headers: &mut HeaderMap, host: Option<&HeaderValue>, client: Option<&ClientAddr>) {
    strip_hop_by_hop(headers);
    if let Some(host) = host {
        headers.insert(header::HOST, host.clone());
    }
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

fn record_request((route, destination): (SharedString, SharedString), status: StatusCode, started: Instant) {
    metrics::histogram!("gateway_request_duration_seconds", "route" => route.clone()).record(started.elapsed().as_secs_f64());
    metrics::counter!("gateway_requests_total", "route" => route, "destination" => destination, "status" => status.as_str().to_owned())
        .increment(1);
}

#[cfg(test)]
mod tests {
    //! The request path on in-memory requests: no socket, no upstream.

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
    fn proxy_headers_drop_hop_by_hop_ones_and_add_forwarding() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", "x-private".parse().unwrap());
        headers.insert("x-private", "1".parse().unwrap());
        headers.insert("x-forwarded-for", "10.1.1.1".parse().unwrap());
        let client = ClientAddr("192.0.2.7:5555".parse().unwrap());
        proxy_headers(&mut headers, Some(&HeaderValue::from_static("shop.internal")), Some(&client));
        assert!(!headers.contains_key("x-private") && !headers.contains_key("connection"));
        assert_eq!(headers["host"], "shop.internal");
        assert_eq!(headers["x-forwarded-for"], "10.1.1.1, 192.0.2.7");
        assert_eq!(headers["x-forwarded-proto"], "http");
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
