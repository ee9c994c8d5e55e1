//! Serving a listener the caller bound, with graceful shutdown and limits against hostile or
//! broken clients ([`ListenerLimits`]). The listener is the one owner of the generic request
//! rules (sizes, `Host`): what breaks them is refused here ([`Refusal`], answered by the one
//! JSON error reply, [`crate::reply`]), and a service behind it never checks them again.
//!
//! Every connection task runs under the dispatcher of the caller, so that one process can host
//! several services, each with its own telemetry (the end-to-end tests do).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use http_body_util::{Either, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::net::TcpListener;
use tracing::instrument::WithSubscriber;

use crate::reply::error_reply;
use crate::tls::{Alpn, TlsConnection, TlsTerminator};

/// How long in-flight requests may run after shutdown begins (Kubernetes waits 30 s by default).
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);

/// What a listener accepts from a client before answering with an error status itself. The
/// defaults follow Envoy's edge-proxy guide and Envoy's own defaults where the guide is silent
/// (noted per field); every one can be set in the binaries' settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerLimits {
    /// Request line and header fields together (HTTP/1.1), or the header list (HTTP/2), in bytes:
    /// over it, 431. Envoy's `max_request_headers_kb` default, 60 KiB.
    pub max_request_headers_bytes: usize,
    /// Header fields in one request: over it, 431. Envoy's `max_headers_count` default, 100.
    pub max_headers: usize,
    /// The request target (path and query, or the absolute form), in bytes: over it, 414.
    /// Envoy counts the path within its 60 KiB of headers; 8 KiB is the request-line limit of
    /// NGINX (`large_client_header_buffers`) and of common load balancers.
    pub max_uri_bytes: usize,
    /// A request whose `Content-Length` is over this gets 413 before anything is forwarded.
    /// `None`: bodies stream without a limit (Envoy's default when no buffering filter is on).
    pub max_request_body_bytes: Option<u64>,
    /// Header names with an underscore get 400: the edge guide's `headers_with_underscores_action:
    /// REJECT_REQUEST`, which protects upstreams that treat `_` and `-` alike (CGI, NGINX).
    pub reject_underscore_headers: bool,
    /// A client that has not sent a whole request head in this time is disconnected (slowloris).
    #[serde(with = "http_rules::duration")]
    pub header_read_timeout: Duration,
    pub http2: Http2Limits,
}

/// HTTP/2 protections, as hyper and h2 expose them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http2Limits {
    /// Streams a client may have open at once (edge guide: 100).
    pub max_concurrent_streams: u32,
    /// Per-stream flow-control window (edge guide: 64 KiB): how much a client can make the
    /// listener buffer per stream.
    pub initial_stream_window_bytes: u32,
    /// Per-connection flow-control window (edge guide: 1 MiB).
    pub initial_connection_window_bytes: u32,
    /// Streams reset by the client before they were answered that are still counted against it;
    /// past this the connection is closed with GOAWAY (the rapid-reset attack, CVE-2023-44487).
    /// h2's own default, 20.
    pub max_pending_accept_reset_streams: usize,
    /// Streams this side reset because the client broke the protocol; past this the
    /// connection is closed (hyper's default, 1024).
    pub max_local_error_reset_streams: usize,
    /// PING an idle connection this often, and close it when the answer does not come within
    /// `keep_alive_timeout`; `0s` turns pings off (dead peers are then found by TCP only).
    #[serde(with = "http_rules::duration")]
    pub keep_alive_interval: Duration,
    #[serde(with = "http_rules::duration")]
    pub keep_alive_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_request_headers_bytes: 60 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_request_body_bytes: None,
            reject_underscore_headers: true,
            header_read_timeout: Duration::from_secs(30),
            http2: Http2Limits::default(),
        }
    }
}

