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
