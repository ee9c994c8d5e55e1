//! A DestinationRule: subsets of a host, selecting its endpoints by label, and the TLS mode
//! asked for it (TLS origination is not implemented, so a rule asking for it is refused where a
//! route would send plaintext).

use std::time::Duration;

use super::spec::{DestinationRuleSpec, Kind, TrafficPolicy};
use crate::context::ObjectCx;
use crate::k8s::names::qualify;
use crate::model::OutlierPolicy;
use crate::sources::{IstioSubset, TlsRule};

/// Adds the rule's subsets, and the TLS it asks for (refused by validation where it would be
/// plaintext instead).
pub(super) fn lower(cx: &mut ObjectCx<'_, Kind>, dr: &DestinationRuleSpec) {
    subsets(cx, dr);
    outlier_detection(cx, dr);
    let host = qualify(&dr.host, cx.namespace());
    cx.loaded(format!("host {host}, {} subsets", dr.subsets.len()));
}

fn subsets(cx: &mut ObjectCx<'_, Kind>, dr: &DestinationRuleSpec) {
    let (o, doc) = (cx.meta(), cx.doc());
    let host = qualify(&dr.host, &o.namespace);
    let rule = format!("{}/{}", o.namespace, o.name);
    let mut tls = |policy: &Option<TrafficPolicy>, subset: Option<&str>, path: &str| {
        let Some(policy) = policy else { return };
        let levels = std::iter::once((None, policy.tls.as_ref(), format!("{path}.tls.mode"))).chain(
            policy.port_level_settings.iter().enumerate().map(|(j, p)| {
                (p.port.as_ref().and_then(|p| p.number).map(|n| n.0), p.tls.as_ref(), format!("{path}.portLevelSettings[{j}].tls.mode"))
            }),
        );
        for (port, tls, at) in levels {
            let Some(mode) = tls.and_then(|t| t.mode.as_deref()) else { continue };
            let mode = mode.to_ascii_uppercase();
            if mode == "ISTIO_MUTUAL" {
                // Mesh mTLS is between sidecars; without Istio the workloads have none and
                // take plaintext, which is what this gateway sends.
                cx.warn(&at, "ISTIO_MUTUAL is not implemented: there is no mesh mTLS here; requests go in plaintext, as to a workload without a sidecar");
            }
            let origin = doc.origin(&at);
            cx.sources().tls_rules.push(TlsRule { host: host.clone(), subset: subset.map(str::to_string), port, mode, origin });
        }
    };
    tls(&dr.traffic_policy, None, "spec.trafficPolicy");
    for (i, s) in dr.subsets.iter().enumerate() {
        tls(&s.traffic_policy, Some(&s.name.0), &format!("spec.subsets[{i}].trafficPolicy"));
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

/// `trafficPolicy.outlierDetection`, of the rule and of its subsets, with Istio's defaults
/// (5 consecutive 5xx, 30 s, 10%); only `consecutiveGatewayErrors` given counts 502, 503 and 504
/// alone, as Istio then turns the 5xx detector off.
fn outlier_detection(cx: &mut ObjectCx<'_, Kind>, dr: &DestinationRuleSpec) {
    let host = qualify(&dr.host, &cx.meta().namespace);
    let policy = |p: &Option<TrafficPolicy>| {
        let o = p.as_ref()?.outlier_detection.as_ref()?;
        let (consecutive_errors, all_5xx) = match (&o.consecutive_5xx, &o.consecutive_gateway) {
            (None, Some(gateway)) => (gateway.0, false),
            (five, _) => (five.as_ref().map_or(5, |n| n.0), true),
        };
        Some(OutlierPolicy {
            consecutive_errors,
            all_5xx,
            base_ejection_time: o.base_ejection_time.as_ref().map_or(Duration::from_secs(30), |d| d.0),
            max_ejection_percent: o.max_ejection_percent.as_ref().map_or(10, |p| p.0.min(100)),
        })
    };
    let mut rules = Vec::new();
    if let Some(p) = policy(&dr.traffic_policy) {
        rules.push((host.clone(), None, p));
    }
    for s in &dr.subsets {
        if let Some(p) = policy(&s.traffic_policy) {
            rules.push((host.clone(), Some(s.name.0.clone()), p));
        }
    }
    cx.sources().outlier_rules.extend(rules);
}
