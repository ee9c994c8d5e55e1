//! The Istio front-end: `networking.istio.io` Gateway, VirtualService, DestinationRule and
//! ServiceEntry documents, turned into the same sources as the native format.
//!
//! There is no Kubernetes API here, so ServiceEntries say where workloads are and
//! DestinationRule subsets select their endpoints by label, as Istio does with pods. Every field
//! the gateway does not implement becomes a [`Warning`] naming it: nothing is silently ignored.

use std::collections::BTreeMap;

use http::HeaderName;
use serde_yaml::Value;

use crate::Warning;
use crate::model::{
    CompareSpec, DEFAULT_MAX_BODY, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MIRROR_TIMEOUT, DEFAULT_SAMPLE_HEADER, HeaderMatch, MethodSet,
    RouteMatch, StringMatch,
};
use crate::native::check_json_path;
use crate::sources::{DestRef, IstioSubset, Origin, PendingMirror, PendingRoute, SeEndpoint, SePort, ServiceEntry, Sources};
use crate::yaml::{Node, Result};

const GROUP: &str = "networking.istio.io/";
const VERSIONS: &[&str] = &["v1alpha3", "v1beta1", "v1"];

/// Annotations on a VirtualService that turn on response comparison for its mirrors.
pub const ANNOTATION_COMPARE: &str = "mirror.gateway/compare";
pub const ANNOTATION_IGNORE_PATHS: &str = "mirror.gateway/compare-ignore-paths";
pub const ANNOTATION_IGNORE_HEADERS: &str = "mirror.gateway/compare-ignore-headers";
pub const ANNOTATION_NOISE_PERCENT: &str = "mirror.gateway/noise-percent";

/// Adds the documents of one Istio file (index is 1-based position in the stream).
pub(crate) fn load(file: &str, docs: &[(usize, Value)], sources: &mut Sources, warnings: &mut Vec<Warning>) -> Result<()> {
    for (index, doc) in docs {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = doc.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("");
        let label = match (kind.is_empty(), name.is_empty()) {
            (true, _) => format!("document {index}"),
            (false, true) => format!("document {index} ({kind})"),
            (false, false) => format!("document {index} ({kind} {name})"),
        };
        let root = Node::root(doc, file, &label);
        let Some(api) = root.get("apiVersion") else {
            return Err(root.err(
                "a document without apiVersion in a file of Istio documents \
                 (one file is either native gateway configuration or Istio documents)",
            ));
        };
        let api = api.str()?;
        let Some(version) = api.strip_prefix(GROUP) else {
            warnings.push(api_warning(&root, api));
            continue;
        };
        if !VERSIONS.contains(&version) {
            return Err(root
                .get("apiVersion")
                .unwrap_or(root.clone())
                .err(format!("unsupported apiVersion \"{api}\" (expected {GROUP}v1alpha3, v1beta1 or v1)")));
        }
        root.warn_unhandled(&["apiVersion", "kind", "metadata", "spec"], warnings);
        if let Some(meta) = root.get("metadata")
            && !meta.is_mapping()
        {
            return Err(meta.err("expected a mapping"));
        }
        let spec = root.require("spec")?;
        if !spec.is_mapping() {
            return Err(spec.err("expected a mapping"));
        }
        match kind {
            "Gateway" => gateway(&spec, warnings)?,
            "VirtualService" => virtual_service(&root, &spec, name, sources, warnings)?,
            "DestinationRule" => destination_rule(&spec, sources, warnings)?,
            "ServiceEntry" => service_entry(&spec, sources, warnings)?,
            "" => return Err(root.missing("kind")),
            other => warnings.push(root.warning(format!("kind {other} is not implemented by this gateway; document ignored"))),
        }
    }
    Ok(())
}

fn api_warning(root: &Node<'_>, api: &str) -> Warning {
    root.warning(format!("apiVersion \"{api}\" is not {GROUP}*; document ignored"))
}

fn origin(node: &Node<'_>) -> Origin {
    Origin { file: node.file.to_string(), path: node.path() }
}

fn strings(node: &Node<'_>) -> Result<Vec<String>> {
    node.one_or_many()?.iter().map(|n| n.str().map(str::to_string)).collect()
}

