//! The Istio front-end: `networking.istio.io` Gateway, VirtualService, DestinationRule and
//! ServiceEntry objects, turned into the same sources as the native format.
//!
//! There is no Kubernetes API here, so ServiceEntries say where workloads are (a short host in a
//! ServiceEntry stands for the Kubernetes Service of that name in its namespace) and
//! DestinationRule subsets select their endpoints by label, as Istio does with pods. The serde
//! structs below declare what the gateway implements; every other field a document sets is
//! reported as a [`Warning`] naming it (through `serde_ignored`): nothing is silently ignored.
//!
//! Istio's semantics kept here: short host names are qualified by the object's namespace;
//! a VirtualService is served only when bound (`gateways`) to a Gateway this gateway is, and
//! mesh-only ones (no `gateways`, or `mesh`) only when the settings say this gateway is also
//! the mesh's router; delegate VirtualServices are spliced into their parents, their matches
//! merged with the parent's.

use std::collections::{BTreeMap, BTreeSet};

use http::{HeaderName, StatusCode};
use serde::Deserialize;

use http_rules::host_matches;

use crate::de::{Doc, Dur, HName, MatchSpec, OneOrMany, Ordered, Percent, Port, Presence, Result, Scalar, U32, check_percent, json_path};
use crate::k8s::{Object, Objects, Spec};
use crate::model::{
    Answer, CompareSpec, DEFAULT_MAX_BODY, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MIRROR_TIMEOUT, DEFAULT_SAMPLE_HEADER, HeaderMatch, HeaderOps,
    MethodSet, PathRedirect, Protocol, QueryMatch, Redirect, RouteMatch, StringMatch, UriRewrite, VerdictSpec,
};
use crate::sources::{DestRef, IstioSubset, Origin, PendingMirror, PendingRoute, SeEndpoint, SePort, ServiceEntry, Sources};
use crate::{LoadOptions, Notes, Warning};

/// Annotations on a VirtualService (or HTTPRoute) that turn on response comparison for its mirrors.
pub const ANNOTATION_COMPARE: &str = "mirror.gateway/compare";
pub const ANNOTATION_IGNORE_PATHS: &str = "mirror.gateway/compare-ignore-paths";
pub const ANNOTATION_IGNORE_HEADERS: &str = "mirror.gateway/compare-ignore-headers";
pub const ANNOTATION_NOISE_PERCENT: &str = "mirror.gateway/noise-percent";
/// `"false"` to turn the verdict off, or `key=value` pairs over the defaults
/// (`"min_compared=200,max_mismatch_rate=0.5%"`); on with the defaults when the mirror compares.
pub const ANNOTATION_VERDICT: &str = "mirror.gateway/verdict";

#[derive(Deserialize)]
pub(crate) struct GatewaySpec {
    /// Picks the Envoy deployment in Kubernetes; here it is matched against the labels the
    /// settings give this gateway.
    #[serde(default)]
    selector: Ordered<Scalar>,
    #[serde(default)]
    servers: Vec<Server>,
}

#[derive(Deserialize)]
struct Server {
    port: Option<ServerPort>,
    hosts: Option<OneOrMany<String>>,
    #[serde(rename = "name")]
    _name: Option<Scalar>,
}

#[derive(Deserialize)]
struct ServerPort {
    #[serde(rename = "number")]
    _number: Option<Port>,
    #[serde(rename = "name")]
    _name: Option<Scalar>,
    protocol: Option<String>,
    #[serde(rename = "targetPort")]
    _target_port: Option<Port>,
}

#[derive(Deserialize)]
pub(crate) struct VirtualServiceSpec {
    hosts: Option<OneOrMany<String>>,
    gateways: Option<OneOrMany<String>>,
    http: Option<Vec<HttpRoute>>,
}

#[derive(Deserialize)]
struct HttpRoute {
    name: Option<Scalar>,
    #[serde(rename = "match")]
    matches: Option<Vec<HttpMatch>>,
    rewrite: Option<Rewrite>,
    route: Option<Vec<RouteDestination>>,
    redirect: Option<HttpRedirect>,
    #[serde(rename = "directResponse")]
    direct_response: Option<DirectResponse>,
    delegate: Option<Delegate>,
    mirror: Option<Destination>,
    #[serde(rename = "mirrorPercentage")]
    mirror_percentage: Option<PercentValue>,
    #[serde(alias = "mirrorPercent")]
    mirror_percent: Option<Percent>,
    mirrors: Option<Vec<Mirror>>,
    timeout: Option<Dur>,
    headers: Option<Headers>,
}

/// Route-level header changes; only `request` is implemented (`response` is reported).
#[derive(Deserialize)]
struct Headers {
    request: Option<HeaderOperations>,
}

#[derive(Deserialize)]
struct HeaderOperations {
    #[serde(default)]
    set: Ordered<crate::de::HValue, HName>,
    #[serde(default)]
    add: Ordered<crate::de::HValue, HName>,
    #[serde(default)]
    remove: Vec<HName>,
}

