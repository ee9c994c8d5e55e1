//! Settings of the gateway process (not the routing: that is the `--config` files).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Embedded defaults (`defaults.yaml`), then a settings file, `GATEWAY_*` variables, flags;
/// `GATEWAY_CONFIG=a.yaml,b.yaml` is a list.
impl service_kit::settings::Layered for GatewaySettings {
    const DEFAULTS: &'static str = include_str!("defaults.yaml");
    const ENV_PREFIX: &'static str = "GATEWAY";
    const LIST_KEYS: &'static [&'static str] = &["config", "shadow.trusted_networks", "scope.gateways"];
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    pub listen: String,
    pub admin_listen: String,
    /// Threads that serve requests: `auto` (the CPUs the process may use, cgroup quota and
    /// affinity included) or a number, like Envoy's `--concurrency`.
    pub workers: service_kit::cli::Workers,
    /// Routing files (native or Istio YAML), merged in order.
    #[serde(default)]
    pub config: Vec<PathBuf>,
    #[serde(with = "http_rules::duration")]
    pub shutdown_deadline: Duration,
    /// Limits of the data-plane listener (the admin listener keeps the defaults).
    #[serde(default)]
    pub listener: service_kit::serve::ListenerLimits,
    /// TLS on the data-plane listener (README "TLS"); no certificate: plain HTTP.
    #[serde(default)]
    pub tls: service_kit::tls::TlsSettings,
    pub upstream: UpstreamSettings,
    /// The primary request's retries where a route sets none, and the budget they share.
    pub retries: RetrySettings,
    /// Ejection of primary endpoints that stop answering (shadows: `shadow.ejection`).
    pub outlier_detection: OutlierSettings,
    pub reload: ReloadSettings,
    pub report: ReportSettings,
    pub compare: CompareSettings,
    pub shadow: ShadowSettings,
    /// Which Gateway resources (Istio or Gateway API) this gateway is, and whether it also
    /// routes for the mesh: what the routing files cannot say about the process reading them.
    pub scope: gateway_config::LoadOptions,
    // Request handling (README "Protocols, timeouts and request checks").
    pub timeouts: TimeoutSettings,
    pub requests: RequestSettings,
}

impl GatewaySettings {
    /// What loading the routing files needs to know of this process: its `scope`, and whether
    /// its listener terminates TLS (a Gateway API HTTPS listener is served only then).
    pub fn load_options(&self) -> gateway_config::LoadOptions {
        gateway_config::LoadOptions { tls: self.tls.enabled(), ..self.scope.clone() }
    }
}

/// Who may mark a request as shadow traffic (`x-shadow`); see `shadow.rs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowSettings {
    /// Signs this deployment's markers; give every replica the same one. Empty: a random key per
    /// process (only this gateway then recognises its own copies).
    pub key: String,
    /// Peers whose markers are trusted as they are (CIDRs or addresses).
    pub trusted_networks: Vec<String>,
    /// A signed marker older than this is not trusted.
    #[serde(with = "http_rules::duration")]
    pub max_age: Duration,
    /// When copies to a shadow that stopped answering are dropped instead of sent.
    pub ejection: EjectionSettings,
}

/// When a destination is ejected (`shadow.ejection`: shadows only, for now), by
/// [`crate::upstream::outlier`].
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EjectionSettings {
    /// Copies in a row without an answer that eject the destination; 0: never eject.
    pub consecutive_failures: u32,
    /// The first ejection lasts this long; the n-th, n times as long.
    #[serde(with = "http_rules::duration")]
    pub base_time: Duration,
    /// No ejection lasts longer.
    #[serde(with = "http_rules::duration")]
    pub max_time: Duration,
}

/// The default retry policy (routes without their own `retries`) and the retry budget of each
/// destination (Envoy's `retry_budget`), by [`crate::upstream::retry`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Retries after the first attempt; 0: none.
    pub attempts: u32,
    /// Envoy/Istio tokens, comma-separated (`connect-failure,refused-stream,reset,503`).
    #[serde(deserialize_with = "retry_on")]
    pub retry_on: gateway_config::RetryOn,
    /// Each attempt's own deadline; 0: none (the route timeout bounds them all).
    #[serde(with = "http_rules::duration")]
    pub per_try_timeout: Duration,
    /// The wait before the first retry, doubled for each next one up to ten times it, jittered.
    #[serde(with = "http_rules::duration")]
    pub backoff: Duration,
    /// Retries in flight to a destination may be this percentage of its requests in flight...
    pub budget_percent: u32,
    /// ...or this many, whichever is more.
    pub min_retry_concurrency: u32,
}

