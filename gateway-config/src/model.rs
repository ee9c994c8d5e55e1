//! The one internal routing model. Both front-ends produce it; nothing past the loaders knows
//! which format a route came from.

use std::time::Duration;

use http::uri::Authority;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use regex::Regex;
use response_diff::JsonPath;
use serde::Serialize;

pub use crate::retry::{RetryOn, RetryPolicy};

/// The route table, as Envoy organises one: a request first selects a virtual host by its
/// authority (an exact host, else the longest `*.suffix` wildcard, else `*`), then the first
/// route of that host whose any match fits; no virtual host or no route is a 404. A request never
/// falls through to another virtual host.
#[derive(Debug, Clone, Serialize)]
pub struct RouteTable {
    /// Every route, in load order; [`VirtualHost::routes`] index into it.
    pub routes: Vec<Route>,
    pub virtual_hosts: Vec<VirtualHost>,
    /// Every destination a route or mirror names, deduplicated by (host, subset, port);
    /// indexed by [`DestinationId`].
    pub destinations: Vec<Destination>,
}

/// One host pattern and its routes, in load order. A route with several hosts is in several
/// virtual hosts; a route with no hosts (native format) is in every one, and in `*`.
#[derive(Debug, Clone, Serialize)]
pub struct VirtualHost {
    /// `*`, `*.example.com` or an exact host, lower case.
    pub domain: String,
    /// Indexes into [`RouteTable::routes`], in load order.
    pub routes: Vec<usize>,
    /// A plain-HTTP request for this host is answered 301 to `https://` before any route is
    /// matched (Istio Gateway server `tls.httpsRedirect`, Envoy's `require_tls: ALL`).
    pub https_redirect: bool,
}

/// How a route serves one of its hosts on a plain-HTTP (not TLS) connection: what the Istio
/// Gateway servers that expose the host say. A host a route does not list is served.
/// Ordered as Istio combines the servers exposing one host: a redirecting one wins over one
/// that serves, which wins over HTTPS ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlainHttp {
    /// Only HTTPS servers expose it: never served in clear (404 on a plain connection).
    TlsOnly,
    /// An HTTP server exposes it.
    Serve,
    /// An HTTP server with `tls.httpsRedirect: true` exposes it: 301 to `https://`.
    RedirectToHttps,
}

/// Index into [`RouteTable::destinations`]; only meaningful for the table that produced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct DestinationId(pub usize);

#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// Unique in the table: used in logs, metrics and spans.
    pub name: String,
    /// Virtual hosts the route applies to (Istio `VirtualService.spec.hosts`, namespace-qualified:
    /// `reviews` in namespace `test` is `reviews.test.svc.cluster.local`): `*`, `*.example.com`
    /// or an exact host, compared with the request authority without its port. Empty = any host.
    pub hosts: Vec<String>,
    /// Any one fitting is enough; empty = the route matches every request.
    pub matches: Vec<RouteMatch>,
    pub rewrite_uri: Option<UriRewrite>,
    /// `rewrite.authority` (Gateway API `URLRewrite.hostname`): checked to be an authority
    /// (`host[:port]`) when loaded, and held as the `Host` header value it becomes.
    #[serde(serialize_with = "ser::opt_header_value")]
    pub rewrite_authority: Option<HeaderValue>,
    /// At least one weight is non-zero. Empty only when `answer` is set.
    pub destinations: Vec<WeightedDestination>,
    pub mirrors: Vec<MirrorPolicy>,
    /// The gateway answers itself (a redirect or a fixed response) instead of forwarding;
    /// `destinations` and `mirrors` are then empty.
    pub answer: Option<Answer>,
    /// Changes to the request sent upstream (Istio `headers.request`, Gateway API
    /// `RequestHeaderModifier`); see [`HeaderOps::apply`].
    pub request_headers: HeaderOps,
    /// Deadline for the primary's whole response (Envoy's route timeout): 504 before its headers,
    /// the stream reset after. `None`: the gateway's default; zero: no deadline.
    #[serde(serialize_with = "ser::opt_duration")]
    pub timeout: Option<Duration>,
    /// Move the route's traffic to a mirror's destination step by step while its verdict passes.
    pub promote: Option<PromoteSpec>,
    /// The `Upgrade` protocols tunnelled for this route, lowercase (Envoy's `upgrade_configs`):
    /// `[websocket]` unless the native route lists its own; never `h2c` (validation refuses
    /// it: an h2c tunnel carries requests past routing). A request asking for any other
    /// protocol loses its `Upgrade` header and is an ordinary request.
    pub upgrades: Vec<String>,
    /// How the primary request is retried (Istio `retries`, Gateway API `retry`, native
    /// `retries:`); `None`: the gateway's default policy (`retries:` in its settings).
    pub retries: Option<RetryPolicy>,
    /// Per host (lower case), how plain-HTTP connections get it; empty (native and Gateway
    /// API routes, mesh routes): every host is served on every connection.
    pub plain_http: std::collections::BTreeMap<String, PlainHttp>,
}

