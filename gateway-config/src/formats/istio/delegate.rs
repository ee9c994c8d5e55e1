//! Delegation: a route of a VirtualService hands its requests to the routes of another
//! VirtualService (one without hosts), whose matches are merged with the delegating route's.

use std::collections::BTreeSet;

use super::route::{Place, http_match, http_route};
use super::spec::{Delegate, HttpRoute, Kind};
use crate::context::ObjectCx;
use crate::de::{Result, Scalar};
use crate::k8s::Ref;
use crate::k8s::annotations;
use crate::model::{RouteMatch, StringMatch};

/// The VirtualServices some route delegates to, as (namespace, name).
pub(super) fn delegated(objects: &[Ref<'_, Kind>]) -> BTreeSet<(String, String)> {
    objects
        .iter()
        .filter_map(|o| match o.spec {
            Kind::VirtualService(vs) => Some((o.meta, vs)),
            _ => None,
        })
        .flat_map(|(o, vs)| {
            vs.http
                .iter()
                .flatten()
                .filter_map(|h| h.delegate.as_ref())
                .map(|d| (d.namespace.clone().unwrap_or_else(|| o.namespace.clone()), d.name.clone()))
        })
        .collect()
}

/// The routes of the delegate `d` names, served on the delegating route's `hosts` with its
/// matches merged in; returns how many.
pub(super) fn delegate(cx: &mut ObjectCx<'_, Kind>, at: &Place, h: &HttpRoute, d: &Delegate, hosts: &[String]) -> Result<usize> {
    let Place { path, name, order } = at;
    let (parent, doc) = (cx.meta(), cx.doc());
    let ns = d.namespace.clone().unwrap_or_else(|| parent.namespace.clone());
    if h.route.is_some() || h.redirect.is_some() || h.direct_response.is_some() {
        return Err(doc.err(&format!("{path}.delegate"), "a route with `delegate` cannot also have route, redirect or directResponse"));
    }
    let child = cx.objects.iter().find(|o| matches!(o.spec, Kind::VirtualService(_)) && o.meta.namespace == ns && o.meta.name == d.name);
    let Some(&child) = child else {
        cx.warn(
            &format!("{path}.delegate"),
            format!("delegate VirtualService {ns}/{} is not in the configuration; this route serves nothing", d.name),
        );
        return Ok(0);
    };
    let Kind::VirtualService(child_vs) = child.spec else { return Ok(0) };
    let cdoc = child.meta.at.doc();
    let compare = annotations::compare(child.meta)?.or(annotations::compare(parent)?);
    let parent_matches = h
        .matches
        .iter()
        .flatten()
        .enumerate()
        .map(|(j, m)| http_match(doc, &format!("{path}.match[{j}]"), m))
        .collect::<Result<Vec<_>>>()?;
    // The child's routes are lowered as the child's (its namespace, its warnings).
    let mut cx = cx.for_object(child);
    let mut added = 0;
    let children = child_vs.http.iter().flatten().enumerate();
    let count = child_vs.http.as_ref().map_or(0, Vec::len);
    for (i, c) in children {
        let cpath = format!("spec.http[{i}]");
        if c.delegate.is_some() {
            return Err(cdoc.err(&format!("{cpath}.delegate"), "a delegate VirtualService cannot delegate again (Istio allows one level)"));
        }
        let cname = match (&c.name, count) {
            (Some(Scalar(n)), _) => format!("{name}.{n}"),
            (None, 1) => format!("{name}.{}", child.meta.name),
            (None, _) => format!("{name}.{}.{i}", child.meta.name),
        };
        let place = Place { path: cpath.clone(), name: cname, order: (order.0, order.1, order.2 + i) };
        let mut route = http_route(&mut cx, place, c, hosts, compare.as_ref())?;
        if !parent_matches.is_empty() {
            let child_matches = if route.matches.is_empty() { vec![None] } else { route.matches.iter().cloned().map(Some).collect() };
            let mut merged = Vec::new();
            for p in &parent_matches {
                for c in &child_matches {
                    match c {
                        None => merged.push(p.clone()),
                        Some(c) => merged.extend(merge_matches(p, c)),
                    }
                }
            }
            if merged.is_empty() {
                cx.warn(
                    &cpath,
                    format!("its matches conflict with every match of the delegating route ({}: {path}); route dropped", doc.label),
                );
                continue;
            }
            route.matches = merged;
        }
        cx.sources().routes.push(route);
        added += 1;
    }
    Ok(added)
}

/// Istio's delegate rule (pilot/pkg/model/virtualservice.go hasConflict): a child's match
/// must lie within its parent's; the merged match holds both, the child's condition where
/// both give one. `None` when they conflict.
fn merge_matches(parent: &RouteMatch, child: &RouteMatch) -> Option<RouteMatch> {
    if parent.ignore_uri_case != child.ignore_uri_case
        || conflict(parent.uri.as_ref(), child.uri.as_ref())
        || conflict(parent.authority.as_ref(), child.authority.as_ref())
        || !parent.methods.is_empty() && !child.methods.is_empty() && parent.methods != child.methods
    {
        return None;
    }
    let mut headers = parent.headers.clone();
    for h in &child.headers {
        match headers.iter().position(|p| p.name == h.name) {
            Some(i) if conflict(Some(&headers[i].value), Some(&h.value)) => return None,
            Some(i) => headers[i] = h.clone(),
            None => headers.push(h.clone()),
        }
    }
    let mut query_params = parent.query_params.clone();
    for q in &child.query_params {
        match query_params.iter().position(|p| p.name == q.name) {
            Some(i) if conflict(Some(&query_params[i].value), Some(&q.value)) => return None,
            Some(i) => query_params[i] = q.clone(),
            None => query_params.push(q.clone()),
        }
    }
    Some(RouteMatch {
        uri: child.uri.clone().or_else(|| parent.uri.clone()),
        methods: if child.methods.is_empty() { parent.methods.clone() } else { child.methods.clone() },
        headers,
        authority: child.authority.clone().or_else(|| parent.authority.clone()),
        query_params,
        ignore_uri_case: child.ignore_uri_case,
    })
}

/// Istio's stringMatchConflict: when both give a condition, only an exact child under the
/// same exact parent, or a prefix or exact child that starts with a prefix parent, lies within
/// it (a regex on either side always conflicts).
fn conflict(parent: Option<&StringMatch>, child: Option<&StringMatch>) -> bool {
    use StringMatch::{Exact, PathPrefix, Prefix};
    let (Some(parent), Some(child)) = (parent, child) else { return false };
    match (parent, child) {
        (Exact(e), Exact(c)) => c != e,
        (Prefix(p) | PathPrefix(p), Prefix(c) | PathPrefix(c) | Exact(c)) => !c.starts_with(p.as_str()),
        _ => true,
    }
}
