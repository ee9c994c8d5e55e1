//! What the front-ends hand to validation: routes whose destinations are still names, and the
//! facts that resolve those names to endpoints (native services, Istio subsets and
//! ServiceEntries). Each item keeps where it was written, for error messages.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::error::ConfigError;
use crate::model::{
    Answer, CompareSpec, DEFAULT_MAX_BODY, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MIRROR_TIMEOUT, DEFAULT_SAMPLE_HEADER, HeaderOps, MethodSet,
    Protocol, RouteMatch, UriRewrite, VerdictSpec,
};
use crate::status::{ObjectId, Reason};

/// Where something was written: a file and a path inside it.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub file: String,
    pub path: String,
    /// The Kubernetes object that wrote it: an error here rejects that object alone.
    pub object: Option<ObjectId>,
}

impl Origin {
    pub fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(&self.file, &self.path, message.into()).of_object(self.object)
    }
}

/// A destination by name, resolved during validation.
#[derive(Debug, Clone)]
pub(crate) struct DestRef {
    /// Namespace-qualified, lower case: what resolution compares.
    pub host: String,
    /// As the user wrote it: destination labels and default mirror names.
    pub written: String,
    pub subset: Option<String>,
    pub port: Option<u16>,
    /// The `host`/`to` key, for unknown-host errors.
    pub origin: Origin,
    /// The `subset` key (or `to` again in the native format), for unknown-subset errors.
    pub subset_origin: Origin,
    /// A Gateway API backend's own rules (`None` for the other formats): where it goes when
    /// nothing else defines the host, what answers when it cannot be sent to, its filters.
    pub fallback: Option<GatewayBackend>,
}

/// What a Gateway API `backendRef` says beyond its host: the specification answers 500 for the
/// share of requests that go to a backend which cannot be sent to, and the rest are served.
#[derive(Debug, Clone, Default)]
pub(crate) struct GatewayBackend {
    /// A `Service`'s cluster DNS name (`name.namespace.svc`), used when no ServiceEntry or
    /// native service defines its host: a name that does not resolve answers 500.
    pub cluster_dns: Option<HostPort>,
    /// Decided while lowering: the reference is of a kind not implemented, or not permitted.
    pub unresolved: Option<(Reason, String)>,
    /// Other hosts the name may mean when its own is defined nowhere: a short Istio `Hostname`
    /// (`gwa`) is a ServiceEntry's short host, which is stored qualified.
    pub alternatives: Vec<String>,
    /// The backendRef's own `RequestHeaderModifier`, after the rule's.
    pub request_headers: HeaderOps,
    /// The rule's `ResponseHeaderModifier`, then the backendRef's.
    pub response_headers: HeaderOps,
}

#[derive(Debug, Clone)]
pub(crate) struct PendingRoute {
    /// `None`: named `route-<index>` in the merged table.
    pub name: Option<String>,
    pub origin: Origin,
    /// Load order: (file, document, position); a replaced Kubernetes object keeps the first's.
    pub order: (usize, usize, usize),
    pub hosts: Vec<String>,
    pub matches: Vec<RouteMatch>,
    pub rewrite_uri: Option<UriRewrite>,
    /// Set for routes that answer themselves; `destinations` is then empty.
    pub answer: Option<Answer>,
    pub request_headers: HeaderOps,
    pub rewrite_authority: Option<String>,
    /// Weight `None` when not written: see validation for the default.
    pub destinations: Vec<(DestRef, Option<u32>)>,
    pub destinations_origin: Origin,
    pub mirrors: Vec<PendingMirror>,
    pub timeout: Option<Duration>,
    pub promote: Option<PendingPromote>,
    /// `None`: [`crate::model::default_upgrades`].
    pub upgrades: Option<Vec<String>>,
    /// `None`: the gateway's default retry policy.
    pub retries: Option<crate::model::RetryPolicy>,
    /// An Istio gateway catch-all route: after every other route of the load (see
    /// `formats/istio/virtual_service.rs`), keeping its order among the other catch-alls.
    pub catch_all_last: bool,
    /// See [`crate::model::Route::plain_http`].
    pub plain_http: std::collections::BTreeMap<String, crate::model::PlainHttp>,
}

