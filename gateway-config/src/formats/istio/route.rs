//! One `http` entry of a VirtualService as a route: its matches, rewrite, destinations or own
//! answer (redirect, direct response), header changes and mirrors.

use std::time::Duration;

use http::StatusCode;

use super::spec::{Destination, DirectBody, DirectResponse, HttpMatch, HttpRedirect, HttpRoute, Kind};
use crate::context::ObjectCx;
use crate::de::{self, Doc, IstioHeader, MatchSpec, Presence, Result};
use crate::k8s::names::qualify;
use crate::model::{
    Answer, CompareSpec, HeaderMatch, HeaderOps, PathRedirect, QueryMatch, Redirect, RedirectPorts, RouteMatch, StringMatch, UriRewrite,
    regex_source,
};
use crate::sources::{DestRef, PendingMirror, PendingRoute};

/// Where one `http` entry of a VirtualService sits: its key path, its route name and its place
/// in the load order.
pub(super) struct Place {
    pub path: String,
    pub name: String,
    pub order: (usize, usize, usize),
}

/// One `http` entry (not a delegate) as a route, on `hosts`, its mirrors comparing as `compare` says.
pub(super) fn http_route(
    cx: &mut ObjectCx<'_, Kind>,
    at: Place,
    h: &HttpRoute,
    hosts: &[String],
    compare: Option<&CompareSpec>,
) -> Result<PendingRoute> {
    let Place { path, name, order } = at;
    let path = path.as_str();
    let doc = cx.doc();
    let mut matches = Vec::new();
    for (j, m) in h.matches.iter().flatten().enumerate() {
        matches.push(http_match(doc, &format!("{path}.match[{j}]"), m)?);
    }
    let (rewrite_uri, mut rewrite_authority) = match &h.rewrite {
        Some(r) => (r.uri.as_ref().map(|s| UriRewrite::Istio(s.0.clone())), r.authority.as_ref().map(|s| s.0.clone())),
        None => (None, None),
    };
    let mut request_headers = HeaderOps::default();
    if let Some(r) = h.headers.as_ref().and_then(|h| h.request.as_ref()) {
        for (name, value) in &r.set.0 {
            match name {
                IstioHeader::Name(name) => request_headers.set.push((name.clone(), value.0.clone())),
                // Setting `:authority` is what `rewrite.authority` does.
                IstioHeader::Authority if rewrite_authority.is_none() => {
                    rewrite_authority = Some(value.0.to_str().unwrap_or_default().to_string());
                }
                IstioHeader::Authority => {
                    cx.warn(&format!("{path}.headers.request.set"), "`:authority` is set by `rewrite.authority` too; the rewrite wins")
                }
            }
        }
        request_headers.add = r.add.0.iter().map(|(n, v)| (n.0.clone(), v.0.clone())).collect();
        request_headers.remove = r.remove.iter().map(|n| n.0.clone()).collect();
    }
    let route_path = format!("{path}.route");
    let actions = [h.route.is_some(), h.redirect.is_some(), h.direct_response.is_some()].iter().filter(|a| **a).count();
    if actions > 1 {
        return Err(doc.err(path, "route, redirect and directResponse are exclusive; give one"));
    }
    // Istio's validation refuses these pairs (pkg/config/validation).
    if h.redirect.is_some() && h.rewrite.is_some() {
        return Err(doc.err(path, "redirect and rewrite cannot be combined (Istio refuses it)"));
    }
    if h.mirror.is_some() && h.mirrors.is_some() {
        return Err(doc.err(path, "mirror and mirrors cannot both be given (Istio refuses it); use mirrors"));
    }
    let answer = match (&h.redirect, &h.direct_response) {
        (Some(r), _) => Some(redirect(doc, &format!("{path}.redirect"), r)?),
        (_, Some(d)) => Some(direct_response(doc, &format!("{path}.directResponse"), d)?),
        _ => None,
    };
    let mut destinations = Vec::new();
    match (&h.route, &answer) {
        (Some(route), _) => {
            for (j, r) in route.iter().enumerate() {
                let dest = destination(cx, &format!("{route_path}[{j}].destination"), &r.destination)?;
                destinations.push((dest, r.weight.map(|w| w.0)));
            }
            if destinations.len() > 1 && destinations.iter().all(|(_, w)| w.unwrap_or(0) == 0) {
                return Err(
                    doc.err(&route_path, "total destination weight = 0: several destinations need weights (Istio refuses them without)")
                );
            }
        }
        (None, Some(_)) => {}
        (None, None) => {
            return Err(doc.err(&route_path, "required key is missing (a route needs route, redirect, directResponse or delegate)"));
        }
    }
    let mut mirrors = Vec::new();
    if let Some(m) = &h.mirror {
        let percent = match (&h.mirror_percentage, &h.mirror_percent) {
            (Some(p), _) => p.value.map_or(0.0, |v| v.0),
            (None, Some(legacy)) => legacy.0,
            (None, None) => 100.0,
        };
        let mirror_path = format!("{path}.mirror");
        mirrors.push(PendingMirror::imported(cx.origin(&mirror_path), destination(cx, &mirror_path, m)?, percent, compare));
    } else {
        if h.mirror_percentage.is_some() {
            cx.warn(&format!("{path}.mirrorPercentage"), "no `mirror` on this route; ignored");
        }
        if h.mirror_percent.is_some() {
            cx.warn(&format!("{path}.mirror_percent"), "no `mirror` on this route; ignored");
        }
    }
    for (j, m) in h.mirrors.iter().flatten().enumerate() {
        let mirror_path = format!("{path}.mirrors[{j}]");
        let dest = destination(cx, &format!("{mirror_path}.destination"), &m.destination)?;
        let percent = match &m.percentage {
            Some(p) => p.value.map_or(0.0, |v| v.0),
            None => 100.0,
        };
        mirrors.push(PendingMirror::imported(cx.origin(&mirror_path), dest, percent, compare));
    }
    if answer.is_some() && !mirrors.is_empty() {
        cx.warn(path, "mirrors on a route that answers itself are never sent; ignored");
        mirrors.clear();
    }
    Ok(PendingRoute {
        plain_http: Default::default(),
        catch_all_last: false,
        promote: None,
        upgrades: None,
        name: Some(name),
        origin: doc.origin(path),
        order,
        hosts: hosts.to_vec(),
        matches,
        rewrite_uri,
        rewrite_authority,
        answer,
        request_headers,
        destinations,
        destinations_origin: doc.origin(&route_path),
        mirrors,
        // Istio has no route timeout unless one is written (the istio.io timeouts task): zero
        // turns the gateway's default whole-response deadline off; the stream idle timeout
        // (`timeouts.stream_idle`) still resets a response that stops moving.
        timeout: Some(h.timeout.map_or(Duration::ZERO, |t| t.0)),
        retries: h.retries.as_ref().map(|r| super::retry::policy(cx, &format!("{path}.retries"), r)),
    })
}

