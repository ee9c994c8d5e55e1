//! Which routes this gateway serves: the listeners of the Gateways it is, and how an HTTPRoute
//! attaches to them (`parentRefs` with `sectionName` and `port`; the listener's `protocol` and
//! `allowedRoutes`: namespaces `Same`, `All` or a label `Selector` over the `Namespace`
//! objects, and `kinds`), its hostnames intersected with the listener's; or, as the mesh's
//! router, to a Service (GAMMA). A route that names a Gateway this gateway is but attaches to
//! none of its listeners is not accepted, with the Gateway API's reason.

use std::collections::{BTreeMap, BTreeSet};

use http_rules::host_matches;

use super::spec::{GatewaySpec, HttpRouteSpec, Kind, LabelSelector, Listener};
use crate::context::ObjectCx;
use crate::k8s::names::qualify;
use crate::k8s::{Meta, Ref};
use crate::status::Reason;

/// The Gateway API's group: a route kind without a group is of it.
const GROUP: &str = "gateway.networking.k8s.io";

/// The label Kubernetes gives every namespace: its name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The labels of each namespace the input declares (`Namespace` objects).
pub(super) struct Namespaces {
    labels: BTreeMap<String, BTreeMap<String, String>>,
}

impl Namespaces {
    pub fn new(objects: &[Ref<'_, Kind>]) -> Self {
        let labels = objects
            .iter()
            .filter(|o| matches!(o.spec, Kind::Namespace))
            .map(|o| (o.meta.name.clone(), o.meta.labels.iter().cloned().collect()))
            .collect();
        Namespaces { labels }
    }

    /// The labels of namespace `ns`: those its object declares, and the name label every
    /// namespace has (a namespace without an object here has only that one).
    fn of(&self, ns: &str) -> BTreeMap<String, String> {
        let mut labels = self.labels.get(ns).cloned().unwrap_or_default();
        labels.insert(NAME_LABEL.to_string(), ns.to_string());
        labels
    }
}

/// `a=1, b=2`, for what a Namespace object contributes.
pub(super) fn labels_text(meta: &Meta) -> String {
    if meta.labels.is_empty() {
        return "(none)".to_string();
    }
    meta.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

/// Which namespaces' routes a listener takes.
enum AllowedNamespaces {
    All,
    /// The Gateway's own.
    Same(String),
    /// Those the selector matches (their names, resolved once).
    Selected(BTreeSet<String>, String),
    /// A `from` the gateway does not know: none.
    None(String),
}

/// A Gateway API listener this gateway is.
pub(super) struct OurListener {
    /// The Gateway, `namespace/name`.
    pub gateway: String,
    pub name: Option<String>,
    pub port: Option<u16>,
    pub hostname: Option<String>,
    namespaces: AllowedNamespaces,
    /// Why HTTPRoutes cannot attach here (its protocol, its `allowedRoutes.kinds`); `None`:
    /// they can.
    refuses_http_routes: Option<String>,
}

/// A Gateway: whether this gateway is it, and if so its listeners.
pub(super) fn gateway(cx: &mut ObjectCx<'_, Kind>, g: &GatewaySpec, namespaces: &Namespaces, out: &mut Vec<OurListener>) {
    let o = cx.meta();
    let id = format!("{}/{}", o.namespace, o.name);
    let options = cx.options();
    if !(options.every_gateway() || options.names_gateway(&o.namespace, &o.name)) {
        cx.scoped_out("not one of the Gateways the settings name (scope.gateways)".to_string());
        return;
    }
    let tls = options.tls;
    cx.loaded(format!("{} listeners", g.listeners.len()));
    for (i, l) in g.listeners.iter().enumerate() {
        let path = format!("spec.listeners[{i}]");
        let refuses_http_routes = refusal(l, tls);
        if let Some(why) = &refuses_http_routes {
            cx.warn(&path, format!("{why}: no HTTPRoute attaches to it"));
        }
        let namespaces = allowed_namespaces(cx, &path, l, namespaces);
        out.push(OurListener {
            gateway: id.clone(),
            name: l.name.clone(),
            port: l.port.map(|p| p.0),
            hostname: l.hostname.clone(),
            namespaces,
            refuses_http_routes,
        });
    }
}

/// Why HTTPRoutes cannot attach to `l`: a protocol that is not HTTP (or HTTPS with TLS
/// terminated here), or `allowedRoutes.kinds` without HTTPRoute.
fn refusal(l: &Listener, tls: bool) -> Option<String> {
    let name = l.name.as_deref().unwrap_or("(unnamed)");
    let protocol = l.protocol.as_deref().unwrap_or("HTTP");
    match protocol.to_ascii_uppercase().as_str() {
        "HTTP" => {}
        "HTTPS" if tls => {}
        "HTTPS" => {
            return Some(format!(
                "listener {name} is HTTPS and this gateway's listener is plain HTTP (no `tls:` in the process settings): its routes are never served in clear"
            ));
        }
        _ => {
            return Some(format!("listener {name} has protocol {protocol}, which takes no HTTPRoute (this gateway serves HTTP and HTTPS)"));
        }
    }
    let kinds = l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref())?;
    let http_route = kinds.iter().any(|k| k.kind == "HTTPRoute" && k.group.as_deref().unwrap_or(GROUP) == GROUP);
    (!http_route).then(|| format!("listener {name}'s allowedRoutes.kinds does not list HTTPRoute"))
}

fn allowed_namespaces(cx: &mut ObjectCx<'_, Kind>, path: &str, l: &Listener, namespaces: &Namespaces) -> AllowedNamespaces {
    let own = cx.namespace().to_string();
    let spec = l.allowed_routes.as_ref().and_then(|a| a.namespaces.as_ref());
    match spec.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
        "All" => AllowedNamespaces::All,
        "Same" => AllowedNamespaces::Same(own),
        "Selector" => {
            let Some(selector) = spec.and_then(|n| n.selector.as_ref()) else {
                cx.warn(&format!("{path}.allowedRoutes.namespaces"), "from: Selector without a selector: no namespace's routes attach");
                return AllowedNamespaces::None("from: Selector without a selector".to_string());
            };
            match selected(selector, namespaces) {
                Ok(names) => {
                    let shown = selector_text(selector);
                    AllowedNamespaces::Selected(names, shown)
                }
                Err(e) => {
                    cx.warn(&format!("{path}.allowedRoutes.namespaces.selector"), format!("{e}: no namespace's routes attach"));
                    AllowedNamespaces::None(e)
                }
            }
        }
        other => {
            cx.warn(
                &format!("{path}.allowedRoutes.namespaces.from"),
                format!("unknown value {other} (All, Same, Selector): no routes attach"),
            );
            AllowedNamespaces::None(format!("from: {other} is not a value the Gateway API defines"))
        }
    }
}

