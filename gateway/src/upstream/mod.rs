//! Everything between the gateway and a destination: one pooled HTTP client per destination and
//! protocol, kept across reloads while the destination's endpoints and protocol stay the same
//! ([`Pools`]), endpoint choice and health ([`endpoints`], [`outlier`]), and retries ([`retry`]).

pub mod endpoints;
pub mod framing;
pub mod outlier;
pub mod retry;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use gateway_config::{Destination, OutlierPolicy, Protocol};
use http::header::HOST;
use http::uri::Authority;
use http::{Request, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use self::endpoints::Endpoints;
pub use self::outlier::Ejection;
use self::retry::RetryBudget;
use crate::settings::UpstreamSettings;

/// Request and response bodies as they travel through the gateway.
pub type BoxBody = UnsyncBoxBody<Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A destination ready to send to: its endpoints and its own connection pool.
pub struct Upstream {
    pub label: String,
    /// `label` as a metric label, shared rather than copied per request.
    pub metric_label: metrics::SharedString,
    /// Parsed once: a request clones one (a reference count), never re-parses it; with each
    /// one's health (primaries' outlier detection).
    endpoints: Endpoints,
    pub protocol: Protocol,
    http1: Client<HttpConnector, BoxBody>,
    /// h2c with prior knowledge, for destinations that speak HTTP/2 or follow the client: one
    /// client per endpoint, so that `:authority` can be the request's host while the
    /// connection goes to the endpoint.
    http2: Option<Vec<(Authority, Client<ToEndpoint, BoxBody>)>>,
    /// Whether copies to this destination are dropped for now (it is a shadow that stopped
    /// answering); kept with the pool across reloads.
    pub ejection: Ejection,
    /// The primary's requests and retries in flight, for the retry budget.
    pub retry_budget: RetryBudget,
    /// The destination's own ejection rule (Istio `outlierDetection`); `None`: the settings'.
    pub outlier: Option<OutlierPolicy>,
}

impl Upstream {
    /// A destination may have no endpoints (yet): requests for it are then answered 503.
    pub fn new(destination: &Destination, settings: &UpstreamSettings) -> Self {
        Self::with_endpoints(destination, endpoints(destination), settings)
    }

    fn with_endpoints(destination: &Destination, endpoints: Vec<Authority>, settings: &UpstreamSettings) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        let builder = |http2_only: bool| {
            let mut builder = Client::builder(TokioExecutor::new());
            builder
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(settings.idle_timeout)
                .pool_max_idle_per_host(settings.max_idle_per_endpoint)
                .http2_only(http2_only);
            builder
        };
        let http2 = |endpoints: &[Authority]| {
            endpoints
                .iter()
                .filter_map(|endpoint| {
                    let to = Uri::builder().scheme("http").authority(endpoint.clone()).path_and_query("/").build().ok()?;
                    Some((endpoint.clone(), builder(true).build(ToEndpoint { to, inner: connector.clone() })))
                })
                .collect()
        };
        let protocol = destination.protocol;
        Self {
            label: destination.label(),
            metric_label: metrics::SharedString::from(std::sync::Arc::<str>::from(destination.label())),
            protocol,
            http1: builder(false).build(connector.clone()),
            http2: matches!(protocol, Protocol::Http2 | Protocol::Auto).then(|| http2(&endpoints)),
            ejection: Ejection::default(),
            retry_budget: RetryBudget::default(),
            outlier: destination.outlier,
            endpoints: Endpoints::new(endpoints),
        }
    }

    /// The next endpoint, round-robin, passing over ejected ones; `None` when the destination
    /// has none.
    pub fn pick(&self) -> Option<&Authority> {
        self.endpoints.pick(&[])
    }

    /// The endpoint for a retry: another than those `tried` when there is one
    /// ([`Endpoints::pick`]).
    pub fn pick_other(&self, tried: &[Authority]) -> Option<&Authority> {
        self.endpoints.pick(tried)
    }

    /// The endpoints and their health.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The version a request that came in as `downstream` is sent with: the destination's
    /// protocol decides; `Auto` follows the client.
    pub fn version_for(&self, downstream: Version) -> Version {
        match self.protocol {
            Protocol::Http1 => Version::HTTP_11,
            Protocol::Http2 => Version::HTTP_2,
            Protocol::Auto if downstream == Version::HTTP_2 => Version::HTTP_2,
            Protocol::Auto => Version::HTTP_11,
        }
    }

    /// Sends `request`, whose URI is `http://<endpoint><path>` (one of [`Upstream::pick`]'s),
    /// as [`Upstream::version_for`] `downstream` says. Over HTTP/2 the `Host` header becomes
    /// the `:authority` (RFC 9113 section 8.3.1: a `Host` beside a differing `:authority` is
    /// malformed, and NGINX refuses the request), as Envoy sends it.
    pub fn send(&self, mut request: Request<BoxBody>, downstream: Version) -> ResponseFuture {
        let version = self.version_for(downstream);
        let http2 = self.http2.as_ref().filter(|_| version == Version::HTTP_2).and_then(|clients| {
            let endpoint = request.uri().authority()?;
            clients.iter().find(|(to, _)| to == endpoint).map(|(_, client)| client)
        });
        match http2 {
            Some(client) => {
                *request.version_mut() = Version::HTTP_2;
                authority_from_host(&mut request);
                client.request(request)
            }
            None => {
                *request.version_mut() = Version::HTTP_11;
                self.http1.request(request)
            }
        }
    }
}