#[derive(Deserialize)]
struct HttpMatch {
    uri: Option<MatchSpec>,
    authority: Option<MatchSpec>,
    method: Option<MatchSpec>,
    headers: Option<Ordered<Presence, HName>>,
    #[serde(rename = "queryParams")]
    query_params: Option<Ordered<Presence>>,
    #[serde(rename = "ignoreUriCase", default)]
    ignore_uri_case: bool,
    #[serde(rename = "name")]
    _name: Option<Scalar>,
}

#[derive(Deserialize)]
struct Rewrite {
    uri: Option<Scalar>,
    authority: Option<Scalar>,
}

#[derive(Deserialize)]
struct HttpRedirect {
    uri: Option<String>,
    authority: Option<String>,
    port: Option<Port>,
    scheme: Option<String>,
    #[serde(rename = "redirectCode")]
    redirect_code: Option<U32>,
}

#[derive(Deserialize)]
struct DirectResponse {
    status: U32,
    body: Option<DirectBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectBody {
    string: Option<String>,
    bytes: Option<String>,
}

#[derive(Deserialize)]
struct Delegate {
    name: String,
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct RouteDestination {
    destination: Destination,
    weight: Option<U32>,
}

#[derive(Deserialize)]
struct Destination {
    host: String,
    subset: Option<Scalar>,
    port: Option<PortSelector>,
}

#[derive(Deserialize)]
struct PortSelector {
    number: Option<Port>,
}

#[derive(Deserialize)]
struct PercentValue {
    value: Option<Percent>,
}

#[derive(Deserialize)]
struct Mirror {
    destination: Destination,
    percentage: Option<PercentValue>,
}

#[derive(Deserialize)]
pub(crate) struct DestinationRuleSpec {
    host: String,
    #[serde(rename = "trafficPolicy")]
    traffic_policy: Option<TrafficPolicy>,
    #[serde(default)]
    subsets: Vec<Subset>,
}

/// Only TLS is declared: it must never be ignored (plaintext to a TLS port). Load balancing,
/// connection pools and the rest are reported as not implemented.
#[derive(Deserialize)]
struct TrafficPolicy {
    tls: Option<ClientTls>,
}

#[derive(Deserialize)]
struct ClientTls {
    mode: Option<String>,
}

#[derive(Deserialize)]
struct Subset {
    name: Scalar,
    #[serde(default)]
    labels: Ordered<Scalar>,
    #[serde(rename = "trafficPolicy")]
    traffic_policy: Option<TrafficPolicy>,
}

#[derive(Deserialize)]
pub(crate) struct ServiceEntrySpec {
    hosts: OneOrMany<String>,
    #[serde(default)]
    ports: Vec<ServiceEntryPort>,
    resolution: Option<String>,
    #[serde(default)]
    endpoints: Vec<WorkloadEntry>,
    // Where the service runs is for Istio's mTLS and telemetry; it changes no routing here.
    #[serde(rename = "location")]
    _location: Option<String>,
}

#[derive(Deserialize)]
struct ServiceEntryPort {
    number: Port,
    name: Option<Scalar>,
    protocol: Option<String>,
    /// Kubernetes' `appProtocol` (`kubernetes.io/h2c`, `grpc`); wins over `protocol` for the HTTP version.
    #[serde(rename = "appProtocol")]
    app_protocol: Option<String>,
    #[serde(rename = "targetPort")]
    target_port: Option<Port>,
}

#[derive(Deserialize)]
struct WorkloadEntry {
    address: String,
    #[serde(default)]
    ports: Ordered<Port>,
    #[serde(default)]
    labels: Ordered<Scalar>,
}

/// Istio's rule for a host written in an object of namespace `ns`: a short name (no dot) is the
/// Kubernetes Service of that name in `ns`. Lower-cased: host names compare without case.
pub(crate) fn qualify(host: &str, ns: &str) -> String {
    let host = host.to_ascii_lowercase();
    if host.contains('.') || host.contains('*') { host } else { format!("{host}.{ns}.svc.cluster.local") }
}

/// The Gateways this gateway is, by `namespace/name`, each with the hosts its servers expose
/// as (namespace filter, host): `*/host`, `./host` (the Gateway's namespace) or `ns/host`.
fn our_gateways(objects: &Objects, options: &LoadOptions) -> BTreeMap<String, Vec<(String, String)>> {
    let mut ours = BTreeMap::new();
    let everything = options.gateways.is_empty() && options.labels.is_empty();
    for o in &objects.items {
        let Spec::IstioGateway(g) = &o.spec else { continue };
        let id = format!("{}/{}", o.namespace, o.name);
        let named = options.gateways.iter().any(|n| n == &id || (!n.contains('/') && o.namespace == "default" && n == &o.name));
        let selected =
            !options.labels.is_empty() && !g.selector.0.is_empty() && g.selector.0.iter().all(|(k, v)| options.labels.get(k) == Some(&v.0));
        if everything || named || selected {
            let hosts = g
                .servers
                .iter()
                .flat_map(|s| s.hosts.iter().flat_map(|h| &h.items))
                .map(|h| match h.split_once('/') {
                    Some((".", host)) => (o.namespace.clone(), host.to_ascii_lowercase()),
                    Some((ns, host)) => (ns.to_string(), host.to_ascii_lowercase()),
                    None => ("*".to_string(), h.to_ascii_lowercase()),
                })
                .collect();
            ours.insert(id, hosts);
        }
    }
    ours
}

/// A VirtualService host as exposed by a server host: Istio serves a VirtualService host on a
/// Gateway only where the two match (the more specific of the two is served).
pub(crate) fn intersect_host(server: &str, host: &str) -> Option<String> {
    if server == "*" || server.eq_ignore_ascii_case(host) || (server.starts_with('*') && host_matches(server, host)) {
        Some(host.to_ascii_lowercase())
    } else if host.starts_with('*') && host_matches(host, server) {
        Some(server.to_ascii_lowercase())
    } else {
        None
    }
}

/// Turns the Istio objects into sources; Gateway API objects are left to their front-end.
pub(crate) fn build(
    objects: &Objects,
    options: &LoadOptions,
    sources: &mut Sources,
    warnings: &mut Vec<Warning>,
    notes: &mut Notes,
) -> Result<()> {
    let ours = our_gateways(objects, options);
    let delegated: BTreeSet<(String, String)> = objects
        .items
        .iter()
        .filter_map(|o| match &o.spec {
            Spec::VirtualService(vs) => Some((o, vs)),
            _ => None,
        })
        .flat_map(|(o, vs)| {
            vs.http
                .iter()
                .flatten()
                .filter_map(|h| h.delegate.as_ref())
                .map(|d| (d.namespace.clone().unwrap_or_else(|| o.namespace.clone()), d.name.clone()))
        })
        .collect();
    for o in &objects.items {
        let doc = o.at.doc();
        match &o.spec {
            Spec::IstioGateway(g) => {
                gateway(doc, g, warnings);
                let id = format!("{}/{}", o.namespace, o.name);
                if ours.contains_key(&id) {
                    notes.loaded(o, "this gateway serves the VirtualServices bound to it".to_string());
                } else {
                    notes.scoped_out(o, "not one of the Gateways the settings name (scope.gateways / scope.labels)".to_string());
                }
            }
            Spec::VirtualService(vs) => {
                let id = (o.namespace.clone(), o.name.clone());
                if vs.hosts.as_ref().is_none_or(|h| h.items.is_empty()) {
                    // Istio: a VirtualService without hosts is only a delegate.
                    if delegated.contains(&id) {
                        notes.loaded(o, "delegate: its routes are served through the VirtualServices that delegate to it".to_string());
                    } else {
                        notes.scoped_out(o, "no hosts: a delegate VirtualService that no route delegates to".to_string());
                    }
                    continue;
                }
                let gateways: Vec<String> =
                    vs.gateways.as_ref().map(|g| g.items.clone()).filter(|g| !g.is_empty()).unwrap_or_else(|| vec!["mesh".to_string()]);
                let bound: Vec<String> = gateways
                    .iter()
                    .filter(|g| *g != "mesh")
                    .map(|g| gateway_ref(g, &o.namespace))
                    .filter(|g| ours.contains_key(g))
                    .collect();
                let mesh = gateways.iter().any(|g| g == "mesh");
                if bound.is_empty() && !(mesh && options.mesh) {
                    let why = if gateways.iter().all(|g| g == "mesh") {
                        "mesh-only (no `gateways`, or only `mesh`): not served at the edge unless scope.mesh is true".to_string()
                    } else {
                        let refs: Vec<String> = gateways.iter().filter(|g| *g != "mesh").map(|g| gateway_ref(g, &o.namespace)).collect();
                        let ours: Vec<&str> = ours.keys().map(String::as_str).collect();
                        format!(
                            "bound to {} which this gateway is not (it is: {})",
                            refs.join(", "),
                            if ours.is_empty() { "no Gateway".to_string() } else { ours.join(", ") }
                        )
                    };
                    notes.scoped_out(o, why);
                    continue;
                }
                // The hosts served: those the bound Gateways' servers expose (for this
                // namespace), and all of them for the mesh.
                let written: Vec<String> = vs.hosts.iter().flat_map(|h| &h.items).map(|h| qualify(h, &o.namespace)).collect();
                let mut hosts: BTreeSet<String> = BTreeSet::new();
                for g in &bound {
                    for (ns, server) in &ours[g] {
                        if ns == "*" || ns == &o.namespace {
                            hosts.extend(written.iter().filter_map(|h| intersect_host(server, h)));
                        }
                    }
                }
                if mesh && options.mesh {
                    hosts.extend(written.iter().cloned());
                }
                if hosts.is_empty() {
                    notes.scoped_out(
                        o,
                        format!(
                            "its hosts ({}) match no host that the servers of {} expose to namespace {}",
                            written.join(", "),
                            bound.join(", "),
                            o.namespace
                        ),
                    );
                    continue;
                }
                let hosts: Vec<String> = written
                    .iter()
                    .filter(|h| hosts.contains(*h))
                    .cloned()
                    .chain(hosts.iter().filter(|h| !written.contains(h)).cloned())
                    .collect();
                let count = virtual_service(o, vs, &hosts, objects, sources, warnings)?;
                notes.loaded(o, format!("{count} route{}", if count == 1 { "" } else { "s" }));
            }
            Spec::DestinationRule(dr) => {
                destination_rule(o, dr, sources, warnings);
                notes.loaded(o, format!("host {}, {} subsets", qualify(&dr.host, &o.namespace), dr.subsets.len()));
            }
            Spec::ServiceEntry(se) => {
                service_entry(o, se, sources, warnings)?;
                notes
                    .loaded(o, format!("hosts {}", se.hosts.items.iter().map(|h| qualify(h, &o.namespace)).collect::<Vec<_>>().join(", ")));
            }
            Spec::Gateway(_) | Spec::HttpRoute(_) | Spec::ReferenceGrant(_) => {}
        }
    }
    Ok(())
}

/// `name` (in the VirtualService's namespace) or `namespace/name`.
fn gateway_ref(g: &str, ns: &str) -> String {
    if g.contains('/') { g.to_string() } else { format!("{ns}/{g}") }
}

fn origin(doc: Doc<'_>, path: &str) -> Origin {
    Origin { file: doc.file.to_string(), path: doc.path(path) }
}

fn gateway(doc: Doc<'_>, gw: &GatewaySpec, warnings: &mut Vec<Warning>) {
    for (i, server) in gw.servers.iter().enumerate() {
        if let Some(p) = server.port.as_ref().and_then(|p| p.protocol.as_deref())
            && !matches!(p.to_ascii_uppercase().as_str(), "HTTP" | "HTTP2")
        {
            warnings.push(doc.warning(
                &format!("spec.servers[{i}].port"),
                format!("protocol {p} is not implemented: the gateway serves plain HTTP/1.1 and h2c on its --listen address"),
            ));
        }
    }
}

/// Adds the routes of a served VirtualService; returns how many.
fn virtual_service(
    o: &Object,
    vs: &VirtualServiceSpec,
    hosts: &[String],
    objects: &Objects,
    sources: &mut Sources,
    warnings: &mut Vec<Warning>,
) -> Result<usize> {
    let doc = o.at.doc();
    let compare = compare_from_annotations(o)?;
    let verdict = verdict_from_annotations(o, compare.is_some())?;
    let Some(http) = &vs.http else {
        warnings.push(doc.warning("spec", "no http routes; the VirtualService adds nothing"));
        return Ok(0);
    };
    let base = route_name_base(o, objects);
    let count = http.len();
    let mut added = 0;
    for (i, h) in http.iter().enumerate() {
        let name = match (&h.name, count) {
            (Some(Scalar(n)), _) => format!("{base}.{n}"),
            (None, 1) => base.clone(),
            (None, _) => format!("{base}.{i}"),
        };
        let path = format!("spec.http[{i}]");
        let order = (o.order.0, o.order.1, i * 1000);
        if let Some(d) = &h.delegate {
            added += delegate(o, &path, &name, h, d, hosts, order, objects, sources, warnings)?;
            continue;
        }
        let mut route = http_route(doc, &o.namespace, &path, name, h, hosts, order, compare.as_ref(), warnings)?;
        for mirror in &mut route.mirrors {
            mirror.verdict.clone_from(&verdict);
        }
        sources.routes.push(route);
        added += 1;
    }
    Ok(added)
}

/// A VirtualService's name in route names: qualified by namespace only when another
/// VirtualService has the same name in another namespace (the tutorial's stay `proxy`, `target`).
pub(crate) fn route_name_base(o: &Object, objects: &Objects) -> String {
    let clash = objects
        .items
        .iter()
        .any(|other| other.kind == o.kind && other.group == o.group && other.name == o.name && other.namespace != o.namespace);
    if clash { format!("{}/{}", o.namespace, o.name) } else { o.name.clone() }
}

#[allow(clippy::too_many_arguments)]
fn delegate(
    parent: &Object,
    path: &str,
    name: &str,
    h: &HttpRoute,
    d: &Delegate,
    hosts: &[String],
    order: (usize, usize, usize),
    objects: &Objects,
    sources: &mut Sources,
    warnings: &mut Vec<Warning>,
) -> Result<usize> {
    let doc = parent.at.doc();
    let ns = d.namespace.clone().unwrap_or_else(|| parent.namespace.clone());
    if h.route.is_some() || h.redirect.is_some() || h.direct_response.is_some() {
        return Err(doc.err(&format!("{path}.delegate"), "a route with `delegate` cannot also have route, redirect or directResponse"));
    }
    let child = objects.items.iter().find(|o| matches!(o.spec, Spec::VirtualService(_)) && o.namespace == ns && o.name == d.name);
    let Some(child) = child else {
        warnings.push(doc.warning(
            &format!("{path}.delegate"),
            format!("delegate VirtualService {ns}/{} is not in the configuration; this route serves nothing", d.name),
        ));
        return Ok(0);
    };
    let Spec::VirtualService(child_vs) = &child.spec else { return Ok(0) };
    let cdoc = child.at.doc();
    let compare = compare_from_annotations(child)?.or(compare_from_annotations(parent)?);
    let parent_matches = h
        .matches
        .iter()
        .flatten()
        .enumerate()
        .map(|(j, m)| http_match(doc, &format!("{path}.match[{j}]"), m))
        .collect::<Result<Vec<_>>>()?;
    let mut added = 0;
    let children = child_vs.http.iter().flatten().enumerate();
    let count = child_vs.http.as_ref().map_or(0, Vec::len);
    for (i, c) in children {
        let cpath = format!("spec.http[{i}]");
        if c.delegate.is_some() {
            return Err(cdoc.err(&format!("{cpath}.delegate"), "a delegate VirtualService cannot delegate again (Istio allows one level)"));
        }
        let cname = match (&c.name, count) {
            (Some(Scalar(n)), _) => format!("{name}.{n}"),
            (None, 1) => format!("{name}.{}", child.name),
            (None, _) => format!("{name}.{}.{i}", child.name),
        };
        let mut route =
            http_route(cdoc, &child.namespace, &cpath, cname, c, hosts, (order.0, order.1, order.2 + i), compare.as_ref(), warnings)?;
        if !parent_matches.is_empty() {
            let child_matches = if route.matches.is_empty() { vec![None] } else { route.matches.iter().cloned().map(Some).collect() };
            let mut merged = Vec::new();
            for p in &parent_matches {
                for c in &child_matches {
                    match c {
                        None => merged.push(p.clone()),
                        Some(c) => merged.extend(merge_matches(p, c)),
                    }
                }
            }
            if merged.is_empty() {
                warnings.push(cdoc.warning(
                    &cpath,
                    format!("its matches conflict with every match of the delegating route ({}: {path}); route dropped", doc.label),
                ));
                continue;
            }
            route.matches = merged;
        }
        sources.routes.push(route);
        added += 1;
    }
    Ok(added)
}

/// Istio's delegate rule: a child's match must lie within its parent's; the merged match holds
/// both. `None` when they conflict.
fn merge_matches(parent: &RouteMatch, child: &RouteMatch) -> Option<RouteMatch> {
    let uri = match (&parent.uri, &child.uri) {
        (None, c) => c.clone(),
        (p, None) => p.clone(),
        (Some(StringMatch::Prefix(p)), Some(c @ (StringMatch::Prefix(s) | StringMatch::Exact(s)))) if s.starts_with(p.as_str()) => {
            Some(c.clone())
        }
        (Some(p), Some(c)) if p.source() == c.source() && std::mem::discriminant(p) == std::mem::discriminant(c) => Some(c.clone()),
        _ => return None,
    };
    let same = |a: &Option<StringMatch>, b: &Option<StringMatch>| match (a, b) {
        (None, x) | (x, None) => Some(x.clone()),
        (Some(x), Some(y)) if x.source() == y.source() && std::mem::discriminant(x) == std::mem::discriminant(y) => Some(Some(x.clone())),
        _ => None,
    };
    let authority = same(&parent.authority, &child.authority)?;
    let methods = match (parent.methods.is_empty(), child.methods.is_empty()) {
        (true, _) => child.methods.clone(),
        (_, true) => parent.methods.clone(),
        _ if parent.methods == child.methods => child.methods.clone(),
        _ => return None,
    };
    let mut headers = parent.headers.clone();
    for h in &child.headers {
        match headers.iter().find(|p| p.name == h.name) {
            Some(p) if p.value.source() != h.value.source() => return None,
            Some(_) => {}
            None => headers.push(h.clone()),
        }
    }
    let mut query_params = parent.query_params.clone();
    for q in &child.query_params {
        match query_params.iter().find(|p| p.name == q.name) {
            Some(p) if p.value.source() != q.value.source() => return None,
            Some(_) => {}
            None => query_params.push(q.clone()),
        }
    }
    Some(RouteMatch { uri, methods, headers, authority, query_params, ignore_uri_case: parent.ignore_uri_case || child.ignore_uri_case })
}

pub(crate) fn compare_from_annotations(o: &Object) -> Result<Option<CompareSpec>> {
    let doc = o.at.doc();
    let path = |key: &str| format!("metadata.annotations.{key}");
    let Some(on) = o.annotation(ANNOTATION_COMPARE) else {
        return Ok(None);
    };
    match on {
        "true" => {}
        "false" => return Ok(None),
        other => return Err(doc.err(&path(ANNOTATION_COMPARE), format!("expected true or false, found \"{other}\""))),
    }
    let mut spec = CompareSpec::default();
    if let Some(p) = o.annotation(ANNOTATION_IGNORE_PATHS) {
        for text in p.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            spec.ignore_paths.push(json_path(text).map_err(|e| doc.err(&path(ANNOTATION_IGNORE_PATHS), e))?);
        }
    }
    if let Some(h) = o.annotation(ANNOTATION_IGNORE_HEADERS) {
        for name in h.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            spec.ignore_headers.push(crate::de::header_name(name).map_err(|e| doc.err(&path(ANNOTATION_IGNORE_HEADERS), e))?);
        }
    }
    if let Some(n) = o.annotation(ANNOTATION_NOISE_PERCENT) {
        let p: f64 = n
            .trim()
            .trim_end_matches('%')
            .trim()
            .parse()
            .map_err(|_| doc.err(&path(ANNOTATION_NOISE_PERCENT), format!("expected a number, found \"{n}\"")))?;
        spec.noise_percent = check_percent(p).map_err(|e| doc.err(&path(ANNOTATION_NOISE_PERCENT), e))?;
    }
    Ok(Some(spec))
}

