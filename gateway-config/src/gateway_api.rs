//! The Kubernetes Gateway API front-end: `gateway.networking.k8s.io` `Gateway` and `HTTPRoute`,
//! loaded into the same routing model as Istio's objects.
//!
//! Gateway API semantics kept here: a route attaches to a Gateway through `parentRefs` (and the
//! listener's `allowedRoutes`: the Gateway's own namespace unless it says `All`); its
//! hostnames are intersected with the listener's; rules are ordered by the specification's
//! precedence (exact path, longest prefix, method, most header matches, most query matches,
//! then the oldest route), not by position; `PathPrefix` matches whole path segments; a
//! `Service` backend is `name.namespace.svc.cluster.local`, resolved like any host (a
//! ServiceEntry or native service), else by its cluster DNS name `name.namespace.svc`.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use http::StatusCode;
use serde::Deserialize;

use crate::de::{Dur, HName, HValue, MethodName, Percent, Port, Result, U32, check_percent};
use crate::istio::{compare_from_annotations, imported_mirror, qualify, route_name_base};
use crate::k8s::{Object, Objects, Spec};
use crate::model::{Answer, HeaderMatch, PathRedirect, QueryMatch, Redirect, RouteMatch, StringMatch, UriRewrite};
use crate::sources::{DestRef, HostPort, Origin, PendingRoute, Sources};
use crate::{LoadOptions, Notes, Warning};
use http_rules::host_matches;

#[derive(Deserialize)]
pub(crate) struct GatewaySpec {
    #[serde(rename = "gatewayClassName")]
    _class: Option<String>,
    #[serde(default)]
    listeners: Vec<Listener>,
}

#[derive(Deserialize)]
struct Listener {
    name: Option<String>,
    hostname: Option<String>,
    #[serde(rename = "port")]
    _port: Option<Port>,
    protocol: Option<String>,
    #[serde(rename = "allowedRoutes")]
    allowed_routes: Option<AllowedRoutes>,
}

#[derive(Deserialize)]
struct AllowedRoutes {
    namespaces: Option<RouteNamespaces>,
}

#[derive(Deserialize)]
struct RouteNamespaces {
    from: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct HttpRouteSpec {
    #[serde(rename = "parentRefs", default)]
    parent_refs: Vec<ParentRef>,
    #[serde(default)]
    hostnames: Vec<String>,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct ParentRef {
    name: String,
    namespace: Option<String>,
    group: Option<String>,
    kind: Option<String>,
    #[serde(rename = "sectionName")]
    section_name: Option<String>,
}

#[derive(Deserialize)]
struct Rule {
    name: Option<String>,
    #[serde(default)]
    matches: Vec<GMatch>,
    #[serde(default)]
    filters: Vec<Filter>,
    #[serde(rename = "backendRefs", default)]
    backend_refs: Vec<BackendRef>,
    timeouts: Option<Timeouts>,
}

#[derive(Deserialize)]
struct Timeouts {
    request: Option<Dur>,
}

#[derive(Deserialize, Clone)]
struct GMatch {
    path: Option<PathMatch>,
    #[serde(default)]
    headers: Vec<NameMatch>,
    #[serde(rename = "queryParams", default)]
    query_params: Vec<NameMatch>,
    method: Option<MethodName>,
}

#[derive(Deserialize, Clone)]
struct PathMatch {
    #[serde(rename = "type")]
    kind: Option<String>,
    value: Option<String>,
}

#[derive(Deserialize, Clone)]
struct NameMatch {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: String,
    value: String,
}

#[derive(Deserialize)]
struct Filter {
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "requestHeaderModifier")]
    request_header_modifier: Option<HeaderModifier>,
    #[serde(rename = "requestMirror")]
    request_mirror: Option<RequestMirror>,
    #[serde(rename = "urlRewrite")]
    url_rewrite: Option<UrlRewrite>,
    #[serde(rename = "requestRedirect")]
    request_redirect: Option<RequestRedirect>,
}

#[derive(Deserialize)]
struct HeaderModifier {
    #[serde(default)]
    set: Vec<HeaderPair>,
    #[serde(default)]
    add: Vec<HeaderPair>,
    #[serde(default)]
    remove: Vec<HName>,
}

#[derive(Deserialize)]
struct HeaderPair {
    name: HName,
    value: HValue,
}

#[derive(Deserialize)]
struct RequestMirror {
    #[serde(rename = "backendRef")]
    backend_ref: BackendRef,
    percent: Option<Percent>,
    fraction: Option<Fraction>,
}