/// The upgrades a route tunnels when it does not say: WebSocket, as Istio and Envoy's defaults.
pub fn default_upgrades() -> Vec<String> {
    vec!["websocket".to_owned()]
}

/// `promote: { to: shop/v2, steps: [10, 25, 50, 100], hold: 5m }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromoteSpec {
    /// The mirror whose verdict gates each step (the route's mirror to `destination`).
    pub mirror: String,
    pub destination: DestinationId,
    /// Percentages of the route's traffic sent to `destination`, strictly increasing, 1..=100.
    pub steps: Vec<u32>,
    /// How long each step is held, with the verdict passing, before the next.
    #[serde(serialize_with = "ser::duration")]
    pub hold: Duration,
}

/// All conditions of one match must hold.
#[derive(Debug, Clone, Serialize)]
pub struct RouteMatch {
    /// Matched against the path without its query string.
    pub uri: Option<StringMatch>,
    /// Empty = any method.
    #[serde(serialize_with = "ser::methods")]
    pub methods: Vec<Method>,
    pub headers: Vec<HeaderMatch>,
    pub authority: Option<StringMatch>,
    /// Query parameters (`?a=1&b=2`), each must be present and fit.
    pub query_params: Vec<QueryMatch>,
    /// Istio `ignoreUriCase`: `uri` is compared without ASCII case.
    pub ignore_uri_case: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryMatch {
    pub name: String,
    pub value: StringMatch,
}

/// Header changes, applied in the order remove, set, add.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HeaderOps {
    #[serde(serialize_with = "ser::set_headers")]
    pub set: Vec<(HeaderName, HeaderValue)>,
    #[serde(serialize_with = "ser::set_headers")]
    pub add: Vec<(HeaderName, HeaderValue)>,
    #[serde(serialize_with = "ser::header_names")]
    pub remove: Vec<HeaderName>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Applies the changes to a request's headers.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// How a route rewrites the path; see [`crate::RouteHit::rewrite_path`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UriRewrite {
    /// Istio `rewrite.uri` (Envoy's `prefix_rewrite`): the matched prefix after a prefix
    /// match, `/` after a match without `uri` (`/foo` -> `/v2foo`), else the whole path.
    Istio(String),
    /// The native `rewrite`: the matched prefix after a prefix match, else the whole path.
    Native(String),
    /// Gateway API `ReplaceFullPath`.
    Full(String),
    /// Gateway API `ReplacePrefixMatch`.
    Prefix(String),
}

/// What the gateway answers itself on a route that does not forward.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Istio `redirect`, Gateway API `RequestRedirect`.
    Redirect(Redirect),
    /// Istio `directResponse`.
    Direct {
        #[serde(serialize_with = "ser::status")]
        status: StatusCode,
        body: Vec<u8>,
    },
}

/// Each part not given keeps the request's own.
#[derive(Debug, Clone, Serialize)]
pub struct Redirect {
    /// 301 unless said otherwise; always a redirect status.
    #[serde(serialize_with = "ser::status")]
    pub status: StatusCode,
    pub scheme: Option<String>,
    /// Host without port.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathRedirect>,
    /// What becomes of the request's port when `port` is not given.
    pub ports: RedirectPorts,
}