/// The verdict of a VirtualService's mirrors: the defaults when they compare, changed or turned
/// off by the annotation.
fn verdict_from_annotations(o: &Object, compares: bool) -> Result<Option<VerdictSpec>> {
    let doc = o.at.doc();
    let path = format!("metadata.annotations.{ANNOTATION_VERDICT}");
    let Some(text) = o.annotation(ANNOTATION_VERDICT) else {
        return Ok(compares.then(VerdictSpec::default));
    };
    if matches!(text.trim(), "false" | "off") {
        return Ok(None);
    }
    let mut spec = VerdictSpec::default();
    for pair in text.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != "true") {
        let (key, value) = pair.split_once('=').ok_or_else(|| doc.err(&path, format!("\"{pair}\" is not key=value")))?;
        spec.set(key.trim(), value).map_err(|e| doc.err(&path, e))?;
    }
    if !compares {
        return Err(doc.err(&path, format!("a verdict needs {ANNOTATION_COMPARE}: \"true\": the mismatch rate is its main evidence")));
    }
    Ok(Some(spec))
}

#[allow(clippy::too_many_arguments)]
fn http_route(
    doc: Doc<'_>,
    ns: &str,
    path: &str,
    name: String,
    h: &HttpRoute,
    hosts: &[String],
    order: (usize, usize, usize),
    compare: Option<&CompareSpec>,
    warnings: &mut Vec<Warning>,
) -> Result<PendingRoute> {
    let mut matches = Vec::new();
    for (j, m) in h.matches.iter().flatten().enumerate() {
        matches.push(http_match(doc, &format!("{path}.match[{j}]"), m)?);
    }
    let (rewrite_uri, rewrite_authority) = match &h.rewrite {
        Some(r) => (r.uri.as_ref().map(|s| UriRewrite::Istio(s.0.clone())), r.authority.as_ref().map(|s| s.0.clone())),
        None => (None, None),
    };
    let route_path = format!("{path}.route");
    let actions = [h.route.is_some(), h.redirect.is_some(), h.direct_response.is_some()].iter().filter(|a| **a).count();
    if actions > 1 {
        return Err(doc.err(path, "route, redirect and directResponse are exclusive; give one"));
    }
    let answer = match (&h.redirect, &h.direct_response) {
        (Some(r), _) => Some(redirect(doc, &format!("{path}.redirect"), r)?),
        (_, Some(d)) => Some(direct_response(doc, &format!("{path}.directResponse"), d)?),
        _ => None,
    };
    let mut destinations = Vec::new();
    match (&h.route, &answer) {
        (Some(route), _) => {
            for (j, r) in route.iter().enumerate() {
                let dest = destination(doc, ns, &format!("{route_path}[{j}].destination"), &r.destination)?;
                destinations.push((dest, r.weight.map(|w| w.0)));
            }
        }
        (None, Some(_)) => {}
        (None, None) => {
            return Err(doc.err(&route_path, "required key is missing (a route needs route, redirect, directResponse or delegate)"));
        }
    }
    let mut mirrors = Vec::new();
    if let Some(m) = &h.mirror {
        let percent = match (&h.mirror_percentage, &h.mirror_percent) {
            (Some(p), _) => p.value.map_or(0.0, |v| v.0),
            (None, Some(legacy)) => legacy.0,
            (None, None) => 100.0,
        };
        let mirror_path = format!("{path}.mirror");
        mirrors.push(imported_mirror(doc, &mirror_path, destination(doc, ns, &mirror_path, m)?, percent, compare));
    } else {
        if h.mirror_percentage.is_some() {
            warnings.push(doc.warning(&format!("{path}.mirrorPercentage"), "no `mirror` on this route; ignored"));
        }
        if h.mirror_percent.is_some() {
            warnings.push(doc.warning(&format!("{path}.mirror_percent"), "no `mirror` on this route; ignored"));
        }
    }
    for (j, m) in h.mirrors.iter().flatten().enumerate() {
        let mirror_path = format!("{path}.mirrors[{j}]");
        let dest = destination(doc, ns, &format!("{mirror_path}.destination"), &m.destination)?;
        let percent = match &m.percentage {
            Some(p) => p.value.map_or(0.0, |v| v.0),
            None => 100.0,
        };
        mirrors.push(imported_mirror(doc, &mirror_path, dest, percent, compare));
    }
    if answer.is_some() && !mirrors.is_empty() {
        warnings.push(doc.warning(path, "mirrors on a route that answers itself are never sent; ignored"));
        mirrors.clear();
    }
    Ok(PendingRoute {
        promote: None,
        name: Some(name),
        origin: origin(doc, path),
        order,
        hosts: hosts.to_vec(),
        matches,
        rewrite_uri,
        rewrite_authority,
        answer,
        request_headers: h
            .headers
            .as_ref()
            .and_then(|h| h.request.as_ref())
            .map(|r| HeaderOps {
                set: r.set.0.iter().map(|(n, v)| (n.0.clone(), v.0.clone())).collect(),
                add: r.add.0.iter().map(|(n, v)| (n.0.clone(), v.0.clone())).collect(),
                remove: r.remove.iter().map(|n| n.0.clone()).collect(),
            })
            .unwrap_or_default(),
        destinations,
        destinations_origin: origin(doc, &route_path),
        mirrors,
        timeout: h.timeout.map(|t| t.0),
    })
}

