//! Upstream connections: one pooled HTTP client per destination, kept across reloads while the
//! destination's endpoints stay the same ([`Pools`]), and endpoint choice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use gateway_config::Destination;
use http::uri::Authority;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::settings::UpstreamSettings;

/// Request and response bodies as they travel through the gateway.
pub type BoxBody = UnsyncBoxBody<Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A destination ready to send to: its endpoints and its own connection pool.
pub struct Upstream {
    pub label: String,
    /// `label` as a metric label, shared rather than copied per request.
    pub metric_label: metrics::SharedString,
    /// Parsed once: a request clones one (a reference count), never re-parses it.
    endpoints: Vec<Authority>,
    next: AtomicUsize,
    client: Client<HttpConnector, BoxBody>,
}

impl Upstream {
    /// Fails when an endpoint is not a valid `host:port` authority. A destination may have no
    /// endpoints (yet): requests for it are then answered 503.
    pub fn new(destination: &Destination, settings: &UpstreamSettings) -> Result<Self, String> {
        Ok(Self::with_endpoints(destination, endpoints(destination)?, settings))
    }

    fn with_endpoints(destination: &Destination, endpoints: Vec<Authority>, settings: &UpstreamSettings) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(settings.idle_timeout)
            .pool_max_idle_per_host(settings.max_idle_per_endpoint)
            .build(connector);
        Self {
            label: destination.label(),
            metric_label: metrics::SharedString::from(std::sync::Arc::<str>::from(destination.label())),
            endpoints,
            next: AtomicUsize::new(0),
            client,
        }
    }

    /// The next endpoint, round-robin; `None` when the destination has none.
    pub fn pick(&self) -> Option<&Authority> {
        if self.endpoints.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Some(&self.endpoints[n % self.endpoints.len()])
    }

    pub fn client(&self) -> &Client<HttpConnector, BoxBody> {
        &self.client
    }
}

/// The destination's endpoints as authorities, parsed once per generation.
fn endpoints(destination: &Destination) -> Result<Vec<Authority>, String> {
    destination
        .endpoints
        .iter()
        .map(|e| {
            Authority::try_from(e.authority())
                .map_err(|_| format!("destination {}: invalid endpoint {:?}", destination.label(), e.authority()))
        })
        .collect()
}

/// What identifies a pool: the destination and the endpoints it sends to, in order.
type PoolKey = (String, Vec<Authority>);

/// Every destination's pool, shared by the routing generations that use it. A reload that keeps
/// a destination's endpoints keeps its pool (warm connections, round-robin position), as Envoy
/// and Linkerd keep theirs across configuration changes; a changed destination gets a new pool,
/// and the old one drains: it lives while requests of the old generation still hold it.
#[derive(Default)]
pub struct Pools {
    by_key: Mutex<HashMap<PoolKey, Weak<Upstream>>>,
}

impl Pools {
    /// The pool for `destination`: the one in use when its endpoints are unchanged, else a new one.
    pub fn get(&self, destination: &Destination, settings: &UpstreamSettings) -> Result<Arc<Upstream>, String> {
        let key = (destination.label(), endpoints(destination)?);
        let mut pools = self.by_key.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pools.retain(|_, pool| pool.strong_count() > 0);
        if let Some(kept) = pools.get(&key).and_then(Weak::upgrade) {
            return Ok(kept);
        }
        let fresh = Arc::new(Upstream::with_endpoints(destination, key.1.clone(), settings));
        pools.insert(key, Arc::downgrade(&fresh));
        Ok(fresh)
    }
}

pub use http_rules::strip_hop_by_hop;

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_config::Endpoint;

    fn settings() -> UpstreamSettings {
        UpstreamSettings {
            connect_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(1),
            max_idle_per_endpoint: 1,
        }
    }

    #[test]
    fn endpoints_are_chosen_round_robin() {
        let destination = Destination {
            host: "target".into(),
            subset: Some("v1".into()),
            port: None,
            endpoints: vec![Endpoint { host: "a".into(), port: 1 }, Endpoint { host: "b".into(), port: 2 }],
        };
        let settings = settings();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = rt.enter();
        let upstream = Upstream::new(&destination, &settings).unwrap();
        let picks: Vec<&str> = (0..4).map(|_| upstream.pick().unwrap().as_str()).collect();
        assert_eq!(picks, ["a:1", "b:2", "a:1", "b:2"]);
    }

    #[test]
    fn a_pool_is_kept_while_its_endpoints_stay_the_same() {
        let destination =
            |endpoints: Vec<Endpoint>| Destination { host: "target".into(), subset: Some("v1".into()), port: None, endpoints };
        let settings = settings();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = rt.enter();
        let pools = Pools::default();
        let a = vec![Endpoint { host: "a".into(), port: 1 }];
        let first = pools.get(&destination(a.clone()), &settings).unwrap();
        first.pick();
        let again = pools.get(&destination(a), &settings).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "same destination and endpoints: same pool");
        let moved = pools.get(&destination(vec![Endpoint { host: "b".into(), port: 1 }]), &settings).unwrap();
        assert!(!Arc::ptr_eq(&first, &moved), "other endpoints: a new pool");
        drop((first, again));
        let after_drain = pools.get(&destination(vec![Endpoint { host: "a".into(), port: 1 }]), &settings).unwrap();
        assert_eq!(after_drain.pick().unwrap().as_str(), "a:1", "a drained pool is not revived: round-robin starts over");
    }
}