/// The port of a redirect's `Location` when the redirect does not give one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectPorts {
    /// The request's port, dropped when the scheme changes (Gateway API).
    KeepUnlessScheme,
    /// Envoy's `RedirectAction` (Istio): a new authority drops it; a new scheme drops it only
    /// when it is the old scheme's default (`:80` for http); a given port replaces it and is
    /// left out when it is the scheme's default (Istio's ApplyRedirect).
    Envoy,
    /// Istio `derivePort: FROM_REQUEST_PORT`: the port the request came to, left out when it
    /// is the scheme's default.
    FromRequest,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathRedirect {
    /// The whole path is replaced (Istio `redirect.uri`, Gateway API `ReplaceFullPath`).
    Full(String),
    /// The matched prefix is replaced (Gateway API `ReplacePrefixMatch`).
    Prefix(String),
    /// Istio `redirect.prefixRewrite` (Envoy's `prefix_rewrite`): the matched prefix, or the
    /// implicit `/` of a match without `uri`, becomes this text; the rest follows as it is.
    IstioPrefix(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct HeaderMatch {
    #[serde(serialize_with = "ser::header_name")]
    pub name: HeaderName,
    pub value: StringMatch,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    /// A path prefix by whole segments (Gateway API `PathPrefix`): `/foo` fits `/foo` and
    /// `/foo/bar`, never `/foobar`.
    PathPrefix(String),
    /// The header or query parameter is present, whatever its value (Istio's `{}`).
    Present,
    /// Compiled anchored (`^(?:...)$`): a full match, like Istio's RE2 semantics.
    /// Serialized as the pattern the user wrote.
    Regex(#[serde(serialize_with = "ser::regex")] Regex),
}

impl StringMatch {
    /// Compiles `pattern` for full-match semantics.
    pub fn regex(pattern: &str) -> Result<Self, regex::Error> {
        Regex::new(&format!("^(?:{pattern})$")).map(StringMatch::Regex)
    }

    /// The pattern as written by the user (without the anchoring added at compile time).
    pub fn source(&self) -> &str {
        match self {
            StringMatch::Exact(s) | StringMatch::Prefix(s) | StringMatch::PathPrefix(s) => s,
            StringMatch::Present => "",
            StringMatch::Regex(re) => regex_source(re),
        }
    }
}

pub(crate) fn regex_source(re: &Regex) -> &str {
    let s = re.as_str();
    s.strip_prefix("^(?:").and_then(|s| s.strip_suffix(")$")).unwrap_or(s)
}

#[derive(Debug, Clone, Serialize)]
pub struct WeightedDestination {
    pub id: DestinationId,
    pub weight: u32,
    /// Changes to requests sent to this destination, after the route's (a Gateway API
    /// backendRef's `RequestHeaderModifier`).
    #[serde(skip_serializing_if = "HeaderOps::is_empty")]
    pub request_headers: HeaderOps,
    /// Changes to its responses (Gateway API `ResponseHeaderModifier`, the rule's then the
    /// backendRef's).
    #[serde(skip_serializing_if = "HeaderOps::is_empty")]
    pub response_headers: HeaderOps,
}

/// A host (and optional subset/port) resolved to the endpoints that serve it.
#[derive(Debug, Clone, Serialize)]
pub struct Destination {
    pub host: String,
    pub subset: Option<String>,
    pub port: Option<u16>,
    /// May be empty: a subset whose workloads are not deployed yet loads (with a warning) and
    /// the gateway answers 503 `no healthy upstream` for it until a reload brings endpoints.
    pub endpoints: Vec<Endpoint>,
    /// How the gateway speaks to these endpoints.
    pub protocol: Protocol,
    /// Ejection of its endpoints (Istio DestinationRule `trafficPolicy.outlierDetection`);
    /// `None`: the gateway's `outlier_detection` settings.
    pub outlier: Option<OutlierPolicy>,
    /// A Gateway API backend that cannot be sent to (unknown kind, not found, not permitted):
    /// requests for it are answered 500, as the specification says, and the route's status
    /// says why (`ResolvedRefs=False`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unresolved: bool,
    /// Its one endpoint is a Kubernetes Service's cluster DNS name: a name that does not
    /// resolve means the Service does not exist, answered 500 (`BackendNotFound`), not 502.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cluster_dns: bool,
}

/// When an endpoint of a destination is ejected, as an Istio DestinationRule says
/// (`consecutive5xxErrors`, `consecutiveGatewayErrors`, `baseEjectionTime`, `maxEjectionPercent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct OutlierPolicy {
    /// Failures in a row that eject the endpoint; 0: never.
    pub consecutive_errors: u32,
    /// Whether any 5xx answer counts (`consecutive5xxErrors`), or only 502, 503 and 504
    /// (`consecutiveGatewayErrors`); failures to connect or to answer count either way.
    pub all_5xx: bool,
    #[serde(serialize_with = "ser::duration")]
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

/// The HTTP version spoken to a destination: native `protocol:` of a service, Istio
/// ServiceEntry `ports[].protocol` or `appProtocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 (and what the gateway did before protocols were configurable).
    #[default]
    Http1,
    /// HTTP/2 over cleartext with prior knowledge (h2c): what gRPC servers speak.
    Http2,
    /// The version the client used: HTTP/2 clients are forwarded over h2c, others over HTTP/1.1
    /// (Istio's `useClientProtocol`).
    Auto,
}

impl Protocol {
    /// Native names (`http1`, `http2`, `auto`) and Istio's (`HTTP`, `HTTP2`, `GRPC`, `h2c`), any case.
    /// `None` for protocols that are not HTTP (`TCP`, `TLS`, `HTTPS`, ...).
    pub fn from_name(name: &str) -> Option<Protocol> {
        match name.to_ascii_lowercase().as_str() {
            "http" | "http1" | "http/1.1" => Some(Protocol::Http1),
            "http2" | "h2c" | "grpc" | "kubernetes.io/h2c" => Some(Protocol::Http2),
            "auto" => Some(Protocol::Auto),
            _ => None,
        }
    }
}

impl Destination {
    /// `"target/v2"`, or `"target"` without a subset.
    pub fn label(&self) -> String {
        label(&self.host, self.subset.as_deref())
    }
}

pub(crate) fn label(host: &str, subset: Option<&str>) -> String {
    match subset {
        Some(s) => format!("{host}/{s}"),
        None => host.to_string(),
    }
}

/// Where a destination's requests go: a `host:port` authority, parsed once when loaded, so a
/// request clones it (a reference count) and never parses it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    authority: Authority,
    /// As written (without IPv6 brackets): what `/config` shows.
    host: String,
    port: u16,
}

impl Endpoint {
    /// `host` is a DNS name or an IP address (IPv6 with or without brackets). Fails when
    /// `host:port` is not a valid authority.
    pub fn new(host: &str, port: u16) -> Result<Self, http::uri::InvalidUri> {
        let text = if host.contains(':') && !host.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        Ok(Endpoint { authority: Authority::try_from(text)?, host: host.to_string(), port })
    }

    /// `host:port`, with an IPv6 address in brackets.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The DNS name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// `{"host": ..., "port": ...}`, the host without brackets.
impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut endpoint = s.serialize_struct("Endpoint", 2)?;
        endpoint.serialize_field("host", self.host())?;
        endpoint.serialize_field("port", &self.port)?;
        endpoint.end()
    }
}