fn redirect(doc: Doc<'_>, path: &str, r: &HttpRedirect) -> Result<Answer> {
    let code = r.redirect_code.map_or(301, |c| c.0);
    let status = match code {
        301 => StatusCode::MOVED_PERMANENTLY,
        302 => StatusCode::FOUND,
        303 => StatusCode::SEE_OTHER,
        307 => StatusCode::TEMPORARY_REDIRECT,
        308 => StatusCode::PERMANENT_REDIRECT,
        _ => {
            return Err(doc.err(&format!("{path}.redirectCode"), format!("{code} is not a redirect status (301, 302, 303, 307 or 308)")));
        }
    };
    let (host, port) = match &r.authority {
        Some(a) => {
            let (host, port) = http_rules::split_host_port(a);
            if host.is_empty() || host.contains(':') && !host.contains("::") {
                return Err(doc.err(&format!("{path}.authority"), format!("invalid authority \"{a}\"")));
            }
            (Some(host.to_string()), port)
        }
        None => (None, None),
    };
    if let Some(uri) = &r.uri
        && !uri.starts_with('/')
    {
        return Err(doc.err(&format!("{path}.uri"), format!("\"{uri}\" must start with `/`")));
    }
    Ok(Answer::Redirect(Redirect {
        status,
        scheme: r.scheme.clone(),
        host,
        port: r.port.map(|p| p.0).or(port),
        path: r.uri.clone().map(PathRedirect::Full),
    }))
}

