//! Validation, once, on everything the files said, whichever front-end: resolves destination
//! names to endpoints and builds the [`RouteTable`] with its virtual hosts, or says what is
//! wrong and where.

use std::collections::HashMap;

use crate::de::Result;
use crate::error::Warning;
use crate::model::{
    Destination, DestinationId, Endpoint, MirrorPolicy, PlainHttp, PromoteSpec, Protocol, Route, RouteTable, UriRewrite, VirtualHost,
    WeightedDestination, label,
};
use crate::sources::{DestRef, HostPort, IstioSubset, NativeShape, PendingRoute, Sources, TlsRule};
use crate::status::{Reason, Recorded};
use http_rules::host_matches;

/// `recorded` gets the references that do not resolve (Gateway API backends answered 500).
pub(crate) fn build(sources: Sources, warnings: &mut Vec<Warning>, recorded: &mut Recorded) -> Result<RouteTable> {
    check_duplicate_definitions(&sources, warnings)?;

    let mut builder = Builder { sources: &sources, ids: HashMap::new(), destinations: Vec::new(), warnings, recorded };
    let mut names: HashMap<String, String> = HashMap::new();
    let mut routes = Vec::with_capacity(sources.routes.len());
    for (index, pending) in sources.routes.iter().enumerate() {
        let name = pending.name.clone().unwrap_or_else(|| format!("route-{index}"));
        let here = format!("{}: {}", pending.origin.file, pending.origin.path);
        if let Some(first) = names.insert(name.clone(), here) {
            return Err(pending.origin.err(format!("duplicate route name \"{name}\" (first defined at {first})")));
        }
        routes.push(builder.route(name, pending)?);
    }
    let virtual_hosts = virtual_hosts(&routes);
    Ok(RouteTable { routes, virtual_hosts, destinations: builder.destinations })
}

/// One virtual host per host pattern, each with its routes in load order; routes without hosts
/// belong to every virtual host, and to `*`.
fn virtual_hosts(routes: &[Route]) -> Vec<VirtualHost> {
    let mut domains: Vec<String> = Vec::new();
    for h in routes.iter().flat_map(|r| &r.hosts) {
        let h = h.to_ascii_lowercase();
        if !domains.contains(&h) {
            domains.push(h);
        }
    }
    if routes.iter().any(|r| r.hosts.is_empty()) && !domains.iter().any(|d| d == "*") {
        domains.push("*".to_string());
    }
    domains
        .into_iter()
        .map(|domain| {
            let members: Vec<usize> = routes
                .iter()
                .enumerate()
                .filter(|(_, r)| r.hosts.is_empty() || r.hosts.iter().any(|h| h.eq_ignore_ascii_case(&domain)))
                .map(|(i, _)| i)
                .collect();
            // Envoy's `require_tls` is the virtual host's: one server redirecting the host
            // redirects every plain request for it.
            let https_redirect = members.iter().any(|&i| routes[i].plain_http.get(&domain) == Some(&PlainHttp::RedirectToHttps));
            VirtualHost { domain, routes: members, https_redirect }
        })
        .collect()
}

fn check_duplicate_definitions(sources: &Sources, warnings: &mut Vec<Warning>) -> Result<()> {
    for (i, s) in sources.services.iter().enumerate() {
        if let Some(first) = sources.services[..i].iter().find(|f| f.host == s.host) {
            return Err(s
                .origin
                .err(format!("service \"{}\" is defined twice (first at {}: {})", s.host, first.origin.file, first.origin.path)));
        }
    }
    for (i, s) in sources.subsets.iter().enumerate() {
        let Some(first) = sources.subsets[..i].iter().find(|f| f.name == s.name && f.host == s.host) else { continue };
        if first.rule == s.rule {
            return Err(s.origin.err(format!(
                "subset \"{}\" of host \"{}\" is defined twice in this DestinationRule (first at {})",
                s.name, s.host, first.origin.path
            )));
        }
        // Istio merges the DestinationRules of one host; for a subset defined by two, the first wins.
        warnings.push(Warning::new(
            &s.origin.file,
            &s.origin.path,
            format!(
                "subset \"{}\" of host \"{}\" is already defined by DestinationRule {} ({}: {}); this one is ignored, as Istio merges them",
                s.name, s.host, first.rule, first.origin.file, first.origin.path
            ),
        ));
    }
    Ok(())
}

