//! Validation, once, on everything the files said, whichever front-end: resolves destination
//! names to endpoints and builds the [`RouteTable`], or says what is wrong and where.

use std::collections::HashMap;

use crate::ConfigError;
use crate::de::Result;
use crate::model::{Destination, DestinationId, Endpoint, MirrorPolicy, Route, RouteTable, WeightedDestination, label};
use crate::sources::{DestRef, NativeShape, PendingRoute, Sources};

pub(crate) fn build(sources: Sources) -> Result<RouteTable> {
    if sources.routes.is_empty() {
        let file = if sources.files.is_empty() { "(no configuration files)".to_string() } else { sources.files.join(", ") };
        return Err(ConfigError::new(
            file,
            "routes",
            "nothing to serve: no routes are defined \
             (native `routes:` or Istio VirtualService `spec.http`)",
        ));
    }
    check_duplicate_definitions(&sources)?;

    let mut builder = Builder { sources: &sources, ids: HashMap::new(), destinations: Vec::new() };
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
    Ok(RouteTable { routes, destinations: builder.destinations })
}

fn check_duplicate_definitions(sources: &Sources) -> Result<()> {
    for (i, s) in sources.services.iter().enumerate() {
        if let Some(first) = sources.services[..i].iter().find(|f| f.host == s.host) {
            return Err(s
                .origin
                .err(format!("service \"{}\" is defined twice (first at {}: {})", s.host, first.origin.file, first.origin.path)));
        }
    }
    for (i, s) in sources.subsets.iter().enumerate() {
        if let Some(first) = sources.subsets[..i].iter().find(|f| f.name == s.name && hosts_match(&f.host, &s.host)) {
            return Err(s.origin.err(format!(
                "subset \"{}\" of host \"{}\" is defined twice (first at {}: {})",
                s.name, s.host, first.origin.file, first.origin.path
            )));
        }
    }
    Ok(())
}

/// Istio host comparison: equal without case, or a short name (`target`) equal to the first
/// label of a qualified one (`target.test.svc.cluster.local`), or a `*.suffix` wildcard.
pub(crate) fn hosts_match(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    for (x, y) in [(a, b), (b, a)] {
        if let Some(suffix) = x.strip_prefix('*')
            && y.len() > suffix.len()
            && y.get(y.len() - suffix.len()..).is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
        {
            return true;
        }
        if !x.contains('.')
            && let Some((first, _)) = y.split_once('.')
            && first.eq_ignore_ascii_case(x)
        {
            return true;
        }
    }
    false
}

struct Builder<'s> {
    sources: &'s Sources,
    ids: HashMap<(String, Option<String>, Option<u16>), DestinationId>,
    destinations: Vec<Destination>,
}

