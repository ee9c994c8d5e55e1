//! The Istio front-end: `networking.istio.io` Gateway, VirtualService, DestinationRule and
//! ServiceEntry objects, turned into the same sources as the native format.
//!
//! There is no Kubernetes API here, so ServiceEntries say where workloads are (a short host in a
//! ServiceEntry stands for the Kubernetes Service of that name in its namespace) and
//! DestinationRule subsets select their endpoints by label, as Istio does with pods. [`spec`]
//! declares what the gateway implements; every other field a document sets is reported as a
//! warning naming it: nothing is silently ignored.
//!
//! Istio's semantics kept here: short host names are qualified by the object's namespace;
//! a VirtualService is served only when bound (`gateways`) to a Gateway this gateway is, and
//! mesh-only ones (no `gateways`, or `mesh`) only when the settings say this gateway is also
//! the mesh's router ([`scope`]); delegate VirtualServices are spliced into their parents, their
//! matches merged with the parent's ([`delegate`]).

mod delegate;
mod destination_rule;
mod retry;
mod route;
mod scope;
mod service_entry;
mod spec;
mod virtual_service;

use serde_norway::Value;

use crate::context::Translation;
use crate::de::{Doc, Result};
use crate::error::Warning;
use crate::k8s::{Read, Ref};
pub(crate) use spec::Kind;

/// The API group, and the versions of it the gateway reads.
pub(crate) const GROUP: &str = "networking.istio.io";
pub(crate) const VERSIONS: &[&str] = &["v1alpha3", "v1beta1", "v1"];

/// An object of this group by its kind; `None` for a kind the gateway does not implement.
pub(crate) fn read(kind: &str, value: Value, doc: Doc<'_>, warnings: &mut Vec<Warning>) -> Result<Option<Read<Kind>>> {
    use crate::k8s::spec;
    match kind {
        "Gateway" => spec(GROUP, value, doc, warnings, Kind::Gateway),
        "VirtualService" => spec(GROUP, value, doc, warnings, Kind::VirtualService),
        "DestinationRule" => spec(GROUP, value, doc, warnings, Kind::DestinationRule),
        "ServiceEntry" => spec(GROUP, value, doc, warnings, Kind::ServiceEntry),
        _ => Ok(None),
    }
}

/// Turns the Istio objects into sources, in load order.
pub(crate) fn build(translation: &mut Translation, objects: &[Ref<'_, Kind>]) -> Result<()> {
    let ours = scope::our_gateways(objects, &translation.options);
    let delegated = delegate::delegated(objects);
    for &o in objects {
        let mut cx = translation.object(o, objects);
        match o.spec {
            Kind::Gateway(g) => scope::gateway(&mut cx, g, &ours),
            Kind::VirtualService(vs) => virtual_service::lower(&mut cx, vs, &ours, &delegated)?,
            Kind::DestinationRule(dr) => destination_rule::lower(&mut cx, dr),
            Kind::ServiceEntry(se) => service_entry::lower(&mut cx, se)?,
        }
    }
    Ok(())
}