/// The `Host` header moved into the URI's authority, which HTTP/2 sends as `:authority`; a
/// host that is not a valid authority is dropped (the endpoint's authority stays).
fn authority_from_host<B>(request: &mut Request<B>) {
    let Some(host) = request.headers_mut().remove(HOST) else {
        return;
    };
    let Some(authority) = host.to_str().ok().and_then(|host| Authority::try_from(host).ok()) else {
        return;
    };
    let mut parts = request.uri().clone().into_parts();
    parts.authority = Some(authority);
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

/// A connector that always connects to one endpoint, whatever the request's authority: with
/// it, the HTTP/2 client sends the client's host as `:authority` to the endpoint chosen.
#[derive(Clone)]
struct ToEndpoint {
    to: Uri,
    inner: HttpConnector,
}

impl tower::Service<Uri> for ToEndpoint {
    type Response = <HttpConnector as tower::Service<Uri>>::Response;
    type Error = <HttpConnector as tower::Service<Uri>>::Error;
    type Future = <HttpConnector as tower::Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, _authority: Uri) -> Self::Future {
        self.inner.call(self.to.clone())
    }
}

/// The destination's endpoints, as the model parsed them.
fn endpoints(destination: &Destination) -> Vec<Authority> {
    destination.endpoints.iter().map(|e| e.authority().clone()).collect()
}

/// What identifies a pool: the destination, the endpoints it sends to, in order, how, and when
/// they are ejected.
type PoolKey = (String, Vec<Authority>, Protocol, Option<OutlierPolicy>);

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
    pub fn get(&self, destination: &Destination, settings: &UpstreamSettings) -> Arc<Upstream> {
        let key = (destination.label(), endpoints(destination), destination.protocol, destination.outlier);
        let mut pools = self.by_key.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pools.retain(|_, pool| pool.strong_count() > 0);
        if let Some(kept) = pools.get(&key).and_then(Weak::upgrade) {
            return kept;
        }
        let fresh = Arc::new(Upstream::with_endpoints(destination, key.1.clone(), settings));
        pools.insert(key, Arc::downgrade(&fresh));
        fresh
    }
}

pub use http_rules::strip_hop_by_hop;

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_config::Endpoint;

    fn endpoint(host: &str, port: u16) -> Endpoint {
        Endpoint::new(host, port).unwrap()
    }

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
            endpoints: vec![endpoint("a", 1), endpoint("b", 2)],
            protocol: Protocol::Http1,
            outlier: None,
        };
        let settings = settings();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = rt.enter();
        let upstream = Upstream::new(&destination, &settings);
        let picks: Vec<&str> = (0..4).map(|_| upstream.pick().unwrap().as_str()).collect();
        assert_eq!(picks, ["a:1", "b:2", "a:1", "b:2"]);
    }

    #[test]
    fn a_pool_is_kept_while_its_endpoints_stay_the_same() {
        let destination = |endpoints: Vec<Endpoint>| Destination {
            host: "target".into(),
            subset: Some("v1".into()),
            port: None,
            endpoints,
            protocol: Protocol::Http1,
            outlier: None,
        };
        let settings = settings();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = rt.enter();
        let pools = Pools::default();
        let a = vec![endpoint("a", 1)];
        let first = pools.get(&destination(a.clone()), &settings);
        first.pick();
        let again = pools.get(&destination(a), &settings);
        assert!(Arc::ptr_eq(&first, &again), "same destination and endpoints: same pool");
        let moved = pools.get(&destination(vec![endpoint("b", 1)]), &settings);
        assert!(!Arc::ptr_eq(&first, &moved), "other endpoints: a new pool");
        drop((first, again));
        let after_drain = pools.get(&destination(vec![endpoint("a", 1)]), &settings);
        assert_eq!(after_drain.pick().unwrap().as_str(), "a:1", "a drained pool is not revived: round-robin starts over");
    }

    #[test]
    fn the_protocol_chooses_the_client_and_auto_follows_the_downstream_version() {
        let settings = UpstreamSettings {
            connect_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(1),
            max_idle_per_endpoint: 1,
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = rt.enter();
        let destination = |protocol| Destination {
            host: "grpc".into(),
            subset: None,
            port: None,
            endpoints: vec![endpoint("a", 1)],
            protocol,
            outlier: None,
        };
        let version = |protocol, downstream| Upstream::new(&destination(protocol), &settings).version_for(downstream);
        use http::Version as V;
        assert_eq!(version(Protocol::Http1, V::HTTP_2), V::HTTP_11);
        assert_eq!(version(Protocol::Http2, V::HTTP_11), V::HTTP_2);
        assert_eq!(version(Protocol::Auto, V::HTTP_11), V::HTTP_11);
        assert_eq!(version(Protocol::Auto, V::HTTP_2), V::HTTP_2);
        let pools = Pools::default();
        let h1 = pools.get(&destination(Protocol::Http1), &settings);
        let h2 = pools.get(&destination(Protocol::Http2), &settings);
        assert!(!Arc::ptr_eq(&h1, &h2), "a changed protocol gets a new pool");
    }
}
