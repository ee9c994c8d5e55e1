//! What requests and the admin listener share ([`Shared`]), and the routing generation one
//! request uses ([`Active`]): the validated table, compiled once per load into one
//! [`CompiledRoute`] per route. A new generation is built on reload and swapped in atomically;
//! requests in flight keep the one they started with. What must outlive a reload is kept beside
//! it, each by its own owner: mirror statistics and comparisons by [`MirrorKey`], promotions by
//! route, upstream pools by destination and endpoints.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use gateway_config::{HeaderOps, Loaded, MirrorPolicy, ObjectState, ObjectStatus, Route, RouteTable, Warning};
use http::HeaderValue;
use metrics::SharedString;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::bodies::RequestMetrics;
use crate::capture::Captures;
use crate::compare::{ComparisonThread, Comparisons};
use crate::mirror::Mirror;
use crate::promote::{Promotion, Promotions};
use crate::settings::{GatewaySettings, ReportSettings};
use crate::shadow::ShadowMarker;
use crate::stats::{self, MirrorKey};
use crate::upstream::retry::Policy;
use crate::upstream::{Pools, Upstream};

/// What every request and the admin listener share.
pub struct Shared {
    /// The routing generation new requests use.
    pub active: ArcSwap<Active>,
    /// What outlives a generation: each mirror's statistics, each mirror's comparison (with the
    /// noise it learned), each route's promotion, each destination's pool.
    pub stats: stats::Registry,
    pub comparisons: Comparisons,
    pub promotions: Promotions,
    pub pools: Pools,
    /// The capture files in use, each with its writer thread.
    pub captures: Captures,
    pub settings: GatewaySettings,
    pub metrics: Option<PrometheusHandle>,
    /// Where shadow and primary answers are diffed, off the request workers.
    pub comparator: Arc<ComparisonThread>,
    /// Signs the copies' `x-shadow` markers and screens those clients send.
    pub shadow: ShadowMarker,
    /// The request metrics of requests no route matched (or refused before routing).
    pub unrouted: Arc<RequestMetrics>,
    reloads: AtomicU64,
    last_reload_error: Mutex<Option<String>>,
    /// Every object kind any generation had: `gateway_config_objects` drops to 0 for a kind
    /// that is gone rather than keeping its last count.
    object_kinds: Mutex<BTreeSet<String>>,
}

impl Shared {
    /// Compiles `loaded` into the first generation. Must run inside a Tokio runtime (the
    /// connection pools use its timer).
    pub fn new(settings: GatewaySettings, loaded: Loaded, metrics: Option<PrometheusHandle>) -> Result<Self, String> {
        let comparator =
            ComparisonThread::start(settings.compare.max_pending_bytes).map_err(|e| format!("cannot start the comparator thread: {e}"))?;
        let shadow = ShadowMarker::new(&settings.shadow)?;
        let (stats, comparisons, promotions, pools, captures) = Default::default();
        let kept = Registries { stats: &stats, comparisons: &comparisons, promotions: &promotions, pools: &pools, captures: &captures };
        let active = Active::build(loaded, &settings, kept);
        let object_kinds = Mutex::new(BTreeSet::new());
        count_objects(&object_kinds, &active.objects);
        Ok(Self {
            active: ArcSwap::from_pointee(active),
            stats,
            comparisons,
            promotions,
            pools,
            captures,
            settings,
            metrics,
            comparator: Arc::new(comparator),
            shadow,
            unrouted: Arc::new(RequestMetrics::new(SharedString::const_str(""), SharedString::const_str(""))),
            reloads: AtomicU64::new(0),
            last_reload_error: Mutex::new(None),
            object_kinds,
        })
    }