/// How one copy of a route's traffic is sent to a shadow destination.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorPolicy {
    /// Unique within the route; sent as `x-shadow: <name>`. Defaults to the destination label.
    pub name: String,
    pub destination: DestinationId,
    /// Share of requests copied, 0.0..=100.0.
    pub percent: f64,
    /// Sampling is decided on this header's value so a request id is mirrored consistently.
    #[serde(serialize_with = "ser::header_name")]
    pub sample_header: HeaderName,
    #[serde(serialize_with = "ser::duration")]
    pub timeout: Duration,
    /// Copies over this many in flight are dropped (and counted), never queued.
    pub max_in_flight: usize,
    /// A request body longer than this is not copied (the copy is aborted).
    pub max_body_bytes: usize,
    pub methods: MethodSet,
    /// Append `-shadow` to the copy's host, as Envoy does.
    pub shadow_host_suffix: bool,
    #[serde(serialize_with = "ser::set_headers")]
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    #[serde(serialize_with = "ser::header_names")]
    pub remove_headers: Vec<HeaderName>,
    pub compare: Option<CompareSpec>,
    /// Judge the shadow on the comparisons: on by default when the mirror compares.
    pub verdict: Option<VerdictSpec>,
    /// Record compared exchanges to a HAR file (needs `compare`).
    pub capture: Option<CaptureSpec>,
}