/// `rewrite.authority` as the `Host` value it becomes; `None` unless it is an authority.
fn authority_header(authority: &str) -> Option<http::HeaderValue> {
    if authority.is_empty() || http::uri::Authority::try_from(authority).is_err() {
        return None;
    }
    http::HeaderValue::from_str(authority).ok()
}

/// A native service's name against a wanted host: equal without case, or, since native names
/// have no namespace, a short native name stands for that Service in any namespace
/// (`target` serves `target.test.svc.cluster.local`, never `target2` nor `target.example.com`).
fn native_names(native: &str, wanted: &str) -> bool {
    if native.eq_ignore_ascii_case(wanted) {
        return true;
    }
    !native.contains('.')
        && wanted
            .to_ascii_lowercase()
            .strip_prefix(&format!("{}.", native.to_ascii_lowercase()))
            .and_then(|rest| rest.strip_suffix(".svc.cluster.local"))
            .is_some_and(|ns| !ns.is_empty() && !ns.contains('.'))
}

struct Builder<'s> {
    sources: &'s Sources,
    ids: HashMap<(String, Option<String>, Option<u16>), DestinationId>,
    destinations: Vec<Destination>,
    warnings: &'s mut Vec<Warning>,
    recorded: &'s mut Recorded,
}

impl Builder<'_> {
    fn route(&mut self, name: String, p: &PendingRoute) -> Result<Route> {
        if p.destinations.is_empty() && p.answer.is_none() {
            return Err(p.destinations_origin.err("no destinations: nothing to route to"));
        }
        if let Some(UriRewrite::Istio(uri) | UriRewrite::Native(uri) | UriRewrite::Full(uri) | UriRewrite::Prefix(uri)) = &p.rewrite_uri
            && !uri.starts_with('/')
        {
            return Err(p.origin.err(format!("rewrite uri \"{uri}\" must start with `/`")));
        }
        let rewrite_authority = match &p.rewrite_authority {
            Some(a) => Some(authority_header(a).ok_or_else(|| p.origin.err(format!("invalid rewrite authority \"{a}\"")))?),
            None => None,
        };
        let any_weight = p.destinations.iter().any(|(_, w)| w.is_some());
        let equal_share = u32::try_from(100 / p.destinations.len().max(1)).unwrap_or(1).max(1);
        let mut destinations = Vec::with_capacity(p.destinations.len());
        for (dest, weight) in &p.destinations {
            let weight = match weight {
                Some(w) => *w,
                None if any_weight => 0,
                None => equal_share,
            };
            let (request_headers, response_headers) =
                dest.fallback.as_ref().map(|g| (g.request_headers.clone(), g.response_headers.clone())).unwrap_or_default();
            destinations.push(WeightedDestination { id: self.resolve(dest)?, weight, request_headers, response_headers });
        }
        if p.answer.is_none() && destinations.iter().all(|d| d.weight == 0) {
            return Err(p.destinations_origin.err("weights are all zero: no destination would get traffic"));
        }
        let mut mirrors: Vec<MirrorPolicy> = Vec::with_capacity(p.mirrors.len());
        for m in &p.mirrors {
            let name = m.name.clone().unwrap_or_else(|| label(&m.to.written, m.to.subset.as_deref()));
            if mirrors.iter().any(|other| other.name == name) {
                return Err(m
                    .origin
                    .err(format!("duplicate mirror name \"{name}\" in route \"{}\"", p.name.as_deref().unwrap_or("(unnamed)"))));
            }
            if !(0.0..=100.0).contains(&m.percent) {
                return Err(m.origin.err(format!("percentage {} is out of range 0..=100", m.percent)));
            }
            // The name travels as the copy's `x-shadow` header.
            if http::HeaderValue::from_str(&name).is_err() {
                return Err(m.origin.err(format!("mirror name \"{name}\" is not a valid header value (copies carry it as x-shadow)")));
            }
            if m.timeout.is_zero() {
                return Err(m.origin.err("mirror timeout must be greater than zero"));
            }
            if m.max_in_flight == 0 {
                return Err(m.origin.err("max_in_flight must be at least 1"));
            }
            if let Some(c) = &m.compare
                && !(0.0..=100.0).contains(&c.noise_percent)
            {
                return Err(m.origin.err(format!("noise percentage {} is out of range 0..=100", c.noise_percent)));
            }
            if m.verdict.is_some() && m.compare.is_none() {
                return Err(m.origin.err("verdict: a verdict needs `compare` on the mirror: the mismatch rate is its main evidence"));
            }
            if let Some(c) = &m.capture {
                if m.compare.is_none() {
                    return Err(m.origin.err("capture: recording needs `compare` on the mirror: the primary's answer is kept only for it"));
                }
                if !(0.0..=100.0).contains(&c.sample_percent) {
                    return Err(m.origin.err(format!("capture.sample: percentage {} is out of range 0..=100", c.sample_percent)));
                }
                if c.file.as_os_str().is_empty() {
                    return Err(m.origin.err("capture.file: a file path is needed"));
                }
                if c.max_file_bytes < 1024 || c.keep_files == 0 {
                    return Err(m.origin.err("capture.rotate: max_size must be at least 1KiB and keep at least 1"));
                }
            }
            mirrors.push(MirrorPolicy {
                name,
                destination: self.resolve(&m.to)?,
                percent: m.percent,
                sample_header: m.sample_header.clone(),
                timeout: m.timeout,
                max_in_flight: m.max_in_flight,
                max_body_bytes: m.max_body_bytes,
                methods: m.methods.clone(),
                shadow_host_suffix: m.shadow_host_suffix,
                set_headers: m.set_headers.clone(),
                remove_headers: m.remove_headers.clone(),
                compare: m.compare.clone(),
                verdict: m.verdict.clone(),
                capture: m.capture.clone(),
            });
        }
        let promote = match &p.promote {
            Some(promote) => {
                let increasing = promote.steps.windows(2).all(|w| w[0] < w[1]);
                if promote.steps.is_empty() || !increasing || promote.steps.iter().any(|s| !(1..=100).contains(s)) {
                    return Err(promote.origin.err("steps: percentages from 1 to 100, strictly increasing, e.g. [10, 25, 50, 100]"));
                }
                if promote.hold.is_zero() {
                    return Err(promote.origin.err("hold: must be greater than zero"));
                }
                let destination = self.resolve(&promote.to)?;
                let Some(mirror) = mirrors.iter().find(|m| m.destination == destination && m.verdict.is_some()) else {
                    return Err(promote.origin.err(format!(
                        "to: no mirror of this route to {} has a verdict: a promotion moves traffic only on a passing verdict",
                        label(&promote.to.host, promote.to.subset.as_deref())
                    )));
                };
                Some(PromoteSpec { mirror: mirror.name.clone(), destination, steps: promote.steps.clone(), hold: promote.hold })
            }
            None => None,
        };
        let upgrades = match &p.upgrades {
            Some(listed) => {
                let upgrades: Vec<String> = listed.iter().map(|u| u.trim().to_ascii_lowercase()).collect();
                if upgrades.iter().any(|u| u == "h2c") {
                    return Err(p.origin.err("upgrades: h2c is never tunnelled: an h2c connection would carry its requests past routing"));
                }
                if let Some(bad) = upgrades.iter().find(|u| u.is_empty() || http::HeaderValue::from_str(u).is_err() || u.contains(',')) {
                    return Err(p.origin.err(format!("upgrades: {bad:?} is not a protocol name")));
                }
                upgrades
            }
            None => crate::model::default_upgrades(),
        };
        Ok(Route {
            promote,
            upgrades,
            name,
            plain_http: p.plain_http.clone(),
            hosts: p.hosts.clone(),
            matches: p.matches.clone(),
            rewrite_uri: p.rewrite_uri.clone(),
            rewrite_authority,
            destinations,
            mirrors,
            answer: p.answer.clone(),
            request_headers: p.request_headers.clone(),
            // Istio: a zero timeout means none; kept as zero so it overrides the gateway's default.
            timeout: p.timeout,
            retries: p.retries.clone(),
        })
    }

    /// The destination `r` names. A Gateway API backend that cannot be sent to (decided while
    /// lowering, or a host nothing defines and no cluster DNS name stands for) becomes one that
    /// answers 500, its reason in the route's status.
    fn resolve(&mut self, r: &DestRef) -> Result<DestinationId> {
        let Some(backend) = &r.fallback else { return self.resolve_known(r) };
        if let Some((reason, why)) = &backend.unresolved {
            return Ok(self.unresolved(r, *reason, why));
        }
        if self.defines(&r.host) {
            return self.resolve_known(r);
        }
        if let Some(host) = self.alternative(r, &backend.alternatives) {
            return self.resolve_known(&DestRef { host, ..r.clone() });
        }
        if backend.cluster_dns.is_some() {
            return self.resolve_known(r);
        }
        let why = format!("no ServiceEntry or native service defines host \"{}\": requests for this backend are answered 500", r.written);
        Ok(self.unresolved(r, Reason::BackendNotFound, &why))
    }

    /// A destination that answers 500, and the route's `ResolvedRefs=False` condition.
    fn unresolved(&mut self, r: &DestRef, reason: Reason, why: &str) -> DestinationId {
        self.warnings.push(Warning::new(&r.origin.file, &r.origin.path, why));
        if let Some(object) = r.origin.object {
            self.recorded.unresolved(object, reason, format!("{}: {why}", r.origin.path));
        }
        let id = DestinationId(self.destinations.len());
        self.destinations.push(Destination {
            host: r.written.clone(),
            subset: None,
            port: r.port,
            endpoints: Vec::new(),
            protocol: Protocol::default(),
            outlier: None,
            unresolved: true,
            cluster_dns: false,
        });
        id
    }

    /// A native service, ServiceEntry or DestinationRule defines `host`.
    fn defines(&self, host: &str) -> bool {
        let s = self.sources;
        s.services.iter().any(|svc| native_names(&svc.host, host))
            || s.service_entries.iter().any(|e| e.hosts.iter().any(|h| host_matches(h, host)))
            || s.subsets.iter().any(|d| host_matches(&d.host, host))
    }

    /// The first of `alternatives` something defines; for a short name (`gwa`), else the one
    /// ServiceEntry host `gwa.<namespace>.svc.cluster.local` there is (a ServiceEntry's short
    /// host is stored qualified by its own namespace).
    fn alternative(&self, r: &DestRef, alternatives: &[String]) -> Option<String> {
        if let Some(found) = alternatives.iter().find(|h| self.defines(h)) {
            return Some(found.clone());
        }
        if r.host.contains('.') {
            return None;
        }
        let prefix = format!("{}.", r.host);
        let mut found: Vec<&String> = self
            .sources
            .service_entries
            .iter()
            .flat_map(|e| &e.hosts)
            .filter(|h| {
                h.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(".svc.cluster.local")).is_some_and(|ns| !ns.contains('.'))
            })
            .collect();
        found.dedup();
        match found.as_slice() {
            [one] => Some((*one).clone()),
            _ => None,
        }
    }

    fn resolve_known(&mut self, r: &DestRef) -> Result<DestinationId> {
        let key = (r.host.clone(), r.subset.clone(), r.port);
        if let Some(id) = self.ids.get(&key) {
            return Ok(*id);
        }
        let shown = label(&r.written, r.subset.as_deref());
        let undefined_subset = self.names_undefined_istio_subset(r);
        let endpoints = if undefined_subset {
            // Istio loads a route to a subset no DestinationRule defines yet (its analyzer says
            // IST0101 ReferencedResourceNotFound) and Envoy answers 503 until one arrives:
            // `kubectl apply` often brings the VirtualService first.
            self.warnings.push(Warning::new(
                &r.subset_origin.file,
                &r.subset_origin.path,
                format!(
                    "unknown subset \"{}\" for host \"{}\": no DestinationRule defines it (yet) (Istio IST0101 ReferencedResourceNotFound): requests routed to it get 503 (no healthy upstream) until a reload brings one",
                    r.subset.as_deref().unwrap_or_default(),
                    r.written
                ),
            ));
            Vec::new()
        } else {
            self.endpoints(r)?
        };
        if endpoints.is_empty() && !undefined_subset {
            // Istio accepts a route to a subset whose workloads are not deployed yet, and Envoy
            // answers 503 until they are: deploying the VirtualService first is the usual order.
            self.warnings.push(Warning::new(
                &r.subset_origin.file,
                &r.subset_origin.path,
                format!("no endpoints for \"{shown}\" yet: requests routed to it get 503 (no healthy upstream) until a reload brings some"),
            ));
        }
        let endpoints = endpoints
            .iter()
            .map(|e| {
                Endpoint::new(&e.host, e.port)
                    .map_err(|_| r.subset_origin.err(format!("invalid endpoint \"{}\" for \"{shown}\": not a valid host:port", e.text())))
            })
            .collect::<Result<Vec<_>>>()?;
        let id = DestinationId(self.destinations.len());
        let protocol = self.protocol(r);
        let outlier = self.outlier(r);
        let dns = r.fallback.as_ref().and_then(|g| g.cluster_dns.as_ref());
        let cluster_dns =
            matches!((dns, endpoints.as_slice()), (Some(d), [only]) if only.host().eq_ignore_ascii_case(&d.host) && only.port() == d.port);
        self.destinations.push(Destination {
            host: r.written.clone(),
            subset: r.subset.clone(),
            port: r.port,
            endpoints,
            protocol,
            outlier,
            unresolved: false,
            cluster_dns,
        });
        self.ids.insert(key, id);
        Ok(id)
    }

    /// The DestinationRule outlier detection for `r`: its subset's own, else its host's.
    fn outlier(&self, r: &DestRef) -> Option<crate::model::OutlierPolicy> {
        let rules = || self.sources.outlier_rules.iter().filter(|(host, _, _)| host_matches(host, &r.host));
        let subset = r.subset.as_ref().and_then(|s| rules().find(|(_, subset, _)| subset.as_ref() == Some(s)));
        subset.or_else(|| rules().find(|(_, subset, _)| subset.is_none())).map(|(_, _, policy)| *policy)
    }

    /// The protocol of the service or ServiceEntry port that [`Self::endpoints`] resolved `r` with.
    fn protocol(&self, r: &DestRef) -> Protocol {
        let s = self.sources;
        if let Some(svc) = s.services.iter().find(|svc| native_names(&svc.host, &r.host)) {
            return svc.protocol;
        }
        let entry = s
            .service_entries
            .iter()
            .find(|e| e.hosts.iter().any(|h| h.eq_ignore_ascii_case(&r.host)))
            .or_else(|| s.service_entries.iter().find(|e| e.hosts.iter().any(|h| host_matches(h, &r.host))));
        let port = entry.and_then(|e| match r.port {
            Some(n) => e.ports.iter().find(|p| p.number == n),
            None => e.ports.first(),
        });
        port.map_or(Protocol::default(), |p| p.protocol)
    }

    /// `r` names a subset of an Istio host (a ServiceEntry or DestinationRule knows the host)
    /// that no DestinationRule defines. Native services define their subsets themselves: an
    /// unknown one there stays an error.
    fn names_undefined_istio_subset(&self, r: &DestRef) -> bool {
        let s = self.sources;
        let Some(name) = &r.subset else { return false };
        if s.services.iter().any(|svc| native_names(&svc.host, &r.host)) {
            return false;
        }
        let mut subsets = s.subsets.iter().filter(|d| host_matches(&d.host, &r.host)).peekable();
        let known_host = subsets.peek().is_some() || s.service_entries.iter().any(|e| e.hosts.iter().any(|h| host_matches(h, &r.host)));
        known_host && !subsets.any(|d| &d.name == name)
    }

    fn endpoints(&self, r: &DestRef) -> Result<Vec<HostPort>> {
        let s = self.sources;
        if let Some(svc) = s.services.iter().find(|svc| native_names(&svc.host, &r.host)) {
            return match (&svc.shape, &r.subset) {
                (NativeShape::Plain(eps), None) => Ok(eps.clone()),
                (NativeShape::Plain(_), Some(subset)) => {
                    Err(r.subset_origin.err(format!("unknown subset \"{subset}\" for host \"{}\" (it has no subsets)", r.written)))
                }
                (NativeShape::Subsets(map), None) => Ok(map.values().flatten().cloned().collect()),
                (NativeShape::Subsets(map), Some(subset)) => map.get(subset).cloned().ok_or_else(|| {
                    r.subset_origin.err(format!(
                        "unknown subset \"{subset}\" for host \"{}\" (known: {})",
                        r.written,
                        map.keys().cloned().collect::<Vec<_>>().join(", ")
                    ))
                }),
            };
        }

        let subsets: Vec<&IstioSubset> = s.subsets.iter().filter(|d| host_matches(&d.host, &r.host)).collect();
        // The most specific entry: an exact host before a wildcard one.
        let entry = s
            .service_entries
            .iter()
            .find(|e| e.hosts.iter().any(|h| h.eq_ignore_ascii_case(&r.host)))
            .or_else(|| s.service_entries.iter().find(|e| e.hosts.iter().any(|h| host_matches(h, &r.host))));
        if subsets.is_empty() && entry.is_none() {
            if let Some(fallback) = r.fallback.as_ref().and_then(|g| g.cluster_dns.as_ref()) {
                return Ok(vec![fallback.clone()]);
            }
            return Err(r
                .origin
                .err(format!("unknown host \"{}\": no native service, ServiceEntry or DestinationRule defines it", r.written)));
        }
        let selector = match &r.subset {
            None => None,
            Some(name) => match subsets.iter().find(|d| &d.name == name) {
                Some(d) => Some(&d.labels),
                None => return Err(r.subset_origin.err(format!("unknown subset \"{name}\" for host \"{}\"", r.written))),
            },
        };
        let Some(entry) = entry else {
            if let Some(fallback) = r.fallback.as_ref().and_then(|g| g.cluster_dns.as_ref()) {
                return Ok(vec![fallback.clone()]);
            }
            return Err(r
                .origin
                .err(format!("missing endpoints: no ServiceEntry (or native service) says where host \"{}\" runs", r.written)));
        };
        let port = match r.port {
            Some(n) => entry.ports.iter().find(|p| p.number == n).ok_or_else(|| {
                r.origin.err(format!(
                    "port {n} is not declared by the ServiceEntry for host \"{}\" ({}: {})",
                    r.written, entry.origin.file, entry.origin.path
                ))
            })?,
            None => entry
                .ports
                .first()
                .ok_or_else(|| entry.origin.err(format!("the ServiceEntry for host \"{}\" declares no ports", r.written)))?,
        };
        self.check_plaintext(r, port.number)?;
        if let Some(protocol) = &port.tls {
            return Err(r.origin.err(format!(
                "port {} of host \"{}\" is {protocol} ({}: {}): TLS origination is not implemented, and the gateway never sends plaintext to a TLS port",
                port.number, r.written, entry.origin.file, entry.origin.path
            )));
        }
        Ok(entry
            .endpoints
            .iter()
            .filter(|e| selector.is_none_or(|sel| sel.iter().all(|(k, v)| e.labels.get(k) == Some(v))))
            .map(|e| HostPort {
                host: e.address.clone(),
                port: port.name.as_ref().and_then(|n| e.ports.get(n).copied()).or(port.target_port).unwrap_or(port.number),
            })
            .collect())
    }

    /// A DestinationRule asking for TLS to this destination (its host, its subset, the port it
    /// goes to) is refused by name: plaintext instead of TLS would be a silent downgrade.
    fn check_plaintext(&self, r: &DestRef, port: u16) -> Result<()> {
        let applies = |rule: &&TlsRule| {
            host_matches(&rule.host, &r.host)
                && rule.subset.as_ref().is_none_or(|s| r.subset.as_ref() == Some(s))
                && rule.port.is_none_or(|p| p == port)
        };
        // Istio's MergeTrafficPolicy: the subset's port setting, else the subset's, else the
        // rule's port setting, else the rule's (so a subset's DISABLE lifts the rule's SIMPLE).
        let rule = self.sources.tls_rules.iter().filter(applies).rev().max_by_key(|rule| (rule.subset.is_some(), rule.port.is_some()));
        let Some(rule) = rule.filter(|rule| matches!(rule.mode.as_str(), "SIMPLE" | "MUTUAL")) else { return Ok(()) };
        let which = match (&rule.subset, rule.port) {
            (Some(s), Some(p)) => format!("subset {s}, port {p}"),
            (Some(s), None) => format!("subset {s}"),
            (None, Some(p)) => format!("port {p}"),
            (None, None) => "every port".to_string(),
        };
        Err(r.origin.err(format!(
                "host \"{}\" has tls.mode {} for {which} ({}: {}): TLS origination is not implemented, and the gateway never sends plaintext where TLS is asked for",
            r.written, rule.mode, rule.origin.file, rule.origin.path
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::native_names;

    #[test]
    fn short_native_names_stand_for_that_service_in_any_namespace() {
        assert!(native_names("target", "target.test.svc.cluster.local"));
        assert!(native_names("Target", "target"));
        assert!(!native_names("target", "target2"));
        assert!(!native_names("target", "target.example.com"));
        assert!(!native_names("target", "target2.test.svc.cluster.local"));
        assert!(!native_names("target.a", "target.b"));
    }
}