#[derive(Deserialize)]
struct Fraction {
    numerator: U32,
    denominator: Option<U32>,
}

#[derive(Deserialize)]
struct UrlRewrite {
    hostname: Option<String>,
    path: Option<PathModifier>,
}

#[derive(Deserialize)]
struct PathModifier {
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "replaceFullPath")]
    full: Option<String>,
    #[serde(rename = "replacePrefixMatch")]
    prefix: Option<String>,
}

#[derive(Deserialize)]
struct RequestRedirect {
    scheme: Option<String>,
    hostname: Option<String>,
    path: Option<PathModifier>,
    port: Option<Port>,
    #[serde(rename = "statusCode")]
    status_code: Option<U32>,
}

/// Lets routes of other namespaces refer to objects of this one (Gateway API's consent for
/// cross-namespace references).
#[derive(Deserialize)]
pub(crate) struct ReferenceGrantSpec {
    #[serde(default)]
    from: Vec<GrantFrom>,
    #[serde(default)]
    to: Vec<GrantTo>,
}

#[derive(Deserialize)]
struct GrantFrom {
    group: String,
    kind: String,
    namespace: String,
}

#[derive(Deserialize)]
struct GrantTo {
    group: String,
    kind: String,
    name: Option<String>,
}

/// Whether an HTTPRoute in `route_ns` may send to Service `name` in `ns`: always in its own
/// namespace, elsewhere only with a ReferenceGrant there.
fn granted(objects: &Objects, route_ns: &str, ns: &str, name: &str) -> bool {
    route_ns == ns
        || objects.items.iter().any(|o| {
            let Spec::ReferenceGrant(g) = &o.spec else { return false };
            o.namespace == ns
                && g.from.iter().any(|f| f.group == "gateway.networking.k8s.io" && f.kind == "HTTPRoute" && f.namespace == route_ns)
                && g.to.iter().any(|t| {
                    (t.group.is_empty() || t.group == "core") && t.kind == "Service" && t.name.as_deref().is_none_or(|n| n == name)
                })
        })
}

#[derive(Deserialize)]
struct BackendRef {
    group: Option<String>,
    kind: Option<String>,
    name: String,
    namespace: Option<String>,
    port: Option<Port>,
    weight: Option<U32>,
}

/// A Gateway API listener this gateway is: (gateway `ns/name`, listener name, hostname,
/// namespaces allowed to attach routes: `None` for all).
struct OurListener {
    gateway: String,
    name: Option<String>,
    hostname: Option<String>,
    allowed_namespace: Option<String>,
}

fn our_listeners(objects: &Objects, options: &LoadOptions, warnings: &mut Vec<Warning>, notes: &mut Notes) -> Vec<OurListener> {
    let mut out = Vec::new();
    for o in &objects.items {
        let Spec::Gateway(g) = &o.spec else { continue };
        let id = format!("{}/{}", o.namespace, o.name);
        let ours = (options.gateways.is_empty() && options.labels.is_empty())
            || options.gateways.iter().any(|n| n == &id || (!n.contains('/') && o.namespace == "default" && n == &o.name));
        if !ours {
            notes.scoped_out(o, "not one of the Gateways the settings name (scope.gateways)".to_string());
            continue;
        }
        notes.loaded(o, format!("{} listeners", g.listeners.len()));
        let doc = o.at.doc();
        for (i, l) in g.listeners.iter().enumerate() {
            if let Some(p) = &l.protocol
                && !matches!(p.to_ascii_uppercase().as_str(), "HTTP")
            {
                warnings.push(doc.warning(
                    &format!("spec.listeners[{i}].protocol"),
                    format!("protocol {p} is not implemented: the gateway serves plain HTTP/1.1 and h2c on its --listen address"),
                ));
            }
            let from = l.allowed_routes.as_ref().and_then(|a| a.namespaces.as_ref()).and_then(|n| n.from.as_deref()).unwrap_or("Same");
            let allowed_namespace = match from {
                "All" => None,
                "Same" => Some(o.namespace.clone()),
                other => {
                    warnings.push(doc.warning(
                        &format!("spec.listeners[{i}].allowedRoutes.namespaces.from"),
                        format!("{other} is not implemented; only routes of the Gateway's own namespace attach"),
                    ));
                    Some(o.namespace.clone())
                }
            };
            out.push(OurListener { gateway: id.clone(), name: l.name.clone(), hostname: l.hostname.clone(), allowed_namespace });
        }
    }
    out
}

