//! What requests and the admin listener share ([`Shared`]), and the routing generation one
//! request uses ([`Active`]): the validated table, compiled once per load into one
//! [`CompiledRoute`] per route. A new generation is built on reload and swapped in atomically;
//! requests in flight keep the one they started with. What must outlive a reload is kept beside
//! it: mirror statistics by route and mirror name, upstream pools by destination and endpoints.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use gateway_config::{CompareSpec, Loaded, MirrorPolicy, Route, RouteTable, Warning};
use http::HeaderValue;
use metrics::SharedString;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::bodies::RequestMetrics;
use crate::compare::{Comparator, Comparer};
use crate::mirror::Mirror;
use crate::promote::{Promotion, Promotions};
use crate::report::MirrorStats;
use crate::settings::{GatewaySettings, ReportSettings, UpstreamSettings};
use crate::shadow::ShadowMarker;
use crate::upstream::{Pools, Upstream};

/// What every request and the admin listener share.
pub struct Shared {
    /// The routing generation new requests use.
    pub active: ArcSwap<Active>,
    pub stats: StatsRegistry,
    pub pools: Pools,
    pub settings: GatewaySettings,
    pub metrics: Option<PrometheusHandle>,
    /// Where shadow and primary answers are diffed, off the request workers.
    pub comparator: Arc<Comparator>,
    /// Signs the copies' `x-shadow` markers and screens those clients send.
    pub shadow: ShadowMarker,
    /// The request metrics of requests no route matched (or refused before routing).
    pub unrouted: Arc<RequestMetrics>,
    reloads: AtomicU64,
    last_reload_error: Mutex<Option<String>>,
}

impl Shared {
    /// Compiles `loaded` into the first generation. Must run inside a Tokio runtime (the
    /// connection pools use its timer).
    pub fn new(settings: GatewaySettings, loaded: Loaded, metrics: Option<PrometheusHandle>) -> Result<Self, String> {
        let comparator = Comparator::start(settings.compare.max_pending).map_err(|e| format!("cannot start the comparator thread: {e}"))?;
        let shadow = ShadowMarker::new(&settings.shadow)?;
        let (stats, pools) = (StatsRegistry::default(), Pools::default());
        let active = Active::build(loaded, &settings.upstream, &settings.report, &stats, &pools);
        Ok(Self {
            active: ArcSwap::from_pointee(active),
            stats,
            pools,
            settings,
            metrics,
            comparator: Arc::new(comparator),
            shadow,
            unrouted: Arc::new(RequestMetrics::new(SharedString::const_str(""), SharedString::const_str(""))),
            reloads: AtomicU64::new(0),
            last_reload_error: Mutex::new(None),
        })
    }

    /// Compiles `loaded` and makes it the generation new requests use.
    pub fn swap(&self, loaded: Loaded) -> usize {
        let settings = &self.settings;
        let active = Active::build(loaded, &settings.upstream, &settings.report, &self.stats, &self.pools);
        let routes = active.routes.len();
        self.active.store(Arc::new(active));
        self.reloads.fetch_add(1, Ordering::Relaxed);
        routes
    }

    pub fn set_reload_error(&self, error: Option<String>) {
        *self.last_reload_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }

