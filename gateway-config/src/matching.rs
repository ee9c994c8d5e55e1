//! Pure route matching and URI rewriting: functions of the request line and headers only,
//! with no allocation on the matching path.

use std::borrow::Cow;

use http::{HeaderMap, Method};

use crate::model::{
    Answer, Destination, DestinationId, HeaderMatch, PathRedirect, PlainHttp, RedirectPorts, Route, RouteMatch, RouteTable, StringMatch,
    UriRewrite, VirtualHost,
};
use http_rules::{host_matches, split_host_port};

/// The route a request selected, and which of its matches fitted.
#[derive(Debug, Clone, Copy)]
pub struct RouteHit<'a> {
    pub route: &'a Route,
    /// Position of `route` in [`RouteTable::routes`] (for state kept beside the table).
    pub index: usize,
    /// `None` when the route has no matches (it matches everything).
    pub match_index: Option<usize>,
    /// The request came over TLS: a redirect that does not name a scheme keeps `https`.
    pub secure: bool,
}

/// What a request selects: a route, Istio's redirect to `https://` for a host its Gateway
/// serves in clear only to redirect it, or nothing (404).
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    Route(RouteHit<'a>),
    HttpsRedirect,
    NoRoute,
}

impl<'a> Lookup<'a> {
    pub fn hit(self) -> Option<RouteHit<'a>> {
        match self {
            Lookup::Route(hit) => Some(hit),
            _ => None,
        }
    }
}

impl RouteTable {
    /// The route for a request: its virtual host by `authority`, then the first route of that
    /// host whose any match fits; `None` means 404.
    ///
    /// `path` is the request path, with or without its query string (query parameters are only
    /// matched when it is given). `authority` is the Host / `:authority` value, port included.
    pub fn find(&self, method: &Method, path: &str, headers: &HeaderMap, authority: Option<&str>) -> Option<RouteHit<'_>> {
        self.lookup(false, method, path, headers, authority).hit()
    }

    /// [`Self::find`] for a request that came over TLS (`secure`) or in clear: in clear, a
    /// host whose Gateway redirects it is [`Lookup::HttpsRedirect`], and routes that only an
    /// HTTPS server exposes are not there ([`crate::model::PlainHttp`]).
    pub fn lookup(&self, secure: bool, method: &Method, path: &str, headers: &HeaderMap, authority: Option<&str>) -> Lookup<'_> {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let host = authority.map_or("", |a| split_host_port(a).0);
        let Some(vhost) = self.virtual_host(host) else { return Lookup::NoRoute };
        if !secure && vhost.https_redirect {
            return Lookup::HttpsRedirect;
        }
        let hit = vhost.routes.iter().find_map(|&index| {
            let route = &self.routes[index];
            if !secure && route.plain_http.get(&vhost.domain).is_some_and(|p| *p != PlainHttp::Serve) {
                return None;
            }
            if route.matches.is_empty() {
                return Some(RouteHit { route, index, match_index: None, secure });
            }
            route.matches.iter().position(|m| m.fits(method, path, query, headers, authority)).map(|i| RouteHit {
                route,
                index,
                match_index: Some(i),
                secure,
            })
        });
        hit.map_or(Lookup::NoRoute, Lookup::Route)
    }

    /// Envoy's virtual-host selection: an exact domain, else the longest wildcard suffix, else
    /// `*`. `host` is without its port.
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        let hosts = &self.virtual_hosts;
        if let Some(exact) = hosts.iter().find(|v| !v.domain.starts_with('*') && v.domain.eq_ignore_ascii_case(host)) {
            return Some(exact);
        }
        let wildcard = hosts
            .iter()
            .filter(|v| v.domain.len() > 1 && v.domain.starts_with('*') && host_matches(&v.domain, host))
            .max_by_key(|v| v.domain.len());
        wildcard.or_else(|| hosts.iter().find(|v| v.domain == "*"))
    }

    /// The destination behind an id from this table.
    ///
    /// Panics on an id from another table: ids are only created by the loader for its own table.
    pub fn destination(&self, id: DestinationId) -> &Destination {
        &self.destinations[id.0]
    }
}

impl RouteMatch {
    /// All conditions hold. `path` is without its query string; `query` is what followed `?`.
    pub fn fits(&self, method: &Method, path: &str, query: Option<&str>, headers: &HeaderMap, authority: Option<&str>) -> bool {
        if let Some(uri) = &self.uri {
            let fits = if self.ignore_uri_case { uri.matches_ignore_case(path) } else { uri.matches(path) };
            if !fits {
                return false;
            }
        }
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return false;
        }
        if let Some(a) = &self.authority {
            match authority {
                Some(value) if a.matches(value) => {}
                _ => return false,
            }
        }
        if !self.query_params.iter().all(|q| {
            query.is_some_and(|query| {
                url::form_urlencoded::parse(query.as_bytes()).any(|(name, value)| name == q.name && q.value.matches(&value))
            })
        }) {
            return false;
        }
        self.headers.iter().all(|h| h.fits(headers))
    }
}