impl Default for Http2Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            initial_stream_window_bytes: 64 * 1024,
            initial_connection_window_bytes: 1024 * 1024,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            keep_alive_interval: Duration::from_secs(60),
            keep_alive_timeout: Duration::from_secs(20),
        }
    }
}

/// Why the listener answered a request itself: a limit hyper does not check on its own, or the
/// RFC 9112 rules on `Host`. Every one is the client's doing; none reaches the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("request target too long")]
    TargetTooLong,
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("header names with underscores are not accepted")]
    UnderscoreInHeaderName,
    #[error("more than one host header")]
    MoreThanOneHost,
    #[error("missing host header")]
    MissingHost,
    /// HTTP/2 `host` beside a different `:authority`: malformed (RFC 9113 section 8.3.1), and
    /// routing by one while the other names the target is how a check is got around.
    #[error("host header differs from :authority")]
    HostNotAuthority,
    /// A `Transfer-Encoding` other than `chunked` alone (`gzip, chunked`): no coding but
    /// chunked is decoded here, and passing it on would have the upstream read coded bytes as
    /// content. NGINX answers 501 too.
    #[error("transfer coding not implemented")]
    UnsupportedTransferCoding,
    /// Its declared `Content-Length`, or (found by the service as it reads, see
    /// [`RequestBodyError::TooLarge`]) the body streamed, is over `max_request_body_bytes`.
    #[error("request body too large")]
    BodyTooLarge,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::TargetTooLong => StatusCode::URI_TOO_LONG,
            Refusal::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::UnderscoreInHeaderName | Refusal::MoreThanOneHost | Refusal::MissingHost | Refusal::HostNotAuthority => {
                StatusCode::BAD_REQUEST
            }
            Refusal::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            Refusal::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The listener's answer: the one JSON error reply, on a connection that closes after it.
    /// To `HEAD` (`method`), the status alone.
    fn into_response<B>(self, method: &http::Method) -> Response<Either<B, Full<Bytes>>> {
        let mut response = error_reply(method, self.status(), self).map(Either::Right);
        // The body of a refused request was not read: the connection cannot carry another one.
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// `Transfer-Encoding: chunked`, in one field or several, with no other coding.
fn is_chunked_alone(headers: &http::HeaderMap) -> bool {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter().flat_map(|v| v.as_bytes().split(|b| *b == b','));
    matches!((codings.next(), codings.next()), (Some(only), None) if only.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

impl ListenerLimits {
    /// Checks a request head against the limits hyper does not check itself and the RFC 9112
    /// rules on `Host`; a request that passes has its `Host` made to agree with an absolute-form
    /// target, which RFC 9112 section 3.2.2 says wins, so routing on `Host` downstream cannot be
    /// told one host while the target names another; an HTTP/2 request without `Host` gets its
    /// `:authority` as `Host`. The listener is the one owner of these rules: a service behind
    /// it sees exactly one `Host` on every HTTP/1.1 request.
    fn screen<B>(&self, request: &mut Request<B>) -> Result<(), Refusal> {
        let target =
            request.uri().path_and_query().map_or(0, |pq| pq.as_str().len()) + request.uri().authority().map_or(0, |a| a.as_str().len());
        if target > self.max_uri_bytes {
            return Err(Refusal::TargetTooLong);
        }
        // HTTP/2 sizes its header list in h2 (`max_header_list_size`); HTTP/1.1 heads are
        // measured here as RFC 9110 counts them: each field's name, value, ": " and CRLF.
        let headers: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
        if headers > self.max_request_headers_bytes || request.headers().len() > self.max_headers {
            return Err(Refusal::HeadersTooLarge);
        }
        if self.reject_underscore_headers && request.headers().keys().any(|name| name.as_str().contains('_')) {
            return Err(Refusal::UnderscoreInHeaderName);
        }
        let http1 = request.version() < http::Version::HTTP_2;
        match (request.headers().get_all(header::HOST).iter().count(), request.uri().authority().cloned()) {
            // Two could route by one and be served by the other (RFC 9112 section 3.2).
            (2.., _) => return Err(Refusal::MoreThanOneHost),
            (0, None) if request.version() == http::Version::HTTP_11 => return Err(Refusal::MissingHost),
            // HTTP/1.1 absolute form: the target's authority wins over `Host`. HTTP/2 without a
            // `Host` header: `:authority` is the host (RFC 9113 section 8.3.1), given as `Host` so
            // that everything after this (routing, the shadow marker's screening) reads one field.
            (hosts, Some(authority)) if http1 || hosts == 0 => {
                if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                    request.headers_mut().insert(header::HOST, host);
                }
            }
            (1, Some(authority)) => {
                let same = request
                    .headers()
                    .get(header::HOST)
                    .is_some_and(|host| host.as_bytes().eq_ignore_ascii_case(authority.as_str().as_bytes()));
                if !same {
                    return Err(Refusal::HostNotAuthority);
                }
            }
            _ => {}
        }
        // hyper refuses a chunked that is not last, and any coding without chunked; it accepts
        // `gzip, chunked` and would pass the coded bytes on as content.
        if request.headers().contains_key(header::TRANSFER_ENCODING) && !is_chunked_alone(request.headers()) {
            return Err(Refusal::UnsupportedTransferCoding);
        }
        if let Some(limit) = self.max_request_body_bytes {
            let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|length| length > limit) {
                return Err(Refusal::BodyTooLarge);
            }
        }
        Ok(())
    }

    /// `max_request_body_bytes` as the streamed body's limit.
    fn body_limit(&self) -> Option<usize> {
        self.max_request_body_bytes.map(|limit| usize::try_from(limit).unwrap_or(usize::MAX))
    }
}

/// A request's body as the listener hands it to the service: hyper's, cut at
/// `max_request_body_bytes` when that is set, so a body that declares no length (chunked,
/// HTTP/2) is held to the limit too. Its error says which of the two it was.
pub struct RequestBody(Limit);

enum Limit {
    Unlimited(Incoming),
    Bytes(Limited<Incoming>),
}

impl RequestBody {
    fn new(body: Incoming, limit: Option<usize>) -> Self {
        Self(match limit {
            Some(limit) => Limit::Bytes(Limited::new(body, limit)),
            None => Limit::Unlimited(body),
        })
    }
}

/// Why a [`RequestBody`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    /// It went past `max_request_body_bytes` (413): the rest was not read.
    #[error("{}", Refusal::BodyTooLarge)]
    TooLarge,
    /// Malformed (chunk framing, length) or cut short: hyper's error.
    #[error(transparent)]
    Transport(Box<dyn std::error::Error + Send + Sync>),
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        match &mut self.get_mut().0 {
            Limit::Unlimited(body) => Pin::new(body).poll_frame(cx).map_err(|error| RequestBodyError::Transport(Box::new(error))),
            Limit::Bytes(body) => Pin::new(body).poll_frame(cx).map_err(|error| {
                if error.is::<LengthLimitError>() { RequestBodyError::TooLarge } else { RequestBodyError::Transport(error) }
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Limit::Unlimited(body) => body.is_end_stream(),
            Limit::Bytes(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Limit::Unlimited(body) => body.size_hint(),
            Limit::Bytes(body) => body.size_hint(),
        }
    }
}

/// [`serve_with`] under the default [`ListenerLimits`].
pub async fn serve<S, B>(listener: TcpListener, service: S, shutdown: impl Future<Output = ()>, deadline: Duration)
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_with(listener, service, shutdown, deadline, &ListenerLimits::default()).await;
}

/// Serves HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) on `listener` until `shutdown`
/// resolves; then stops accepting and waits up to `deadline` for open requests to finish.
/// Requests over `limits` are answered here ([`Refusal`]) and never reach `service`; a body
/// that streams past `limits.max_request_body_bytes` fails with [`RequestBodyError::TooLarge`].
pub async fn serve_with<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
    deadline: Duration,
    limits: &ListenerLimits,
) where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_on(listener, None, service, shutdown, deadline, limits).await;
}