/// Hostnames a route serves on a listener: the intersection of the two (Gateway API 1.x).
fn intersect(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let Some(l) = listener else {
        return if route.is_empty() { vec!["*".to_string()] } else { route.iter().map(|h| h.to_ascii_lowercase()).collect() };
    };
    if route.is_empty() {
        return vec![l.to_ascii_lowercase()];
    }
    route
        .iter()
        .filter_map(|h| {
            if h.eq_ignore_ascii_case(l) || (l.starts_with('*') && host_matches(l, h)) {
                Some(h.to_ascii_lowercase())
            } else if h.starts_with('*') && host_matches(h, l) {
                Some(l.to_ascii_lowercase())
            } else {
                None
            }
        })
        .collect()
}

/// The specification's precedence, most specific first: path class (exact, prefix, regex),
/// longer path, with a method, more headers, more query parameters, then the older route (load
/// order), its `namespace/name`, the rule and the match position.
type Precedence = (u8, Reverse<usize>, u8, Reverse<usize>, Reverse<usize>, (usize, usize), String, usize, usize);

/// One (rule, match) of a route, before the routes are put in precedence order.
struct Entry {
    key: Precedence,
    route: PendingRoute,
}

pub(crate) fn build(
    objects: &Objects,
    options: &LoadOptions,
    sources: &mut Sources,
    warnings: &mut Vec<Warning>,
    notes: &mut Notes,
) -> Result<()> {
    let listeners = our_listeners(objects, options, warnings, notes);
    let mut entries = Vec::new();
    for o in &objects.items {
        if let Spec::ReferenceGrant(g) = &o.spec {
            let from: Vec<String> = g.from.iter().map(|f| format!("{} of {}", f.kind, f.namespace)).collect();
            notes.loaded(o, format!("lets {} refer to this namespace", from.join(", ")));
        }
        let Spec::HttpRoute(route) = &o.spec else { continue };
        let doc = o.at.doc();
        let mut hosts: BTreeSet<String> = BTreeSet::new();
        let mut attached = false;
        let mut mesh = false;
        for (i, p) in route.parent_refs.iter().enumerate() {
            let kind = p.kind.as_deref().unwrap_or("Gateway");
            let group = p.group.as_deref().unwrap_or("gateway.networking.k8s.io");
            let ns = p.namespace.clone().unwrap_or_else(|| o.namespace.clone());
            if kind == "Service" && (group.is_empty() || group == "core") {
                // GAMMA: a route for the mesh, attached to a Service.
                mesh = true;
                if options.mesh {
                    hosts.insert(qualify(&p.name, &ns));
                    attached = true;
                }
                continue;
            }
            if kind != "Gateway" || group != "gateway.networking.k8s.io" {
                warnings.push(doc.warning(&format!("spec.parentRefs[{i}]"), format!("parent {group}/{kind} is not implemented; ignored")));
                continue;
            }
            let id = format!("{ns}/{}", p.name);
            for l in listeners.iter().filter(|l| l.gateway == id) {
                if p.section_name.as_ref().is_some_and(|s| Some(s) != l.name.as_ref()) {
                    continue;
                }
                if l.allowed_namespace.as_ref().is_some_and(|n| n != &o.namespace) {
                    continue;
                }
                let got = intersect(l.hostname.as_deref(), &route.hostnames);
                attached |= !got.is_empty();
                hosts.extend(got);
            }
        }
        if !attached {
            let why = if mesh && route.parent_refs.iter().all(|p| p.kind.as_deref() == Some("Service")) {
                "a mesh route (parentRefs a Service): not served at the edge unless scope.mesh is true".to_string()
            } else {
                "attaches to no listener of a Gateway this gateway is (parentRefs, sectionName, allowedRoutes or hostnames)".to_string()
            };
            notes.scoped_out(o, why);
            continue;
        }
        let hosts: Vec<String> = hosts.into_iter().collect();
        let compare = compare_from_annotations(o)?;
        let mut count = 0;
        for (r, rule) in route.rules.iter().enumerate() {
            let matches = if rule.matches.is_empty() {
                vec![GMatch { path: None, headers: Vec::new(), query_params: Vec::new(), method: None }]
            } else {
                rule.matches.clone()
            };
            let several = matches.len() > 1;
            for (m, gm) in matches.iter().enumerate() {
                let path = format!("spec.rules[{r}]");
                let base = rule.name.clone().unwrap_or_else(|| r.to_string());
                let route_name = route_name_base(o, objects);
                let name = if several { format!("{route_name}.{base}.{m}") } else { format!("{route_name}.{base}") };
                let (route_match, class, length) = match_of(o, &format!("{path}.matches[{m}]"), gm)?;
                let pending = rule_route(o, objects, &path, name, rule, route_match, &hosts, compare.as_ref(), warnings)?;
                let key = (
                    class,
                    Reverse(length),
                    u8::from(gm.method.is_none()),
                    Reverse(gm.headers.len()),
                    Reverse(gm.query_params.len()),
                    o.order,
                    format!("{}/{}", o.namespace, o.name),
                    r,
                    m,
                );
                entries.push(Entry { key, route: pending });
                count += 1;
            }
        }
        notes.loaded(o, format!("{count} route{} on {}", if count == 1 { "" } else { "s" }, hosts.join(", ")));
    }
    // Gateway API orders rules by precedence across all routes, after the other formats' routes.
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    for (rank, mut e) in entries.into_iter().enumerate() {
        e.route.order = (usize::MAX, 0, rank);
        sources.routes.push(e.route);
    }
    Ok(())
}

