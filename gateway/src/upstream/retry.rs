//! Retries of the primary request (Envoy's router retry state, Istio's `retries`): why an attempt
//! failed ([`Failure::of`], the one place that reads the client's error), whether the route's
//! [`Policy`] retries it, and the [`RetryBudget`] that keeps retries from amplifying an outage.
//!
//! What may be retried, whatever the policy says:
//! - only requests whose body is in hand (empty, or read whole): a streamed body whose bytes
//!   went out is never sent twice;
//! - an attempt that was certainly not processed (no connection; the stream refused; a pooled
//!   connection closed before the request was written) for any method; one that may have been
//!   (reset before the first byte of the answer, the attempt's own deadline) only for idempotent
//!   methods (RFC 9110 section 9.2.2);
//! - an answer (a listed status or gRPC status) only as the policy lists it;
//! - copies (mirrors) never: they are not sent through here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gateway_config::{RetryOn, RetryPolicy};
use http::{HeaderMap, Method, StatusCode};

use super::UpstreamError;
use crate::settings::RetrySettings;

/// Why an attempt got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The connection could not be made.
    ConnectFailure,
    /// The upstream refused the stream (HTTP/2 `REFUSED_STREAM`), or the pooled connection
    /// closed before the request was written: certainly not processed.
    Refused,
    /// Reset or closed before the first byte of the answer: maybe processed.
    Reset,
    /// The attempt's own deadline (`perTryTimeout`) passed: maybe processed.
    Timeout,
    /// Anything else (a malformed answer, the client's body failing): not retried.
    Other,
}

impl Failure {
    /// The one classification of the upstream client's errors: the pools' [`UpstreamError`]
    /// says what was certainly not processed; of the rest, a reset or a connection closed before
    /// the answer is a `Reset`.
    pub fn of(error: &UpstreamError) -> Self {
        let error = match error {
            UpstreamError::Connect { .. } | UpstreamError::ConnectTimeout { .. } => return Failure::ConnectFailure,
            UpstreamError::Refused(_) | UpstreamError::NotSent(_) => return Failure::Refused,
            UpstreamError::HeadTooLarge | UpstreamError::NotAnEndpoint(_) => return Failure::Other,
            UpstreamError::Failed(error) => error,
        };
        if error.is_incomplete_message() || error.is_canceled() {
            return Failure::Reset;
        }
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            if let Some(h2) = cause.downcast_ref::<h2::Error>() {
                return match h2.reason() {
                    Some(_) if h2.is_reset() || h2.is_go_away() => Failure::Reset,
                    _ if h2.is_io() => Failure::Reset,
                    _ => Failure::Other,
                };
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
                if matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof) {
                    return Failure::Reset;
                }
            }
            source = cause.source();
        }
        Failure::Other
    }

    /// The `reason` label of `gateway_upstream_retries_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::ConnectFailure => "connect_failure",
            Failure::Refused => "refused_stream",
            Failure::Reset => "reset",
            Failure::Timeout => "per_try_timeout",
            Failure::Other => "other",
        }
    }

    /// Whether it counts against the endpoint's health (outlier detection).
    pub fn is_gateway_failure(self) -> bool {
        !matches!(self, Failure::Other)
    }
}

/// A route's retry policy with the gateway's defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub on: RetryOn,
    pub backoff: Duration,
}

impl Policy {
    /// The route's own policy over the defaults (`retries:` in the settings).
    pub fn resolve(route: Option<&RetryPolicy>, defaults: &RetrySettings) -> Self {
        let default_timeout = (!defaults.per_try_timeout.is_zero()).then_some(defaults.per_try_timeout);
        match route {
            None => Self {
                retries: defaults.attempts,
                per_try_timeout: default_timeout,
                on: defaults.retry_on.clone(),
                backoff: defaults.backoff,
            },
            Some(route) => Self {
                retries: route.retries.unwrap_or(defaults.attempts),
                per_try_timeout: route.per_try_timeout.filter(|t| !t.is_zero()),
                on: route.on.clone().unwrap_or_else(|| defaults.retry_on.clone()),
                backoff: route.backoff.unwrap_or(defaults.backoff),
            },
        }
    }

