//! Istio's `networking.istio.io` objects as serde reads them: the fields the gateway implements.
//! Every other field a document sets is reported by name ([`crate::k8s::spec`]), never ignored
//! silently. Data only: what they mean is in the lowering modules beside this one.

use serde::Deserialize;

use crate::de::{Dur, HName, HValue, IstioHeader, MatchSpec, OneOrMany, Ordered, Percent, Port, Presence, Scalar, U32, UriMatch};

/// The Istio kinds the gateway reads.
pub(crate) enum Kind {
    Gateway(GatewaySpec),
    VirtualService(VirtualServiceSpec),
    DestinationRule(DestinationRuleSpec),
    ServiceEntry(ServiceEntrySpec),
}

#[derive(Deserialize)]
pub(crate) struct GatewaySpec {
    /// Picks the Envoy deployment in Kubernetes; here it is matched against the labels the
    /// settings give this gateway.
    #[serde(default)]
    pub(super) selector: Ordered<Scalar>,
    #[serde(default)]
    pub(super) servers: Vec<Server>,
}

#[derive(Deserialize)]
pub(super) struct Server {
    pub(super) port: Option<ServerPort>,
    pub(super) hosts: Option<OneOrMany<String>>,
    #[serde(rename = "name")]
    pub(super) _name: Option<Scalar>,
    pub(super) tls: Option<ServerTls>,
}