/// The model's match, with its precedence class (0 exact, 1 prefix, 2 regex) and path length.
fn match_of(o: &Object, path: &str, m: &GMatch) -> Result<(RouteMatch, u8, usize)> {
    let doc = o.at.doc();
    let (kind, value) = match &m.path {
        Some(p) => (p.kind.as_deref().unwrap_or("PathPrefix"), p.value.clone().unwrap_or_else(|| "/".to_string())),
        None => ("PathPrefix", "/".to_string()),
    };
    if !value.starts_with('/') && kind != "RegularExpression" {
        return Err(doc.err(&format!("{path}.path.value"), format!("\"{value}\" must start with `/`")));
    }
    let (uri, class) = match kind {
        "Exact" => (StringMatch::Exact(value.clone()), 0),
        "PathPrefix" => (StringMatch::PathPrefix(value.clone()), 1),
        "RegularExpression" => (regex(doc, &format!("{path}.path.value"), &value)?, 2),
        other => {
            return Err(doc
                .err(&format!("{path}.path.type"), format!("unknown path match type \"{other}\" (Exact, PathPrefix, RegularExpression)")));
        }
    };
    let mut headers = Vec::new();
    for (i, h) in m.headers.iter().enumerate() {
        let name = crate::de::header_name(&h.name).map_err(|e| doc.err(&format!("{path}.headers[{i}].name"), e))?;
        headers.push(HeaderMatch { name, value: name_match(o, &format!("{path}.headers[{i}]"), h)? });
    }
    let mut query_params = Vec::new();
    for (i, q) in m.query_params.iter().enumerate() {
        query_params.push(QueryMatch { name: q.name.clone(), value: name_match(o, &format!("{path}.queryParams[{i}]"), q)? });
    }
    let methods = m.method.iter().map(|m| m.0.clone()).collect();
    Ok((RouteMatch { uri: Some(uri), methods, headers, authority: None, query_params, ignore_uri_case: false }, class, value.len()))
}

fn name_match(o: &Object, path: &str, m: &NameMatch) -> Result<StringMatch> {
    match m.kind.as_deref().unwrap_or("Exact") {
        "Exact" => Ok(StringMatch::Exact(m.value.clone())),
        "RegularExpression" => regex(o.at.doc(), &format!("{path}.value"), &m.value),
        other => Err(o.at.doc().err(&format!("{path}.type"), format!("unknown match type \"{other}\" (Exact, RegularExpression)"))),
    }
}

fn regex(doc: crate::de::Doc<'_>, path: &str, pattern: &str) -> Result<StringMatch> {
    let translated = crate::de::translate_re2(pattern).map_err(|e| doc.err(path, format!("bad regex \"{pattern}\": {e}")))?;
    StringMatch::regex(&translated).map_err(|e| doc.err(path, format!("bad regex \"{pattern}\": {}", crate::de::one_line(&e))))
}