fn direct_response(doc: Doc<'_>, path: &str, d: &DirectResponse) -> Result<Answer> {
    let status = u16::try_from(d.status.0).ok().filter(|s| (200..600).contains(s)).and_then(|s| StatusCode::from_u16(s).ok());
    let Some(status) = status else {
        return Err(doc.err(&format!("{path}.status"), format!("{} is not an HTTP status (200..599)", d.status.0)));
    };
    let body = match &d.body {
        None => Vec::new(),
        Some(DirectBody { string: Some(s), bytes: None }) => s.clone().into_bytes(),
        Some(DirectBody { string: None, bytes: Some(b) }) => {
            base64(b).ok_or_else(|| doc.err(&format!("{path}.body.bytes"), "not valid base64"))?
        }
        Some(_) => return Err(doc.err(&format!("{path}.body"), "give exactly one of string or bytes")),
    };
    Ok(Answer::Direct { status, body })
}

/// Standard base64 (what a protobuf `bytes` field holds in YAML).
fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

fn http_match(doc: Doc<'_>, path: &str, m: &HttpMatch) -> Result<RouteMatch> {
    let mut methods = Vec::new();
    if let Some(MatchSpec(method)) = &m.method {
        match method {
            StringMatch::Exact(text) => methods.push(crate::de::method(text).map_err(|e| doc.err(&format!("{path}.method"), e))?),
            _ => return Err(doc.err(&format!("{path}.method"), "only `exact` method matches are supported")),
        }
    }
    let headers = m
        .headers
        .iter()
        .flat_map(|h| &h.0)
        .map(|(HName(name), Presence(value))| HeaderMatch { name: name.clone(), value: value.clone() })
        .collect();
    let query_params = m
        .query_params
        .iter()
        .flat_map(|q| &q.0)
        .map(|(name, Presence(value))| QueryMatch { name: name.clone(), value: value.clone() })
        .collect();
    let mut uri = m.uri.as_ref().map(|u| u.0.clone());
    if m.ignore_uri_case
        && let Some(StringMatch::Regex(re)) = &uri
    {
        let source = crate::model::regex_source(re).to_string();
        uri = Some(StringMatch::regex(&format!("(?i:{source})")).map_err(|e| doc.err(&format!("{path}.uri"), e.to_string()))?);
    }
    Ok(RouteMatch {
        uri,
        methods,
        headers,
        authority: m.authority.as_ref().map(|a| a.0.clone()),
        query_params,
        ignore_uri_case: m.ignore_uri_case,
    })
}

