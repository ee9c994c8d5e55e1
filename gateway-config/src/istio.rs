//! The Istio front-end: `networking.istio.io` Gateway, VirtualService, DestinationRule and
//! ServiceEntry documents, turned into the same sources as the native format.
//!
//! There is no Kubernetes API here, so ServiceEntries say where workloads are and
//! DestinationRule subsets select their endpoints by label, as Istio does with pods. The serde
//! structs below declare what the gateway implements; every other field a document sets is
//! reported as a [`Warning`] naming it (through `serde_ignored`): nothing is silently ignored.

use std::collections::BTreeMap;

use http::HeaderName;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_norway::Value;

use crate::Warning;
use crate::de::{
    Doc, Dur, HName, MatchSpec, OneOrMany, Ordered, Percent, Port, Result, Scalar, U32, check_json_path, check_percent, typed,
};
use crate::model::{
    CompareSpec, DEFAULT_MAX_BODY, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MIRROR_TIMEOUT, DEFAULT_SAMPLE_HEADER, HeaderMatch, MethodSet,
    RouteMatch, StringMatch,
};
use crate::sources::{DestRef, IstioSubset, Origin, PendingMirror, PendingRoute, SeEndpoint, SePort, ServiceEntry, Sources};

const GROUP: &str = "networking.istio.io/";
const VERSIONS: &[&str] = &["v1alpha3", "v1beta1", "v1"];

/// Annotations on a VirtualService that turn on response comparison for its mirrors.
pub const ANNOTATION_COMPARE: &str = "mirror.gateway/compare";
pub const ANNOTATION_IGNORE_PATHS: &str = "mirror.gateway/compare-ignore-paths";
pub const ANNOTATION_IGNORE_HEADERS: &str = "mirror.gateway/compare-ignore-headers";
pub const ANNOTATION_NOISE_PERCENT: &str = "mirror.gateway/noise-percent";

/// A Kubernetes object of one kind. `metadata` fields other than these (uid, labels, ...) and
/// `status` describe the object, not routing: they are not reported.
#[derive(Deserialize)]
struct Object<S> {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    metadata: Metadata,
    spec: S,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    annotations: Ordered<Scalar>,
}

