//! An attached HTTPRoute's rules as routes: one per (rule, match), each with the precedence the
//! specification orders rules by across all routes (exact path, longest prefix, method, most
//! header matches, most query matches, then the oldest route), not by position.

use std::cmp::Reverse;

use http::StatusCode;

use super::backends::{backend, granted, header_ops, mirror_backend, not_permitted, ungranted};
use super::spec::{GMatch, HttpRouteSpec, Kind, NameMatch, PathModifier, Rule};
use crate::context::ObjectCx;
use crate::de::{Doc, Result, check_percent, header_name, one_line, translate_re2};
use crate::k8s::annotations;
use crate::model::{
    Answer, CompareSpec, HeaderMatch, HeaderOps, PathRedirect, QueryMatch, Redirect, RedirectPorts, RouteMatch, StringMatch, UriRewrite,
};
use crate::sources::{PendingMirror, PendingRoute};
use crate::status::Reason;

/// The specification's precedence, most specific first: path class (exact, prefix, regex),
/// longer path, with a method, more headers, more query parameters, then the older route (load
/// order), its `namespace/name`, the rule and the match position.
pub(super) type Precedence = (u8, Reverse<usize>, u8, Reverse<usize>, Reverse<usize>, (usize, usize), String, usize, usize);

/// One (rule, match) of a route, before the routes are put in precedence order.
pub(super) struct Entry {
    pub key: Precedence,
    pub route: PendingRoute,
}

/// What every rule of one HTTPRoute shares: the hosts it is served on and the comparison its
/// annotations turn on.
struct Served<'a> {
    hosts: &'a [String],
    compare: Option<&'a CompareSpec>,
}

/// The routes of an HTTPRoute attached on `hosts`, with their precedence; notes how many.
pub(super) fn lower(cx: &mut ObjectCx<'_, Kind>, route: &HttpRouteSpec, hosts: &[String], entries: &mut Vec<Entry>) -> Result<()> {
    let o = cx.meta();
    let compare = annotations::compare(o)?;
    let served = Served { hosts, compare: compare.as_ref() };
    let mut count = 0;
    for (r, rule) in route.rules.iter().enumerate() {
        let matches = if rule.matches.is_empty() {
            vec![GMatch { path: None, headers: Vec::new(), query_params: Vec::new(), method: None }]
        } else {
            rule.matches.clone()
        };
        let several = matches.len() > 1;
        for (m, gm) in matches.iter().enumerate() {
            let path = format!("spec.rules[{r}]");
            let base = rule.name.clone().unwrap_or_else(|| r.to_string());
            let route_name = cx.route_name_base();
            let name = if several { format!("{route_name}.{base}.{m}") } else { format!("{route_name}.{base}") };
            let (route_match, class, length) = match_of(cx.doc(), &format!("{path}.matches[{m}]"), gm)?;
            let pending = rule_route(cx, &path, name, rule, route_match, &served)?;
            let key = (
                class,
                Reverse(length),
                u8::from(gm.method.is_none()),
                Reverse(gm.headers.len()),
                Reverse(gm.query_params.len()),
                o.order,
                format!("{}/{}", o.namespace, o.name),
                r,
                m,
            );
            entries.push(Entry { key, route: pending });
            count += 1;
        }
    }
    cx.loaded(format!("{count} route{} on {}", if count == 1 { "" } else { "s" }, hosts.join(", ")));
    Ok(())
}

/// The model's match, with its precedence class (0 exact, 1 prefix, 2 regex) and path length.
fn match_of(doc: Doc<'_>, path: &str, m: &GMatch) -> Result<(RouteMatch, u8, usize)> {
    let (kind, value) = match &m.path {
        Some(p) => (p.kind.as_deref().unwrap_or("PathPrefix"), p.value.clone().unwrap_or_else(|| "/".to_string())),
        None => ("PathPrefix", "/".to_string()),
    };
    if !value.starts_with('/') && kind != "RegularExpression" {
        return Err(doc.err(&format!("{path}.path.value"), format!("\"{value}\" must start with `/`")));
    }
    let (uri, class) = match kind {
        "Exact" => (StringMatch::Exact(value.clone()), 0),
        "PathPrefix" => (StringMatch::PathPrefix(value.clone()), 1),
        "RegularExpression" => (regex(doc, &format!("{path}.path.value"), &value)?, 2),
        other => {
            return Err(doc
                .err(&format!("{path}.path.type"), format!("unknown path match type \"{other}\" (Exact, PathPrefix, RegularExpression)"))
                .because(Reason::UnsupportedValue));
        }
    };
    let mut headers = Vec::new();
    for (i, h) in m.headers.iter().enumerate() {
        let name = header_name(&h.name).map_err(|e| doc.err(&format!("{path}.headers[{i}].name"), e))?;
        headers.push(HeaderMatch { name, value: name_match(doc, &format!("{path}.headers[{i}]"), h)? });
    }
    let mut query_params = Vec::new();
    for (i, q) in m.query_params.iter().enumerate() {
        query_params.push(QueryMatch { name: q.name.clone(), value: name_match(doc, &format!("{path}.queryParams[{i}]"), q)? });
    }
    let methods = m.method.iter().map(|m| m.0.clone()).collect();
    Ok((RouteMatch { uri: Some(uri), methods, headers, authority: None, query_params, ignore_uri_case: false }, class, value.len()))
}

