//! What this gateway serves of the Istio objects: the Gateways it is (named by the settings,
//! or selecting its labels), and which hosts of a VirtualService those Gateways expose to it
//! (bound through `gateways`, or the mesh when the settings say this gateway routes for it).

use std::collections::{BTreeMap, BTreeSet};

use http_rules::host_matches;

use super::spec::{GatewaySpec, Kind, Server, VirtualServiceSpec};
use crate::context::ObjectCx;
use crate::k8s::Ref;
use crate::k8s::names::{qualify, reference, service_aliases};
use crate::model::PlainHttp;
use crate::options::LoadOptions;

/// The Gateways this gateway is, by `namespace/name`, each with the hosts its servers expose
/// as (namespace filter, host, how the server serves it in clear): `*/host`, `./host` (the
/// Gateway's namespace) or `ns/host`.
pub(super) type Ours = BTreeMap<String, Vec<(String, String, PlainHttp)>>;

/// How a server serves its hosts on a plain-HTTP connection: HTTPS and TLS servers never in
/// clear, an HTTP server with `tls.httpsRedirect` by redirecting to `https://`.
fn plain_http(server: &Server) -> PlainHttp {
    let protocol = server.port.as_ref().and_then(|p| p.protocol.as_deref()).unwrap_or("HTTP").to_ascii_uppercase();
    match protocol.as_str() {
        "HTTPS" | "TLS" => PlainHttp::TlsOnly,
        _ if server.tls.as_ref().is_some_and(|t| t.https_redirect) => PlainHttp::RedirectToHttps,
        _ => PlainHttp::Serve,
    }
}

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
                .flat_map(|s| s.hosts.iter().flat_map(|h| &h.items).map(move |h| (h, plain_http(s))))
                .map(|(h, plain)| match h.split_once('/') {
                    Some((".", host)) => (o.namespace.clone(), host.to_ascii_lowercase(), plain),
                    Some((ns, host)) => (ns.to_string(), host.to_ascii_lowercase(), plain),
                    None => ("*".to_string(), h.to_ascii_lowercase(), plain),
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
        let protocol = server.port.as_ref().and_then(|p| p.protocol.as_deref()).unwrap_or("HTTP").to_ascii_uppercase();
        let hosts = server.hosts.iter().flat_map(|h| &h.items).cloned().collect::<Vec<_>>().join(", ");
        match protocol.as_str() {
            "HTTP" | "HTTP2" => {}
            "HTTPS" => cx.warn(
                &format!("spec.servers[{i}]"),
                format!(
                    "HTTPS: the hosts only this server exposes ({hosts}) are served on TLS connections only, with the certificates of the gateway's `tls:` settings; plain HTTP requests for them get 404 (never served in clear)"
                ),
            ),
            other => cx.warn(
                &format!("spec.servers[{i}].port"),
                format!(
                    "protocol {other} is not implemented: the gateway serves HTTP/1.1 and h2c, or HTTPS with its `tls:` settings; hosts of this server ({hosts}) are never served in clear"
                ),
            ),
        }
        if let Some(tls) = &server.tls {
            if let Some(name) = &tls.credential_name {
                cx.warn(
                    &format!("spec.servers[{i}].tls.credentialName"),
                    format!("the Secret {name} is not read: TLS uses the certificates of the gateway's `tls:` settings"),
                );
            }
            if let Some(mode) = &tls.mode {
                cx.warn(
                    &format!("spec.servers[{i}].tls.mode"),
                    format!("{mode}: the TLS mode (and client certificates) are those of the gateway's `tls:` settings"),
                );
            }
        }
    }
    // One listener serves plain HTTP (or TLS, with the `tls:` settings): servers of one kind on
    // several ports all land on it.
    for tls in [false, true] {
        let mut ports: Vec<u16> = gw
            .servers
            .iter()
            .filter(|s| (plain_http(s) == PlainHttp::TlsOnly) == tls)
            .filter_map(|s| s.port.as_ref().and_then(|p| p.number).map(|n| n.0))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        if ports.len() > 1 {
            let list = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
            cx.warn(
                "spec.servers",
                format!(
                    "{} servers on ports {list}: all are served on the gateway's one {} listener (per-port routing is not implemented)",
                    if tls { "HTTPS" } else { "HTTP" },
                    if tls { "TLS" } else { "plain" }
                ),
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
pub(super) fn served_hosts(cx: &mut ObjectCx<'_, Kind>, vs: &VirtualServiceSpec, ours: &Ours) -> Option<Served> {
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
    // Per host, how its servers serve it in clear. Istio builds one route table per port: a
    // redirecting HTTP server redirects the host (Envoy's `require_tls`), another HTTP server
    // serves it, and HTTPS servers alone keep it off plain connections.
    let mut plain: BTreeMap<String, PlainHttp> = BTreeMap::new();
    let mut expose = |host: String, how: PlainHttp| {
        let way = plain.entry(host).or_insert(how);
        *way = (*way).max(how);
    };
    for g in &bound {
        for (server_ns, server, how) in &ours[g] {
            if server_ns == "*" || server_ns == ns {
                for host in written.iter().filter_map(|h| intersect_host(server, h)) {
                    expose(host.clone(), *how);
                    hosts.insert(host);
                }
            }
        }
    }
    if mesh && mesh_router {
        // As a sidecar: every name a client in the mesh may send for the Service (`reviews`,
        // `reviews:9080`, `reviews.default`, ...); the port is not compared.
        for h in &written {
            for name in std::iter::once(h.clone()).chain(service_aliases(h)) {
                expose(name.clone(), PlainHttp::Serve);
                hosts.insert(name);
            }
        }
    }
    let plain = plain.into_iter().filter(|(_, way)| *way != PlainHttp::Serve).collect();
    if hosts.is_empty() {
        cx.scoped_out(format!(
            "its hosts ({}) match no host that the servers of {} expose to namespace {}",
            written.join(", "),
            bound.join(", "),
            ns
        ));
        return None;
    }
    let hosts =
        written.iter().filter(|h| hosts.contains(*h)).cloned().chain(hosts.iter().filter(|h| !written.contains(h)).cloned()).collect();
    Some(Served { hosts, plain_http: plain, gateways: bound })
}

/// What of a VirtualService this gateway serves.
pub(super) struct Served {
    pub hosts: Vec<String>,
    /// How plain-HTTP connections get each host (none listed: served).
    pub plain_http: BTreeMap<String, PlainHttp>,
    /// The Gateways of ours it is bound to, `namespace/name` (empty: served for the mesh only).
    pub gateways: Vec<String>,
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
