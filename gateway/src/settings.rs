//! Settings of the gateway process (not the routing: that is the `--config` files).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Embedded defaults (`defaults.yaml`), then a settings file, `GATEWAY_*` variables, flags;
/// `GATEWAY_CONFIG=a.yaml,b.yaml` is a list.
impl service_kit::settings::Layered for GatewaySettings {
    const DEFAULTS: &'static str = include_str!("defaults.yaml");
    const ENV_PREFIX: &'static str = "GATEWAY";
    const LIST_KEYS: &'static [&'static str] = &["config", "shadow.trusted_networks", "scope.gateways"];
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    pub listen: String,
    pub admin_listen: String,
    /// Routing files (native or Istio YAML), merged in order.
    #[serde(default)]
    pub config: Vec<PathBuf>,
    #[serde(with = "http_rules::duration")]
    pub shutdown_deadline: Duration,
    pub upstream: UpstreamSettings,
    pub reload: ReloadSettings,
    pub report: ReportSettings,
    pub compare: CompareSettings,
    pub shadow: ShadowSettings,
    /// Which Gateway resources (Istio or Gateway API) this gateway is, and whether it also
    /// routes for the mesh: what the routing files cannot say about the process reading them.
    pub scope: gateway_config::LoadOptions,
}

/// Who may mark a request as shadow traffic (`x-shadow`); see `shadow.rs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowSettings {
    /// Signs this deployment's markers; give every replica the same one. Empty: a random key per
    /// process (only this gateway then recognises its own copies).
    pub key: String,
    /// Peers whose markers are trusted as they are (CIDRs or addresses).
    pub trusted_networks: Vec<String>,
    /// A signed marker older than this is not trusted.
    #[serde(with = "http_rules::duration")]
    pub max_age: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareSettings {
    /// Comparisons pending at once, all mirrors together; past it copies are not compared.
    /// Each holds up to two captured bodies (`compare.max_body` of its mirror).
    pub max_pending: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    #[serde(with = "http_rules::duration")]
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this.
    #[serde(with = "http_rules::duration")]
    pub idle_timeout: Duration,
    pub max_idle_per_endpoint: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadSettings {
    /// How often the routing files are checked for changes (SIGHUP reloads at once); 0 = never.
    #[serde(with = "http_rules::duration")]
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// Recent mismatches kept per mirror for `/mirrors` and the admin page.
    pub recent_mismatches: usize,
    /// Memory cap for all kept mismatch diffs together, in bytes.
    pub max_bytes: usize,
}