fn name_match(doc: Doc<'_>, path: &str, m: &NameMatch) -> Result<StringMatch> {
    match m.kind.as_deref().unwrap_or("Exact") {
        "Exact" => Ok(StringMatch::Exact(m.value.clone())),
        "RegularExpression" => regex(doc, &format!("{path}.value"), &m.value),
        other => Err(doc.err(&format!("{path}.type"), format!("unknown match type \"{other}\" (Exact, RegularExpression)"))),
    }
}

fn regex(doc: Doc<'_>, path: &str, pattern: &str) -> Result<StringMatch> {
    let translated = translate_re2(pattern).map_err(|e| doc.err(path, format!("bad regex \"{pattern}\": {e}")))?;
    StringMatch::regex(&translated).map_err(|e| doc.err(path, format!("bad regex \"{pattern}\": {}", one_line(&e))))
}

/// One (rule, match) of an HTTPRoute as a route: its filters (header changes, rewrite, redirect,
/// mirrors) and its backends.
fn rule_route(
    cx: &mut ObjectCx<'_, Kind>,
    path: &str,
    name: String,
    rule: &Rule,
    route_match: RouteMatch,
    served: &Served<'_>,
) -> Result<PendingRoute> {
    let doc = cx.doc();
    let origin = |p: &str| doc.origin(p);
    let mut rewrite_uri = None;
    let mut rewrite_authority = None;
    let mut answer = None;
    let mut mirrors = Vec::new();
    let mut request_headers = HeaderOps::default();
    let mut response_headers = HeaderOps::default();
    for (i, f) in rule.filters.iter().enumerate() {
        let fpath = format!("{path}.filters[{i}]");
        let missing = || doc.err(&fpath, format!("filter type {} needs its settings", f.kind));
        match f.kind.as_str() {
            "RequestHeaderModifier" => header_ops(f.request_header_modifier.as_ref().ok_or_else(missing)?, &mut request_headers),
            "ResponseHeaderModifier" => header_ops(f.response_header_modifier.as_ref().ok_or_else(missing)?, &mut response_headers),
            "URLRewrite" => {
                let u = f.url_rewrite.as_ref().ok_or_else(missing)?;
                rewrite_authority = u.hostname.clone();
                if let Some(p) = &u.path {
                    rewrite_uri = Some(match path_modifier(doc, &format!("{fpath}.urlRewrite.path"), p)? {
                        PathRedirect::Full(s) => UriRewrite::Full(s),
                        PathRedirect::Prefix(s) | PathRedirect::IstioPrefix(s) => UriRewrite::Prefix(s),
                    });
                }
            }
            "RequestRedirect" => {
                let r = f.request_redirect.as_ref().ok_or_else(missing)?;
                let code = r.status_code.map_or(302, |c| c.0);
                // 301 and 302 are Core; 303, 307 and 308 Extended (HTTPRoute303/307/308RedirectStatusCode).
                let status = match code {
                    301 => StatusCode::MOVED_PERMANENTLY,
                    302 => StatusCode::FOUND,
                    303 => StatusCode::SEE_OTHER,
                    307 => StatusCode::TEMPORARY_REDIRECT,
                    308 => StatusCode::PERMANENT_REDIRECT,
                    _ => {
                        return Err(doc
                            .err(
                                &format!("{fpath}.requestRedirect.statusCode"),
                                format!("{code}: Gateway API redirects are 301, 302, 303, 307 or 308"),
                            )
                            .because(Reason::UnsupportedValue));
                    }
                };
                answer = Some(Answer::Redirect(Redirect {
                    ports: RedirectPorts::KeepUnlessScheme,
                    status,
                    scheme: r.scheme.clone(),
                    host: r.hostname.clone(),
                    port: r.port.map(|p| p.0),
                    path: r.path.as_ref().map(|p| path_modifier(doc, &format!("{fpath}.requestRedirect.path"), p)).transpose()?,
                }));
            }
            "RequestMirror" => {
                let m = f.request_mirror.as_ref().ok_or_else(missing)?;
                let percent = match (&m.percent, &m.fraction) {
                    (Some(p), None) => p.0,
                    (None, Some(f)) => {
                        let d = f.denominator.map_or(100, |d| d.0);
                        if d == 0 || f.numerator.0 > d {
                            return Err(doc
                                .err(&format!("{fpath}.requestMirror.fraction"), "numerator must be <= denominator, and denominator > 0"));
                        }
                        check_percent(100.0 * f64::from(f.numerator.0) / f64::from(d)).map_err(|e| doc.err(&fpath, e))?
                    }
                    (None, None) => 100.0,
                    (Some(_), Some(_)) => return Err(doc.err(&format!("{fpath}.requestMirror"), "give percent or fraction, not both")),
                };
                let mpath = format!("{fpath}.requestMirror.backendRef");
                if !granted(cx, &m.backend_ref) {
                    let why = ungranted(cx, &m.backend_ref, "the mirror is not sent");
                    cx.warn(&mpath, why);
                    continue;
                }
                let to = mirror_backend(cx, &mpath, &m.backend_ref)?;
                mirrors.push(PendingMirror::imported(doc.origin(&mpath), to, percent, served.compare));
            }
            other => cx.warn(&fpath, format!("filter type {other} is not implemented by this gateway; ignored")),
        }
    }
    let mut destinations = Vec::new();
    if answer.is_some() {
        if !rule.backend_refs.is_empty() {
            cx.warn(&format!("{path}.backendRefs"), "a rule that redirects sends nothing to its backendRefs; ignored");
        }
        mirrors.clear();
    } else if rule.backend_refs.is_empty() {
        // The specification: no backend and no filter that answers -> the gateway answers 500.
        answer = Some(Answer::Direct { status: StatusCode::INTERNAL_SERVER_ERROR, body: Vec::new() });
        cx.warn(path, "no backendRefs: requests are answered 500, as the Gateway API specifies");
    } else {
        // A backend that cannot be sent to answers 500 for its share; the others serve theirs.
        for (i, b) in rule.backend_refs.iter().enumerate() {
            let bpath = format!("{path}.backendRefs[{i}]");
            let dest = if granted(cx, b) { backend(cx, &bpath, b, &response_headers)? } else { not_permitted(cx, &bpath, b) };
            destinations.push((dest, Some(b.weight.map_or(1, |w| w.0))));
        }
    }
    Ok(PendingRoute {
        plain_http: Default::default(),
        catch_all_last: false,
        promote: None,
        upgrades: None,
        name: Some(name),
        origin: origin(path),
        order: (0, 0, 0),
        hosts: served.hosts.to_vec(),
        matches: vec![route_match],
        rewrite_uri,
        rewrite_authority,
        answer,
        request_headers,
        destinations,
        destinations_origin: origin(&format!("{path}.backendRefs")),
        mirrors,
        timeout: timeout(rule),
        retries: rule.retry.as_ref().map(|r| {
            let mut policy = super::retry::policy(cx, &format!("{path}.retry"), r);
            // With retries, `backendRequest` is each attempt's own deadline.
            policy.per_try_timeout = rule.timeouts.as_ref().and_then(|t| t.backend_request).map(|d| d.0).filter(|d| !d.is_zero());
            policy
        }),
    })
}