#[allow(clippy::too_many_arguments)]
fn rule_route(
    o: &Object,
    objects: &Objects,
    path: &str,
    name: String,
    rule: &Rule,
    route_match: RouteMatch,
    hosts: &[String],
    compare: Option<&crate::model::CompareSpec>,
    warnings: &mut Vec<Warning>,
) -> Result<PendingRoute> {
    let doc = o.at.doc();
    let origin = |p: &str| Origin { file: doc.file.to_string(), path: doc.path(p) };
    let mut rewrite_uri = None;
    let mut rewrite_authority = None;
    let mut answer = None;
    let mut mirrors = Vec::new();
    let mut request_headers = crate::model::HeaderOps::default();
    for (i, f) in rule.filters.iter().enumerate() {
        let fpath = format!("{path}.filters[{i}]");
        let missing = || doc.err(&fpath, format!("filter type {} needs its settings", f.kind));
        match f.kind.as_str() {
            "RequestHeaderModifier" => {
                let m = f.request_header_modifier.as_ref().ok_or_else(missing)?;
                request_headers.set.extend(m.set.iter().map(|p| (p.name.0.clone(), p.value.0.clone())));
                request_headers.add.extend(m.add.iter().map(|p| (p.name.0.clone(), p.value.0.clone())));
                request_headers.remove.extend(m.remove.iter().map(|h| h.0.clone()));
            }
            "URLRewrite" => {
                let u = f.url_rewrite.as_ref().ok_or_else(missing)?;
                rewrite_authority = u.hostname.clone();
                if let Some(p) = &u.path {
                    rewrite_uri = Some(match path_modifier(o, &format!("{fpath}.urlRewrite.path"), p)? {
                        PathRedirect::Full(s) => UriRewrite::Full(s),
                        PathRedirect::Prefix(s) => UriRewrite::Prefix(s),
                    });
                }
            }
            "RequestRedirect" => {
                let r = f.request_redirect.as_ref().ok_or_else(missing)?;
                let code = r.status_code.map_or(302, |c| c.0);
                let status = match code {
                    301 => StatusCode::MOVED_PERMANENTLY,
                    302 => StatusCode::FOUND,
                    _ => {
                        return Err(doc
                            .err(&format!("{fpath}.requestRedirect.statusCode"), format!("{code}: Gateway API redirects are 301 or 302")));
                    }
                };
                answer = Some(Answer::Redirect(Redirect {
                    status,
                    scheme: r.scheme.clone(),
                    host: r.hostname.clone(),
                    port: r.port.map(|p| p.0),
                    path: r.path.as_ref().map(|p| path_modifier(o, &format!("{fpath}.requestRedirect.path"), p)).transpose()?,
                }));
            }
            "RequestMirror" => {
                let m = f.request_mirror.as_ref().ok_or_else(missing)?;
                let percent = match (&m.percent, &m.fraction) {
                    (Some(p), None) => p.0,
                    (None, Some(f)) => {
                        let d = f.denominator.map_or(100, |d| d.0);
                        if d == 0 || f.numerator.0 > d {
                            return Err(doc
                                .err(&format!("{fpath}.requestMirror.fraction"), "numerator must be <= denominator, and denominator > 0"));
                        }
                        check_percent(100.0 * f64::from(f.numerator.0) / f64::from(d)).map_err(|e| doc.err(&fpath, e))?
                    }
                    (None, None) => 100.0,
                    (Some(_), Some(_)) => return Err(doc.err(&format!("{fpath}.requestMirror"), "give percent or fraction, not both")),
                };
                let mpath = format!("{fpath}.requestMirror.backendRef");
                if !backend_granted(o, objects, &m.backend_ref) {
                    warnings.push(doc.warning(&mpath, ungranted(o, &m.backend_ref, "the mirror is not sent")));
                    continue;
                }
                let to = backend(o, &mpath, &m.backend_ref)?;
                mirrors.push(imported_mirror(doc, &mpath, to, percent, compare));
            }
            other => warnings.push(doc.warning(&fpath, format!("filter type {other} is not implemented by this gateway; ignored"))),
        }
    }
    let mut destinations = Vec::new();
    if answer.is_some() {
        if !rule.backend_refs.is_empty() {
            warnings.push(doc.warning(&format!("{path}.backendRefs"), "a rule that redirects sends nothing to its backendRefs; ignored"));
        }
        mirrors.clear();
    } else if rule.backend_refs.is_empty() {
        // The specification: no backend and no filter that answers -> the gateway answers 500.
        answer = Some(Answer::Direct { status: StatusCode::INTERNAL_SERVER_ERROR, body: Vec::new() });
        warnings.push(doc.warning(path, "no backendRefs: requests are answered 500, as the Gateway API specifies"));
    } else if let Some((i, b)) = rule.backend_refs.iter().enumerate().find(|(_, b)| !backend_granted(o, objects, b)) {
        // The specification answers 500 for requests to a backend the route may not use; this
        // gateway answers 500 for the whole rule.
        warnings.push(doc.warning(&format!("{path}.backendRefs[{i}]"), ungranted(o, b, "the rule answers 500")));
        answer = Some(Answer::Direct { status: StatusCode::INTERNAL_SERVER_ERROR, body: Vec::new() });
        mirrors.clear();
    } else {
        for (i, b) in rule.backend_refs.iter().enumerate() {
            let dest = backend(o, &format!("{path}.backendRefs[{i}]"), b)?;
            destinations.push((dest, Some(b.weight.map_or(1, |w| w.0))));
        }
    }
    Ok(PendingRoute {
        promote: None,
        name: Some(name),
        origin: origin(path),
        order: (0, 0, 0),
        hosts: hosts.to_vec(),
        matches: vec![route_match],
        rewrite_uri,
        rewrite_authority,
        answer,
        request_headers,
        destinations,
        destinations_origin: origin(&format!("{path}.backendRefs")),
        mirrors,
        timeout: rule.timeouts.as_ref().and_then(|t| t.request).map(|d| d.0),
    })
}

