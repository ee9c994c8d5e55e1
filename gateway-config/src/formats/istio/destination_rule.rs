//! A DestinationRule: subsets of a host, selecting its endpoints by label, and the TLS mode
//! asked for it (TLS origination is not implemented, so a rule asking for it is refused where a
//! route would send plaintext).

use super::spec::{DestinationRuleSpec, Kind, TrafficPolicy};
use crate::context::ObjectCx;
use crate::k8s::names::qualify;
use crate::sources::IstioSubset;

/// Adds the rule's subsets, and the TLS it asks for (refused by validation where it would be
/// plaintext instead).
pub(super) fn lower(cx: &mut ObjectCx<'_, Kind>, dr: &DestinationRuleSpec) {
    subsets(cx, dr);
    let host = qualify(&dr.host, cx.namespace());
    cx.loaded(format!("host {host}, {} subsets", dr.subsets.len()));
}

fn subsets(cx: &mut ObjectCx<'_, Kind>, dr: &DestinationRuleSpec) {
    let (o, doc) = (cx.meta(), cx.doc());
    let host = qualify(&dr.host, &o.namespace);
    let rule = format!("{}/{}", o.namespace, o.name);
    let mut tls = |policy: &Option<TrafficPolicy>, path: &str| {
        if let Some(mode) = policy.as_ref().and_then(|p| p.tls.as_ref()).and_then(|t| t.mode.as_deref()) {
            let mode = mode.to_ascii_uppercase();
            if mode == "ISTIO_MUTUAL" {
                // Mesh mTLS is between sidecars; without Istio the workloads have none and
                // take plaintext, which is what this gateway sends.
                cx.warn(path, "ISTIO_MUTUAL is not implemented: there is no mesh mTLS here; requests go in plaintext, as to a workload without a sidecar");
            }
            cx.sources().tls_rules.push((host.clone(), mode, doc.origin(path)));
        }
    };
    tls(&dr.traffic_policy, "spec.trafficPolicy.tls.mode");
    for (i, s) in dr.subsets.iter().enumerate() {
        tls(&s.traffic_policy, &format!("spec.subsets[{i}].trafficPolicy.tls.mode"));
    }
    for (i, s) in dr.subsets.iter().enumerate() {
        cx.sources().subsets.push(IstioSubset {
            host: host.clone(),
            rule: rule.clone(),
            name: s.name.0.clone(),
            labels: s.labels.strings(),
            origin: doc.origin(&format!("spec.subsets[{i}]")),
        });
    }
}