/// The rule's deadline: `timeouts.request`; without a `retry`, `timeouts.backendRequest` when
/// shorter (the one request to the backend is then the whole of it; the specification requires
/// backendRequest <= request); with one, `backendRequest` bounds each attempt instead (its
/// retry policy's per-try timeout). Zero is no timeout, as the specification says.
fn timeout(rule: &Rule) -> Option<std::time::Duration> {
    let t = rule.timeouts.as_ref()?;
    if rule.retry.is_some() {
        return t.request.map(|d| d.0);
    }
    match (t.request.map(|d| d.0), t.backend_request.map(|d| d.0)) {
        (Some(r), Some(b)) if !b.is_zero() && (r.is_zero() || b < r) => Some(b),
        (Some(r), _) => Some(r),
        (None, b) => b,
    }
}

fn path_modifier(doc: Doc<'_>, path: &str, p: &PathModifier) -> Result<PathRedirect> {
    match (p.kind.as_str(), &p.full, &p.prefix) {
        ("ReplaceFullPath", Some(full), _) => Ok(PathRedirect::Full(full.clone())),
        ("ReplacePrefixMatch", _, Some(prefix)) => Ok(PathRedirect::Prefix(prefix.clone())),
        (kind @ ("ReplaceFullPath" | "ReplacePrefixMatch"), _, _) => Err(doc.err(path, format!("type {kind} needs its value"))),
        (other, _, _) => {
            Err(doc.err(&format!("{path}.type"), format!("unknown path modifier \"{other}\" (ReplaceFullPath, ReplacePrefixMatch)")))
        }
    }
}