impl Builder<'_> {
    fn route(&mut self, name: String, p: &PendingRoute) -> Result<Route> {
        if p.destinations.is_empty() {
            return Err(p.destinations_origin.err("no destinations: nothing to route to"));
        }
        if let Some(uri) = &p.rewrite_uri
            && !uri.starts_with('/')
        {
            return Err(p.origin.err(format!("rewrite uri \"{uri}\" must start with `/`")));
        }
        if let Some(a) = &p.rewrite_authority
            && (a.is_empty() || http::uri::Authority::try_from(a.as_str()).is_err())
        {
            return Err(p.origin.err(format!("invalid rewrite authority \"{a}\"")));
        }
        let any_weight = p.destinations.iter().any(|(_, w)| w.is_some());
        let equal_share = u32::try_from(100 / p.destinations.len()).unwrap_or(1).max(1);
        let mut destinations = Vec::with_capacity(p.destinations.len());
        for (dest, weight) in &p.destinations {
            let weight = match weight {
                Some(w) => *w,
                None if any_weight => 0,
                None => equal_share,
            };
            destinations.push(WeightedDestination { id: self.resolve(dest)?, weight });
        }
        if destinations.iter().all(|d| d.weight == 0) {
            return Err(p.destinations_origin.err("weights are all zero: no destination would get traffic"));
        }
        let mut mirrors: Vec<MirrorPolicy> = Vec::with_capacity(p.mirrors.len());
        for m in &p.mirrors {
            let name = m.name.clone().unwrap_or_else(|| label(&m.to.host, m.to.subset.as_deref()));
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
            });
        }
        Ok(Route {
            name,
            hosts: p.hosts.clone(),
            matches: p.matches.clone(),
            rewrite_uri: p.rewrite_uri.clone(),
            rewrite_authority: p.rewrite_authority.clone(),
            destinations,
            mirrors,
            // Istio: a zero timeout means none.
            timeout: p.timeout.filter(|t| !t.is_zero()),
        })
    }

    fn resolve(&mut self, r: &DestRef) -> Result<DestinationId> {
        let key = (r.host.clone(), r.subset.clone(), r.port);
        if let Some(id) = self.ids.get(&key) {
            return Ok(*id);
        }
        let endpoints = self.endpoints(r)?;
        if endpoints.is_empty() {
            return Err(r.subset_origin.err(format!("missing endpoints: no endpoint for \"{}\"", label(&r.host, r.subset.as_deref()))));
        }
        if let Some(bad) = endpoints.iter().find(|e| http::uri::Authority::try_from(e.authority()).is_err()) {
            return Err(r.subset_origin.err(format!(
                "invalid endpoint \"{}\" for \"{}\": not a valid host:port",
                bad.authority(),
                label(&r.host, r.subset.as_deref())
            )));
        }
        let id = DestinationId(self.destinations.len());
        self.destinations.push(Destination { host: r.host.clone(), subset: r.subset.clone(), port: r.port, endpoints });
        self.ids.insert(key, id);
        Ok(id)
    }

    fn endpoints(&self, r: &DestRef) -> Result<Vec<Endpoint>> {
        let s = self.sources;
        if let Some(svc) = s.services.iter().find(|svc| hosts_match(&svc.host, &r.host)) {
            return match (&svc.shape, &r.subset) {
                (NativeShape::Plain(eps), None) => Ok(eps.clone()),
                (NativeShape::Plain(_), Some(subset)) => {
                    Err(r.subset_origin.err(format!("unknown subset \"{subset}\" for host \"{}\" (it has no subsets)", r.host)))
                }
                (NativeShape::Subsets(map), None) => Ok(map.values().flatten().cloned().collect()),
                (NativeShape::Subsets(map), Some(subset)) => map.get(subset).cloned().ok_or_else(|| {
                    r.subset_origin.err(format!(
                        "unknown subset \"{subset}\" for host \"{}\" (known: {})",
                        r.host,
                        map.keys().cloned().collect::<Vec<_>>().join(", ")
                    ))
                }),
            };
        }

        let subsets: Vec<_> = s.subsets.iter().filter(|d| hosts_match(&d.host, &r.host)).collect();
        let entry = s.service_entries.iter().find(|e| e.hosts.iter().any(|h| hosts_match(h, &r.host)));
        if subsets.is_empty() && entry.is_none() {
            return Err(r
                .origin
                .err(format!("unknown host \"{}\": no native service, ServiceEntry or DestinationRule defines it", r.host)));
        }
        let selector = match &r.subset {
            None => None,
            Some(name) => match subsets.iter().find(|d| &d.name == name) {
                Some(d) => Some(&d.labels),
                None => {
                    return Err(r.subset_origin.err(format!("unknown subset \"{name}\" for host \"{}\"", r.host)));
                }
            },
        };
        let Some(entry) = entry else {
            return Err(r
                .origin
                .err(format!("missing endpoints: no ServiceEntry (or native service) says where host \"{}\" runs", r.host)));
        };
        let port = match r.port {
            Some(n) => entry.ports.iter().find(|p| p.number == n).ok_or_else(|| {
                r.origin.err(format!(
                    "port {n} is not declared by the ServiceEntry for host \"{}\" ({}: {})",
                    r.host, entry.origin.file, entry.origin.path
                ))
            })?,
            None => entry
                .ports
                .first()
                .ok_or_else(|| entry.origin.err(format!("the ServiceEntry for host \"{}\" declares no ports", r.host)))?,
        };
        let endpoints: Vec<Endpoint> = entry
            .endpoints
            .iter()
            .filter(|e| selector.is_none_or(|sel| sel.iter().all(|(k, v)| e.labels.get(k) == Some(v))))
            .map(|e| Endpoint {
                host: e.address.clone(),
                port: port.name.as_ref().and_then(|n| e.ports.get(n).copied()).or(port.target_port).unwrap_or(port.number),
            })
            .collect();
        if endpoints.is_empty() {
            let wanted = selector.map(|sel| sel.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")).unwrap_or_default();
            return Err(r.subset_origin.err(format!(
                "missing endpoints: the ServiceEntry for host \"{}\" ({}: {}) has no endpoint{}",
                r.host,
                entry.origin.file,
                entry.origin.path,
                if wanted.is_empty() { String::new() } else { format!(" with labels {wanted}") }
            )));
        }
        Ok(endpoints)
    }
}

#[cfg(test)]
mod tests {
    use super::hosts_match;

    #[test]
    fn host_names() {
        assert!(hosts_match("target", "target.test.svc.cluster.local"));
        assert!(hosts_match("target.test.svc.cluster.local", "target"));
        assert!(hosts_match("Target", "target"));
        assert!(!hosts_match("target", "target2"));
        assert!(!hosts_match("target.a", "target.b"));
        assert!(hosts_match("*.example.com", "api.example.com"));
        assert!(!hosts_match("*.example.com", "example.com"));
    }
}
