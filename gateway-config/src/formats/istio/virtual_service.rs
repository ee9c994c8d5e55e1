//! A VirtualService: served on the hosts its bound Gateways expose (or the mesh's), each
//! `http` entry a route or a delegation.

use std::collections::BTreeSet;

use super::delegate::delegate;
use super::route::{Place, http_route};
use super::scope::{Ours, served_hosts};
use super::spec::{Kind, VirtualServiceSpec};
use crate::context::ObjectCx;
use crate::de::{Result, Scalar};
use crate::k8s::annotations;
use crate::model::{RouteMatch, StringMatch};
use crate::sources::Origin;

/// Adds the routes of `vs`, or notes why it adds none.
pub(super) fn lower(
    cx: &mut ObjectCx<'_, Kind>,
    vs: &VirtualServiceSpec,
    ours: &Ours,
    delegated: &BTreeSet<(String, String)>,
) -> Result<()> {
    if vs.hosts.as_ref().is_none_or(|h| h.items.is_empty()) {
        // Istio: a VirtualService without hosts is only a delegate.
        let o = cx.meta();
        if delegated.contains(&(o.namespace.clone(), o.name.clone())) {
            cx.loaded("delegate: its routes are served through the VirtualServices that delegate to it".to_string());
        } else {
            cx.scoped_out("no hosts: a delegate VirtualService that no route delegates to".to_string());
        }
        return Ok(());
    }
    let Some(served) = served_hosts(cx, vs, ours) else { return Ok(()) };
    let first = cx.sources().routes.len();
    routes(cx, vs, &served.hosts)?;
    for route in &mut cx.sources().routes[first..] {
        route.plain_http.clone_from(&served.plain_http);
    }
    if !served.gateways.is_empty() {
        catch_all_last(cx, first);
    }
    let count = cx.sources().routes.len() - first;
    cx.loaded(format!("{count} route{}", if count == 1 { "" } else { "s" }));
    Ok(())
}

/// Istio's gateway route tables: the routes of one VirtualService end at its first catch-all
/// (BuildHTTPRoutesForVirtualService drops the rest, never reached), and catch-alls go after
/// every other VirtualService's routes for the host (SortVHostRoutes), so several
/// VirtualServices for one host merge as Istio merges them. `first`: this object's first route.
fn catch_all_last(cx: &mut ObjectCx<'_, Kind>, first: usize) {
    let routes = &mut cx.sources().routes;
    let Some(at) = routes[first..].iter().position(|r| r.matches.is_empty() || r.matches.iter().any(catch_all)) else { return };
    let at = first + at;
    let dropped: Vec<(Origin, String)> = routes.drain(at + 1..).map(|r| (r.origin, r.name.unwrap_or_default())).collect();
    // A route with other matches besides its catch-all keeps its place (it is one route here).
    let route = &mut routes[at];
    route.catch_all_last = route.matches.iter().all(catch_all);
    let catch_all_name = route.name.clone().unwrap_or_default();
    for (origin, name) in dropped {
        cx.warn_at(&origin, format!("route {name} comes after the catch-all route {catch_all_name}: never reached (Istio drops it)"));
    }
}

/// Istio's IsCatchAllRoute: the path prefix `/` (or no `uri`, or the regex `.*`), and no
/// other condition (methods and the authority are header matches in Envoy).
fn catch_all(m: &RouteMatch) -> bool {
    let any_path = match &m.uri {
        None => true,
        Some(StringMatch::Prefix(p) | StringMatch::PathPrefix(p)) => p == "/",
        Some(StringMatch::Regex(_)) => m.uri.as_ref().is_some_and(|u| u.source() == ".*"),
        Some(_) => false,
    };
    any_path && m.methods.is_empty() && m.headers.is_empty() && m.query_params.is_empty() && m.authority.is_none()
}

/// Adds the routes of a served VirtualService.
fn routes(cx: &mut ObjectCx<'_, Kind>, vs: &VirtualServiceSpec, hosts: &[String]) -> Result<()> {
    let o = cx.meta();
    let compare = annotations::compare(o)?;
    let verdict = annotations::verdict(o, compare.is_some())?;
    let Some(http) = &vs.http else {
        cx.warn("spec", "no http routes; the VirtualService adds nothing");
        return Ok(());
    };
    let base = cx.route_name_base();
    let count = http.len();
    for (i, h) in http.iter().enumerate() {
        let name = match (&h.name, count) {
            (Some(Scalar(n)), _) => format!("{base}.{n}"),
            (None, 1) => base.clone(),
            (None, _) => format!("{base}.{i}"),
        };
        let place = Place { path: format!("spec.http[{i}]"), name, order: (o.order.0, o.order.1, i * 1000) };
        if let Some(d) = &h.delegate {
            delegate(cx, &place, h, d, hosts)?;
            continue;
        }
        let mut route = http_route(cx, place, h, hosts, compare.as_ref())?;
        for mirror in &mut route.mirrors {
            mirror.verdict.clone_from(&verdict);
        }
        cx.sources().routes.push(route);
    }
    Ok(())
}