    /// Compiles `loaded` and makes it the generation new requests use.
    pub fn swap(&self, loaded: Loaded) -> usize {
        let settings = &self.settings;
        let kept = Registries {
            stats: &self.stats,
            comparisons: &self.comparisons,
            promotions: &self.promotions,
            pools: &self.pools,
            captures: &self.captures,
        };
        let active = Active::build(loaded, settings, kept);
        let routes = active.routes.len();
        count_objects(&self.object_kinds, &active.objects);
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

/// `gateway_config_objects{kind,state}`: how many objects of each kind are accepted, rejected
/// and scoped out in the generation being swapped in.
fn count_objects(kinds: &Mutex<BTreeSet<String>>, objects: &[ObjectStatus]) {
    let mut kinds = kinds.lock().unwrap_or_else(|p| p.into_inner());
    kinds.extend(objects.iter().map(|o| o.kind.clone()));
    for kind in kinds.iter() {
        for state in ObjectState::ALL {
            let count = objects.iter().filter(|o| o.kind == *kind && o.state == state).count();
            #[allow(clippy::cast_precision_loss)] // a count of objects
            metrics::gauge!("gateway_config_objects", "kind" => kind.clone(), "state" => state.as_str()).set(count as f64);
        }
    }
}

/// One generation of routing.
pub struct Active {
    pub table: RouteTable,
    /// By route index (`RouteHit::index`): everything a request needs once its route is known.
    pub routes: Vec<CompiledRoute>,
    pub warnings: Vec<Warning>,
    /// Every Kubernetes object of the configuration with its status.
    pub objects: Vec<ObjectStatus>,
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
    /// How the primary request is retried: the route's policy over the gateway's defaults.
    pub retries: Policy,
    /// `promote:`: a share of the traffic moved to a mirror's destination while its verdict passes.
    pub promotion: Option<Arc<Promotion>>,
    /// The request metrics of each destination a request of this route may go to (its own and
    /// its mirrors', which a promotion sends to), and of its own answers (no destination).
    request_metrics: Vec<(Arc<Upstream>, Arc<RequestMetrics>)>,
    answered: Arc<RequestMetrics>,
    /// Header changes of the destinations that have their own (Gateway API backendRef filters).
    backend_headers: Vec<(Arc<Upstream>, BackendHeaders)>,
}

/// A destination's own header changes: of the requests sent to it, of its responses.
pub struct BackendHeaders {
    pub request: HeaderOps,
    pub response: HeaderOps,
}

impl CompiledRoute {
    /// This request's destination: the promotion's candidate for its share, else by weight.
    pub fn pick(&self) -> &Arc<Upstream> {
        self.promotion.as_ref().and_then(|p| p.choose()).unwrap_or_else(|| self.destinations.pick())
    }

    /// The header changes of `destination` as this route's backend, if it has any.
    pub fn backend_headers(&self, destination: &Arc<Upstream>) -> Option<&BackendHeaders> {
        self.backend_headers.iter().find(|(upstream, _)| Arc::ptr_eq(upstream, destination)).map(|(_, headers)| headers)
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
    /// Compiles a freshly loaded table; pools, statistics, comparisons and promotions come from
    /// (and stay in) the registries that outlive generations. Must run inside a Tokio runtime.
    /// Cannot fail: the model holds parsed values, so whatever loaded (and passed
    /// `--check-config`) is served.
    pub fn build(loaded: Loaded, settings: &GatewaySettings, kept: Registries<'_>) -> Self {
        let Loaded { table, warnings, objects, .. } = loaded;
        let upstreams: Vec<_> = table.destinations.iter().map(|d| kept.pools.get(d, &settings.upstream)).collect();
        let routes = table.routes.iter().map(|route| CompiledRoute::new(route, &upstreams, settings, kept)).collect();
        Self { table, routes, warnings, objects, loaded_at: SystemTime::now() }
    }
}

impl CompiledRoute {
    fn new(route: &Route, upstreams: &[Arc<Upstream>], settings: &GatewaySettings, kept: Registries<'_>) -> Self {
        let report = &settings.report;
        let destinations = Weighted::new(route.destinations.iter().map(|d| (upstreams[d.id.0].clone(), u64::from(d.weight))).collect());
        let mirrors: Vec<Mirror> =
            route.mirrors.iter().map(|policy| compile_mirror(&route.name, policy, upstreams, report, kept)).collect();
        let promotion = route.promote.as_ref().and_then(|spec| {
            let gate = mirrors.iter().find(|m| m.policy.name == spec.mirror)?;
            Some(kept.promotions.get(route, spec, &upstreams[spec.destination.0], &gate.stats))
        });
        let label = SharedString::from(Arc::<str>::from(route.name.as_str()));
        let mut request_metrics: Vec<(Arc<Upstream>, Arc<RequestMetrics>)> = Vec::new();
        for upstream in destinations.choices.iter().map(|(upstream, _)| upstream).chain(mirrors.iter().map(|m| &m.upstream)) {
            if !request_metrics.iter().any(|(known, _)| Arc::ptr_eq(known, upstream)) {
                request_metrics.push((upstream.clone(), Arc::new(RequestMetrics::new(label.clone(), upstream.metric_label.clone()))));
            }
        }
        let backend_headers = route
            .destinations
            .iter()
            .filter(|d| !(d.request_headers.is_empty() && d.response_headers.is_empty()))
            .map(|d| {
                (upstreams[d.id.0].clone(), BackendHeaders { request: d.request_headers.clone(), response: d.response_headers.clone() })
            })
            .collect();
        Self {
            backend_headers,
            answered: Arc::new(RequestMetrics::new(label.clone(), SharedString::const_str(""))),
            label,
            destinations,
            mirrors,
            rewrite_authority: route.rewrite_authority.clone(),
            timeout: route.timeout,
            retries: Policy::resolve(route.retries.as_ref(), &settings.retries),
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
    kept: Registries<'_>,
) -> Mirror {
    let key = MirrorKey::new(route, &policy.name);
    let comparer = policy.compare.as_ref().map(|spec| kept.comparisons.get(&key, spec));
    let upstream = upstreams[policy.destination.0].clone();
    let stats = kept.stats.get(&key, &upstream.label, report);
    stats.set_comparing(comparer.is_some());
    stats.set_verdict(policy.verdict.as_ref());
    // A capture file that cannot be opened leaves the mirror running without it, said in the log.
    let capture = policy.capture.as_ref().and_then(|spec| match kept.captures.sink(route, &policy.name, spec) {
        Ok(sink) => Some(sink),
        Err(error) => {
            tracing::error!(route, mirror = %policy.name, %error, "the mirror's exchanges are not recorded");
            None
        }
    });
    Mirror::new(policy.clone(), upstream, stats, comparer).with_capture(capture)
}

/// The registries a generation is compiled from, each the owner of what it keeps.
#[derive(Clone, Copy)]
pub struct Registries<'a> {
    pub stats: &'a stats::Registry,
    pub comparisons: &'a Comparisons,
    pub promotions: &'a Promotions,
    pub pools: &'a Pools,
    pub captures: &'a Captures,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::UpstreamSettings;
    use gateway_config::{Destination, Endpoint};

    #[test]
    fn weighted_choice_follows_the_weights() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = rt.enter();
        let settings = UpstreamSettings::defaults();
        let upstream = |host: &str| {
            let destination = Destination {
                host: host.into(),
                subset: None,
                port: None,
                endpoints: vec![Endpoint::new(host, 1).unwrap()],
                protocol: Default::default(),
                outlier: None,
                unresolved: false,
                cluster_dns: false,
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