fn gateway(spec: &Node<'_>, warnings: &mut Vec<Warning>) -> Result<()> {
    // `selector` picks the Envoy deployment in Kubernetes: this process is the gateway.
    spec.warn_unhandled(&["selector", "servers"], warnings);
    if let Some(servers) = spec.get("servers") {
        for server in servers.seq()? {
            server.warn_unhandled(&["port", "hosts", "name"], warnings);
            if let Some(port) = server.get("port") {
                port.warn_unhandled(&["number", "name", "protocol", "targetPort"], warnings);
                if let Some(p) = port.get("protocol") {
                    let p = p.str()?;
                    if !matches!(p.to_ascii_uppercase().as_str(), "HTTP" | "HTTP2") {
                        warnings.push(p_warning(&port, p));
                    }
                }
            }
            if let Some(hosts) = server.get("hosts") {
                let hosts = strings(&hosts)?;
                if hosts.iter().any(|h| h != "*" && h != "*/*") {
                    warnings.push(server.get("hosts").unwrap_or(server.clone()).warning(
                        "server hosts other than \"*\" are not enforced; \
                         VirtualService hosts still select routes",
                    ));
                }
            }
        }
    }
    Ok(())
}

fn p_warning(port: &Node<'_>, protocol: &str) -> Warning {
    port.warning(format!("protocol {protocol} is not implemented: the gateway serves plain HTTP/1.1 and h2c on its --listen address"))
}

fn virtual_service(root: &Node<'_>, spec: &Node<'_>, vs_name: &str, sources: &mut Sources, warnings: &mut Vec<Warning>) -> Result<()> {
    spec.warn_unhandled(&["hosts", "gateways", "http"], warnings);
    let hosts = match spec.get("hosts") {
        Some(h) => strings(&h)?,
        None => Vec::new(),
    };
    let compare = compare_from_annotations(root)?;
    let Some(http) = spec.get("http") else {
        warnings.push(spec.warning("no http routes; the VirtualService adds nothing"));
        return Ok(());
    };
    let http = http.seq()?;
    let count = http.len();
    for (i, h) in http.iter().enumerate() {
        let route = http_route(h, i, count, vs_name, &hosts, compare.as_ref(), warnings)?;
        sources.routes.push(route);
    }
    Ok(())
}

fn compare_from_annotations(root: &Node<'_>) -> Result<Option<CompareSpec>> {
    let Some(annotations) = root.get("metadata").and_then(|m| m.get("annotations")) else {
        return Ok(None);
    };
    let Some(on) = annotations.get(ANNOTATION_COMPARE) else {
        return Ok(None);
    };
    if !on.bool()? {
        return Ok(None);
    }
    let mut spec = CompareSpec::default();
    if let Some(p) = annotations.get(ANNOTATION_IGNORE_PATHS) {
        for path in p.str()?.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            check_json_path(path).map_err(|e| p.err(e))?;
            spec.ignore_paths.push(path.to_string());
        }
    }
    if let Some(h) = annotations.get(ANNOTATION_IGNORE_HEADERS) {
        for name in h.str()?.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            spec.ignore_headers
                .push(HeaderName::from_bytes(name.as_bytes()).map_err(|_| h.err(format!("invalid header name \"{name}\"")))?);
        }
    }
    if let Some(n) = annotations.get(ANNOTATION_NOISE_PERCENT) {
        spec.noise_percent = n.percent()?;
    }
    Ok(Some(spec))
}

