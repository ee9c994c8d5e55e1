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
    let Some((hosts, plain_http)) = served_hosts(cx, vs, ours) else { return Ok(()) };
    let first = cx.sources().routes.len();
    let count = routes(cx, vs, &hosts)?;
    for route in &mut cx.sources().routes[first..] {
        route.plain_http.clone_from(&plain_http);
    }
    cx.loaded(format!("{count} route{}", if count == 1 { "" } else { "s" }));
    Ok(())
}

/// Adds the routes of a served VirtualService; returns how many.
fn routes(cx: &mut ObjectCx<'_, Kind>, vs: &VirtualServiceSpec, hosts: &[String]) -> Result<usize> {
    let o = cx.meta();
    let compare = annotations::compare(o)?;
    let verdict = annotations::verdict(o, compare.is_some())?;
    let Some(http) = &vs.http else {
        cx.warn("spec", "no http routes; the VirtualService adds nothing");
        return Ok(0);
    };
    let base = cx.route_name_base();
    let count = http.len();
    let mut added = 0;
    for (i, h) in http.iter().enumerate() {
        let name = match (&h.name, count) {
            (Some(Scalar(n)), _) => format!("{base}.{n}"),
            (None, 1) => base.clone(),
            (None, _) => format!("{base}.{i}"),
        };
        let place = Place { path: format!("spec.http[{i}]"), name, order: (o.order.0, o.order.1, i * 1000) };
        if let Some(d) = &h.delegate {
            added += delegate(cx, &place, h, d, hosts)?;
            continue;
        }
        let mut route = http_route(cx, place, h, hosts, compare.as_ref())?;
        for mirror in &mut route.mirrors {
            mirror.verdict.clone_from(&verdict);
        }
        cx.sources().routes.push(route);
        added += 1;
    }
    Ok(added)
}
