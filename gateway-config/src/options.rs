//! What the configuration files cannot say, and the gateway's settings do: which Gateway
//! resources this gateway is, and whether it also routes for the mesh.

use std::collections::BTreeMap;

/// Which Gateways (Istio or Gateway API) this gateway is, and whether it routes for the mesh.
/// The gateway takes them from its process settings (`scope:`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadOptions {
    /// Gateway resources (Istio or Gateway API) this gateway is, as `namespace/name` (or a
    /// bare name in namespace `default`). Empty, with no `labels`: every Gateway in the files.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// This gateway's labels: an Istio Gateway whose `selector` they satisfy is this gateway.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Also serve mesh VirtualServices (no `gateways`, or `mesh`), as the mesh's router.
    #[serde(default)]
    pub mesh: bool,
    /// The data-plane listener terminates TLS (the process settings name a certificate): a
    /// Gateway API `HTTPS` listener is served only then, never in clear. Not a settings key:
    /// the gateway sets it from `tls:`.
    #[serde(skip)]
    pub tls: bool,
}

impl LoadOptions {
    /// Neither names nor labels are given: every Gateway in the files is this gateway.
    pub(crate) fn every_gateway(&self) -> bool {
        self.gateways.is_empty() && self.labels.is_empty()
    }

    /// `gateways` names the Gateway `namespace/name` (a bare name is one in `default`).
    pub(crate) fn names_gateway(&self, namespace: &str, name: &str) -> bool {
        let id = format!("{namespace}/{name}");
        self.gateways.iter().any(|n| *n == id || (!n.contains('/') && namespace == "default" && n == name))
    }
}
