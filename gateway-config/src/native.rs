//! The native front-end: the gateway's own YAML, as specified in `docs/CONTRACT.md`.
//! Unknown keys are errors naming the key; defaults (`defaults.mirror`) apply within the file.

use std::collections::BTreeMap;
use std::time::Duration;

use http::HeaderName;
use serde_yaml::Value;

use crate::ConfigError;
use crate::model::{
    CompareSpec, DEFAULT_MAX_BODY, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MIRROR_TIMEOUT, DEFAULT_SAMPLE_HEADER, Endpoint, HeaderMatch, MethodSet,
    RouteMatch, StringMatch,
};
use crate::sources::{DestRef, NativeService, NativeShape, Origin, PendingMirror, PendingRoute, Sources};
use crate::yaml::{Node, Result};

/// Mirror settings a file may change for all its mirrors.
#[derive(Clone)]
struct MirrorDefaults {
    timeout: Duration,
    max_in_flight: usize,
    max_body_bytes: usize,
    methods: MethodSet,
    sample_header: HeaderName,
    shadow_host_suffix: bool,
}

impl Default for MirrorDefaults {
    fn default() -> Self {
        MirrorDefaults {
            timeout: DEFAULT_MIRROR_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_body_bytes: DEFAULT_MAX_BODY,
            methods: MethodSet::Safe,
            sample_header: HeaderName::from_static(DEFAULT_SAMPLE_HEADER),
            shadow_host_suffix: true,
        }
    }
}

/// Adds one native document to `sources`.
pub(crate) fn load(file: &str, doc: &str, value: &Value, sources: &mut Sources) -> Result<()> {
    let root = Node::root(value, file, doc);
    if !root.is_mapping() {
        return Err(root.err(format!("expected a mapping with `services` and `routes`, found {}", crate::yaml::kind_of(value))));
    }
    root.deny_unknown(&["services", "routes", "defaults"])?;

    let mut defaults = MirrorDefaults::default();
    if let Some(d) = root.get("defaults") {
        d.deny_unknown(&["mirror"])?;
        if let Some(m) = d.get("mirror") {
            defaults = mirror_defaults(&m)?;
        }
    }
    if let Some(services) = root.get("services") {
        for (host, node) in services.entries()? {
            sources.services.push(service(host, &node)?);
        }
    }
    if let Some(routes) = root.get("routes") {
        for r in routes.seq()? {
            sources.routes.push(route(&r, &defaults)?);
        }
    }
    Ok(())
}

fn origin(node: &Node<'_>) -> Origin {
    Origin { file: node.file.to_string(), path: node.path() }
}

fn service(host: String, node: &Node<'_>) -> Result<NativeService> {
    if host.is_empty() || host.contains('/') {
        return Err(node.err(format!("invalid host name \"{host}\"")));
    }
    let shape = if node.is_mapping() {
        let mut subsets = BTreeMap::new();
        for (subset, eps) in node.entries()? {
            if subset.is_empty() || subset.contains('/') {
                return Err(eps.err(format!("invalid subset name \"{subset}\"")));
            }
            subsets.insert(subset, endpoints(&eps)?);
        }
        NativeShape::Subsets(subsets)
    } else {
        NativeShape::Plain(endpoints(node)?)
    };
    Ok(NativeService { host, origin: origin(node), shape })
}

fn endpoints(node: &Node<'_>) -> Result<Vec<Endpoint>> {
    node.one_or_many()?
        .iter()
        .map(|n| {
            let text = n.str()?;
            parse_endpoint(text).map_err(|e| n.err(format!("bad endpoint \"{text}\": {e}")))
        })
        .collect()
}

/// `host:port` or `[v6]:port`.
pub(crate) fn parse_endpoint(text: &str) -> std::result::Result<Endpoint, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or("expected [address]:port for IPv6")?;
        (h, p)
    } else {
        text.rsplit_once(':').ok_or("expected host:port")?
    };
    if host.is_empty() || host.contains(['/', ' ', '[', ']']) {
        return Err("invalid host".into());
    }
    let port: u16 = port.parse().map_err(|_| format!("invalid port \"{port}\""))?;
    if port == 0 {
        return Err("port 0 is not a valid port".into());
    }
    Ok(Endpoint { host: host.to_string(), port })
}