/// What a mirror records of its compared exchanges, and where: a HAR 1.2 file (read by browsers,
/// Charles, mitmproxy, k6 and `gateway replay`), written off the request path.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureSpec {
    pub file: std::path::PathBuf,
    /// Share (0..=100) of compared exchanges recorded; every mismatch is recorded whatever this says.
    pub sample_percent: f64,
    /// Each body is kept up to this many bytes (and marked cut).
    pub max_body_bytes: usize,
    /// The file is rotated (`file.1`, `file.2`, ...) before it grows past this.
    pub max_file_bytes: u64,
    /// Rotated files kept besides the current one.
    pub keep_files: usize,
    /// Headers whose values are replaced, besides `authorization`, `proxy-authorization`,
    /// `cookie` and `set-cookie`, which always are.
    #[serde(serialize_with = "ser::header_names")]
    pub redact_headers: Vec<HeaderName>,
    /// JSON values in request and response bodies whose values are replaced.
    pub redact_paths: Vec<IgnorePath>,
}

pub(crate) const DEFAULT_CAPTURE_MAX_BODY: usize = 64 * 1024;
pub(crate) const DEFAULT_CAPTURE_FILE_BYTES: u64 = 100 * 1024 * 1024;
pub(crate) const DEFAULT_CAPTURE_KEEP: usize = 5;

/// Which request methods a mirror copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodSet {
    /// GET, HEAD, OPTIONS: copies that cannot change state (the native default).
    Safe,
    /// Every method but CONNECT (Istio's behaviour).
    All,
    List(#[serde(serialize_with = "ser::methods")] Vec<Method>),
}

impl MethodSet {
    /// CONNECT is never mirrored: the gateway refuses upgrades and tunnels.
    pub fn allows(&self, m: &Method) -> bool {
        if m == Method::CONNECT {
            return false;
        }
        match self {
            MethodSet::Safe => m == Method::GET || m == Method::HEAD || m == Method::OPTIONS,
            MethodSet::All => true,
            MethodSet::List(list) => list.contains(m),
        }
    }
}

/// Compare the shadow's response with the primary's, off the request path.
#[derive(Debug, Clone, Serialize)]
pub struct CompareSpec {
    #[serde(serialize_with = "ser::header_names")]
    pub ignore_headers: Vec<HeaderName>,
    /// JSON paths such as `$.timestamp` or `$.items[*].id`.
    pub ignore_paths: Vec<IgnorePath>,
    pub max_body_bytes: usize,
    /// Share of requests also sent twice to the primary to learn which differences are noise
    /// (GET, HEAD, OPTIONS without a body only); 0 = off. Default 2.
    pub noise_percent: f64,
    /// Keep bodies out of diff reports.
    pub redact_bodies: bool,
}

/// A JSON path left out of comparisons: parsed when loaded, shown as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnorePath {
    written: String,
    path: JsonPath,
}

impl IgnorePath {
    pub fn parse(text: &str) -> Result<Self, response_diff::PathError> {
        Ok(IgnorePath { path: text.parse()?, written: text.to_string() })
    }

    pub fn path(&self) -> &JsonPath {
        &self.path
    }

    /// The path as the configuration wrote it.
    pub fn as_str(&self) -> &str {
        &self.written
    }
}

impl Serialize for IgnorePath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.written)
    }
}

impl PartialEq<str> for IgnorePath {
    fn eq(&self, other: &str) -> bool {
        self.written == other
    }
}

impl PartialEq<&str> for IgnorePath {
    fn eq(&self, other: &&str) -> bool {
        self.written == *other
    }
}

/// When a mirror's shadow is judged safe to ship (`pass`), unsafe (`fail`), or not yet known.
/// Rates are fractions (`0.01`) or percentages (`"1%"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictSpec {
    /// Compared requests (match or mismatch; noise and skipped do not count) before any decision.
    pub min_compared: u64,
    /// Highest acceptable share of mismatches.
    pub max_mismatch_rate: f64,
    /// Highest acceptable slowdown of the shadow relative to the primary (0.2 = 20%).
    pub max_latency_increase: f64,
    /// Highest acceptable shadow-minus-primary difference of 5xx rates.
    pub max_error_rate_increase: f64,
    /// Evidence older than this is forgotten.
    #[serde(serialize_with = "ser::duration")]
    pub window: Duration,
}