fn retry_on<'de, D: serde::Deserializer<'de>>(d: D) -> Result<gateway_config::RetryOn, D::Error> {
    let list = String::deserialize(d)?;
    match gateway_config::RetryOn::parse(&list) {
        (on, unknown) if unknown.is_empty() => Ok(on),
        (_, unknown) => Err(serde::de::Error::custom(format!("unknown retry condition \"{}\"", unknown[0]))),
    }
}

/// When a primary endpoint is ejected, by [`crate::upstream::outlier`]: the shadows' rule, per
/// endpoint, with a cap on the share of a destination's endpoints ejected at once.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierSettings {
    /// Gateway failures in a row (no connection, reset, no answer in time, 502/503/504) that
    /// eject the endpoint; 0: never eject.
    pub consecutive_failures: u32,
    #[serde(with = "http_rules::duration")]
    pub base_time: Duration,
    #[serde(with = "http_rules::duration")]
    pub max_time: Duration,
    /// No ejection while this percentage of the destination's endpoints (or more) is ejected;
    /// one endpoint may always be ejected (Envoy's rule), never all of them.
    pub max_ejection_percent: u32,
}

impl OutlierSettings {
    pub fn ejection(&self) -> EjectionSettings {
        EjectionSettings { consecutive_failures: self.consecutive_failures, base_time: self.base_time, max_time: self.max_time }
    }
}

/// Deadlines with Envoy's meaning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSettings {
    /// Until the whole response has arrived, for routes without a `timeout` of their own
    /// (Envoy's route timeout, 15 s): 504 before the response headers, the stream reset after.
    /// Zero: no deadline.
    #[serde(with = "http_rules::duration")]
    pub route: Duration,
    /// A response body that sends nothing for this long is reset (Envoy's stream idle timeout,
    /// 5 min), so a stalled upstream does not hold a client that has no deadline. Zero: never.
    #[serde(with = "http_rules::duration")]
    pub stream_idle: Duration,
}

/// What the gateway accepts from clients before routing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSettings {
    pub trace: TracePolicy,
    /// Request bodies whose declared length is at most this many bytes are read whole before
    /// anything is sent (NGINX buffers them too), so an upload cut short never reaches the
    /// upstream; longer ones stream, and a cut one resets the upstream request. 0: always stream.
    pub buffer_body: u64,
    /// Done before matching; the normalised path is what is matched, rewritten and sent.
    pub path: gateway_config::PathNormalization,
}

/// `TRACE` echoes the request back, headers and all (cookies, credentials added by proxies on
/// the way): refused by default, as Envoy and most servers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TracePolicy {
    /// 405 Method Not Allowed.
    Reject,
    /// Routed like any other method.
    Forward,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareSettings {
    /// Bytes that pending comparisons may hold, all mirrors together; past it copies are not
    /// compared. Each reserves three captures (`compare.max_body` of its mirror each): the
    /// primary's answer, the shadow's, a second primary answer when it learns noise.
    pub max_pending_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    #[serde(with = "http_rules::duration")]
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this.
    #[serde(with = "http_rules::duration")]
    pub idle_timeout: Duration,
    pub max_idle_per_endpoint: usize,
    /// The largest answer head relayed (bytes; HTTP/2 counts 32 more per field), as the
    /// listener's `max_request_headers_bytes`; over it, 502 for that request alone.
    pub max_response_headers_bytes: usize,
    /// Header fields in one answer (and in its trailers), as the listener's `max_headers`.
    pub max_response_headers: usize,
    /// Streams the gateway opens on one HTTP/2 connection to an endpoint (never more than the
    /// server's `SETTINGS_MAX_CONCURRENT_STREAMS`); past it, another connection.
    pub http2_max_streams_per_connection: usize,
    /// Unread bytes one HTTP/2 stream may hold; a connection's window is this times the stream
    /// cap, so streams whose clients stop reading never stop the connection's other streams.
    pub http2_stream_window: WindowSize,
}

#[cfg(test)]
impl UpstreamSettings {
    /// The embedded defaults, for tests that build upstreams by hand.
    pub fn defaults() -> Self {
        use service_kit::settings::{Layered, Sources};
        GatewaySettings::load(Sources::default()).expect("default settings").upstream
    }
}

/// An HTTP/2 flow-control window: 65535 (the protocol's initial window) to 2^31 - 1 bytes.
#[derive(Debug, Clone, Copy)]
pub struct WindowSize(u32);