fn http_route(
    h: &Node<'_>,
    index: usize,
    count: usize,
    vs_name: &str,
    hosts: &[String],
    compare: Option<&CompareSpec>,
    warnings: &mut Vec<Warning>,
) -> Result<PendingRoute> {
    h.warn_unhandled(
        &["name", "match", "rewrite", "route", "mirror", "mirrors", "mirrorPercentage", "mirror_percent", "mirrorPercent", "timeout"],
        warnings,
    );
    let http_name = h.get("name").map(|n| n.scalar()).transpose()?;
    let name = match (http_name, count) {
        (Some(n), _) => format!("{vs_name}.{n}"),
        (None, 1) => vs_name.to_string(),
        (None, _) => format!("{vs_name}.{index}"),
    };
    let matches = match h.get("match") {
        Some(m) => m.seq()?.iter().map(|m| http_match(m, warnings)).collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let (mut rewrite_uri, mut rewrite_authority) = (None, None);
    if let Some(r) = h.get("rewrite") {
        r.warn_unhandled(&["uri", "authority"], warnings);
        rewrite_uri = r.get("uri").map(|u| u.scalar()).transpose()?;
        rewrite_authority = r.get("authority").map(|a| a.scalar()).transpose()?;
    }
    let route =
        h.get("route").ok_or_else(|| h.missing("route").with_hint("(redirect, directResponse and delegate are not implemented)"))?;
    let mut destinations = Vec::new();
    for r in route.seq()? {
        r.warn_unhandled(&["destination", "weight"], warnings);
        let dest = destination(&r.require("destination")?, warnings)?;
        let weight = r.get("weight").map(|w| w.u32()).transpose()?;
        destinations.push((dest, weight));
    }
    let mut mirrors = Vec::new();
    if let Some(m) = h.get("mirror") {
        let percent = match (h.get("mirrorPercentage"), h.get("mirror_percent").or_else(|| h.get("mirrorPercent"))) {
            (Some(p), _) => {
                p.warn_unhandled(&["value"], warnings);
                p.get("value").map(|v| v.percent()).transpose()?.unwrap_or(0.0)
            }
            (None, Some(legacy)) => legacy.percent()?,
            (None, None) => 100.0,
        };
        mirrors.push(imported_mirror(&m, destination(&m, warnings)?, percent, compare));
    } else {
        for key in ["mirrorPercentage", "mirror_percent", "mirrorPercent"] {
            if let Some(p) = h.get(key) {
                warnings.push(p.warning("no `mirror` on this route; ignored"));
            }
        }
    }
    if let Some(ms) = h.get("mirrors") {
        for m in ms.seq()? {
            m.warn_unhandled(&["destination", "percentage"], warnings);
            let dest = destination(&m.require("destination")?, warnings)?;
            let percent = match m.get("percentage") {
                Some(p) => {
                    p.warn_unhandled(&["value"], warnings);
                    p.get("value").map(|v| v.percent()).transpose()?.unwrap_or(0.0)
                }
                None => 100.0,
            };
            mirrors.push(imported_mirror(&m, dest, percent, compare));
        }
    }
    Ok(PendingRoute {
        name: Some(name),
        origin: origin(h),
        hosts: hosts.to_vec(),
        matches,
        rewrite_uri,
        rewrite_authority,
        destinations,
        destinations_origin: origin(&route),
        mirrors,
        timeout: h.get("timeout").map(|t| t.duration()).transpose()?,
    })
}

impl crate::ConfigError {
    fn with_hint(mut self, hint: &str) -> Self {
        self.message = format!("{} {hint}", self.message);
        self
    }
}

fn http_match(m: &Node<'_>, warnings: &mut Vec<Warning>) -> Result<RouteMatch> {
    if !m.is_mapping() {
        return Err(m.err("expected a mapping"));
    }
    for (key, child) in m.entries()? {
        if !["uri", "authority", "method", "headers", "name"].contains(&key.as_str()) {
            warnings
                .push(child.warning("match condition not implemented by this gateway; ignored, so this match is broader than in Istio"));
        }
    }
    let uri = m.get("uri").map(|u| u.string_match()).transpose()?;
    let authority = m.get("authority").map(|a| a.string_match()).transpose()?;
    let mut methods = Vec::new();
    if let Some(method) = m.get("method") {
        match method.string_match()? {
            StringMatch::Exact(text) => {
                let upper = text.to_ascii_uppercase();
                methods.push(http::Method::from_bytes(upper.as_bytes()).map_err(|_| method.err(format!("invalid method \"{text}\"")))?);
            }
            _ => return Err(method.err("only `exact` method matches are supported")),
        }
    }
    let mut headers = Vec::new();
    if let Some(h) = m.get("headers") {
        for (name, value) in h.entries()? {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| value.err(format!("invalid header name \"{name}\"")))?;
            headers.push(HeaderMatch { name: header, value: value.string_match()? });
        }
    }
    Ok(RouteMatch { uri, methods, headers, authority })
}