/// The namespaces (of those the input names, by `Namespace` objects) the selector matches.
fn selected(selector: &LabelSelector, namespaces: &Namespaces) -> Result<BTreeSet<String>, String> {
    let mut names = BTreeSet::new();
    for ns in namespaces.labels.keys() {
        if selects(selector, &namespaces.of(ns))? {
            names.insert(ns.clone());
        }
    }
    Ok(names)
}

/// Kubernetes' label-selector semantics: every `matchLabels` pair and every expression must
/// hold; an empty selector selects everything.
fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> Result<bool, String> {
    if !selector.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
        return Ok(false);
    }
    for e in &selector.match_expressions {
        let value = labels.get(&e.key);
        let holds = match e.operator.as_str() {
            "In" => value.is_some_and(|v| e.values.contains(v)),
            "NotIn" => value.is_none_or(|v| !e.values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => return Err(format!("unknown matchExpressions operator {other} (In, NotIn, Exists, DoesNotExist)")),
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

fn selector_text(s: &LabelSelector) -> String {
    let mut terms: Vec<String> = s.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    terms.extend(s.match_expressions.iter().map(|e| format!("{} {} [{}]", e.key, e.operator, e.values.join(", "))));
    terms.join(", ")
}

impl OurListener {
    /// Whether routes of namespace `ns` may attach; if not, why.
    fn admits(&self, ns: &str) -> Result<(), String> {
        let name = self.name.as_deref().unwrap_or("(unnamed)");
        match &self.namespaces {
            AllowedNamespaces::All => Ok(()),
            AllowedNamespaces::Same(own) if own == ns => Ok(()),
            AllowedNamespaces::Same(own) => {
                Err(format!("listener {name} takes routes of namespace {own} only (allowedRoutes.namespaces.from: Same)"))
            }
            AllowedNamespaces::Selected(names, _) if names.contains(ns) => Ok(()),
            AllowedNamespaces::Selected(_, selector) => Err(format!(
                "listener {name} takes routes of the namespaces its selector ({selector}) matches, and namespace {ns} is not one (its labels come from its Namespace object)"
            )),
            AllowedNamespaces::None(why) => Err(format!("listener {name}: {why}")),
        }
    }
}

/// Why a parentRef to one of our Gateways did not attach, most specific last.
fn worse(a: Option<(Reason, String)>, b: (Reason, String)) -> Option<(Reason, String)> {
    let rank = |r: Reason| match r {
        Reason::NoMatchingParent => 0,
        Reason::NotAllowedByListeners => 1,
        _ => 2,
    };
    match a {
        Some(a) if rank(a.0) >= rank(b.0) => Some(a),
        _ => Some(b),
    }
}

/// The hosts `route` serves here, sorted; `None` when it attaches to no listener of this
/// gateway: not accepted, with the reason, when it names one of this gateway's Gateways;
/// scoped out otherwise.
pub(super) fn attach(cx: &mut ObjectCx<'_, Kind>, route: &HttpRouteSpec, listeners: &[OurListener]) -> Option<Vec<String>> {
    let o = cx.meta();
    let mesh_router = cx.options().mesh;
    let mut hosts: BTreeSet<String> = BTreeSet::new();
    let mut attached = false;
    let mut mesh = false;
    let mut refused: Option<(Reason, String)> = None;
    for (i, p) in route.parent_refs.iter().enumerate() {
        let kind = p.kind.as_deref().unwrap_or("Gateway");
        let group = p.group.as_deref().unwrap_or("gateway.networking.k8s.io");
        let ns = p.namespace.clone().unwrap_or_else(|| o.namespace.clone());
        if kind == "Service" && (group.is_empty() || group == "core") {
            // GAMMA: a route for the mesh, attached to a Service.
            mesh = true;
            if mesh_router {
                hosts.insert(qualify(&p.name, &ns));
                attached = true;
            }
            continue;
        }
        if kind != "Gateway" || group != "gateway.networking.k8s.io" {
            cx.warn(&format!("spec.parentRefs[{i}]"), format!("parent {group}/{kind} is not implemented; ignored"));
            continue;
        }
        let id = format!("{ns}/{}", p.name);
        let of_gateway: Vec<&OurListener> = listeners.iter().filter(|l| l.gateway == id).collect();
        if of_gateway.is_empty() {
            continue;
        }
        let port = p.port.map(|p| p.0);
        let named: Vec<&OurListener> = of_gateway
            .into_iter()
            .filter(|l| p.section_name.as_ref().is_none_or(|s| Some(s) == l.name.as_ref()))
            .filter(|l| port.is_none_or(|n| l.port == Some(n)))
            .collect();
        if named.is_empty() {
            let which = match (&p.section_name, port) {
                (Some(s), Some(n)) => format!("sectionName {s} and port {n}"),
                (Some(s), None) => format!("sectionName {s}"),
                (None, Some(n)) => format!("port {n}"),
                (None, None) => "the reference".to_string(),
            };
            refused =
                worse(refused, (Reason::NoMatchingParent, format!("spec.parentRefs[{i}]: no listener of Gateway {id} matches {which}")));
            continue;
        }
        let mut admitted = Vec::new();
        for l in named {
            match l.refuses_http_routes.clone().map_or_else(|| l.admits(&o.namespace), Err) {
                Ok(()) => admitted.push(l),
                Err(why) => refused = worse(refused, (Reason::NotAllowedByListeners, format!("spec.parentRefs[{i}]: {why}"))),
            }
        }
        let mut matched_host = false;
        for l in admitted {
            let got = intersect(l.hostname.as_deref(), &route.hostnames);
            matched_host |= !got.is_empty();
            hosts.extend(got);
        }
        if matched_host {
            attached = true;
        } else if refused.as_ref().is_none_or(|(r, _)| *r != Reason::NotAllowedByListeners) {
            refused = worse(
                refused,
                (
                    Reason::NoMatchingListenerHostname,
                    format!("spec.parentRefs[{i}]: no listener hostname of Gateway {id} intersects the route's hostnames"),
                ),
            );
        }
    }
    if attached {
        return Some(hosts.into_iter().collect());
    }
    if let Some((reason, why)) = refused {
        cx.not_accepted(reason, why);
        return None;
    }
    let why = if mesh && route.parent_refs.iter().all(|p| p.kind.as_deref() == Some("Service")) {
        "a mesh route (parentRefs a Service): not served at the edge unless scope.mesh is true".to_string()
    } else {
        "attaches to no listener of a Gateway this gateway is (parentRefs, sectionName, allowedRoutes or hostnames)".to_string()
    };
    cx.scoped_out(why);
    None
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