fn route(node: &Node<'_>, defaults: &MirrorDefaults) -> Result<PendingRoute> {
    node.deny_unknown(&["name", "hosts", "match", "rewrite", "to", "timeout", "mirror", "mirrors"])?;
    let name = node.get("name").map(|n| n.scalar()).transpose()?;
    let hosts = match node.get("hosts") {
        Some(h) => h.one_or_many()?.iter().map(|h| h.str().map(str::to_string)).collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let matches = match node.get("match") {
        Some(m) => m.one_or_many()?.iter().map(route_match).collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let (rewrite_uri, rewrite_authority) = match node.get("rewrite") {
        None => (None, None),
        Some(r) if r.is_mapping() => {
            r.deny_unknown(&["uri", "authority"])?;
            (r.get("uri").map(|u| u.scalar()).transpose()?, r.get("authority").map(|a| a.scalar()).transpose()?)
        }
        Some(r) => (Some(r.scalar()?), None),
    };
    let to = node.require("to")?;
    let mut destinations = Vec::new();
    for item in to.one_or_many()? {
        if item.is_mapping() {
            item.deny_unknown(&["to", "weight"])?;
            let dest = dest_ref(&item.require("to")?)?;
            let weight = item.get("weight").map(|w| w.u32()).transpose()?;
            destinations.push((dest, weight));
        } else {
            destinations.push((dest_ref(&item)?, None));
        }
    }
    let mut mirrors = Vec::new();
    if let Some(m) = node.get("mirror") {
        mirrors.push(mirror(&m, defaults)?);
    }
    if let Some(ms) = node.get("mirrors") {
        for m in ms.seq()? {
            mirrors.push(mirror(&m, defaults)?);
        }
    }
    Ok(PendingRoute {
        name,
        origin: origin(node),
        hosts,
        matches,
        rewrite_uri,
        rewrite_authority,
        destinations,
        destinations_origin: origin(&to),
        mirrors,
        timeout: node.get("timeout").map(|t| t.duration()).transpose()?,
    })
}

fn route_match(node: &Node<'_>) -> Result<RouteMatch> {
    node.deny_unknown(&["prefix", "exact", "regex", "methods", "headers", "authority"])?;
    let mut uri = None;
    for kind in ["prefix", "exact", "regex"] {
        if let Some(v) = node.get(kind) {
            if uri.is_some() {
                return Err(v.err("a match takes at most one of prefix, exact or regex"));
            }
            let text = v.scalar()?;
            uri = Some(match kind {
                "prefix" => StringMatch::Prefix(text),
                "exact" => StringMatch::Exact(text),
                _ => StringMatch::regex(&text).map_err(|e| v.err(format!("bad regex \"{text}\": {}", crate::yaml::one_line(&e))))?,
            });
        }
    }
    let methods = match node.get("methods") {
        Some(m) => m.one_or_many()?.iter().map(|m| m.method()).collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let mut headers = Vec::new();
    if let Some(h) = node.get("headers") {
        for (name, value) in h.entries()? {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| value.err(format!("invalid header name \"{name}\"")))?;
            headers.push(HeaderMatch { name, value: bare_or_match(&value)? });
        }
    }
    let authority = node.get("authority").map(|a| bare_or_match(&a)).transpose()?;
    Ok(RouteMatch { uri, methods, headers, authority })
}

/// A bare string means an exact match.
fn bare_or_match(node: &Node<'_>) -> Result<StringMatch> {
    if node.is_mapping() { node.string_match() } else { Ok(StringMatch::Exact(node.scalar()?)) }
}

/// `host` or `host/subset`.
fn dest_ref(node: &Node<'_>) -> Result<DestRef> {
    let text = node.str()?;
    let (host, subset) = match text.split_once('/') {
        Some((h, s)) => (h, Some(s)),
        None => (text, None),
    };
    if host.is_empty() || subset.is_some_and(|s| s.is_empty() || s.contains('/')) {
        return Err(node.err(format!("invalid destination \"{text}\": expected host or host/subset")));
    }
    Ok(DestRef {
        host: host.to_string(),
        subset: subset.map(str::to_string),
        port: None,
        origin: origin(node),
        subset_origin: origin(node),
    })
}

fn methods(node: &Node<'_>) -> Result<MethodSet> {
    if let Some(s) = node.v.as_str() {
        return match s.to_ascii_lowercase().as_str() {
            "safe" => Ok(MethodSet::Safe),
            "all" => Ok(MethodSet::All),
            _ => Ok(MethodSet::List(vec![node.method()?])),
        };
    }
    Ok(MethodSet::List(node.seq()?.iter().map(|m| m.method()).collect::<Result<_>>()?))
}

fn mirror_defaults(node: &Node<'_>) -> Result<MirrorDefaults> {
    node.deny_unknown(&["timeout", "max_in_flight", "max_body", "methods", "sample_header", "shadow_host"])?;
    let mut d = MirrorDefaults::default();
    apply_common(node, &mut d)?;
    Ok(d)
}

/// The settings a mirror shares with `defaults.mirror`.
fn apply_common(node: &Node<'_>, d: &mut MirrorDefaults) -> Result<()> {
    if let Some(t) = node.get("timeout") {
        d.timeout = t.duration()?;
    }
    if let Some(n) = node.get("max_in_flight") {
        d.max_in_flight = n.usize()?;
    }
    if let Some(n) = node.get("max_body") {
        d.max_body_bytes = n.size()?;
    }
    if let Some(m) = node.get("methods") {
        d.methods = methods(&m)?;
    }
    if let Some(h) = node.get("sample_header") {
        d.sample_header = h.header_name()?;
    }
    if let Some(b) = node.get("shadow_host") {
        d.shadow_host_suffix = b.bool()?;
    }
    Ok(())
}

fn mirror(node: &Node<'_>, defaults: &MirrorDefaults) -> Result<PendingMirror> {
    if !node.is_mapping() {
        let to = dest_ref(node)?;
        return Ok(pending_mirror(None, origin(node), to, 100.0, defaults.clone()));
    }
    node.deny_unknown(&[
        "to",
        "name",
        "percent",
        "timeout",
        "max_in_flight",
        "max_body",
        "methods",
        "shadow_host",
        "sample_header",
        "headers",
        "compare",
    ])?;
    let to = dest_ref(&node.require("to")?)?;
    let name = node.get("name").map(|n| n.scalar()).transpose()?;
    let percent = node.get("percent").map(|p| p.percent()).transpose()?;
    let mut settings = defaults.clone();
    apply_common(node, &mut settings)?;
    let mut m = pending_mirror(name, origin(node), to, percent.unwrap_or(100.0), settings);
    if let Some(h) = node.get("headers") {
        h.deny_unknown(&["set", "remove"])?;
        if let Some(set) = h.get("set") {
            for (name, value) in set.entries()? {
                let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| value.err(format!("invalid header name \"{name}\"")))?;
                m.set_headers.push((header, value.header_value()?));
            }
        }
        if let Some(remove) = h.get("remove") {
            for r in remove.one_or_many()? {
                m.remove_headers.push(r.header_name()?);
            }
        }
    }
    if let Some(c) = node.get("compare") {
        m.compare = compare(&c)?;
    }
    Ok(m)
}

fn pending_mirror(name: Option<String>, origin: Origin, to: DestRef, percent: f64, d: MirrorDefaults) -> PendingMirror {
    PendingMirror {
        name,
        origin,
        to,
        percent,
        sample_header: d.sample_header,
        timeout: d.timeout,
        max_in_flight: d.max_in_flight,
        max_body_bytes: d.max_body_bytes,
        methods: d.methods,
        shadow_host_suffix: d.shadow_host_suffix,
        set_headers: Vec::new(),
        remove_headers: Vec::new(),
        compare: None,
    }
}

/// `compare: true` (defaults), `false`, or the settings.
fn compare(node: &Node<'_>) -> std::result::Result<Option<CompareSpec>, ConfigError> {
    if !node.is_mapping() {
        return Ok(node.bool()?.then(CompareSpec::default));
    }
    node.deny_unknown(&["ignore_headers", "ignore_paths", "max_body", "noise_percent", "redact_bodies"])?;
    let mut spec = CompareSpec::default();
    if let Some(h) = node.get("ignore_headers") {
        for n in h.one_or_many()? {
            spec.ignore_headers.push(n.header_name()?);
        }
    }
    if let Some(p) = node.get("ignore_paths") {
        for n in p.one_or_many()? {
            spec.ignore_paths.push(json_path(&n)?);
        }
    }
    if let Some(m) = node.get("max_body") {
        spec.max_body_bytes = m.size()?;
    }
    if let Some(n) = node.get("noise_percent") {
        spec.noise_percent = n.percent()?;
    }
    if let Some(r) = node.get("redact_bodies") {
        spec.redact_bodies = r.bool()?;
    }
    Ok(Some(spec))
}

/// A JSON path to ignore in comparisons: must start with `$`.
pub(crate) fn json_path(node: &Node<'_>) -> Result<String> {
    let p = node.str()?.trim();
    check_json_path(p).map_err(|e| node.err(e))?;
    Ok(p.to_string())
}

pub(crate) fn check_json_path(p: &str) -> std::result::Result<(), String> {
    if p.starts_with('$') { Ok(()) } else { Err(format!("invalid JSON path \"{p}\": must start with `$`, e.g. $.timestamp")) }
}
