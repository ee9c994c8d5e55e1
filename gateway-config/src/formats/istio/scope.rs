//! What this gateway serves of the Istio objects: the Gateways it is (named by the settings,
//! or selecting its labels), and which hosts of a VirtualService those Gateways expose to it
//! (bound through `gateways`, or the mesh when the settings say this gateway routes for it).

use std::collections::{BTreeMap, BTreeSet};

use http_rules::host_matches;

use super::spec::{GatewaySpec, Kind, VirtualServiceSpec};
use crate::context::ObjectCx;
use crate::k8s::Ref;
use crate::k8s::names::{qualify, reference};
use crate::options::LoadOptions;

/// The Gateways this gateway is, by `namespace/name`, each with the hosts its servers expose
/// as (namespace filter, host): `*/host`, `./host` (the Gateway's namespace) or `ns/host`.
pub(super) type Ours = BTreeMap<String, Vec<(String, String)>>;

pub(super) fn our_gateways(objects: &[Ref<'_, Kind>], options: &LoadOptions) -> Ours {
    let mut ours = BTreeMap::new();
    for o in objects {
        let Kind::Gateway(g) = o.spec else { continue };
        let o = o.meta;
        let id = format!("{}/{}", o.namespace, o.name);
        let named = options.names_gateway(&o.namespace, &o.name);
        let selected =
            !options.labels.is_empty() && !g.selector.0.is_empty() && g.selector.0.iter().all(|(k, v)| options.labels.get(k) == Some(&v.0));
        if options.every_gateway() || named || selected {
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

/// A Gateway: its servers' protocols checked, and whether this gateway is it.
pub(super) fn gateway(cx: &mut ObjectCx<'_, Kind>, gw: &GatewaySpec, ours: &Ours) {
    for (i, server) in gw.servers.iter().enumerate() {
        if let Some(p) = server.port.as_ref().and_then(|p| p.protocol.as_deref())
            && !matches!(p.to_ascii_uppercase().as_str(), "HTTP" | "HTTP2")
        {
            cx.warn(
                &format!("spec.servers[{i}].port"),
                format!("protocol {p} is not implemented: the gateway serves plain HTTP/1.1 and h2c on its --listen address"),
            );
        }
    }
    let o = cx.meta();
    if ours.contains_key(&format!("{}/{}", o.namespace, o.name)) {
        cx.loaded("this gateway serves the VirtualServices bound to it".to_string());
    } else {
        cx.scoped_out("not one of the Gateways the settings name (scope.gateways / scope.labels)".to_string());
    }
}

/// The hosts of a VirtualService this gateway serves: those its bound Gateways' servers expose
/// (to its namespace), and all of them for the mesh; in the order written, then the narrower
/// hosts a wildcard became. `None` (noted as scoped out, with the reason) when there are none.
pub(super) fn served_hosts(cx: &mut ObjectCx<'_, Kind>, vs: &VirtualServiceSpec, ours: &Ours) -> Option<Vec<String>> {
    let ns = cx.namespace();
    let mesh_router = cx.options().mesh;
    let gateways: Vec<String> =
        vs.gateways.as_ref().map(|g| g.items.clone()).filter(|g| !g.is_empty()).unwrap_or_else(|| vec!["mesh".to_string()]);
    let bound: Vec<String> = gateways.iter().filter(|g| *g != "mesh").map(|g| reference(g, ns)).filter(|g| ours.contains_key(g)).collect();
    let mesh = gateways.iter().any(|g| g == "mesh");
    if bound.is_empty() && !(mesh && mesh_router) {
        let why = if gateways.iter().all(|g| g == "mesh") {
            "mesh-only (no `gateways`, or only `mesh`): not served at the edge unless scope.mesh is true".to_string()
        } else {
            let refs: Vec<String> = gateways.iter().filter(|g| *g != "mesh").map(|g| reference(g, ns)).collect();
            let ours: Vec<&str> = ours.keys().map(String::as_str).collect();
            format!(
                "bound to {} which this gateway is not (it is: {})",
                refs.join(", "),
                if ours.is_empty() { "no Gateway".to_string() } else { ours.join(", ") }
            )
        };
        cx.scoped_out(why);
        return None;
    }
    let written: Vec<String> = vs.hosts.iter().flat_map(|h| &h.items).map(|h| qualify(h, ns)).collect();
    let mut hosts: BTreeSet<String> = BTreeSet::new();
    for g in &bound {
        for (server_ns, server) in &ours[g] {
            if server_ns == "*" || server_ns == ns {
                hosts.extend(written.iter().filter_map(|h| intersect_host(server, h)));
            }
        }
    }
    if mesh && mesh_router {
        hosts.extend(written.iter().cloned());
    }
    if hosts.is_empty() {
        cx.scoped_out(format!(
            "its hosts ({}) match no host that the servers of {} expose to namespace {}",
            written.join(", "),
            bound.join(", "),
            ns
        ));
        return None;
    }
    Some(written.iter().filter(|h| hosts.contains(*h)).cloned().chain(hosts.iter().filter(|h| !written.contains(h)).cloned()).collect())
}

/// A VirtualService host as exposed by a server host: Istio serves a VirtualService host on a
/// Gateway only where the two match (the more specific of the two is served).
fn intersect_host(server: &str, host: &str) -> Option<String> {
    if server == "*" || server.eq_ignore_ascii_case(host) || (server.starts_with('*') && host_matches(server, host)) {
        Some(host.to_ascii_lowercase())
    } else if host.starts_with('*') && host_matches(host, server) {
        Some(server.to_ascii_lowercase())
    } else {
        None
    }
}
