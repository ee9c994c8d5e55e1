//! Pure route matching and URI rewriting: functions of the request line and headers only,
//! with no allocation on the matching path.

use std::borrow::Cow;

use http::{HeaderMap, Method};

use crate::hosts::{host_matches, split_host_port};
use crate::model::{Destination, DestinationId, Route, RouteMatch, RouteTable, StringMatch};

/// The route a request selected, and which of its matches fitted.
#[derive(Debug, Clone, Copy)]
pub struct RouteHit<'a> {
    pub route: &'a Route,
    /// Position of `route` in [`RouteTable::routes`] (for state kept beside the table).
    pub index: usize,
    /// `None` when the route has no matches (it matches everything).
    pub match_index: Option<usize>,
}

impl RouteTable {
    /// The first route whose any match fits; `None` means 404.
    ///
    /// `path` is the request path; a query string, if present, is ignored (Istio matches the
    /// path only). `authority` is the Host / `:authority` value, port included.
    pub fn find(&self, method: &Method, path: &str, headers: &HeaderMap, authority: Option<&str>) -> Option<RouteHit<'_>> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        self.routes.iter().enumerate().find_map(|(index, route)| {
            if !route_host_fits(&route.hosts, authority) {
                return None;
            }
            if route.matches.is_empty() {
                return Some(RouteHit { route, index, match_index: None });
            }
            route.matches.iter().position(|m| m.fits(method, path, headers, authority)).map(|i| RouteHit {
                route,
                index,
                match_index: Some(i),
            })
        })
    }

    /// The destination behind an id from this table.
    ///
    /// Panics on an id from another table: ids are only created by the loader for its own table.
    pub fn destination(&self, id: DestinationId) -> &Destination {
        &self.destinations[id.0]
    }
}

impl RouteMatch {
    /// All conditions hold. `path` is without its query string.
    pub fn fits(&self, method: &Method, path: &str, headers: &HeaderMap, authority: Option<&str>) -> bool {
        if let Some(uri) = &self.uri
            && !uri.matches(path)
        {
            return false;
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
        self.headers.iter().all(|h| headers.get_all(&h.name).iter().any(|v| v.to_str().is_ok_and(|v| h.value.matches(v))))
    }
}

impl StringMatch {
    /// Case-sensitive, like Istio; regexes must match the whole value.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(s) => value == s,
            StringMatch::Prefix(p) => value.starts_with(p.as_str()),
            StringMatch::Regex(re) => re.is_match(value),
        }
    }
}

/// Istio virtual-host matching: `*` (or no hosts) takes any, `*.example.com` a suffix, otherwise
/// the host equal without case; the request's port is not compared.
fn route_host_fits(hosts: &[String], authority: Option<&str>) -> bool {
    if hosts.is_empty() || hosts.iter().any(|h| h == "*") {
        return true;
    }
    let Some(authority) = authority else {
        return false;
    };
    let (host, _) = split_host_port(authority);
    hosts.iter().any(|h| host_matches(h, host))
}

impl RouteHit<'_> {
    /// Istio rewrite semantics on a path-and-query: after a prefix match the matched prefix is
    /// replaced by the rewrite; after an exact, regex or no-URI match the whole path is. The query
    /// string is kept. Borrowed when the route has no URI rewrite.
    pub fn rewrite_path<'p>(&self, path_and_query: &'p str) -> Cow<'p, str> {
        let Some(rewrite) = &self.route.rewrite_uri else {
            return Cow::Borrowed(path_and_query);
        };
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let matched_prefix = self.match_index.and_then(|i| self.route.matches.get(i)).and_then(|m| match &m.uri {
            Some(StringMatch::Prefix(p)) if path.starts_with(p.as_str()) => Some(p.len()),
            _ => None,
        });
        let mut out = String::with_capacity(path_and_query.len() + rewrite.len());
        out.push_str(rewrite);
        if let Some(n) = matched_prefix {
            out.push_str(path.get(n..).unwrap_or(""));
        }
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_wildcards() {
        let hosts = vec!["*.example.com".to_string(), "api.test".to_string()];
        assert!(route_host_fits(&hosts, Some("a.example.com:80")));
        assert!(route_host_fits(&hosts, Some("A.EXAMPLE.COM")));
        assert!(!route_host_fits(&hosts, Some("example.com")));
        assert!(route_host_fits(&hosts, Some("API.test:8080")));
        assert!(!route_host_fits(&hosts, Some("other")));
        assert!(!route_host_fits(&hosts, None));
        assert!(route_host_fits(&[], None));
        assert!(route_host_fits(&["*".to_string()], None));
    }
}