/// [`serve_with`] over TLS: each connection's handshake runs in its own task under the
/// terminator's deadline (a client that never completes one holds nothing else up), then the
/// connection is served as its ALPN result says, each request carrying a [`TlsConnection`].
pub async fn serve_tls_with<S, B>(
    listener: TcpListener,
    tls: TlsTerminator,
    service: S,
    shutdown: impl Future<Output = ()>,
    deadline: Duration,
    limits: &ListenerLimits,
) where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_on(listener, Some(tls), service, shutdown, deadline, limits).await;
}

async fn serve_on<S, B>(
    listener: TcpListener,
    tls: Option<TlsTerminator>,
    service: S,
    shutdown: impl Future<Output = ()>,
    deadline: Duration,
    limits: &ListenerLimits,
) where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = Builder::new(StreamExecutor);
    // Slow header senders are cut off; heads over the limits get 431 from hyper itself (its read
    // buffer never grows past the header limit, with room for the request line).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers)
        .max_buf_size((limits.max_request_headers_bytes + limits.max_uri_bytes).max(8192));
    let h2 = &limits.http2;
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(h2.max_concurrent_streams)
        .initial_stream_window_size(h2.initial_stream_window_bytes)
        .initial_connection_window_size(h2.initial_connection_window_bytes)
        .max_pending_accept_reset_streams(h2.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(h2.max_local_error_reset_streams)
        .max_header_list_size(u32::try_from(limits.max_request_headers_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval((!h2.keep_alive_interval.is_zero()).then_some(h2.keep_alive_interval))
        .keep_alive_timeout(h2.keep_alive_timeout);
    let body_limit = limits.body_limit();
    let limits = std::sync::Arc::new(limits.clone());
    // Over TLS, ALPN has already chosen the protocol: no need to sniff the preface.
    let builders = tls.as_ref().map(|_| std::sync::Arc::new((builder.clone().http1_only(), builder.clone().http2_only(), builder.clone())));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (inner, limits) = (service.clone(), limits.clone());
        let screened = move |connection: Option<std::sync::Arc<TlsConnection>>| {
            TowerToHyperService::new(tower::service_fn(move |mut request: http::Request<Incoming>| {
                let screened = limits.screen(&mut request).map_err(|refusal| (refusal, request.method().clone()));
                let request = request.map(|body| RequestBody::new(body, body_limit));
                let mut inner = inner.clone();
                let connection = connection.clone();
                async move {
                    if let Err((refusal, method)) = screened {
                        tracing::debug!(status = %refusal.status(), problem = %refusal, %peer, "request refused by the listener's limits");
                        return Ok::<_, Infallible>(refusal.into_response(&method));
                    }
                    let mut request = request;
                    request.extensions_mut().insert(ClientAddr(peer));
                    if let Some(connection) = &connection {
                        request.extensions_mut().insert(connection.clone());
                    }
                    let response = match tower::ServiceExt::ready(&mut inner).await {
                        Ok(ready) => tower::Service::call(ready, request).await,
                        Err(never) => match never {},
                    };
                    Ok(response.map_or_else(|never| match never {}, |response| response.map(Either::Left)))
                }
            }))
        };
        if let (Some(tls), Some(builders)) = (&tls, &builders) {
            let (tls, builders, watcher) = (tls.clone(), builders.clone(), graceful.watcher());
            tokio::spawn(
                async move {
                    let (stream, connection) = match tls.accept(stream).await {
                        Ok(accepted) => accepted,
                        Err(error) => return tracing::debug!(%error, %peer, "TLS handshake failed"),
                    };
                    let (http1, http2, auto) = &*builders;
                    let builder = match connection.alpn {
                        Some(Alpn::Http2) => http2,
                        Some(Alpn::Http11) => http1,
                        None => auto,
                    };
                    let service = screened(Some(std::sync::Arc::new(connection)));
                    let connection = watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned());
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                }
                .with_current_subscriber(),
            );
            continue;
        }
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), screened(None)).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(
            async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                }
            }
            .with_current_subscriber(),
        );
    }
    drop(listener);
    tracing::info!(open_connections = graceful.count(), "shutting down: no longer accepting");
    if tokio::time::timeout(deadline, graceful.shutdown()).await.is_err() {
        tracing::warn!(?deadline, "shutdown deadline passed with requests still open");
    }
}