#[derive(Deserialize)]
struct GatewaySpec {
    // `selector` picks the Envoy deployment in Kubernetes: this process is the gateway.
    #[serde(rename = "selector")]
    _selector: Option<Ordered<Scalar>>,
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
struct VirtualServiceSpec {
    hosts: Option<OneOrMany<String>>,
    #[serde(rename = "gateways")]
    _gateways: Option<OneOrMany<String>>,
    http: Option<Vec<HttpRoute>>,
}

#[derive(Deserialize)]
struct HttpRoute {
    name: Option<Scalar>,
    #[serde(rename = "match")]
    matches: Option<Vec<HttpMatch>>,
    rewrite: Option<Rewrite>,
    route: Option<Vec<RouteDestination>>,
    mirror: Option<Destination>,
    #[serde(rename = "mirrorPercentage")]
    mirror_percentage: Option<PercentValue>,
    #[serde(alias = "mirrorPercent")]
    mirror_percent: Option<Percent>,
    mirrors: Option<Vec<Mirror>>,
    timeout: Option<Dur>,
}

#[derive(Deserialize)]
struct HttpMatch {
    uri: Option<MatchSpec>,
    authority: Option<MatchSpec>,
    method: Option<MatchSpec>,
    headers: Option<Ordered<MatchSpec, HName>>,
    #[serde(rename = "name")]
    _name: Option<Scalar>,
}

#[derive(Deserialize)]
struct Rewrite {
    uri: Option<Scalar>,
    authority: Option<Scalar>,
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
struct DestinationRuleSpec {
    host: String,
    #[serde(default)]
    subsets: Vec<Subset>,
}

#[derive(Deserialize)]
struct Subset {
    name: Scalar,
    #[serde(default)]
    labels: Ordered<Scalar>,
}

#[derive(Deserialize)]
struct ServiceEntrySpec {
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
    #[serde(rename = "protocol")]
    _protocol: Option<String>,
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

/// Adds the documents of one Istio file (index is 1-based position in the stream).
pub(crate) fn load(file: &str, docs: Vec<(usize, Value)>, sources: &mut Sources, warnings: &mut Vec<Warning>) -> Result<()> {
    for (index, value) in docs {
        let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        let kind = text("kind");
        let name = value.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("").to_string();
        let label = match (kind.is_empty(), name.is_empty()) {
            (true, _) => format!("document {index}"),
            (false, true) => format!("document {index} ({kind})"),
            (false, false) => format!("document {index} ({kind} {name})"),
        };
        let doc = Doc { file, label: &label };
        if !value.is_mapping() {
            return Err(doc.err("", format!("expected a mapping, found {}", crate::de::kind_of(&value))));
        }
        let Some(api) = value.get("apiVersion") else {
            return Err(doc.err(
                "",
                "a document without apiVersion in a file of Istio documents \
                 (one file is either native gateway configuration or Istio documents)",
            ));
        };
        let Some(api) = api.as_str() else {
            return Err(doc.err("apiVersion", format!("expected a string, found {}", crate::de::kind_of(api))));
        };
        let Some(version) = api.strip_prefix(GROUP) else {
            warnings.push(doc.warning("", format!("apiVersion \"{api}\" is not {GROUP}*; document ignored")));
            continue;
        };
        if !VERSIONS.contains(&version) {
            return Err(doc.err("apiVersion", format!("unsupported apiVersion \"{api}\" (expected {GROUP}v1alpha3, v1beta1 or v1)")));
        }
        match kind.as_str() {
            "Gateway" => gateway(doc, object(value, doc, warnings)?, warnings),
            "VirtualService" => virtual_service(doc, &name, object(value, doc, warnings)?, sources, warnings)?,
            "DestinationRule" => destination_rule(doc, object(value, doc, warnings)?, sources),
            "ServiceEntry" => service_entry(doc, object(value, doc, warnings)?, sources, warnings)?,
            "" => return Err(doc.err("kind", "required key is missing")),
            other => warnings.push(doc.warning("", format!("kind {other} is not implemented by this gateway; document ignored"))),
        }
    }
    Ok(())
}

/// The typed object; each field it does not declare becomes a warning.
fn object<S: DeserializeOwned>(value: Value, doc: Doc<'_>, warnings: &mut Vec<Warning>) -> Result<Object<S>> {
    let (object, ignored) = typed::<Object<S>>(value, doc)?;
    for path in ignored {
        if path.starts_with("metadata.") || path == "status" || path.starts_with("status.") {
            continue;
        }
        let message = if is_match_condition(&path) {
            "match condition not implemented by this gateway; ignored, so this match is broader than in Istio"
        } else {
            "not implemented by this gateway; ignored"
        };
        warnings.push(doc.warning(&path, message));
    }
    Ok(object)
}

/// `spec.http[0].match[1].queryParams`: a condition inside an HTTP match.
fn is_match_condition(path: &str) -> bool {
    path.rsplit_once('.')
        .is_some_and(|(parent, _)| parent.starts_with("spec.http[") && parent.ends_with(']') && parent.contains("].match["))
}

fn origin(doc: Doc<'_>, path: &str) -> Origin {
    Origin { file: doc.file.to_string(), path: doc.path(path) }
}

fn gateway(doc: Doc<'_>, gw: Object<GatewaySpec>, warnings: &mut Vec<Warning>) {
    for (i, server) in gw.spec.servers.iter().enumerate() {
        if let Some(p) = server.port.as_ref().and_then(|p| p.protocol.as_deref())
            && !matches!(p.to_ascii_uppercase().as_str(), "HTTP" | "HTTP2")
        {
            warnings.push(doc.warning(
                &format!("spec.servers[{i}].port"),
                format!("protocol {p} is not implemented: the gateway serves plain HTTP/1.1 and h2c on its --listen address"),
            ));
        }
        if let Some(hosts) = &server.hosts
            && hosts.items.iter().any(|h| h != "*" && h != "*/*")
        {
            warnings.push(doc.warning(
                &format!("spec.servers[{i}].hosts"),
                "server hosts other than \"*\" are not enforced; VirtualService hosts still select routes",
            ));
        }
    }
}

fn virtual_service(
    doc: Doc<'_>,
    vs_name: &str,
    vs: Object<VirtualServiceSpec>,
    sources: &mut Sources,
    warnings: &mut Vec<Warning>,
) -> Result<()> {
    let hosts = vs.spec.hosts.map(|h| h.items).unwrap_or_default();
    let compare = compare_from_annotations(doc, &vs.metadata)?;
    let Some(http) = vs.spec.http else {
        warnings.push(doc.warning("spec", "no http routes; the VirtualService adds nothing"));
        return Ok(());
    };
    let count = http.len();
    for (i, h) in http.into_iter().enumerate() {
        let name = match (&h.name, count) {
            (Some(Scalar(n)), _) => format!("{vs_name}.{n}"),
            (None, 1) => vs_name.to_string(),
            (None, _) => format!("{vs_name}.{i}"),
        };
        sources.routes.push(http_route(doc, &format!("spec.http[{i}]"), name, h, &hosts, compare.as_ref(), warnings)?);
    }
    Ok(())
}

fn compare_from_annotations(doc: Doc<'_>, meta: &Metadata) -> Result<Option<CompareSpec>> {
    let get = |key: &str| meta.annotations.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.0.as_str());
    let path = |key: &str| format!("metadata.annotations.{key}");
    let Some(on) = get(ANNOTATION_COMPARE) else {
        return Ok(None);
    };
    match on {
        "true" => {}
        "false" => return Ok(None),
        other => return Err(doc.err(&path(ANNOTATION_COMPARE), format!("expected true or false, found \"{other}\""))),
    }
    let mut spec = CompareSpec::default();
    if let Some(p) = get(ANNOTATION_IGNORE_PATHS) {
        for json_path in p.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            check_json_path(json_path).map_err(|e| doc.err(&path(ANNOTATION_IGNORE_PATHS), e))?;
            spec.ignore_paths.push(json_path.to_string());
        }
    }
    if let Some(h) = get(ANNOTATION_IGNORE_HEADERS) {
        for name in h.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            spec.ignore_headers.push(crate::de::header_name(name).map_err(|e| doc.err(&path(ANNOTATION_IGNORE_HEADERS), e))?);
        }
    }
    if let Some(n) = get(ANNOTATION_NOISE_PERCENT) {
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

fn http_route(
    doc: Doc<'_>,
    path: &str,
    name: String,
    h: HttpRoute,
    hosts: &[String],
    compare: Option<&CompareSpec>,
    warnings: &mut Vec<Warning>,
) -> Result<PendingRoute> {
    let mut matches = Vec::new();
    for (j, m) in h.matches.into_iter().flatten().enumerate() {
        matches.push(http_match(doc, &format!("{path}.match[{j}]"), m)?);
    }
    let (rewrite_uri, rewrite_authority) = match h.rewrite {
        Some(r) => (r.uri.map(|s| s.0), r.authority.map(|s| s.0)),
        None => (None, None),
    };
    let route_path = format!("{path}.route");
    let Some(route) = h.route else {
        return Err(doc.err(&route_path, "required key is missing (redirect, directResponse and delegate are not implemented)"));
    };
    let mut destinations = Vec::new();
    for (j, r) in route.into_iter().enumerate() {
        let dest = destination(doc, &format!("{route_path}[{j}].destination"), r.destination)?;
        destinations.push((dest, r.weight.map(|w| w.0)));
    }
    let mut mirrors = Vec::new();
    if let Some(m) = h.mirror {
        let percent = match (h.mirror_percentage, h.mirror_percent) {
            (Some(p), _) => p.value.map_or(0.0, |v| v.0),
            (None, Some(legacy)) => legacy.0,
            (None, None) => 100.0,
        };
        let mirror_path = format!("{path}.mirror");
        mirrors.push(imported_mirror(doc, &mirror_path, destination(doc, &mirror_path, m)?, percent, compare));
    } else {
        if h.mirror_percentage.is_some() {
            warnings.push(doc.warning(&format!("{path}.mirrorPercentage"), "no `mirror` on this route; ignored"));
        }
        if h.mirror_percent.is_some() {
            warnings.push(doc.warning(&format!("{path}.mirror_percent"), "no `mirror` on this route; ignored"));
        }
    }
    for (j, m) in h.mirrors.into_iter().flatten().enumerate() {
        let mirror_path = format!("{path}.mirrors[{j}]");
        let dest = destination(doc, &format!("{mirror_path}.destination"), m.destination)?;
        let percent = match m.percentage {
            Some(p) => p.value.map_or(0.0, |v| v.0),
            None => 100.0,
        };
        mirrors.push(imported_mirror(doc, &mirror_path, dest, percent, compare));
    }
    Ok(PendingRoute {
        name: Some(name),
        origin: origin(doc, path),
        hosts: hosts.to_vec(),
        matches,
        rewrite_uri,
        rewrite_authority,
        destinations,
        destinations_origin: origin(doc, &route_path),
        mirrors,
        timeout: h.timeout.map(|t| t.0),
    })
}

fn http_match(doc: Doc<'_>, path: &str, m: HttpMatch) -> Result<RouteMatch> {
    let mut methods = Vec::new();
    if let Some(MatchSpec(method)) = m.method {
        match method {
            StringMatch::Exact(text) => methods.push(crate::de::method(&text).map_err(|e| doc.err(&format!("{path}.method"), e))?),
            _ => return Err(doc.err(&format!("{path}.method"), "only `exact` method matches are supported")),
        }
    }
    let headers = m.headers.unwrap_or_default().0.into_iter().map(|(HName(name), MatchSpec(value))| HeaderMatch { name, value }).collect();
    Ok(RouteMatch { uri: m.uri.map(|u| u.0), methods, headers, authority: m.authority.map(|a| a.0) })
}

/// `{host, subset, port: {number}}`.
fn destination(doc: Doc<'_>, path: &str, d: Destination) -> Result<DestRef> {
    let host_path = format!("{path}.host");
    if d.host.is_empty() {
        return Err(doc.err(&host_path, "empty host"));
    }
    let subset_path = if d.subset.is_some() { format!("{path}.subset") } else { host_path.clone() };
    Ok(DestRef {
        host: d.host,
        subset: d.subset.map(|s| s.0),
        port: d.port.and_then(|p| p.number).map(|p| p.0),
        origin: origin(doc, &host_path),
        subset_origin: origin(doc, &subset_path),
    })
}

fn imported_mirror(doc: Doc<'_>, path: &str, to: DestRef, percent: f64, compare: Option<&CompareSpec>) -> PendingMirror {
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
    }
}

fn labels(l: Ordered<Scalar>) -> BTreeMap<String, String> {
    l.0.into_iter().map(|(k, v)| (k, v.0)).collect()
}

fn destination_rule(doc: Doc<'_>, dr: Object<DestinationRuleSpec>, sources: &mut Sources) {
    for (i, s) in dr.spec.subsets.into_iter().enumerate() {
        sources.subsets.push(IstioSubset {
            host: dr.spec.host.clone(),
            name: s.name.0,
            labels: labels(s.labels),
            origin: origin(doc, &format!("spec.subsets[{i}]")),
        });
    }
}

fn service_entry(doc: Doc<'_>, se: Object<ServiceEntrySpec>, sources: &mut Sources, warnings: &mut Vec<Warning>) -> Result<()> {
    let spec = se.spec;
    let hosts = spec.hosts.items;
    let ports = spec
        .ports
        .into_iter()
        .map(|p| SePort { number: p.number.0, name: p.name.map(|n| n.0), target_port: p.target_port.map(|t| t.0) })
        .collect();
    let resolution = spec.resolution.as_deref().unwrap_or("NONE").to_ascii_uppercase();
    let mut endpoints = Vec::new();
    for (i, e) in spec.endpoints.into_iter().enumerate() {
        let address = e.address.trim();
        if address.is_empty() || address.starts_with("unix://") || address.contains('/') {
            return Err(doc.err(
                &format!("spec.endpoints[{i}].address"),
                format!("unsupported address \"{address}\": expected an IP address or DNS name"),
            ));
        }
        endpoints.push(SeEndpoint {
            address: address.trim_start_matches('[').trim_end_matches(']').to_string(),
            ports: e.ports.0.into_iter().map(|(k, p)| (k, p.0)).collect(),
            labels: labels(e.labels),
        });
    }
    match resolution.as_str() {
        "STATIC" => {}
        "DNS" | "DNS_ROUND_ROBIN" => {
            if endpoints.is_empty() {
                // Istio resolves the hosts themselves.
                endpoints = hosts
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