/// `{host, subset, port: {number}}`; the host qualified by the object's namespace.
fn destination(doc: Doc<'_>, ns: &str, path: &str, d: &Destination) -> Result<DestRef> {
    let host_path = format!("{path}.host");
    if d.host.is_empty() {
        return Err(doc.err(&host_path, "empty host"));
    }
    let subset_path = if d.subset.is_some() { format!("{path}.subset") } else { host_path.clone() };
    Ok(DestRef {
        host: qualify(&d.host, ns),
        written: d.host.clone(),
        subset: d.subset.as_ref().map(|s| s.0.clone()),
        port: d.port.as_ref().and_then(|p| p.number).map(|p| p.0),
        origin: origin(doc, &host_path),
        subset_origin: origin(doc, &subset_path),
        fallback: None,
    })
}

pub(crate) fn imported_mirror(doc: Doc<'_>, path: &str, to: DestRef, percent: f64, compare: Option<&CompareSpec>) -> PendingMirror {
    PendingMirror {
        name: None,
        origin: origin(doc, path),
        to,
        percent,
        sample_header: HeaderName::from_static(DEFAULT_SAMPLE_HEADER),
        timeout: DEFAULT_MIRROR_TIMEOUT,
        max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        max_body_bytes: DEFAULT_MAX_BODY,
        // Istio copies every method.
        methods: MethodSet::All,
        shadow_host_suffix: true,
        set_headers: Vec::new(),
        remove_headers: Vec::new(),
        compare: compare.cloned(),
        verdict: compare.map(|_| VerdictSpec::default()),
    }
}

