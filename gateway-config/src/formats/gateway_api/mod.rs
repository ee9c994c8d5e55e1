//! The Kubernetes Gateway API front-end: `gateway.networking.k8s.io` `Gateway` and `HTTPRoute`
//! (and `ReferenceGrant`), loaded into the same routing model as Istio's objects.
//!
//! Gateway API semantics kept here: a route attaches to a Gateway through `parentRefs` (and the
//! listener's `allowedRoutes`: the Gateway's own namespace unless it says `All`); its
//! hostnames are intersected with the listener's ([`attach`]); rules are ordered by the
//! specification's precedence, not by position ([`rules`]); `PathPrefix` matches whole path
//! segments; a `Service` backend is `name.namespace.svc.cluster.local`, resolved like any host
//! (a ServiceEntry or native service), else by its cluster DNS name `name.namespace.svc`
//! ([`backends`]).

mod attach;
mod backends;
mod retry;
mod rules;
mod spec;

use serde_norway::Value;

use crate::context::Translation;
use crate::de::{Doc, Result};
use crate::error::Warning;
use crate::k8s::{Read, Ref};
pub(crate) use spec::Kind;

/// The API group, and the versions of it the gateway reads.
pub(crate) const GROUP: &str = "gateway.networking.k8s.io";
pub(crate) const VERSIONS: &[&str] = &["v1", "v1beta1"];

/// An object of this group by its kind; `None` for a kind the gateway does not implement.
pub(crate) fn read(kind: &str, value: Value, doc: Doc<'_>, warnings: &mut Vec<Warning>) -> Result<Option<Read<Kind>>> {
    use crate::k8s::spec;
    match kind {
        "Gateway" => spec(GROUP, value, doc, warnings, Kind::Gateway),
        "HTTPRoute" => spec(GROUP, value, doc, warnings, Kind::HttpRoute),
        "ReferenceGrant" => spec(GROUP, value, doc, warnings, Kind::ReferenceGrant),
        _ => Ok(None),
    }
}

/// A core `v1` `Namespace`: its labels, which a listener's `allowedRoutes.namespaces.selector`
/// selects by.
pub(crate) fn read_namespace(value: Value, doc: Doc<'_>) -> Result<Option<Read<Kind>>> {
    crate::k8s::metadata_only("", value, doc, Kind::Namespace)
}

/// Turns the Gateway API objects into sources: the Gateways this gateway is first, then the
/// routes attached to their listeners, ordered by precedence after the other formats' routes.
pub(crate) fn build(translation: &mut Translation, objects: &[Ref<'_, Kind>]) -> Result<()> {
    let namespaces = attach::Namespaces::new(objects);
    let mut listeners = Vec::new();
    for &o in objects {
        if let Kind::Gateway(g) = o.spec {
            attach::gateway(&mut translation.object(o, objects), g, &namespaces, &mut listeners);
        }
    }
    let mut entries = Vec::new();
    for &o in objects {
        let mut cx = translation.object(o, objects);
        match o.spec {
            Kind::ReferenceGrant(g) => {
                let from: Vec<String> = g.from.iter().map(|f| format!("{} of {}", f.kind, f.namespace)).collect();
                cx.loaded(format!("lets {} refer to this namespace", from.join(", ")));
            }
            Kind::HttpRoute(route) => {
                if let Some(hosts) = attach::attach(&mut cx, route, &listeners) {
                    rules::lower(&mut cx, route, &hosts, &mut entries)?;
                }
            }
            Kind::Namespace => cx.loaded(format!("labels {}", attach::labels_text(o.meta))),
            Kind::Gateway(_) => {}
        }
    }
    // Gateway API orders rules by precedence across all routes, after the other formats' routes.
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    for (rank, mut e) in entries.into_iter().enumerate() {
        e.route.order = (usize::MAX, 0, rank);
        translation.sources.routes.push(e.route);
    }
    Ok(())
}