impl HeaderMatch {
    /// Envoy's rule: a header sent several times is matched on its values joined with `,`
    /// (allocated only then).
    fn fits(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let Some(first) = values.next() else { return false };
        let Some(second) = values.next() else { return first.to_str().is_ok_and(|v| self.value.matches(v)) };
        let mut joined = Vec::from(first.as_bytes());
        for v in std::iter::once(second).chain(values) {
            joined.push(b',');
            joined.extend_from_slice(v.as_bytes());
        }
        std::str::from_utf8(&joined).is_ok_and(|v| self.value.matches(v))
    }
}

impl StringMatch {
    /// Case-sensitive, like Istio; regexes must match the whole value.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(s) => value == s,
            StringMatch::Prefix(p) => value.starts_with(p.as_str()),
            StringMatch::PathPrefix(p) => path_prefix_len(value, p, false).is_some(),
            StringMatch::Present => true,
            StringMatch::Regex(re) => re.is_match(value),
        }
    }

    /// The same without ASCII case (Istio `ignoreUriCase`; regexes are compiled case-insensitive
    /// by the loader).
    fn matches_ignore_case(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(s) => value.eq_ignore_ascii_case(s),
            StringMatch::Prefix(p) => value.get(..p.len()).is_some_and(|head| head.eq_ignore_ascii_case(p)),
            StringMatch::PathPrefix(p) => path_prefix_len(value, p, true).is_some(),
            other => other.matches(value),
        }
    }
}

/// Gateway API `PathPrefix`: `prefix` (a trailing `/` ignored) followed by the end or a `/`.
/// Returns the length of `path` the prefix covers.
fn path_prefix_len(path: &str, prefix: &str, ignore_case: bool) -> Option<usize> {
    let prefix = prefix.trim_end_matches('/');
    let head = path.get(..prefix.len())?;
    let same = if ignore_case { head.eq_ignore_ascii_case(prefix) } else { head == prefix };
    (same && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')).then_some(prefix.len())
}

impl RouteHit<'_> {
    /// The rewritten path-and-query; the query string is kept. Istio's rewrite replaces the
    /// matched prefix after a prefix match, the implicit `/` prefix of a match without `uri`,
    /// and the whole path after an exact or regex match; Gateway API's
    /// `ReplaceFullPath` always the whole path, `ReplacePrefixMatch` the matched path prefix.
    /// Borrowed when the route has no URI rewrite.
    pub fn rewrite_path<'p>(&self, path_and_query: &'p str) -> Cow<'p, str> {
        let Some(rewrite) = &self.route.rewrite_uri else {
            return Cow::Borrowed(path_and_query);
        };
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let mut out = match rewrite {
            UriRewrite::Istio(to) | UriRewrite::Native(to) => {
                let mut out = to.clone();
                // Istio gives Envoy `prefix_rewrite`: a match without `uri` is the prefix `/`,
                // so `/foo` with `rewrite.uri: /v2` becomes `/v2foo`.
                let matched = if matches!(rewrite, UriRewrite::Istio(_)) { self.envoy_prefix(path) } else { self.matched_prefix(path) };
                if let Some(n) = matched {
                    out.push_str(path.get(n..).unwrap_or(""));
                }
                out
            }
            UriRewrite::Full(to) => to.clone(),
            UriRewrite::Prefix(to) => replace_prefix(path, self.matched_prefix(path).unwrap_or(0), to),
        };
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        Cow::Owned(out)
    }

    /// The match that selected the route; `None` when it has no matches.
    fn fitting_match(&self) -> Option<&RouteMatch> {
        self.match_index.and_then(|i| self.route.matches.get(i))
    }

    /// What Envoy's `prefix_rewrite` replaces: the matched prefix, or the implicit `/` of a
    /// match without `uri`; `None` after an exact or regex match (the whole path goes).
    fn envoy_prefix(&self, path: &str) -> Option<usize> {
        let implicit = self.fitting_match().is_none_or(|m| m.uri.is_none()) && path.starts_with('/');
        self.matched_prefix(path).or(implicit.then_some(1))
    }

    /// How much of `path` the fitting match's prefix covered.
    fn matched_prefix(&self, path: &str) -> Option<usize> {
        let m = self.fitting_match()?;
        match m.uri.as_ref()? {
            StringMatch::Prefix(p) => {
                path.get(..p.len()).is_some_and(|head| head == p || (m.ignore_uri_case && head.eq_ignore_ascii_case(p))).then_some(p.len())
            }
            StringMatch::PathPrefix(p) => path_prefix_len(path, p, m.ignore_uri_case),
            _ => None,
        }
    }

    /// The gateway's own answer on a route that does not forward (redirect or fixed response);
    /// `None` on a forwarding route. `authority` is the request's Host; the request's scheme is
    /// `https` when it came over TLS ([`RouteHit::secure`]), else `http`.
    pub fn respond(&self, authority: Option<&str>, path_and_query: &str) -> Option<http::Response<Vec<u8>>> {
        let answer = self.route.answer.as_ref()?;
        let mut response = http::Response::new(Vec::new());
        match answer {
            Answer::Direct { status, body } => {
                *response.status_mut() = *status;
                *response.body_mut() = body.clone();
            }
            Answer::Redirect(r) => {
                let (req_host, req_port) = authority.map_or(("", None), split_host_port);
                let req_scheme = if self.secure { "https" } else { "http" };
                let scheme = r.scheme.as_deref().unwrap_or(req_scheme);
                let host = r.host.as_deref().unwrap_or(req_host);
                let default_port = |scheme: &str, port: u16| matches!((scheme, port), ("http", 80) | ("https", 443));
                let port = match r.ports {
                    // A new scheme drops the request's port (its default port is implied).
                    RedirectPorts::KeepUnlessScheme => r.port.or(if r.scheme.is_some() { None } else { req_port }),
                    RedirectPorts::Envoy => match (r.port, &r.host) {
                        (Some(p), _) => Some(p).filter(|p| !default_port(scheme, *p)),
                        (None, Some(_)) => None,
                        (None, None) if scheme != req_scheme => req_port.filter(|p| !default_port(req_scheme, *p)),
                        (None, None) => req_port,
                    },
                    RedirectPorts::FromRequest => r.port.or(req_port).filter(|p| !default_port(scheme, *p)),
                };
                let (path, query) = match path_and_query.split_once('?') {
                    Some((p, q)) => (p, Some(q)),
                    None => (path_and_query, None),
                };
                let new_path = match &r.path {
                    None => path.to_string(),
                    Some(PathRedirect::Full(p)) => p.clone(),
                    Some(PathRedirect::Prefix(p)) => replace_prefix(path, self.matched_prefix(path).unwrap_or(0), p),
                    Some(PathRedirect::IstioPrefix(p)) => format!("{p}{}", path.get(self.envoy_prefix(path).unwrap_or(0)..).unwrap_or("")),
                };
                let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
                let mut location = format!("{scheme}://{host}");
                if let Some(port) = port {
                    location.push(':');
                    location.push_str(&port.to_string());
                }
                location.push_str(&new_path);
                if let Some(q) = query.filter(|_| !new_path.contains('?')) {
                    location.push('?');
                    location.push_str(q);
                }
                *response.status_mut() = r.status;
                if let Ok(value) = http::HeaderValue::from_str(&location) {
                    response.headers_mut().insert(http::header::LOCATION, value);
                }
            }
        }
        Some(response)
    }
}