fn labels(l: &Ordered<Scalar>) -> BTreeMap<String, String> {
    l.0.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect()
}

fn destination_rule(o: &Object, dr: &DestinationRuleSpec, sources: &mut Sources, warnings: &mut Vec<Warning>) {
    let doc = o.at.doc();
    let host = qualify(&dr.host, &o.namespace);
    let rule = format!("{}/{}", o.namespace, o.name);
    let mut tls = |policy: &Option<TrafficPolicy>, path: &str| {
        if let Some(mode) = policy.as_ref().and_then(|p| p.tls.as_ref()).and_then(|t| t.mode.as_deref()) {
            let mode = mode.to_ascii_uppercase();
            if mode == "ISTIO_MUTUAL" {
                // Mesh mTLS is between sidecars; without Istio the workloads have none and
                // take plaintext, which is what this gateway sends.
                warnings.push(doc.warning(path, "ISTIO_MUTUAL is not implemented: there is no mesh mTLS here; requests go in plaintext, as to a workload without a sidecar"));
            }
            sources.tls_rules.push((host.clone(), mode, origin(doc, path)));
        }
    };
    tls(&dr.traffic_policy, "spec.trafficPolicy.tls.mode");
    for (i, s) in dr.subsets.iter().enumerate() {
        tls(&s.traffic_policy, &format!("spec.subsets[{i}].trafficPolicy.tls.mode"));
    }
    for (i, s) in dr.subsets.iter().enumerate() {
        sources.subsets.push(IstioSubset {
            host: host.clone(),
            rule: rule.clone(),
            name: s.name.0.clone(),
            labels: labels(&s.labels),
            origin: origin(doc, &format!("spec.subsets[{i}]")),
        });
    }
}