/// `{host, subset, port: {number}}`.
fn destination(d: &Node<'_>, warnings: &mut Vec<Warning>) -> Result<DestRef> {
    if !d.is_mapping() {
        return Err(d.err("expected a mapping with host, subset, port"));
    }
    d.warn_unhandled(&["host", "subset", "port"], warnings);
    let host_node = d.require("host")?;
    let host = host_node.str()?.to_string();
    if host.is_empty() {
        return Err(host_node.err("empty host"));
    }
    let subset_node = d.get("subset");
    let subset = subset_node.as_ref().map(|s| s.scalar()).transpose()?;
    let port = match d.get("port") {
        Some(p) => {
            p.warn_unhandled(&["number"], warnings);
            p.get("number").map(|n| n.port()).transpose()?
        }
        None => None,
    };
    Ok(DestRef { host, subset, port, origin: origin(&host_node), subset_origin: origin(subset_node.as_ref().unwrap_or(&host_node)) })
}

fn imported_mirror(node: &Node<'_>, to: DestRef, percent: f64, compare: Option<&CompareSpec>) -> PendingMirror {
    PendingMirror {
        name: None,
        origin: origin(node),
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

fn labels(node: &Node<'_>) -> Result<BTreeMap<String, String>> {
    node.entries()?.into_iter().map(|(k, v)| Ok((k, v.scalar()?))).collect()
}

fn destination_rule(spec: &Node<'_>, sources: &mut Sources, warnings: &mut Vec<Warning>) -> Result<()> {
    spec.warn_unhandled(&["host", "subsets"], warnings);
    let host = spec.require("host")?.str()?.to_string();
    if let Some(subsets) = spec.get("subsets") {
        for s in subsets.seq()? {
            s.warn_unhandled(&["name", "labels"], warnings);
            let name = s.require("name")?.scalar()?;
            let labels = match s.get("labels") {
                Some(l) => labels(&l)?,
                None => BTreeMap::new(),
            };
            sources.subsets.push(IstioSubset { host: host.clone(), name, labels, origin: origin(&s) });
        }
    }
    Ok(())
}

fn service_entry(spec: &Node<'_>, sources: &mut Sources, warnings: &mut Vec<Warning>) -> Result<()> {
    spec.warn_unhandled(&["hosts", "ports", "resolution", "endpoints", "location"], warnings);
    let hosts = strings(&spec.require("hosts")?)?;
    let mut ports = Vec::new();
    if let Some(ps) = spec.get("ports") {
        for p in ps.seq()? {
            p.warn_unhandled(&["number", "name", "protocol", "targetPort"], warnings);
            ports.push(SePort {
                number: p.require("number")?.port()?,
                name: p.get("name").map(|n| n.scalar()).transpose()?,
                target_port: p.get("targetPort").map(|t| t.port()).transpose()?,
            });
        }
    }
    let resolution = match spec.get("resolution") {
        Some(r) => r.str()?.to_ascii_uppercase(),
        None => "NONE".to_string(),
    };
    let mut endpoints = Vec::new();
    if let Some(eps) = spec.get("endpoints") {
        for e in eps.seq()? {
            e.warn_unhandled(&["address", "ports", "labels"], warnings);
            let address_node = e.require("address")?;
            let address = address_node.str()?.trim();
            if address.is_empty() || address.starts_with("unix://") || address.contains('/') {
                return Err(address_node.err(format!("unsupported address \"{address}\": expected an IP address or DNS name")));
            }
            let mut eps_ports = BTreeMap::new();
            if let Some(ps) = e.get("ports") {
                for (name, n) in ps.entries()? {
                    eps_ports.insert(name, n.port()?);
                }
            }
            endpoints.push(SeEndpoint {
                address: address.trim_start_matches('[').trim_end_matches(']').to_string(),
                ports: eps_ports,
                labels: match e.get("labels") {
                    Some(l) => labels(&l)?,
                    None => BTreeMap::new(),
                },
            });
        }
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
        other => {
            let node = spec.get("resolution").unwrap_or(spec.clone());
            warnings.push(
                node.warning(format!("resolution {other} is not implemented (STATIC or DNS); the endpoints listed are used as given")),
            );
        }
    }
    sources.service_entries.push(ServiceEntry { hosts, ports, endpoints, origin: origin(spec) });
    Ok(())
}
