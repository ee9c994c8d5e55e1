//! Backends: a `Service` (`name.namespace.svc.cluster.local`, resolved like any host, falling
//! back to its cluster DNS name) or Istio's `Hostname` kind naming a ServiceEntry host; one in
//! another namespace only with a ReferenceGrant there.

use super::spec::{BackendRef, Kind};
use crate::context::ObjectCx;
use crate::de::Result;
use crate::k8s::names::qualify;
use crate::sources::{DestRef, HostPort};

/// Whether the route may send to `b`: a Service in its own namespace, or in another whose
/// ReferenceGrant lets HTTPRoutes of the route's namespace refer to it.
pub(super) fn granted(cx: &ObjectCx<'_, Kind>, b: &BackendRef) -> bool {
    let is_service = matches!(b.group.as_deref().unwrap_or(""), "" | "core") && b.kind.as_deref().unwrap_or("Service") == "Service";
    let route_ns = cx.namespace();
    let ns = b.namespace.as_deref().unwrap_or(route_ns);
    !is_service
        || route_ns == ns
        || cx.objects.iter().any(|o| {
            let Kind::ReferenceGrant(g) = o.spec else { return false };
            o.meta.namespace == ns
                && g.from.iter().any(|f| f.group == "gateway.networking.k8s.io" && f.kind == "HTTPRoute" && f.namespace == route_ns)
                && g.to.iter().any(|t| {
                    (t.group.is_empty() || t.group == "core") && t.kind == "Service" && t.name.as_deref().is_none_or(|n| n == b.name)
                })
        })
}

/// Why `b` is not sent to, and what happens instead.
pub(super) fn ungranted(cx: &ObjectCx<'_, Kind>, b: &BackendRef, consequence: &str) -> String {
    let route_ns = cx.namespace();
    let ns = b.namespace.as_deref().unwrap_or(route_ns);
    format!("Service {ns}/{} is in another namespace and no ReferenceGrant there allows HTTPRoutes of {route_ns}: {consequence}", b.name)
}

/// The destination `b` names.
pub(super) fn backend(cx: &ObjectCx<'_, Kind>, path: &str, b: &BackendRef) -> Result<DestRef> {
    let doc = cx.doc();
    let origin = doc.origin(&format!("{path}.name"));
    let group = b.group.as_deref().unwrap_or("");
    let kind = b.kind.as_deref().unwrap_or("Service");
    let port = b.port.map(|p| p.0);
    match (group, kind) {
        ("" | "core", "Service") => {
            let ns = b.namespace.clone().unwrap_or_else(|| cx.namespace().to_string());
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