impl WindowSize {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for WindowSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = u64::deserialize(deserializer)?;
        match u32::try_from(bytes) {
            Ok(bytes @ 65_535..=0x7fff_ffff) => Ok(Self(bytes)),
            _ => Err(serde::de::Error::custom(format!("{bytes} is not a window size (65535 to 2147483647 bytes)"))),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadSettings {
    /// How often the routing files are checked for changes (SIGHUP reloads at once); 0 = never.
    #[serde(with = "http_rules::duration")]
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// Recent mismatches kept per mirror for `/mirrors` and the admin page.
    pub recent_mismatches: usize,
    /// Memory cap for all kept mismatch diffs together, in bytes.
    pub max_bytes: usize,
    /// A Jaeger UI (`http://jaeger:16686`): the page links each mismatch to its trace. Empty: no links.
    #[serde(default)]
    pub trace_url: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_config::EscapedSlashes;
    use service_kit::settings::{Layered, Sources};

    fn with_env(env: &[(&str, &str)]) -> Result<GatewaySettings, String> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        GatewaySettings::load(Sources { env, ..Sources::default() }).map_err(|e| e.to_string())
    }

    #[test]
    fn request_handling_defaults_are_envoy_and_istio_ones() {
        let s = with_env(&[]).unwrap();
        assert_eq!(s.timeouts.route, Duration::from_secs(15));
        assert_eq!(s.timeouts.stream_idle, Duration::from_secs(300));
        assert_eq!(s.requests.trace, TracePolicy::Reject);
        assert_eq!(s.requests.buffer_body, 65_536);
        assert_eq!(s.requests.path, gateway_config::PathNormalization::default());
    }

    #[test]
    fn tls_is_off_by_default_and_its_mode_is_set_from_the_environment() {
        let s = with_env(&[]).unwrap();
        assert!(!s.tls.enabled());
        assert_eq!(s.tls.handshake_timeout, Duration::from_secs(10));
        let s = with_env(&[("GATEWAY_TLS__MODE", "optional_mutual"), ("GATEWAY_TLS__CA_CERTIFICATES", "/etc/ca.pem")]).unwrap();
        assert_eq!(s.tls.mode, service_kit::tls::TlsMode::OptionalMutual);
        assert_eq!(s.tls.ca_certificates.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        let err = with_env(&[("GATEWAY_TLS__MODE", "istio_mutual")]).unwrap_err();
        assert!(err.contains("mode") && err.contains("istio_mutual"), "{err}");
    }

    #[test]
    fn request_handling_is_set_from_the_environment_and_bad_values_are_named() {
        let s = with_env(&[
            ("GATEWAY_TIMEOUTS__ROUTE", "0s"),
            ("GATEWAY_REQUESTS__TRACE", "forward"),
            ("GATEWAY_REQUESTS__PATH__ESCAPED_SLASHES", "reject"),
            ("GATEWAY_REQUESTS__PATH__MERGE_SLASHES", "true"),
        ])
        .unwrap();
        assert!(s.timeouts.route.is_zero());
        assert_eq!(s.requests.trace, TracePolicy::Forward);
        assert_eq!(s.requests.path.escaped_slashes, EscapedSlashes::Reject);
        assert!(s.requests.path.merge_slashes);
        let err = with_env(&[("GATEWAY_REQUESTS__PATH__ESCAPED_SLASHES", "decode")]).unwrap_err();
        assert!(err.contains("escaped_slashes") && err.contains("decode"), "{err}");
    }

    #[test]
    fn upstream_limits_default_to_the_listeners_and_a_bad_window_is_named() {
        let s = with_env(&[]).unwrap();
        assert_eq!(s.upstream.max_response_headers_bytes, s.listener.max_request_headers_bytes);
        assert_eq!(s.upstream.max_response_headers, s.listener.max_headers);
        assert_eq!(s.upstream.http2_stream_window.get(), 262_144);
        let s = with_env(&[("GATEWAY_UPSTREAM__HTTP2_STREAM_WINDOW", "1048576")]).unwrap();
        assert_eq!(s.upstream.http2_stream_window.get(), 1 << 20);
        for bad in ["100", "4294967296"] {
            let err = with_env(&[("GATEWAY_UPSTREAM__HTTP2_STREAM_WINDOW", bad)]).unwrap_err();
            assert!(err.contains("http2_stream_window") && err.contains(bad), "{err}");
        }
    }
}