/// Envoy's `require_tls` answer: 301 to the same authority and path over `https`.
pub fn https_redirect(authority: Option<&str>, path_and_query: &str) -> http::Response<Vec<u8>> {
    let mut response = http::Response::new(Vec::new());
    *response.status_mut() = http::StatusCode::MOVED_PERMANENTLY;
    if let Ok(value) = http::HeaderValue::from_str(&format!("https://{}{path_and_query}", authority.unwrap_or_default())) {
        response.headers_mut().insert(http::header::LOCATION, value);
    }
    response
}

/// Gateway API `ReplacePrefixMatch`: the first `n` bytes of `path` become `to`, with exactly
/// one `/` between the replacement and the rest (`/foo/bar` with `/foo` -> `/` is `/bar`).
fn replace_prefix(path: &str, n: usize, to: &str) -> String {
    let rest = path.get(n..).unwrap_or("");
    match (to.ends_with('/'), rest.starts_with('/')) {
        (true, true) => format!("{}{rest}", to.trim_end_matches('/')),
        (false, false) if !rest.is_empty() => format!("{to}/{rest}"),
        _ if to.is_empty() && rest.is_empty() => "/".to_string(),
        _ => format!("{to}{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_replacement_keeps_one_slash() {
        assert_eq!(replace_prefix("/foo/bar", 4, "/"), "/bar");
        assert_eq!(replace_prefix("/foo/bar", 4, "/baz"), "/baz/bar");
        assert_eq!(replace_prefix("/foo/bar", 4, "/baz/"), "/baz/bar");
        assert_eq!(replace_prefix("/foo", 4, "/"), "/");
        assert_eq!(replace_prefix("/foo", 4, "/baz"), "/baz");
        assert_eq!(replace_prefix("/foo/", 4, "/baz"), "/baz/");
    }

    #[test]
    fn path_prefix_is_by_segment() {
        assert_eq!(path_prefix_len("/foo", "/foo", false), Some(4));
        assert_eq!(path_prefix_len("/foo/bar", "/foo/", false), Some(4));
        assert_eq!(path_prefix_len("/foobar", "/foo", false), None);
        assert_eq!(path_prefix_len("/FOO/x", "/foo", true), Some(4));
        assert_eq!(path_prefix_len("/anything", "/", false), Some(0));
    }
}
