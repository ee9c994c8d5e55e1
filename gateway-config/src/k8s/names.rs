//! Names as Kubernetes (and Istio) resolve them: a short host is a Service in the referring
//! object's namespace, a reference without a namespace is to the referrer's, and a route's name
//! carries its namespace only where the bare name would clash.

use super::object::Meta;

/// Istio's rule for a host written in an object of namespace `ns`: a short name (no dot) is the
/// Kubernetes Service of that name in `ns`. Lower-cased: host names compare without case.
pub(crate) fn qualify(host: &str, ns: &str) -> String {
    let host = host.to_ascii_lowercase();
    if host.contains('.') || host.contains('*') { host } else { format!("{host}.{ns}.svc.cluster.local") }
}

/// The names a client in the mesh reaches the Kubernetes Service `name.ns.svc.cluster.local`
/// by, as the cluster's DNS search path resolves them: `name`, `name.ns`, `name.ns.svc` (a
/// sidecar answers to each, with and without the port). None for any other host.
pub(crate) fn service_aliases(host: &str) -> Vec<String> {
    let Some(service) = host.strip_suffix(".svc.cluster.local") else { return Vec::new() };
    match service.split_once('.') {
        Some((name, ns)) if !name.is_empty() && !ns.is_empty() && !ns.contains('.') && !name.contains('*') => {
            vec![name.to_string(), service.to_string(), format!("{service}.svc")]
        }
        _ => Vec::new(),
    }
}

/// A reference written `name` (in the referrer's namespace `ns`) or `namespace/name`, as
/// `namespace/name`.
pub(crate) fn reference(written: &str, ns: &str) -> String {
    if written.contains('/') { written.to_string() } else { format!("{ns}/{written}") }
}

/// An object's name in route names: qualified by namespace only when another object of its
/// kind has the same name in another namespace (the tutorial's stay `proxy`, `target`).
pub(crate) fn route_name_base<'a>(o: &Meta, others: impl IntoIterator<Item = &'a Meta>) -> String {
    let clash = others
        .into_iter()
        .any(|other| other.kind == o.kind && other.group == o.group && other.name == o.name && other.namespace != o.namespace);
    if clash { format!("{}/{}", o.namespace, o.name) } else { o.name.clone() }
}

#[cfg(test)]
mod tests {
    use super::service_aliases;

    #[test]
    fn a_service_is_reached_by_every_name_of_the_dns_search_path() {
        assert_eq!(service_aliases("reviews.default.svc.cluster.local"), ["reviews", "reviews.default", "reviews.default.svc"]);
        assert!(service_aliases("reviews.example.com").is_empty());
        assert!(service_aliases("a.b.c.svc.cluster.local").is_empty());
        assert!(service_aliases("*.default.svc.cluster.local").is_empty());
    }
}
