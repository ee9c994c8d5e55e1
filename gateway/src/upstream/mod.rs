//! Everything between the gateway and a destination: its endpoints and their connection pools,
//! kept across reloads while the destination's endpoints and protocol stay the same ([`Pools`]),
//! endpoint choice and health ([`endpoints`], [`outlier`]), and retries ([`retry`]).
//!
//! The pools are the gateway's own, on hyper's low-level `client::conn` (Envoy's cluster manager
//! and Pingora's connectors are the models): per endpoint, HTTP/1.1 connections checked out to
//! the request that drives them ([`h1`]) and a set of HTTP/2 connections with a stream cap and
//! windows that keep one unread stream from stopping the others ([`h2`]), over the transport
//! [`connect`] opens. Both apply the response header limits ([`Limits`]), and both answer
//! [`UpstreamError`], which says whether the request certainly was not processed.

pub mod connect;
pub mod endpoints;
pub mod error;
pub mod framing;
pub mod h1;
pub mod h2;
pub mod outlier;
pub mod retry;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_config::{Destination, OutlierPolicy, Protocol};
use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;

pub use self::connect::Connector;
use self::endpoints::Endpoints;
pub use self::error::UpstreamError;
use self::h1::{Http1Body, Http1Pool};
use self::h2::{Http2Body, Http2Pool};
pub use self::outlier::Ejection;
use self::retry::RetryBudget;
use crate::settings::UpstreamSettings;

/// Request and response bodies as they travel through the gateway.
pub type BoxBody = UnsyncBoxBody<Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The largest answer head the gateway relays, as its listener's request limits
/// (`upstream.max_response_headers_bytes`, `upstream.max_response_headers`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub head_bytes: usize,
    pub fields: usize,
}

/// The pools of one endpoint.
struct EndpointPools {
    endpoint: Authority,
    http1: Arc<Http1Pool>,
    /// For destinations that speak HTTP/2 or follow the client.
    http2: Option<Http2Pool>,
}

/// A destination ready to send to: its endpoints and their connection pools.
pub struct Upstream {
    pub label: String,
    /// `label` as a metric label, shared rather than copied per request.
    pub metric_label: metrics::SharedString,
    /// Parsed once: a request clones one (a reference count), never re-parses it; with each
    /// one's health (primaries' outlier detection).
    endpoints: Endpoints,
    pub protocol: Protocol,
    connector: Connector,
    pools: Arc<[EndpointPools]>,
    /// Whether copies to this destination are dropped for now (it is a shadow that stopped
    /// answering); kept with the pool across reloads.
    pub ejection: Ejection,
    /// The primary's requests and retries in flight, for the retry budget.
    pub retry_budget: RetryBudget,
    /// The destination's own ejection rule (Istio `outlierDetection`); `None`: the settings'.
    pub outlier: Option<OutlierPolicy>,
    /// A Gateway API backend that does not resolve: requests for it are answered 500.
    pub unresolved: bool,
    /// Its endpoint is a Service's cluster DNS name: a name that does not resolve is a Service
    /// that does not exist (500), not an unreachable upstream (502).
    pub cluster_dns: bool,
}

impl Upstream {
    /// A destination may have no endpoints (yet): requests for it are then answered 503.
    pub fn new(destination: &Destination, settings: &UpstreamSettings) -> Self {
        Self::with_endpoints(destination, endpoints(destination), settings)
    }

