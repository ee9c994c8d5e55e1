//! The routing state one request uses: the validated table and, beside it, what each
//! destination and mirror needs at run time. A new state is built on reload and swapped in
//! atomically; requests in flight keep the one they started with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use gateway_config::{Loaded, MirrorPolicy, RouteTable, Warning};
use tokio::sync::Semaphore;

use crate::compare::Comparer;
use crate::report::MirrorStats;
use crate::settings::{ReportSettings, UpstreamSettings};
use crate::upstream::Upstream;

/// One generation of routing.
pub struct Active {
    pub table: RouteTable,
    pub warnings: Vec<Warning>,
    /// By `DestinationId`.
    pub upstreams: Vec<Upstream>,
    /// By route index, then mirror index.
    pub mirrors: Vec<Vec<MirrorRuntime>>,
    /// By route index: route names as metric labels, shared rather than copied per request.
    pub route_labels: Vec<metrics::SharedString>,
    pub loaded_at: SystemTime,
}

/// What a mirror needs besides its policy.
pub struct MirrorRuntime {
    /// The `x-shadow` value of this mirror's copies (its name), built once.
    pub marker: http::HeaderValue,
    /// Copies in flight; `try_acquire` only: at the cap a copy is dropped, never queued.
    pub in_flight: Arc<Semaphore>,
    pub stats: Arc<MirrorStats>,
    pub comparer: Option<Arc<Comparer>>,
}

/// Mirror statistics outlive reloads: they are keyed by route and mirror name.
#[derive(Default)]
pub struct StatsRegistry {
    by_mirror: Mutex<HashMap<(String, String), Arc<MirrorStats>>>,
}

impl StatsRegistry {
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

impl Active {
    /// Builds the run-time state for a freshly loaded table. Must run inside a Tokio runtime
    /// (the connection pools use its timer).
    pub fn build(loaded: Loaded, upstream: &UpstreamSettings, report: &ReportSettings, stats: &StatsRegistry) -> Result<Self, String> {
        let Loaded { table, warnings } = loaded;
        let upstreams = table.destinations.iter().map(|d| Upstream::new(d, upstream)).collect::<Result<Vec<_>, _>>()?;
        let mut mirrors = Vec::with_capacity(table.routes.len());
        for route in &table.routes {
            let mut runtimes = Vec::with_capacity(route.mirrors.len());
            for mirror in &route.mirrors {
                let comparer = match &mirror.compare {
                    Some(spec) => Some(Arc::new(
                        Comparer::new(spec)
                            .map_err(|e| format!("route {:?}: mirror {:?}: compare.ignore_paths: {e}", route.name, mirror.name))?,
                    )),
                    None => None,
                };
                let destination = table.destination(mirror.destination).label();
                let stats = stats.mirror(&route.name, mirror, &destination, report);
                stats.set_comparing(comparer.is_some());
                let marker = http::HeaderValue::from_str(&mirror.name)
                    .map_err(|_| format!("route {:?}: mirror {:?}: the name is not a valid header value", route.name, mirror.name))?;
                runtimes.push(MirrorRuntime { marker, in_flight: Arc::new(Semaphore::new(mirror.max_in_flight)), comparer, stats });
            }
            mirrors.push(runtimes);
        }
        let route_labels = table.routes.iter().map(|r| metrics::SharedString::from(Arc::<str>::from(r.name.as_str()))).collect();
        Ok(Self { table, warnings, upstreams, mirrors, route_labels, loaded_at: SystemTime::now() })
    }
}
