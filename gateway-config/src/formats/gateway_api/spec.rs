//! The Gateway API's `gateway.networking.k8s.io` objects as serde reads them: the fields the
//! gateway implements. Every other field a document sets is reported by name
//! ([`crate::k8s::spec`]). Data only: what they mean is in the lowering modules beside this one.

use serde::Deserialize;

use crate::de::{Dur, HName, HValue, MethodName, Percent, Port, U32};

/// The Gateway API kinds the gateway reads.
pub(crate) enum Kind {
    Gateway(GatewaySpec),
    HttpRoute(HttpRouteSpec),
    ReferenceGrant(ReferenceGrantSpec),
    /// A core `Namespace` (its labels are in its metadata).
    Namespace,
}

#[derive(Deserialize)]
pub(crate) struct GatewaySpec {
    #[serde(rename = "gatewayClassName")]
    pub(super) _class: Option<String>,
    #[serde(default)]
    pub(super) listeners: Vec<Listener>,
}

#[derive(Deserialize)]
pub(super) struct Listener {
    pub(super) name: Option<String>,
    pub(super) hostname: Option<String>,
    pub(super) port: Option<Port>,
    pub(super) protocol: Option<String>,
    #[serde(rename = "allowedRoutes")]
    pub(super) allowed_routes: Option<AllowedRoutes>,
}

#[derive(Deserialize)]
pub(super) struct AllowedRoutes {
    pub(super) namespaces: Option<RouteNamespaces>,
    pub(super) kinds: Option<Vec<RouteGroupKind>>,
}

#[derive(Deserialize)]
pub(super) struct RouteGroupKind {
    pub(super) group: Option<String>,
    pub(super) kind: String,
}

#[derive(Deserialize)]
pub(super) struct RouteNamespaces {
    pub(super) from: Option<String>,
    pub(super) selector: Option<LabelSelector>,
}

/// A Kubernetes label selector: every `matchLabels` pair and every `matchExpressions` term.
#[derive(Deserialize, Clone)]
pub(super) struct LabelSelector {
    #[serde(rename = "matchLabels", default)]
    pub(super) match_labels: std::collections::BTreeMap<String, String>,
    #[serde(rename = "matchExpressions", default)]
    pub(super) match_expressions: Vec<LabelExpression>,
}

#[derive(Deserialize, Clone)]
pub(super) struct LabelExpression {
    pub(super) key: String,
    pub(super) operator: String,
    #[serde(default)]
    pub(super) values: Vec<String>,
}

#[derive(Deserialize)]
pub(crate) struct HttpRouteSpec {
    #[serde(rename = "parentRefs", default)]
    pub(super) parent_refs: Vec<ParentRef>,
    #[serde(default)]
    pub(super) hostnames: Vec<String>,
    #[serde(default)]
    pub(super) rules: Vec<Rule>,
}

#[derive(Deserialize)]
pub(super) struct ParentRef {
    pub(super) name: String,
    pub(super) namespace: Option<String>,
    pub(super) group: Option<String>,
    pub(super) kind: Option<String>,
    #[serde(rename = "sectionName")]
    pub(super) section_name: Option<String>,
    pub(super) port: Option<Port>,
}

#[derive(Deserialize)]
pub(super) struct Rule {
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) matches: Vec<GMatch>,
    #[serde(default)]
    pub(super) filters: Vec<Filter>,
    #[serde(rename = "backendRefs", default)]
    pub(super) backend_refs: Vec<BackendRef>,
    pub(super) timeouts: Option<Timeouts>,
    /// GEP-1731: `retry: { codes: [503], attempts: 2, backoff: 100ms }`.
    pub(super) retry: Option<Retry>,
}

#[derive(Deserialize)]
pub(super) struct Retry {
    #[serde(default)]
    pub(super) codes: Vec<U32>,
    pub(super) attempts: Option<U32>,
    pub(super) backoff: Option<Dur>,
}