    fn with_endpoints(destination: &Destination, endpoints: Vec<Authority>, settings: &UpstreamSettings) -> Self {
        let protocol = destination.protocol;
        let limits = Limits { head_bytes: settings.max_response_headers_bytes, fields: settings.max_response_headers };
        let speaks_http2 = matches!(protocol, Protocol::Http2 | Protocol::Auto);
        let pools: Arc<[EndpointPools]> = endpoints
            .iter()
            .map(|endpoint| EndpointPools {
                endpoint: endpoint.clone(),
                http1: Arc::new(Http1Pool::new(settings.max_idle_per_endpoint, settings.idle_timeout, &limits)),
                http2: speaks_http2.then(|| {
                    Http2Pool::new(
                        settings.http2_max_streams_per_connection,
                        settings.http2_stream_window.get(),
                        settings.idle_timeout,
                        &limits,
                    )
                }),
            })
            .collect();
        sweep_idle(Arc::downgrade(&pools), settings.idle_timeout);
        Self {
            label: destination.label(),
            metric_label: metrics::SharedString::from(std::sync::Arc::<str>::from(destination.label())),
            protocol,
            connector: Connector::Tcp { connect_timeout: settings.connect_timeout },
            pools,
            ejection: Ejection::default(),
            retry_budget: RetryBudget::default(),
            outlier: destination.outlier,
            unresolved: destination.unresolved,
            cluster_dns: destination.cluster_dns,
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
    /// malformed, and NGINX refuses the request), as Envoy sends it; over HTTP/1.1 the request
    /// line is in origin form and `Host` is the client's (the endpoint when it has none).
    pub async fn send(&self, mut request: Request<BoxBody>, downstream: Version) -> Result<Response<UpstreamBody>, UpstreamError> {
        let endpoint = request.uri().authority().cloned().unwrap_or_else(|| Authority::from_static("missing"));
        let Some(pools) = self.pools.iter().find(|pools| pools.endpoint == endpoint) else {
            return Err(UpstreamError::NotAnEndpoint(endpoint));
        };
        match pools.http2.as_ref().filter(|_| self.version_for(downstream) == Version::HTTP_2) {
            Some(http2) => {
                *request.version_mut() = Version::HTTP_2;
                authority_from_host(&mut request);
                let response = http2.send(&self.connector, &endpoint, request).await?;
                Ok(response.map(|body| UpstreamBody::new(ProtocolBody::Http2(body))))
            }
            None => {
                *request.version_mut() = Version::HTTP_11;
                origin_form(&mut request, &endpoint);
                let response = pools.http1.send(&self.connector, &endpoint, request).await?;
                Ok(response.map(|body| UpstreamBody::new(ProtocolBody::Http1(body))))
            }
        }
    }
}

/// An answer's body, from whichever protocol carried it.
pub struct UpstreamBody {
    protocol: ProtocolBody,
    /// Data went out since this body last returned `Pending`: an error right behind it waits
    /// one turn (see [`Body::poll_frame`] here).
    unflushed: bool,
    deferred: Option<BoxError>,
}

/// Boxing neither: one is built per request, and both are a few words (hyper's body, a
/// connection handle).
#[allow(clippy::large_enum_variant)]
enum ProtocolBody {
    Http1(Http1Body),
    Http2(Http2Body),
}

impl UpstreamBody {
    fn new(protocol: ProtocolBody) -> Self {
        Self { protocol, unflushed: false, deferred: None }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    /// An upstream that sends part of a body and then fails (closes mid-body) leaves both the
    /// data and the error ready at once; hyper's server, handed the error right after the data,
    /// closes the client's connection without flushing what it buffered, so the client would get
    /// nothing, not even the status. The error waits one `Pending` (and an immediate wake-up),
    /// in which the server writes out the data; then it ends the response.
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(error) = this.deferred.take() {
            return Poll::Ready(Some(Err(error)));
        }
        let polled = match &mut this.protocol {
            ProtocolBody::Http1(body) => Pin::new(body).poll_frame(cx),
            ProtocolBody::Http2(body) => Pin::new(body).poll_frame(cx),
        };
        match polled {
            Poll::Ready(Some(Err(error))) if this.unflushed => {
                this.unflushed = false;
                this.deferred = Some(error);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.unflushed = true;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                this.unflushed = false;
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.deferred.is_none()
            && match &self.protocol {
                ProtocolBody::Http1(body) => body.is_end_stream(),
                ProtocolBody::Http2(body) => body.is_end_stream(),
            }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.protocol {
            ProtocolBody::Http1(body) => body.size_hint(),
            ProtocolBody::Http2(body) => body.size_hint(),
        }
    }
}

/// Closes idle connections past the idle timeout, every so often, for as long as the pools live.
fn sweep_idle(pools: Weak<[EndpointPools]>, idle_timeout: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let every = idle_timeout.max(Duration::from_secs(1));
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(pools) = pools.upgrade() else {
                return;
            };
            let now = Instant::now();
            for pool in pools.iter() {
                pool.http1.sweep(now);
                if let Some(http2) = &pool.http2 {
                    http2.sweep(now);
                }
            }
        }
    });
}

/// HTTP/1.1 request lines carry the path alone (RFC 9112 section 3.2.1: origin form), and
/// every request has a `Host`.
fn origin_form<B>(request: &mut Request<B>, endpoint: &Authority) {
    let path = request.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    if !request.headers().contains_key(HOST)
        && let Ok(host) = HeaderValue::from_str(endpoint.as_str())
    {
        request.headers_mut().insert(HOST, host);
    }
    *request.uri_mut() = Uri::from(path);
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

/// The destination's endpoints, as the model parsed them.
fn endpoints(destination: &Destination) -> Vec<Authority> {
    destination.endpoints.iter().map(|e| e.authority().clone()).collect()
}

/// What identifies a pool: the destination, the endpoints it sends to, in order, how, when
/// they are ejected, whether it resolves and whether its endpoint is a cluster DNS name.
type PoolKey = (String, Vec<Authority>, Protocol, Option<OutlierPolicy>, bool, bool);

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
        let key = (
            destination.label(),
            endpoints(destination),
            destination.protocol,
            destination.outlier,
            destination.unresolved,
            destination.cluster_dns,
        );
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn endpoint(host: &str, port: u16) -> Endpoint {
        Endpoint::new(host, port).unwrap()
    }

    fn settings() -> UpstreamSettings {
        UpstreamSettings::defaults()
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
            unresolved: false,
            cluster_dns: false,
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
            unresolved: false,
            cluster_dns: false,
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
        let settings = settings();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = rt.enter();
        let destination = |protocol| Destination {
            host: "grpc".into(),
            subset: None,
            port: None,
            endpoints: vec![endpoint("a", 1)],
            protocol,
            outlier: None,
            unresolved: false,
            cluster_dns: false,
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

    /// An h2c server (the h2 crate's) that resets every stream with `reason`.
    async fn resetting_h2_server(reason: ::h2::Reason) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut connection) = ::h2::server::handshake(socket).await else { return };
                    while let Some(Ok((_request, mut respond))) = connection.accept().await {
                        respond.send_reset(reason);
                    }
                });
            }
        });
        addr
    }

    fn request_to(addr: std::net::SocketAddr) -> Request<BoxBody> {
        use http_body_util::BodyExt;
        let body = http_body_util::Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync();
        Request::get(format!("http://{addr}/")).header(HOST, "a.test").body(body).unwrap()
    }

    #[tokio::test]
    async fn a_refused_stream_is_safe_to_retry_and_another_reset_is_not() {
        for (reason, safe) in [(::h2::Reason::REFUSED_STREAM, true), (::h2::Reason::INTERNAL_ERROR, false)] {
            let addr = resetting_h2_server(reason).await;
            let destination = Destination {
                host: "h2".into(),
                subset: None,
                port: None,
                endpoints: vec![endpoint("127.0.0.1", addr.port())],
                protocol: Protocol::Http2,
                outlier: None,
                unresolved: false,
                cluster_dns: false,
            };
            let upstream = Upstream::new(&destination, &settings());
            let error = upstream.send(request_to(addr), Version::HTTP_2).await.err().expect("reset");
            assert_eq!(error.retry_safe(), safe, "{reason:?}: {error:?}");
        }
    }

    #[tokio::test]
    async fn connect_failures_are_safe_to_retry() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        for protocol in [Protocol::Http1, Protocol::Http2] {
            let destination = Destination {
                host: "gone".into(),
                subset: None,
                port: None,
                endpoints: vec![endpoint("127.0.0.1", addr.port())],
                protocol,
                outlier: None,
                unresolved: false,
                cluster_dns: false,
            };
            let upstream = Upstream::new(&destination, &settings());
            let error = upstream.send(request_to(addr), Version::HTTP_11).await.err().expect("refused");
            assert!(matches!(error, UpstreamError::Connect { .. }) && error.retry_safe(), "{protocol:?}: {error:?}");
        }
    }

    /// An HTTP/1.1 server on raw sockets that answers each request head with `answer` and then,
    /// when `close_after` is set, closes the connection (without saying so when `answer` has no
    /// `Connection: close`); returns its address and the connections it accepted.
    async fn raw_http1_server(answer: &'static [u8], close_after: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = socket.read(&mut buf).await {
                        head.extend_from_slice(&buf[..n]);
                        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            head.drain(..end + 4);
                            if socket.write_all(answer).await.is_err() || close_after {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    async fn get_body(upstream: &Upstream, addr: std::net::SocketAddr) -> Result<Bytes, String> {
        use http_body_util::BodyExt;
        let response = upstream.send(request_to(addr), Version::HTTP_11).await.map_err(|e| e.to_string())?;
        Ok(response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes())
    }

    fn http1_to(addr: std::net::SocketAddr) -> Upstream {
        let destination = Destination {
            host: "h1".into(),
            subset: None,
            port: None,
            endpoints: vec![endpoint("127.0.0.1", addr.port())],
            protocol: Protocol::Http1,
            outlier: None,
            unresolved: false,
            cluster_dns: false,
        };
        Upstream::new(&destination, &settings())
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closes_is_never_reused() {
        for (answer, what) in [
            (&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"[..], "connection: close"),
            (&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..], "closed while idle, unannounced"),
        ] {
            let (addr, accepted) = raw_http1_server(answer, true).await;
            let upstream = http1_to(addr);
            for i in 0..3 {
                assert_eq!(get_body(&upstream, addr).await.as_deref(), Ok(&b"ok"[..]), "{what}: request {i}");
                // The upstream's close reaches the gateway's socket before the next request.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert_eq!(accepted.load(Ordering::SeqCst), 3, "{what}: one connection per request");
        }
    }

    #[tokio::test]
    async fn a_kept_alive_connection_serves_the_requests_that_follow() {
        let (addr, accepted) = raw_http1_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false).await;
        let upstream = http1_to(addr);
        for _ in 0..5 {
            assert_eq!(get_body(&upstream, addr).await.as_deref(), Ok(&b"ok"[..]));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_cut_mid_body_yields_what_came_then_an_error() {
        let (addr, _) = raw_http1_server(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789", true).await;
        let upstream = http1_to(addr);
        let response = upstream.send(request_to(addr), Version::HTTP_11).await.expect("the head arrives");
        let mut body = response.into_body();
        let mut received = Vec::new();
        let error = loop {
            use http_body_util::BodyExt;
            match body.frame().await {
                Some(Ok(frame)) => received.extend_from_slice(frame.data_ref().expect("data")),
                Some(Err(error)) => break error.to_string(),
                None => panic!("a cut body ended cleanly"),
            }
        };
        assert_eq!(received, b"0123456789", "{error}");
    }
}
