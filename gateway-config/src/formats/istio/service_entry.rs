//! A ServiceEntry: where workloads run, since there is no Kubernetes API here (a short host
//! stands for the Kubernetes Service of that name in the entry's namespace), with each port's
//! protocol.

use std::collections::BTreeMap;

use super::spec::{Kind, ServiceEntrySpec};
use crate::context::ObjectCx;
use crate::de::Result;
use crate::k8s::names::qualify;
use crate::model::Protocol;
use crate::sources::{SeEndpoint, SePort, ServiceEntry};

/// Adds where the entry's hosts run: its ports and endpoints (or, resolved by DNS, its hosts).
pub(super) fn lower(cx: &mut ObjectCx<'_, Kind>, spec: &ServiceEntrySpec) -> Result<()> {
    let doc = cx.doc();
    let hosts: Vec<String> = spec.hosts.items.iter().map(|h| qualify(h, cx.namespace())).collect();
    let ports = spec
        .ports
        .iter()
        .map(|p| {
            let name = p.name.as_ref().map(|n| n.0.clone());
            // Istio's protocol, or the port-name convention (`https`, `tls-foo`) when none is given.
            let protocol = p
                .protocol
                .clone()
                .or_else(|| name.as_ref().map(|n| n.split('-').next().unwrap_or("").to_string()))
                .unwrap_or_default()
                .to_ascii_uppercase();
            // h2c for HTTP2 and GRPC (appProtocol first, as Kubernetes), HTTP/1.1 otherwise.
            let http =
                p.app_protocol.as_deref().and_then(Protocol::from_name).or_else(|| Protocol::from_name(&protocol)).unwrap_or_default();
            SePort {
                number: p.number.0,
                tls: matches!(protocol.as_str(), "HTTPS" | "TLS").then_some(protocol),
                name,
                target_port: p.target_port.map(|t| t.0),
                protocol: http,
            }
        })
        .collect();
    let resolution = spec.resolution.as_deref().unwrap_or("NONE").to_ascii_uppercase();
    let mut endpoints = Vec::new();
    for (i, e) in spec.endpoints.iter().enumerate() {
        let address = e.address.trim();
        if address.is_empty() || address.starts_with("unix://") || address.contains('/') {
            return Err(doc.err(
                &format!("spec.endpoints[{i}].address"),
                format!("unsupported address \"{address}\": expected an IP address or DNS name"),
            ));
        }
        endpoints.push(SeEndpoint {
            address: address.trim_start_matches('[').trim_end_matches(']').to_string(),
            ports: e.ports.0.iter().map(|(k, p)| (k.clone(), p.0)).collect(),
            labels: e.labels.strings(),
        });
    }
    match resolution.as_str() {
        "STATIC" => {}
        "DNS" | "DNS_ROUND_ROBIN" => {
            if endpoints.is_empty() {
                // Istio resolves the hosts themselves, as written.
                endpoints = spec
                    .hosts
                    .items
                    .iter()
                    .filter(|h| !h.contains('*'))
                    .map(|h| SeEndpoint { address: h.clone(), ports: BTreeMap::new(), labels: BTreeMap::new() })
                    .collect();
            }
        }
        other => cx.warn(
            if spec.resolution.is_some() { "spec.resolution" } else { "spec" },
            format!("resolution {other} is not implemented (STATIC or DNS); the endpoints listed are used as given"),
        ),
    }
    cx.loaded(format!("hosts {}", hosts.join(", ")));
    cx.sources().service_entries.push(ServiceEntry { hosts, ports, endpoints, origin: doc.origin("spec") });
    Ok(())
}