    /// Whether a failed attempt of a `method` request is retried (attempts left and the body in
    /// hand are the caller's to know).
    pub fn retries_failure(&self, failure: Failure, method: &Method) -> bool {
        match failure {
            Failure::ConnectFailure => self.on.connect_failure,
            Failure::Refused => self.on.refused_stream,
            Failure::Reset | Failure::Timeout => self.on.reset && method.is_idempotent(),
            Failure::Other => false,
        }
    }

    /// Whether an answer is retried instead of relayed: its status, or the `grpc-status` of a
    /// trailers-only gRPC answer, is one the policy lists.
    pub fn retries_answer(&self, status: StatusCode, headers: &HeaderMap) -> Option<&'static str> {
        if self.on.retries_status(status.as_u16()) {
            return Some("status");
        }
        if self.on.grpc_statuses.is_empty() {
            return None;
        }
        let grpc = headers.get("grpc-status")?.to_str().ok()?.parse::<u32>().ok()?;
        self.on.grpc_statuses.contains(&grpc).then_some("grpc_status")
    }

    /// How long to wait before retry number `n` (1-based): Envoy's exponential back-off, the base
    /// doubled each time up to ten times it, with full jitter.
    pub fn backoff(&self, n: u32) -> Duration {
        if self.backoff.is_zero() {
            return Duration::ZERO;
        }
        let ceiling = self.backoff.saturating_mul(1 << n.saturating_sub(1).min(16)).min(self.backoff.saturating_mul(10));
        ceiling.mul_f64(rand::random_range(0.0..1.0))
    }
}

/// A destination's requests and retries in flight, shared by every request sent to it and kept
/// with its pool across reloads: a retry is allowed while the retries in flight stay under
/// `budget_percent` of the requests in flight, or `min_retry_concurrency`, whichever is more
/// (Envoy's `retry_budget`). In an outage, when every attempt fails, the retries are then a
/// bounded share of the traffic instead of multiplying it.
#[derive(Debug, Default)]
pub struct RetryBudget {
    requests: AtomicUsize,
    retries: AtomicUsize,
}