fn backend_granted(o: &Object, objects: &Objects, b: &BackendRef) -> bool {
    let is_service = matches!(b.group.as_deref().unwrap_or(""), "" | "core") && b.kind.as_deref().unwrap_or("Service") == "Service";
    !is_service || granted(objects, &o.namespace, b.namespace.as_deref().unwrap_or(&o.namespace), &b.name)
}

fn ungranted(o: &Object, b: &BackendRef, consequence: &str) -> String {
    let ns = b.namespace.as_deref().unwrap_or(&o.namespace);
    format!(
        "Service {ns}/{} is in another namespace and no ReferenceGrant there allows HTTPRoutes of {}: {consequence}",
        b.name, o.namespace
    )
}

fn path_modifier(o: &Object, path: &str, p: &PathModifier) -> Result<PathRedirect> {
    let doc = o.at.doc();
    match (p.kind.as_str(), &p.full, &p.prefix) {
        ("ReplaceFullPath", Some(full), _) => Ok(PathRedirect::Full(full.clone())),
        ("ReplacePrefixMatch", _, Some(prefix)) => Ok(PathRedirect::Prefix(prefix.clone())),
        (kind @ ("ReplaceFullPath" | "ReplacePrefixMatch"), _, _) => Err(doc.err(path, format!("type {kind} needs its value"))),
        (other, _, _) => {
            Err(doc.err(&format!("{path}.type"), format!("unknown path modifier \"{other}\" (ReplaceFullPath, ReplacePrefixMatch)")))
        }
    }
}

/// A backend: a `Service` (`name.namespace.svc.cluster.local`, falling back to its cluster DNS
/// name) or Istio's `Hostname` kind naming a ServiceEntry host directly.
fn backend(o: &Object, path: &str, b: &BackendRef) -> Result<DestRef> {
    let doc = o.at.doc();
    let origin = Origin { file: doc.file.to_string(), path: doc.path(&format!("{path}.name")) };
    let group = b.group.as_deref().unwrap_or("");
    let kind = b.kind.as_deref().unwrap_or("Service");
    let port = b.port.map(|p| p.0);
    match (group, kind) {
        ("" | "core", "Service") => {
            let ns = b.namespace.clone().unwrap_or_else(|| o.namespace.clone());
            let Some(number) = port else {
                return Err(doc.err(&format!("{path}.port"), "a Service backend needs a port"));
            };
            Ok(DestRef {
                host: qualify(&b.name, &ns),
                written: b.name.clone(),
                subset: None,
                port: Some(number),
                subset_origin: origin.clone(),
                origin,
                fallback: Some(HostPort { host: format!("{}.{ns}.svc", b.name.to_ascii_lowercase()), port: number }),
            })
        }
        ("networking.istio.io", "Hostname") => Ok(DestRef {
            host: b.name.to_ascii_lowercase(),
            written: b.name.clone(),
            subset: None,
            port,
            subset_origin: origin.clone(),
            origin,
            fallback: None,
        }),
        _ => Err(doc.err(path, format!("backend {group}/{kind} is not implemented (Service, or networking.istio.io/Hostname)"))),
    }
}