    pub fn reload_status(&self) -> (u64, Option<String>) {
        (self.reloads.load(Ordering::Relaxed), self.last_reload_error.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// One generation of routing.
pub struct Active {
    pub table: RouteTable,
    /// By route index (`RouteHit::index`): everything a request needs once its route is known.
    pub routes: Vec<CompiledRoute>,
    pub warnings: Vec<Warning>,
    pub loaded_at: SystemTime,
}

/// A route, ready to serve: its metric label, its weighted destinations with their pools, and
/// its mirrors.
pub struct CompiledRoute {
    /// The route's name as a metric label, shared rather than copied per request.
    pub label: SharedString,
    pub destinations: Weighted,
    pub mirrors: Vec<Mirror>,
    /// `rewrite.authority`, as the `Host` header value it becomes.
    pub rewrite_authority: Option<HeaderValue>,
    pub timeout: Option<Duration>,
    /// `promote:`: a share of the traffic moved to a mirror's destination while its verdict passes.
    pub promotion: Option<Arc<Promotion>>,
    /// The request metrics of each destination a request of this route may go to (its own and
    /// its mirrors', which a promotion sends to), and of its own answers (no destination).
    request_metrics: Vec<(Arc<Upstream>, Arc<RequestMetrics>)>,
    answered: Arc<RequestMetrics>,
}

impl CompiledRoute {
    /// This request's destination: the promotion's candidate for its share, else by weight.
    pub fn pick(&self) -> &Arc<Upstream> {
        self.promotion.as_ref().and_then(|p| p.choose()).unwrap_or_else(|| self.destinations.pick())
    }

    /// Where a request of this route sent to `destination` (`None`: answered by the route) is counted.
    pub fn request_metrics(&self, destination: Option<&Arc<Upstream>>) -> Arc<RequestMetrics> {
        let Some(destination) = destination else {
            return self.answered.clone();
        };
        match self.request_metrics.iter().find(|(upstream, _)| Arc::ptr_eq(upstream, destination)) {
            Some((_, metrics)) => metrics.clone(),
            None => Arc::new(RequestMetrics::new(self.label.clone(), destination.metric_label.clone())),
        }
    }
}

/// A route's destinations and their weights; the common single destination costs no draw.
pub struct Weighted {
    choices: Vec<(Arc<Upstream>, u64)>,
    total: u64,
}

impl Weighted {
    fn new(choices: Vec<(Arc<Upstream>, u64)>) -> Self {
        let total = choices.iter().map(|(_, weight)| weight).sum();
        Self { choices, total }
    }

    /// A destination drawn by weight (validation guarantees one non-zero weight).
    pub fn pick(&self) -> &Arc<Upstream> {
        if let [(only, _)] = self.choices.as_slice() {
            return only;
        }
        let mut ticket = rand::random_range(0..self.total.max(1));
        for (upstream, weight) in &self.choices {
            if ticket < *weight {
                return upstream;
            }
            ticket -= weight;
        }
        &self.choices[0].0
    }
}

impl Active {
    /// Compiles a freshly loaded table; pools and statistics come from (and stay in) the
    /// registries that outlive generations. Must run inside a Tokio runtime. Cannot fail: the
    /// model holds parsed values, so whatever loaded (and passed `--check-config`) is served.
    pub fn build(loaded: Loaded, upstream: &UpstreamSettings, report: &ReportSettings, stats: &StatsRegistry, pools: &Pools) -> Self {
        let Loaded { table, warnings, .. } = loaded;
        let upstreams: Vec<_> = table.destinations.iter().map(|d| pools.get(d, upstream)).collect();
        let routes = table.routes.iter().map(|route| CompiledRoute::new(route, &upstreams, report, stats)).collect();
        Self { table, routes, warnings, loaded_at: SystemTime::now() }
    }
}

impl CompiledRoute {
    fn new(route: &Route, upstreams: &[Arc<Upstream>], report: &ReportSettings, stats: &StatsRegistry) -> Self {
        let destinations = Weighted::new(route.destinations.iter().map(|d| (upstreams[d.id.0].clone(), u64::from(d.weight))).collect());
        let mirrors: Vec<Mirror> =
            route.mirrors.iter().map(|policy| compile_mirror(&route.name, policy, upstreams, report, stats)).collect();
        let promotion = route.promote.as_ref().and_then(|spec| {
            let gate = mirrors.iter().find(|m| m.policy.name == spec.mirror)?;
            Some(stats.promotions.get(route, spec, &upstreams[spec.destination.0], &gate.stats))
        });
        let label = SharedString::from(Arc::<str>::from(route.name.as_str()));
        let mut request_metrics: Vec<(Arc<Upstream>, Arc<RequestMetrics>)> = Vec::new();
        for upstream in destinations.choices.iter().map(|(upstream, _)| upstream).chain(mirrors.iter().map(|m| &m.upstream)) {
            if !request_metrics.iter().any(|(known, _)| Arc::ptr_eq(known, upstream)) {
                request_metrics.push((upstream.clone(), Arc::new(RequestMetrics::new(label.clone(), upstream.metric_label.clone()))));
            }
        }
        Self {
            answered: Arc::new(RequestMetrics::new(label.clone(), SharedString::const_str(""))),
            label,
            destinations,
            mirrors,
            rewrite_authority: route.rewrite_authority.clone(),
            timeout: route.timeout,
            promotion,
            request_metrics,
        }
    }
}

fn compile_mirror(
    route: &str,
    policy: &MirrorPolicy,
    upstreams: &[Arc<Upstream>],
    report: &ReportSettings,
    stats: &StatsRegistry,
) -> Mirror {
    let comparer = policy.compare.as_ref().map(|spec| stats.comparer(route, policy, spec));
    let upstream = upstreams[policy.destination.0].clone();
    let stats = stats.mirror(route, policy, &upstream.label, report);
    stats.set_comparing(comparer.is_some());
    stats.set_verdict(policy.verdict.as_ref());
    Mirror::new(policy.clone(), upstream, stats, comparer)
}

/// Mirror statistics outlive reloads: they are keyed by route and mirror name. So do comparers
/// (and the noise they learned) while the mirror's comparison settings stay the same.
#[derive(Default)]
pub struct StatsRegistry {
    by_mirror: Mutex<HashMap<(String, String), Arc<MirrorStats>>>,
    comparers: Mutex<HashMap<(String, String), KeptComparer>>,
    pub promotions: Promotions,
}

/// A mirror's comparer and the comparison settings (serialised) it was made for.
type KeptComparer = (String, Arc<Comparer>);

impl StatsRegistry {
    /// The mirror's comparer: the running one when its settings are unchanged, else a new one.
    pub fn comparer(&self, route: &str, mirror: &MirrorPolicy, spec: &CompareSpec) -> Arc<Comparer> {
        let settings = serde_json::to_string(spec).unwrap_or_default();
        let mut map = self.comparers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (route.to_owned(), mirror.name.clone());
        if let Some((same, kept)) = map.get(&key)
            && *same == settings
        {
            return kept.clone();
        }
        let comparer = Arc::new(Comparer::new(spec));
        map.insert(key, (settings, comparer.clone()));
        comparer
    }

    pub fn mirror(&self, route: &str, mirror: &MirrorPolicy, destination: &str, report: &ReportSettings) -> Arc<MirrorStats> {
        let mut map = self.by_mirror.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry((route.to_owned(), mirror.name.clone()))
            .or_insert_with(|| Arc::new(MirrorStats::new(route, &mirror.name, destination, report)))
            .clone()
    }

    /// Every mirror ever configured, sorted by route then mirror.
    pub fn all(&self) -> Vec<Arc<MirrorStats>> {
        let map = self.by_mirror.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut all: Vec<_> = map.values().cloned().collect();
        all.sort_by(|a, b| (&a.route, &a.mirror).cmp(&(&b.route, &b.mirror)));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_config::{Destination, Endpoint};

    #[test]
    fn weighted_choice_follows_the_weights() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = rt.enter();
        let settings =
            UpstreamSettings { connect_timeout: Duration::from_secs(1), idle_timeout: Duration::from_secs(1), max_idle_per_endpoint: 1 };
        let upstream = |host: &str| {
            let destination = Destination {
                host: host.into(),
                subset: None,
                port: None,
                endpoints: vec![Endpoint::new(host, 1).unwrap()],
                protocol: Default::default(),
            };
            Arc::new(Upstream::new(&destination, &settings))
        };
        let (a, b) = (upstream("a"), upstream("b"));
        let split = Weighted::new(vec![(a.clone(), 90), (b.clone(), 10)]);
        let second = (0..10_000).filter(|_| Arc::ptr_eq(split.pick(), &b)).count();
        assert!((700..1_300).contains(&second), "{second}");
        let zero = Weighted::new(vec![(a, 0), (b.clone(), 5)]);
        assert!((0..100).all(|_| Arc::ptr_eq(zero.pick(), &b)));
    }
}
