//! Backends: a `Service` (`name.namespace.svc.cluster.local`, resolved like any host, falling
//! back to its cluster DNS name) or Istio's `Hostname` kind naming a ServiceEntry host; one in
//! another namespace only with a ReferenceGrant there. A backend that cannot be sent to (a kind
//! not implemented, a reference not permitted, a host nothing defines) answers 500 for its share
//! of the rule's requests, as the specification says, and the route's status has the reason.

use super::spec::{BackendRef, Filter, Kind};
use crate::context::ObjectCx;
use crate::de::Result;
use crate::k8s::names::qualify;
use crate::model::HeaderOps;
use crate::sources::{DestRef, GatewayBackend, HostPort};
use crate::status::Reason;

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

/// The destination `b` names (a mirror's: no filters of its own, nothing to add to responses).
pub(super) fn mirror_backend(cx: &mut ObjectCx<'_, Kind>, path: &str, b: &BackendRef) -> Result<DestRef> {
    if !b.filters.is_empty() {
        cx.warn(&format!("{path}.filters"), "a mirror's backendRef takes no filters; ignored");
    }
    backend(cx, path, b, &HeaderOps::default())
}

/// The destination `b` names, with its filters and the rule's response header changes
/// (`rule_response`), which apply to whichever backend answers.
pub(super) fn backend(cx: &mut ObjectCx<'_, Kind>, path: &str, b: &BackendRef, rule_response: &HeaderOps) -> Result<DestRef> {
    let doc = cx.doc();
    let origin = doc.origin(&format!("{path}.name"));
    let group = b.group.as_deref().unwrap_or("");
    let kind = b.kind.as_deref().unwrap_or("Service");
    let port = b.port.map(|p| p.0);
    let mut rules = GatewayBackend { response_headers: rule_response.clone(), ..GatewayBackend::default() };
    filters(cx, path, &b.filters, &mut rules)?;
    let dest = |host: String, rules: GatewayBackend| DestRef {
        host,
        written: b.name.clone(),
        subset: None,
        port,
        subset_origin: origin.clone(),
        origin: origin.clone(),
        fallback: Some(rules),
    };
    match (group, kind) {
        ("" | "core", "Service") => {
            let ns = b.namespace.clone().unwrap_or_else(|| cx.namespace().to_string());
            let Some(number) = port else {
                return Err(doc.err(&format!("{path}.port"), "a Service backend needs a port"));
            };
            rules.cluster_dns = Some(HostPort { host: format!("{}.{ns}.svc", b.name.to_ascii_lowercase()), port: number });
            Ok(dest(qualify(&b.name, &ns), rules))
        }
        ("networking.istio.io", "Hostname") => {
            // As the ServiceEntry writes it: a short host there is stored qualified by the
            // ServiceEntry's namespace, which the route's namespace is the first guess at.
            rules.alternatives = vec![qualify(&b.name, cx.namespace())];
            Ok(dest(b.name.to_ascii_lowercase(), rules))
        }
        _ => {
            let why = format!(
                "backend kind {group}/{kind} is not implemented (Service, or networking.istio.io/Hostname): requests for it are answered 500"
            );
            rules.unresolved = Some((Reason::InvalidKind, why));
            Ok(dest(b.name.to_ascii_lowercase(), rules))
        }
    }
}

/// A backend the route may not refer to (no ReferenceGrant): its share answers 500.
pub(super) fn not_permitted(cx: &ObjectCx<'_, Kind>, path: &str, b: &BackendRef) -> DestRef {
    let origin = cx.doc().origin(&format!("{path}.name"));
    DestRef {
        host: b.name.to_ascii_lowercase(),
        written: b.name.clone(),
        subset: None,
        port: b.port.map(|p| p.0),
        subset_origin: origin.clone(),
        origin,
        fallback: Some(GatewayBackend {
            unresolved: Some((Reason::RefNotPermitted, ungranted(cx, b, "requests for it are answered 500"))),
            ..GatewayBackend::default()
        }),
    }
}

/// A backendRef's filters: header changes of requests to it and of its responses.
fn filters(cx: &mut ObjectCx<'_, Kind>, path: &str, filters: &[Filter], rules: &mut GatewayBackend) -> Result<()> {
    let doc = cx.doc();
    for (i, f) in filters.iter().enumerate() {
        let fpath = format!("{path}.filters[{i}]");
        let missing = || doc.err(&fpath, format!("filter type {} needs its settings", f.kind));
        match f.kind.as_str() {
            "RequestHeaderModifier" => header_ops(f.request_header_modifier.as_ref().ok_or_else(missing)?, &mut rules.request_headers),
            "ResponseHeaderModifier" => header_ops(f.response_header_modifier.as_ref().ok_or_else(missing)?, &mut rules.response_headers),
            other => cx.warn(&fpath, format!("filter type {other} on a backendRef is not implemented by this gateway; ignored")),
        }
    }
    Ok(())
}

/// A `RequestHeaderModifier` or `ResponseHeaderModifier` added to `ops`.
pub(super) fn header_ops(m: &super::spec::HeaderModifier, ops: &mut HeaderOps) {
    ops.set.extend(m.set.iter().map(|p| (p.name.0.clone(), p.value.0.clone())));
    ops.add.extend(m.add.iter().map(|p| (p.name.0.clone(), p.value.0.clone())));
    ops.remove.extend(m.remove.iter().map(|h| h.0.clone()));
}