/// A server's TLS: the redirect is implemented; the certificates are the gateway's own
/// (process settings `tls:`), so the rest is reported.
#[derive(Deserialize)]
pub(super) struct ServerTls {
    #[serde(rename = "httpsRedirect", default)]
    pub(super) https_redirect: bool,
    pub(super) mode: Option<String>,
    #[serde(rename = "credentialName")]
    pub(super) credential_name: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ServerPort {
    pub(super) number: Option<Port>,
    #[serde(rename = "name")]
    pub(super) _name: Option<Scalar>,
    pub(super) protocol: Option<String>,
    #[serde(rename = "targetPort")]
    pub(super) _target_port: Option<Port>,
}

#[derive(Deserialize)]
pub(crate) struct VirtualServiceSpec {
    pub(super) hosts: Option<OneOrMany<String>>,
    pub(super) gateways: Option<OneOrMany<String>>,
    pub(super) http: Option<Vec<HttpRoute>>,
}

#[derive(Deserialize)]
pub(super) struct HttpRoute {
    pub(super) name: Option<Scalar>,
    #[serde(rename = "match")]
    pub(super) matches: Option<Vec<HttpMatch>>,
    pub(super) rewrite: Option<Rewrite>,
    pub(super) route: Option<Vec<RouteDestination>>,
    pub(super) redirect: Option<HttpRedirect>,
    #[serde(rename = "directResponse")]
    pub(super) direct_response: Option<DirectResponse>,
    pub(super) delegate: Option<Delegate>,
    pub(super) mirror: Option<Destination>,
    #[serde(rename = "mirrorPercentage")]
    pub(super) mirror_percentage: Option<PercentValue>,
    #[serde(alias = "mirrorPercent")]
    pub(super) mirror_percent: Option<Percent>,
    pub(super) mirrors: Option<Vec<Mirror>>,
    pub(super) timeout: Option<Dur>,
    pub(super) headers: Option<Headers>,
    pub(super) retries: Option<HttpRetry>,
    /// Deprecated in Istio, and what the gateway does anyway: WebSocket upgrades are tunnelled
    /// on every route.
    #[serde(rename = "websocketUpgrade")]
    pub(super) _websocket_upgrade: Option<bool>,
}

/// `retries: { attempts: 3, perTryTimeout: 2s, retryOn: "connect-failure,503" }`.
#[derive(Deserialize)]
pub(super) struct HttpRetry {
    pub(super) attempts: Option<U32>,
    #[serde(rename = "perTryTimeout")]
    pub(super) per_try_timeout: Option<Dur>,
    #[serde(rename = "retryOn")]
    pub(super) retry_on: Option<String>,
}

/// Route-level header changes; only `request` is implemented (`response` is reported).
#[derive(Deserialize)]
pub(super) struct Headers {
    pub(super) request: Option<HeaderOperations>,
}

#[derive(Deserialize)]
pub(super) struct HeaderOperations {
    #[serde(default)]
    pub(super) set: Ordered<HValue, IstioHeader>,
    #[serde(default)]
    pub(super) add: Ordered<HValue, HName>,
    #[serde(default)]
    pub(super) remove: Vec<HName>,
}

#[derive(Deserialize)]
pub(super) struct HttpMatch {
    pub(super) uri: Option<UriMatch>,
    pub(super) authority: Option<MatchSpec>,
    pub(super) method: Option<MatchSpec>,
    pub(super) headers: Option<Ordered<Presence, IstioHeader>>,
    #[serde(rename = "queryParams")]
    pub(super) query_params: Option<Ordered<Presence>>,
    #[serde(rename = "ignoreUriCase", default)]
    pub(super) ignore_uri_case: bool,
    #[serde(rename = "name")]
    pub(super) _name: Option<Scalar>,
}

#[derive(Deserialize)]
pub(super) struct Rewrite {
    pub(super) uri: Option<Scalar>,
    pub(super) authority: Option<Scalar>,
}

#[derive(Deserialize)]
pub(super) struct HttpRedirect {
    pub(super) uri: Option<String>,
    #[serde(rename = "prefixRewrite")]
    pub(super) prefix_rewrite: Option<String>,
    #[serde(rename = "derivePort")]
    pub(super) derive_port: Option<String>,
    pub(super) authority: Option<String>,
    pub(super) port: Option<Port>,
    pub(super) scheme: Option<String>,
    #[serde(rename = "redirectCode")]
    pub(super) redirect_code: Option<U32>,
}

#[derive(Deserialize)]
pub(super) struct DirectResponse {
    pub(super) status: U32,
    pub(super) body: Option<DirectBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DirectBody {
    pub(super) string: Option<String>,
    pub(super) bytes: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Delegate {
    pub(super) name: String,
    pub(super) namespace: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RouteDestination {
    pub(super) destination: Destination,
    pub(super) weight: Option<U32>,
}

#[derive(Deserialize)]
pub(super) struct Destination {
    pub(super) host: String,
    pub(super) subset: Option<Scalar>,
    pub(super) port: Option<PortSelector>,
}

#[derive(Deserialize)]
pub(super) struct PortSelector {
    pub(super) number: Option<Port>,
}

#[derive(Deserialize)]
pub(super) struct PercentValue {
    pub(super) value: Option<Percent>,
}

#[derive(Deserialize)]
pub(super) struct Mirror {
    pub(super) destination: Destination,
    pub(super) percentage: Option<PercentValue>,
}

#[derive(Deserialize)]
pub(crate) struct DestinationRuleSpec {
    pub(super) host: String,
    #[serde(rename = "trafficPolicy")]
    pub(super) traffic_policy: Option<TrafficPolicy>,
    #[serde(default)]
    pub(super) subsets: Vec<Subset>,
}

/// TLS is declared as it must never be ignored (plaintext to a TLS port), and outlier detection.
/// Load balancing,
/// connection pools and the rest are reported as not implemented.
#[derive(Deserialize)]
pub(super) struct TrafficPolicy {
    pub(super) tls: Option<ClientTls>,
    #[serde(rename = "outlierDetection")]
    pub(super) outlier_detection: Option<OutlierDetection>,
    #[serde(rename = "portLevelSettings", default)]
    pub(super) port_level_settings: Vec<PortTrafficPolicy>,
}

/// A port's own policy; only its TLS is declared, for the same reason.
#[derive(Deserialize)]
pub(super) struct PortTrafficPolicy {
    pub(super) port: Option<PortSelector>,
    pub(super) tls: Option<ClientTls>,
}

/// Consecutive-error ejection; `interval` is read and has nothing to pace here (an ejection ends
/// when its time is up, checked on each request).
#[derive(Deserialize)]
pub(super) struct OutlierDetection {
    #[serde(rename = "consecutive5xxErrors")]
    pub(super) consecutive_5xx: Option<U32>,
    #[serde(rename = "consecutiveGatewayErrors")]
    pub(super) consecutive_gateway: Option<U32>,
    #[serde(rename = "interval")]
    pub(super) _interval: Option<Dur>,
    #[serde(rename = "baseEjectionTime")]
    pub(super) base_ejection_time: Option<Dur>,
    #[serde(rename = "maxEjectionPercent")]
    pub(super) max_ejection_percent: Option<U32>,
}

#[derive(Deserialize)]
pub(super) struct ClientTls {
    pub(super) mode: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Subset {
    pub(super) name: Scalar,
    #[serde(default)]
    pub(super) labels: Ordered<Scalar>,
    #[serde(rename = "trafficPolicy")]
    pub(super) traffic_policy: Option<TrafficPolicy>,
}

#[derive(Deserialize)]
pub(crate) struct ServiceEntrySpec {
    pub(super) hosts: OneOrMany<String>,
    #[serde(default)]
    pub(super) ports: Vec<ServiceEntryPort>,
    pub(super) resolution: Option<String>,
    #[serde(default)]
    pub(super) endpoints: Vec<WorkloadEntry>,
    // Where the service runs is for Istio's mTLS and telemetry; it changes no routing here.
    #[serde(rename = "location")]
    pub(super) _location: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ServiceEntryPort {
    pub(super) number: Port,
    pub(super) name: Option<Scalar>,
    pub(super) protocol: Option<String>,
    /// Kubernetes' `appProtocol` (`kubernetes.io/h2c`, `grpc`); wins over `protocol` for the HTTP version.
    #[serde(rename = "appProtocol")]
    pub(super) app_protocol: Option<String>,
    #[serde(rename = "targetPort")]
    pub(super) target_port: Option<Port>,
}

#[derive(Deserialize)]
pub(super) struct WorkloadEntry {
    pub(super) address: String,
    #[serde(default)]
    pub(super) ports: Ordered<Port>,
    #[serde(default)]
    pub(super) labels: Ordered<Scalar>,
}