fn redirect(doc: Doc<'_>, path: &str, r: &HttpRedirect) -> Result<Answer> {
    let code = r.redirect_code.map_or(301, |c| c.0);
    let status = match code {
        301 => StatusCode::MOVED_PERMANENTLY,
        302 => StatusCode::FOUND,
        303 => StatusCode::SEE_OTHER,
        307 => StatusCode::TEMPORARY_REDIRECT,
        308 => StatusCode::PERMANENT_REDIRECT,
        _ => {
            return Err(doc.err(&format!("{path}.redirectCode"), format!("{code} is not a redirect status (301, 302, 303, 307 or 308)")));
        }
    };
    let (host, port) = match &r.authority {
        Some(a) => {
            let (host, port) = http_rules::split_host_port(a);
            if host.is_empty() || host.contains(':') && !host.contains("::") {
                return Err(doc.err(&format!("{path}.authority"), format!("invalid authority \"{a}\"")));
            }
            (Some(host.to_string()), port)
        }
        None => (None, None),
    };
    for (key, value) in [("uri", &r.uri), ("prefixRewrite", &r.prefix_rewrite)] {
        if let Some(v) = value
            && !v.starts_with('/')
        {
            return Err(doc.err(&format!("{path}.{key}"), format!("\"{v}\" must start with `/`")));
        }
    }
    if r.uri.is_some() && r.prefix_rewrite.is_some() {
        return Err(doc.err(path, "uri and prefixRewrite both given; a redirect takes one"));
    }
    let ports = match r.derive_port.as_deref().map(str::to_ascii_uppercase).as_deref() {
        _ if r.port.is_some() && r.derive_port.is_some() => {
            return Err(doc.err(path, "port and derivePort both given; a redirect takes one"));
        }
        None | Some("FROM_PROTOCOL_DEFAULT") => RedirectPorts::Envoy,
        Some("FROM_REQUEST_PORT") => RedirectPorts::FromRequest,
        Some(other) => {
            return Err(doc.err(&format!("{path}.derivePort"), format!("{other} is not FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT")));
        }
    };
    let path_redirect = match (&r.uri, &r.prefix_rewrite) {
        (_, Some(p)) => Some(PathRedirect::IstioPrefix(p.clone())),
        (Some(u), None) => Some(PathRedirect::Full(u.clone())),
        (None, None) => None,
    };
    Ok(Answer::Redirect(Redirect {
        status,
        scheme: r.scheme.clone(),
        host,
        port: r.port.map(|p| p.0).or(port),
        path: path_redirect,
        ports,
    }))
}