/// Spawns what hyper hands off (each HTTP/2 stream's service future) under the dispatcher of
/// the connection that hands it off, as the connection tasks themselves run, so that a
/// process hosting several services with their own telemetry keeps each stream's spans
/// (`TokioExecutor` would spawn them under the global default).
#[derive(Clone, Copy)]
struct StreamExecutor;

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(future.with_current_subscriber());
    }
}

/// The peer address of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Resolves on SIGTERM (Kubernetes, docker stop) or Ctrl-C. From then on, a second one ends the
/// process at once (status 1) instead of waiting out the shutdown deadline: the operator asked
/// twice. For binaries' `main`s only.
pub async fn shutdown_signal() {
    // One SIGTERM stream for both: a second signal arriving right after the first is not lost.
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(not(unix))]
    let mut terminate: Option<()> = None;
    let first = one_signal(&mut terminate).await;
    tracing::info!(signal = first, "shutting down: finishing open requests (send it again to exit now)");
    tokio::spawn(async move {
        let second = one_signal(&mut terminate).await;
        tracing::warn!(signal = second, "second signal: exiting without waiting for open requests");
        eprintln!("{second} received again: exiting without waiting for open requests");
        std::process::exit(1);
    });
}

/// The next SIGTERM or Ctrl-C, by name.
#[cfg(unix)]
async fn one_signal(terminate: &mut Option<tokio::signal::unix::Signal>) -> &'static str {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match terminate {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => "Ctrl-C",
        () = terminate => "SIGTERM",
    }
}