#[derive(Deserialize)]
pub(super) struct Timeouts {
    pub(super) request: Option<Dur>,
    #[serde(rename = "backendRequest")]
    pub(super) backend_request: Option<Dur>,
}

#[derive(Deserialize, Clone)]
pub(super) struct GMatch {
    pub(super) path: Option<PathMatch>,
    #[serde(default)]
    pub(super) headers: Vec<NameMatch>,
    #[serde(rename = "queryParams", default)]
    pub(super) query_params: Vec<NameMatch>,
    pub(super) method: Option<MethodName>,
}

#[derive(Deserialize, Clone)]
pub(super) struct PathMatch {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) value: Option<String>,
}

#[derive(Deserialize, Clone)]
pub(super) struct NameMatch {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) name: String,
    pub(super) value: String,
}

#[derive(Deserialize)]
pub(super) struct Filter {
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(rename = "requestHeaderModifier")]
    pub(super) request_header_modifier: Option<HeaderModifier>,
    #[serde(rename = "responseHeaderModifier")]
    pub(super) response_header_modifier: Option<HeaderModifier>,
    #[serde(rename = "requestMirror")]
    pub(super) request_mirror: Option<RequestMirror>,
    #[serde(rename = "urlRewrite")]
    pub(super) url_rewrite: Option<UrlRewrite>,
    #[serde(rename = "requestRedirect")]
    pub(super) request_redirect: Option<RequestRedirect>,
}

#[derive(Deserialize)]
pub(super) struct HeaderModifier {
    #[serde(default)]
    pub(super) set: Vec<HeaderPair>,
    #[serde(default)]
    pub(super) add: Vec<HeaderPair>,
    #[serde(default)]
    pub(super) remove: Vec<HName>,
}

#[derive(Deserialize)]
pub(super) struct HeaderPair {
    pub(super) name: HName,
    pub(super) value: HValue,
}

#[derive(Deserialize)]
pub(super) struct RequestMirror {
    #[serde(rename = "backendRef")]
    pub(super) backend_ref: BackendRef,
    pub(super) percent: Option<Percent>,
    pub(super) fraction: Option<Fraction>,
}

#[derive(Deserialize)]
pub(super) struct Fraction {
    pub(super) numerator: U32,
    pub(super) denominator: Option<U32>,
}

#[derive(Deserialize)]
pub(super) struct UrlRewrite {
    pub(super) hostname: Option<String>,
    pub(super) path: Option<PathModifier>,
}

#[derive(Deserialize)]
pub(super) struct PathModifier {
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(rename = "replaceFullPath")]
    pub(super) full: Option<String>,
    #[serde(rename = "replacePrefixMatch")]
    pub(super) prefix: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RequestRedirect {
    pub(super) scheme: Option<String>,
    pub(super) hostname: Option<String>,
    pub(super) path: Option<PathModifier>,
    pub(super) port: Option<Port>,
    #[serde(rename = "statusCode")]
    pub(super) status_code: Option<U32>,
}

/// Lets routes of other namespaces refer to objects of this one (Gateway API's consent for
/// cross-namespace references).
#[derive(Deserialize)]
pub(crate) struct ReferenceGrantSpec {
    #[serde(default)]
    pub(super) from: Vec<GrantFrom>,
    #[serde(default)]
    pub(super) to: Vec<GrantTo>,
}

#[derive(Deserialize)]
pub(super) struct GrantFrom {
    pub(super) group: String,
    pub(super) kind: String,
    pub(super) namespace: String,
}

#[derive(Deserialize)]
pub(super) struct GrantTo {
    pub(super) group: String,
    pub(super) kind: String,
    pub(super) name: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct BackendRef {
    pub(super) group: Option<String>,
    pub(super) kind: Option<String>,
    pub(super) name: String,
    pub(super) namespace: Option<String>,
    pub(super) port: Option<Port>,
    pub(super) weight: Option<U32>,
    /// Filters of this backend alone (`RequestHeaderModifier`, `ResponseHeaderModifier`).
    #[serde(default)]
    pub(super) filters: Vec<Filter>,
}