fn direct_response(doc: Doc<'_>, path: &str, d: &DirectResponse) -> Result<Answer> {
    let status = u16::try_from(d.status.0).ok().filter(|s| (200..600).contains(s)).and_then(|s| StatusCode::from_u16(s).ok());
    let Some(status) = status else {
        return Err(doc.err(&format!("{path}.status"), format!("{} is not an HTTP status (200..599)", d.status.0)));
    };
    let body = match &d.body {
        None => Vec::new(),
        Some(DirectBody { string: Some(s), bytes: None }) => s.clone().into_bytes(),
        Some(DirectBody { string: None, bytes: Some(b) }) => {
            base64(b).ok_or_else(|| doc.err(&format!("{path}.body.bytes"), "not valid base64"))?
        }
        Some(_) => return Err(doc.err(&format!("{path}.body"), "give exactly one of string or bytes")),
    };
    Ok(Answer::Direct { status, body })
}

/// Standard base64 (what a protobuf `bytes` field holds in YAML).
fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

pub(super) fn http_match(doc: Doc<'_>, path: &str, m: &HttpMatch) -> Result<RouteMatch> {
    let mut methods = Vec::new();
    if let Some(MatchSpec(method)) = &m.method {
        match method {
            StringMatch::Exact(text) => methods.push(de::method(text).map_err(|e| doc.err(&format!("{path}.method"), e))?),
            _ => return Err(doc.err(&format!("{path}.method"), "only `exact` method matches are supported")),
        }
    }
    let mut headers = Vec::new();
    let mut authority = m.authority.as_ref().map(|a| a.0.clone());
    for (key, Presence(value)) in m.headers.iter().flat_map(|h| &h.0) {
        match key {
            IstioHeader::Name(name) => headers.push(HeaderMatch { name: name.clone(), value: value.clone() }),
            // Envoy matches the `:authority` pseudo-header: the request's authority.
            IstioHeader::Authority if authority.is_none() => authority = Some(value.clone()),
            IstioHeader::Authority => {
                return Err(
                    doc.err(&format!("{path}.headers"), "`:authority` is matched twice (`authority` and `headers[:authority]`); give one")
                );
            }
        }
    }
    let query_params = m
        .query_params
        .iter()
        .flat_map(|q| &q.0)
        .map(|(name, Presence(value))| QueryMatch { name: name.clone(), value: value.clone() })
        .collect();
    // `uri: {}` names no kind: every path, as Envoy's prefix `/`.
    let mut uri = m.uri.as_ref().and_then(|u| u.0.clone());
    if m.ignore_uri_case
        && let Some(StringMatch::Regex(re)) = &uri
    {
        let source = regex_source(re).to_string();
        uri = Some(StringMatch::regex(&format!("(?i:{source})")).map_err(|e| doc.err(&format!("{path}.uri"), e.to_string()))?);
    }
    Ok(RouteMatch { uri, methods, headers, authority, query_params, ignore_uri_case: m.ignore_uri_case })
}

/// `{host, subset, port: {number}}`; the host qualified by the object's namespace.
fn destination(cx: &ObjectCx<'_, Kind>, path: &str, d: &Destination) -> Result<DestRef> {
    let doc = cx.doc();
    let host_path = format!("{path}.host");
    if d.host.is_empty() {
        return Err(doc.err(&host_path, "empty host"));
    }
    let subset_path = if d.subset.is_some() { format!("{path}.subset") } else { host_path.clone() };
    Ok(DestRef {
        host: qualify(&d.host, cx.namespace()),
        written: d.host.clone(),
        subset: d.subset.as_ref().map(|s| s.0.clone()),
        port: d.port.as_ref().and_then(|p| p.number).map(|p| p.0),
        origin: doc.origin(&host_path),
        subset_origin: doc.origin(&subset_path),
        fallback: None,
    })
}