#[cfg(not(unix))]
async fn one_signal(_: &mut Option<()>) -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::{Method, Version};
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn request(version: Version, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().version(version).method(Method::GET).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn refusal(mut request: Request<()>) -> Option<String> {
        ListenerLimits::default().screen(&mut request).err().map(|refusal| refusal.to_string())
    }

    #[test]
    fn http_1_1_needs_exactly_one_host() {
        assert_eq!(refusal(request(Version::HTTP_11, "/", &[("host", "a")])), None);
        assert_eq!(refusal(request(Version::HTTP_11, "/", &[])).as_deref(), Some("missing host header"));
        let two = &[("host", "a"), ("host", "b")];
        assert_eq!(refusal(request(Version::HTTP_11, "/", two)).as_deref(), Some("more than one host header"));
        assert_eq!(refusal(request(Version::HTTP_10, "/", &[])), None, "HTTP/1.0 may omit it");
        assert_eq!(refusal(request(Version::HTTP_2, "http://a/", &[])), None, "h2 has :authority");
        assert!(refusal(request(Version::HTTP_2, "http://a/", two)).is_some());
    }

    #[test]
    fn an_http2_host_must_be_its_authority_and_chunked_the_only_coding() {
        assert_eq!(refusal(request(Version::HTTP_2, "http://a.test/", &[("host", "A.test")])), None);
        let other = refusal(request(Version::HTTP_2, "http://a.test/", &[("host", "b.test")]));
        assert_eq!(other.as_deref(), Some("host header differs from :authority"));
        assert_eq!(Refusal::HostNotAuthority.status(), StatusCode::BAD_REQUEST);
        let coded = |te: &[&str]| {
            let mut headers = vec![("host", "a")];
            headers.extend(te.iter().map(|v| ("transfer-encoding", *v)));
            refusal(request(Version::HTTP_11, "/", &headers))
        };
        assert_eq!(coded(&["chunked"]), None);
        assert_eq!(coded(&["Chunked "]), None);
        for te in [&["gzip, chunked"][..], &["gzip", "chunked"], &["identity"]] {
            assert_eq!(coded(te).as_deref(), Some("transfer coding not implemented"), "{te:?}");
        }
        assert_eq!(Refusal::UnsupportedTransferCoding.status(), StatusCode::NOT_IMPLEMENTED);
    }

    #[test]
    fn the_target_s_authority_becomes_the_host() {
        let mut absolute = request(Version::HTTP_11, "http://target.test/x", &[("host", "other.test")]);
        assert_eq!(ListenerLimits::default().screen(&mut absolute), Ok(()));
        assert_eq!(absolute.headers()["host"], "target.test", "RFC 9112 3.2.2: the target wins");
        let mut h2 = request(Version::HTTP_2, "http://a.test/", &[]);
        assert_eq!(ListenerLimits::default().screen(&mut h2), Ok(()));
        assert_eq!(h2.headers()["host"], "a.test");
    }

    /// A listener under `limits` whose service counts the requests it gets and answers with the
    /// length of the body it read, or with how reading it failed.
    async fn listener(limits: ListenerLimits) -> (std::net::SocketAddr, Arc<AtomicUsize>, crate::stop::Stop) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let counted = seen.clone();
        let service = tower::service_fn(move |request: Request<RequestBody>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                let text = match request.into_body().collect().await {
                    Ok(body) => format!("read {}", body.to_bytes().len()),
                    Err(RequestBodyError::TooLarge) => "too large".to_owned(),
                    Err(RequestBodyError::Transport(error)) => format!("failed: {error}"),
                };
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
            }
        });
        let stop = crate::stop::Stop::new();
        let stopped = stop.stopped();
        tokio::spawn(async move { serve_with(listener, service, stopped, Duration::from_secs(1), &limits).await });
        (addr, seen, stop)
    }

    /// Sends `bytes` and reads until the server closes the connection.
    async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.expect("the server closes").unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn the_listener_answers_a_request_without_host_itself_and_the_service_never_sees_it() {
        let (addr, seen, stop) = listener(ListenerLimits::default()).await;
        let answer = exchange(addr, b"GET /api/x HTTP/1.1\r\nconnection: close\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("content-type: application/json"), "{answer}");
        assert!(answer.ends_with(r#"{"error":"missing host header"}"#), "{answer}");
        assert_eq!(seen.load(Ordering::SeqCst), 0);
        let answer = exchange(addr, b"GET /api/x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").await;
        assert!(answer.ends_with("read 0"), "the same request with a Host reaches the service: {answer}");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        stop.stop();
    }

    #[tokio::test]
    async fn a_body_streamed_past_the_limit_fails_as_too_large_and_a_broken_one_as_transport() {
        let (addr, _, stop) = listener(ListenerLimits { max_request_body_bytes: Some(8), ..ListenerLimits::default() }).await;
        let head = "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
        let within = exchange(addr, format!("{head}8\r\n12345678\r\n0\r\n\r\n").as_bytes()).await;
        assert!(within.ends_with("read 8"), "{within}");
        let over = exchange(addr, format!("{head}5\r\n12345\r\n5\r\n67890\r\n0\r\n\r\n").as_bytes()).await;
        assert!(over.ends_with("too large"), "{over}");
        let declared = exchange(addr, b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 9\r\n\r\n123456789").await;
        assert!(declared.starts_with("HTTP/1.1 413 ") && declared.ends_with(r#"{"error":"request body too large"}"#), "{declared}");
        let broken = exchange(addr, format!("{head}zz\r\n").as_bytes()).await;
        assert!(broken.contains("failed: "), "{broken}");
        stop.stop();
    }
}
