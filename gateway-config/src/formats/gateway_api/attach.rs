//! Which routes this gateway serves: the listeners of the Gateways it is, and how an HTTPRoute
//! attaches to them (`parentRefs`, `sectionName`, the listener's `allowedRoutes`), its
//! hostnames intersected with the listener's; or, as the mesh's router, to a Service (GAMMA).

use std::collections::BTreeSet;

use http_rules::host_matches;

use super::spec::{GatewaySpec, HttpRouteSpec, Kind};
use crate::context::ObjectCx;
use crate::k8s::names::qualify;

/// A Gateway API listener this gateway is.
pub(super) struct OurListener {
    /// The Gateway, `namespace/name`.
    pub gateway: String,
    pub name: Option<String>,
    pub hostname: Option<String>,
    /// The namespace whose routes may attach; `None` for all.
    pub allowed_namespace: Option<String>,
}

/// A Gateway: whether this gateway is it, and if so its listeners.
pub(super) fn gateway(cx: &mut ObjectCx<'_, Kind>, g: &GatewaySpec, out: &mut Vec<OurListener>) {
    let o = cx.meta();
    let id = format!("{}/{}", o.namespace, o.name);
    let options = cx.options();
    if !(options.every_gateway() || options.names_gateway(&o.namespace, &o.name)) {
        cx.scoped_out("not one of the Gateways the settings name (scope.gateways)".to_string());
        return;
    }
    cx.loaded(format!("{} listeners", g.listeners.len()));
    for (i, l) in g.listeners.iter().enumerate() {
        if let Some(p) = &l.protocol
            && !matches!(p.to_ascii_uppercase().as_str(), "HTTP")
        {
            cx.warn(
                &format!("spec.listeners[{i}].protocol"),
                format!("protocol {p} is not implemented: the gateway serves plain HTTP/1.1 and h2c on its --listen address"),
            );
        }
        let from = l.allowed_routes.as_ref().and_then(|a| a.namespaces.as_ref()).and_then(|n| n.from.as_deref()).unwrap_or("Same");
        let allowed_namespace = match from {
            "All" => None,
            "Same" => Some(o.namespace.clone()),
            other => {
                cx.warn(
                    &format!("spec.listeners[{i}].allowedRoutes.namespaces.from"),
                    format!("{other} is not implemented; only routes of the Gateway's own namespace attach"),
                );
                Some(o.namespace.clone())
            }
        };
        out.push(OurListener { gateway: id.clone(), name: l.name.clone(), hostname: l.hostname.clone(), allowed_namespace });
    }
}

/// The hosts `route` serves here, sorted; `None` (noted as scoped out, with the reason) when it
/// attaches to no listener of this gateway.
pub(super) fn attach(cx: &mut ObjectCx<'_, Kind>, route: &HttpRouteSpec, listeners: &[OurListener]) -> Option<Vec<String>> {
    let o = cx.meta();
    let mesh_router = cx.options().mesh;
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
        cx.scoped_out(why);
        return None;
    }
    Some(hosts.into_iter().collect())
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