/// One request or retry counted in flight, until dropped.
#[must_use]
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RetryBudget {
    /// A request to the destination starts.
    pub fn request(&self) -> InFlight<'_> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.requests)
    }

    /// A retry, if the budget has room for one more.
    pub fn retry(&self, settings: &RetrySettings) -> Option<InFlight<'_>> {
        let requests = self.requests.load(Ordering::Relaxed);
        let allowed = (requests * settings.budget_percent as usize / 100).max(settings.min_retry_concurrency as usize);
        let retries = self.retries.fetch_add(1, Ordering::Relaxed);
        if retries >= allowed {
            self.retries.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(InFlight(&self.retries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_kit::settings::{Layered, Sources};

    fn defaults() -> RetrySettings {
        crate::settings::GatewaySettings::load(Sources::default()).expect("default settings").retries
    }

    #[test]
    fn the_default_policy_retries_answers_that_never_came_and_resets_only_for_idempotent_methods() {
        let policy = Policy::resolve(None, &defaults());
        assert_eq!(policy.retries, 2);
        for method in [Method::GET, Method::POST] {
            assert!(policy.retries_failure(Failure::ConnectFailure, &method));
            assert!(policy.retries_failure(Failure::Refused, &method));
            assert!(!policy.retries_failure(Failure::Other, &method));
        }
        assert!(policy.retries_failure(Failure::Reset, &Method::GET) && policy.retries_failure(Failure::Reset, &Method::PUT));
        assert!(!policy.retries_failure(Failure::Reset, &Method::POST), "a POST may have been processed");
        assert!(!policy.retries_failure(Failure::Timeout, &Method::PATCH));
        assert_eq!(policy.retries_answer(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new()), None, "answers are relayed by default");
    }

    #[test]
    fn a_route_policy_overrides_the_defaults_field_by_field() {
        let (on, _) = RetryOn::parse("503,unavailable");
        let route = RetryPolicy { retries: Some(0), per_try_timeout: Some(Duration::from_secs(1)), on: Some(on), backoff: None };
        let policy = Policy::resolve(Some(&route), &defaults());
        assert_eq!(policy.retries, 0);
        assert_eq!(policy.per_try_timeout, Some(Duration::from_secs(1)));
        assert_eq!(policy.backoff, Duration::from_millis(25));
        assert!(!policy.retries_failure(Failure::ConnectFailure, &Method::GET), "retryOn replaces the default conditions");
        assert_eq!(policy.retries_answer(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new()), Some("status"));
        let mut grpc = HeaderMap::new();
        grpc.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(policy.retries_answer(StatusCode::OK, &grpc), Some("grpc_status"));
        grpc.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(policy.retries_answer(StatusCode::OK, &grpc), None);
        let unset = RetryPolicy { retries: None, per_try_timeout: None, on: None, backoff: None };
        assert_eq!(Policy::resolve(Some(&unset), &defaults()), Policy::resolve(None, &defaults()));
    }

    #[test]
    fn backoff_grows_to_ten_times_the_base_and_never_past_it() {
        let policy = Policy::resolve(None, &defaults());
        for n in 1..40 {
            let wait = policy.backoff(n);
            let ceiling = Duration::from_millis(25 * (1 << (n - 1).min(16))).min(Duration::from_millis(250));
            assert!(wait <= ceiling, "retry {n}: {wait:?}");
        }
    }

    #[test]
    fn the_budget_allows_the_minimum_or_the_percentage_of_requests_in_flight() {
        let settings = defaults();
        let budget = RetryBudget::default();
        let requests: Vec<_> = (0..10).map(|_| budget.request()).collect();
        let retries: Vec<_> = (0..3).map(|_| budget.retry(&settings).expect("the minimum, 3")).collect();
        assert!(budget.retry(&settings).is_none(), "10 in flight: 20% is 2, the minimum 3 holds");
        drop(retries);
        let more: Vec<_> = (0..20).map(|_| budget.request()).collect();
        let retries: Vec<_> = std::iter::from_fn(|| budget.retry(&settings)).take(100).collect();
        assert_eq!(retries.len(), 6, "30 in flight: 20% is 6");
        drop((retries, more, requests));
        assert!(budget.retry(&settings).is_some(), "a retry ended frees its place");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_failure_and_a_reset_before_the_answer_is_a_reset() {
        use http_body_util::BodyExt;
        let upstream = |addr: std::net::SocketAddr| {
            let destination = gateway_config::Destination {
                host: "up".into(),
                subset: None,
                port: None,
                endpoints: vec![gateway_config::Endpoint::new("127.0.0.1", addr.port()).unwrap()],
                protocol: gateway_config::Protocol::Http1,
                outlier: None,
                unresolved: false,
                cluster_dns: false,
            };
            super::super::Upstream::new(&destination, &crate::settings::UpstreamSettings::defaults())
        };
        let request = |addr: std::net::SocketAddr| {
            let body = http_body_util::Empty::<bytes::Bytes>::new().map_err(|never| match never {}).boxed_unsync();
            http::Request::get(format!("http://{addr}/")).header("host", "a.test").body(body).unwrap()
        };
        // A port nobody listens on: bind one, note it, close it.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let error = upstream(closed).send(request(closed), http::Version::HTTP_11).await.err().expect("refused");
        assert_eq!(Failure::of(&error), Failure::ConnectFailure);
        // A server that reads the request and closes without a word.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
            }
        });
        let error = upstream(addr).send(request(addr), http::Version::HTTP_11).await.err().expect("closed");
        assert_eq!(Failure::of(&error), Failure::Reset, "{error:?}");
    }
}
