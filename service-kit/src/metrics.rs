//! The process-wide Prometheus recorder behind every binary's `/metrics`.

use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Request durations, seconds.
const LATENCY_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Differences of durations (shadow minus primary), seconds: negative when the shadow is faster.
const DELTA_BUCKETS: [f64; 13] = [-1.0, -0.1, -0.025, -0.01, -0.0025, -0.001, 0.0, 0.001, 0.0025, 0.01, 0.025, 0.1, 1.0];

/// How often recorded histogram samples are folded into their buckets. The recorder keeps raw
/// samples until then, so without this upkeep its memory would grow with traffic between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Installs the global recorder (once per process) and starts its upkeep on the current Tokio
/// runtime.
pub fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_delta_seconds".to_owned()), &DELTA_BUCKETS)?
        .install_recorder()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// `GET /metrics` of any binary: the recorder's text exposition, or 404 with a short JSON body
/// when this process runs without a recorder (tests, embedded use).
pub fn scrape(handle: Option<&PrometheusHandle>) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let Some(handle) = handle else {
        return crate::reply::json_error(http::StatusCode::NOT_FOUND, "metrics are not enabled in this process");
    };
    let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(handle.render())));
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}