impl Default for VerdictSpec {
    fn default() -> Self {
        VerdictSpec {
            min_compared: 100,
            max_mismatch_rate: 0.01,
            max_latency_increase: 0.2,
            max_error_rate_increase: 0.005,
            window: Duration::from_secs(600),
        }
    }
}

impl VerdictSpec {
    /// Sets one key from its text form; the same grammar for the native `verdict:` map and the
    /// Istio `mirror.gateway/verdict` annotation (`min_compared=100,window=10m`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let value = value.trim();
        let rate = |max: Option<f64>| -> Result<f64, String> {
            let parsed = match value.strip_suffix('%') {
                Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
                None => value.parse::<f64>(),
            };
            match parsed {
                Ok(r) if r.is_finite() && r >= 0.0 && max.is_none_or(|m| r <= m) => Ok(r),
                _ => Err(format!(
                    "{key}: \"{value}\" is not a rate (a fraction such as 0.01 or a percentage such as 1%){}",
                    match max {
                        Some(_) => ", at most 100%",
                        None => "",
                    }
                )),
            }
        };
        match key {
            "min_compared" => {
                self.min_compared = value.parse().map_err(|_| format!("min_compared: \"{value}\" is not a whole number"))?;
            }
            "max_mismatch_rate" => self.max_mismatch_rate = rate(Some(1.0))?,
            "max_latency_increase" => self.max_latency_increase = rate(None)?,
            "max_error_rate_increase" => self.max_error_rate_increase = rate(Some(1.0))?,
            "window" => {
                self.window = http_rules::duration::parse(value).map_err(|e| format!("window: bad duration \"{value}\": {e}"))?;
                if self.window.is_zero() {
                    return Err("window: must be greater than zero".to_owned());
                }
            }
            other => {
                return Err(format!(
                    "unknown key \"{other}\" (expected min_compared, max_mismatch_rate, max_latency_increase, max_error_rate_increase, window)"
                ));
            }
        }
        Ok(())
    }
}

pub(crate) const DEFAULT_MIRROR_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 256;
pub(crate) const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Noise learning is on by default at a small share: an application with a timestamp or a
/// timing in its answers must not fail against itself (the first few requests of each path
/// pattern are also learned from, see the gateway's comparer).
pub(crate) const DEFAULT_NOISE_PERCENT: f64 = 2.0;
pub(crate) const DEFAULT_SAMPLE_HEADER: &str = "x-request-id";

impl Default for CompareSpec {
    fn default() -> Self {
        CompareSpec {
            ignore_headers: Vec::new(),
            ignore_paths: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY,
            noise_percent: DEFAULT_NOISE_PERCENT,
            redact_bodies: false,
        }
    }
}

/// `serialize_with` helpers for types that have no serde support of their own.
pub(crate) mod ser {
    use super::*;
    use http_rules::is_secret_header;
    use serde::ser::{SerializeMap, SerializeSeq, Serializer};

    pub use http_rules::duration::serialize as duration;

    pub fn opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => duration(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn methods<S: Serializer>(m: &[Method], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(m.len()))?;
        for m in m {
            seq.serialize_element(m.as_str())?;
        }
        seq.end()
    }

    pub fn opt_header_value<S: Serializer>(h: &Option<HeaderValue>, s: S) -> Result<S::Ok, S::Error> {
        match h {
            Some(h) => s.serialize_str(h.to_str().unwrap_or("<binary>")),
            None => s.serialize_none(),
        }
    }

    pub fn status<S: Serializer>(status: &StatusCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(status.as_u16())
    }

    pub fn header_name<S: Serializer>(h: &HeaderName, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(h.as_str())
    }

    pub fn header_names<S: Serializer>(h: &[HeaderName], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(h.len()))?;
        for h in h {
            seq.serialize_element(h.as_str())?;
        }
        seq.end()
    }

    pub fn set_headers<S: Serializer>(h: &[(HeaderName, HeaderValue)], s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(h.len()))?;
        for (name, value) in h {
            let shown = if is_secret_header(name) { "<redacted>" } else { value.to_str().unwrap_or("<binary>") };
            map.serialize_entry(name.as_str(), shown)?;
        }
        map.end()
    }

    pub fn regex<S: Serializer>(re: &Regex, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(regex_source(re))
    }
}