/// A native route's `promote:`, before its destination is resolved.
#[derive(Debug, Clone)]
pub(crate) struct PendingPromote {
    pub origin: Origin,
    pub to: DestRef,
    pub steps: Vec<u32>,
    pub hold: Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct PendingMirror {
    pub name: Option<String>,
    pub origin: Origin,
    pub to: DestRef,
    pub percent: f64,
    pub sample_header: HeaderName,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub max_body_bytes: usize,
    pub methods: MethodSet,
    pub shadow_host_suffix: bool,
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    pub remove_headers: Vec<HeaderName>,
    pub compare: Option<CompareSpec>,
    pub verdict: Option<VerdictSpec>,
    pub capture: Option<crate::model::CaptureSpec>,
}

/// An endpoint as written, before validation makes it an [`Endpoint`](crate::model::Endpoint)
/// (a DNS name or an IP address, IPv6 without brackets).
#[derive(Debug, Clone)]
pub(crate) struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// `"host:port"`, with an IPv6 address in brackets: what error messages show.
    pub fn text(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl PendingMirror {
    /// A mirror of a Kubernetes front-end (Istio `mirror`, Gateway API `RequestMirror`): the
    /// defaults, every method copied (Istio's behaviour), comparing and judged as the object's
    /// annotations say.
    pub fn imported(origin: Origin, to: DestRef, percent: f64, compare: Option<&CompareSpec>) -> Self {
        PendingMirror {
            name: None,
            origin,
            to,
            percent,
            sample_header: HeaderName::from_static(DEFAULT_SAMPLE_HEADER),
            timeout: DEFAULT_MIRROR_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_body_bytes: DEFAULT_MAX_BODY,
            methods: MethodSet::All,
            shadow_host_suffix: true,
            set_headers: Vec::new(),
            remove_headers: Vec::new(),
            compare: compare.cloned(),
            verdict: compare.map(|_| VerdictSpec::default()),
            capture: None,
        }
    }
}

/// A native `services:` entry.
#[derive(Debug, Clone)]
pub(crate) struct NativeService {
    pub host: String,
    pub origin: Origin,
    pub shape: NativeShape,
    pub protocol: Protocol,
}

#[derive(Debug, Clone)]
pub(crate) enum NativeShape {
    /// `echo: [127.0.0.1:9000]`
    Plain(Vec<HostPort>),
    /// `target: {v1: [...], v2: [...]}`
    Subsets(BTreeMap<String, Vec<HostPort>>),
}

/// A DestinationRule subset: a label selector.
#[derive(Debug, Clone)]
pub(crate) struct IstioSubset {
    pub host: String,
    /// `namespace/name` of the DestinationRule: subsets of several rules for one host merge.
    pub rule: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub(crate) struct ServiceEntry {
    pub hosts: Vec<String>,
    pub ports: Vec<SePort>,
    pub endpoints: Vec<SeEndpoint>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub(crate) struct SePort {
    pub number: u16,
    /// `HTTPS` or `TLS` when the port speaks TLS: never sent plaintext.
    pub tls: Option<String>,
    pub name: Option<String>,
    pub target_port: Option<u16>,
    /// `appProtocol`, else `protocol`; HTTP/1.1 when neither names an HTTP/2 one.
    pub protocol: Protocol,
}

#[derive(Debug, Clone)]
pub(crate) struct SeEndpoint {
    pub address: String,
    pub ports: BTreeMap<String, u16>,
    pub labels: BTreeMap<String, String>,
}

/// Everything every file said, merged in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sources {
    pub files: Vec<String>,
    pub routes: Vec<PendingRoute>,
    pub services: Vec<NativeService>,
    pub subsets: Vec<IstioSubset>,
    pub service_entries: Vec<ServiceEntry>,
    /// DestinationRules asking for TLS origination (`tls.mode` SIMPLE or MUTUAL).
    pub tls_rules: Vec<TlsRule>,
    /// DestinationRules' `outlierDetection`: host, subset (`None`: the rule's top level), policy.
    pub outlier_rules: Vec<(String, Option<String>, crate::model::OutlierPolicy)>,
}

/// A DestinationRule's `tls.mode` for a host, or one of its subsets, or one port of them.
#[derive(Debug, Clone)]
pub(crate) struct TlsRule {
    pub host: String,
    /// `None`: the rule's top-level policy, for every subset.
    pub subset: Option<String>,
    /// `portLevelSettings[].port.number`; `None`: every port.
    pub port: Option<u16>,
    /// Upper case: `SIMPLE`, `MUTUAL`, `ISTIO_MUTUAL`, `DISABLE`.
    pub mode: String,
    pub origin: Origin,
}