fn service_entry(o: &Object, spec: &ServiceEntrySpec, sources: &mut Sources, warnings: &mut Vec<Warning>) -> Result<()> {
    let doc = o.at.doc();
    let hosts: Vec<String> = spec.hosts.items.iter().map(|h| qualify(h, &o.namespace)).collect();
    let ports = spec
        .ports
        .iter()
        .map(|p| {
            let name = p.name.as_ref().map(|n| n.0.clone());
            // Istio's protocol, or the port-name convention (`https`, `tls-foo`) when none is given.
            let protocol = p
                .protocol
                .clone()
                .or_else(|| name.as_ref().map(|n| n.split('-').next().unwrap_or("").to_string()))
                .unwrap_or_default()
                .to_ascii_uppercase();
            // h2c for HTTP2 and GRPC (appProtocol first, as Kubernetes), HTTP/1.1 otherwise.
            let http =
                p.app_protocol.as_deref().and_then(Protocol::from_name).or_else(|| Protocol::from_name(&protocol)).unwrap_or_default();
            SePort {
                number: p.number.0,
                tls: matches!(protocol.as_str(), "HTTPS" | "TLS").then_some(protocol),
                name,
                target_port: p.target_port.map(|t| t.0),
                protocol: http,
            }
        })
        .collect();
    let resolution = spec.resolution.as_deref().unwrap_or("NONE").to_ascii_uppercase();
    let mut endpoints = Vec::new();
    for (i, e) in spec.endpoints.iter().enumerate() {
        let address = e.address.trim();
        if address.is_empty() || address.starts_with("unix://") || address.contains('/') {
            return Err(doc.err(
                &format!("spec.endpoints[{i}].address"),
                format!("unsupported address \"{address}\": expected an IP address or DNS name"),
            ));
        }
        endpoints.push(SeEndpoint {
            address: address.trim_start_matches('[').trim_end_matches(']').to_string(),
            ports: e.ports.0.iter().map(|(k, p)| (k.clone(), p.0)).collect(),
            labels: labels(&e.labels),
        });
    }
    match resolution.as_str() {
        "STATIC" => {}
        "DNS" | "DNS_ROUND_ROBIN" => {
            if endpoints.is_empty() {
                // Istio resolves the hosts themselves, as written.
                endpoints = spec
                    .hosts
                    .items
                    .iter()
                    .filter(|h| !h.contains('*'))
                    .map(|h| SeEndpoint { address: h.clone(), ports: BTreeMap::new(), labels: BTreeMap::new() })
                    .collect();
            }
        }
        other => warnings.push(doc.warning(
            if spec.resolution.is_some() { "spec.resolution" } else { "spec" },
            format!("resolution {other} is not implemented (STATIC or DNS); the endpoints listed are used as given"),
        )),
    }
    sources.service_entries.push(ServiceEntry { hosts, ports, endpoints, origin: origin(doc, "spec") });
    Ok(())
}
