//! The tutorial's service, shared by `proxy-svc` and `target-svc`: `/index`, `/proxy?url=`,
//! health endpoints, a server span and begin/end log lines for every request.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::relay::{self, Relay, RelaySettings};
use service_kit::propagation;
use service_kit::serve;

/// Who a service is: the name and version on every span and log line.
#[derive(Debug, Clone)]
pub struct ServiceIdentity {
    pub name: String,
    pub version: String,
}

/// Settings of a service binary (see `mesh-service/src/defaults.yaml` for the embedded defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    pub listen: String,
    pub relay: RelaySettings,
    /// How long in-flight requests may finish after SIGTERM.
    #[serde(with = "http_rules::duration")]
    pub shutdown_deadline: Duration,
}

impl service_kit::settings::Layered for ServiceSettings {
    const DEFAULTS: &'static str = include_str!("defaults.yaml");
    const ENV_PREFIX: &'static str = "SVC";
    const LIST_KEYS: &'static [&'static str] = &["relay.allow_hosts"];
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("listen: cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The router of the service, separate from serving so it can be tested without a socket.
/// `metrics` renders `/metrics` (the process-wide Prometheus recorder `main` installs).
pub fn router(identity: ServiceIdentity, relay: Relay, metrics: Option<PrometheusHandle>) -> Router {
    let metrics_route = get(move || {
        let metrics = metrics.clone();
        async move { service_kit::metrics::scrape(metrics.as_ref()) }
    });
    Router::new()
        .route("/index", get(index))
        .route("/proxy", get(relay::proxy_handler).post(relay::proxy_handler))
        .with_state(relay)
        // Outermost for application routes: every request gets its server span and log lines.
        .layer(middleware::from_fn_with_state(Arc::new(identity), trace_request))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", metrics_route)
        .fallback(|| async { (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({ "error": "no such path" }))) })
}

async fn index() -> &'static str {
    "index"
}

/// A bound, ready-to-run service.
pub struct Service {
    listener: TcpListener,
    router: Router,
    deadline: Duration,
}

impl Service {
    pub async fn build(
        settings: &ServiceSettings,
        identity: ServiceIdentity,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Self, BuildError> {
        let listener =
            TcpListener::bind(&settings.listen).await.map_err(|source| BuildError::Bind { addr: settings.listen.clone(), source })?;
        Ok(Self::with_metrics(listener, settings, identity, metrics)?)
    }

    /// For callers (tests) that bound the listener themselves.
    pub fn with_listener(listener: TcpListener, settings: &ServiceSettings, identity: ServiceIdentity) -> Result<Self, reqwest::Error> {
        Self::with_metrics(listener, settings, identity, None)
    }

    /// Like [`Service::with_listener`], serving `/metrics` from `metrics`.
    pub fn with_metrics(
        listener: TcpListener,
        settings: &ServiceSettings,
        identity: ServiceIdentity,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Self, reqwest::Error> {
        let relay = Relay::new(&settings.relay)?;
        Ok(Self { listener, router: router(identity, relay, metrics), deadline: settings.shutdown_deadline })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests up to the deadline.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) {
        serve::serve(self.listener, self.router, shutdown, self.deadline).await;
    }
}

/// Shows request headers in a log line with secrets redacted.
struct LoggedHeaders<'a>(&'a HeaderMap);

impl fmt::Debug for LoggedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.0 {
            if http_rules::is_secret_header(name) {
                map.entry(&name.as_str(), &"[redacted]");
            } else {
                map.entry(&name.as_str(), &String::from_utf8_lossy(value.as_bytes()));
            }
        }
        map.finish()
    }
}

/// One server span per request (child of the caller's trace context), and the Go service's
/// begin/end log lines as structured events.
async fn trace_request(State(identity): State<Arc<ServiceIdentity>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let shadow = propagation::is_shadow(request.headers());
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {path}"),
        otel.kind = "server",
        http.request.method = %method,
        url.path = %path,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        service = %identity.name,
        version = %identity.version,
        traffic.shadow = tracing::field::Empty,
    );
    propagation::adopt_remote_parent(&span, request.headers());
    if shadow {
        span.record("traffic.shadow", true);
    }
    async move {
        let started = Instant::now();
        // Log lines carry no span context: the request's own fields are on the line.
        tracing::info!(
            method = %method,
            path = %path,
            query = request.uri().query().unwrap_or_default(),
            headers = ?LoggedHeaders(request.headers()),
            shadow,
            "request begin"
        );
        let response = next.run(request).await;
        let status = response.status();
        let span = tracing::Span::current();
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
        tracing::info!(path = %path, status = status.as_u16(), elapsed_ms = started.elapsed().as_secs_f64() * 1e3, shadow, "request end");
        // Label by route, not raw path: a label per distinct URL would grow without bound.
        let route = match path.as_str() {
            "/index" | "/proxy" => path.clone(),
            _ => "other".to_owned(),
        };
        let labels = [
            ("route", route),
            ("status", status.as_str().to_owned()),
            ("version", identity.version.clone()),
            ("shadow", shadow.to_string()),
        ];
        metrics::counter!("http_server_requests_total", &labels).increment(1);
        metrics::histogram!("http_server_request_duration_seconds", &labels[..1]).record(started.elapsed().as_secs_f64());
        response
    }
    .instrument(span)
    .await
}
