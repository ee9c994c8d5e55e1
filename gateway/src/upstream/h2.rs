//! HTTP/2 with prior knowledge (h2c) to one endpoint: a set of connections, each carrying at
//! most `upstream.http2_max_streams_per_connection` streams and never more than the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS`; past that, a new connection (Envoy's
//! `max_concurrent_streams`, Linkerd's and gRPC's pools).
//!
//! Windows: each stream may hold `upstream.http2_stream_window` unread bytes and each connection
//! that many times its stream cap, so the streams of clients that stop reading can never use up
//! the connection's window: such a stream stops only itself. The bytes a connection may hold
//! unread are bounded by the same product.
//!
//! A connection that received a GOAWAY, or failed, takes no new streams (new requests open a
//! new connection); its streams below the GOAWAY's last stream id finish on it, and the streams
//! the GOAWAY refused fail as [`UpstreamError::Refused`] (safe to retry). A response whose head
//! is over the limits is refused by the gateway for that stream alone: h2 decodes header blocks
//! up to 16 times the limit (past that, its CONTINUATION flood defence ends the connection), and
//! the gateway applies the limit itself, so that one oversized answer resets one stream, never
//! the connection the other clients' streams share.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;

use super::connect::Connector;
use super::error::UpstreamError;
use super::{BoxBody, BoxError, Limits};

/// How an HTTP/2 connection being opened turned out.
#[derive(Clone)]
enum Opening {
    Connecting,
    Open(http2::SendRequest<BoxBody>),
    /// Connecting failed: why, for every request that waited for it.
    Failed(Arc<UpstreamError>),
}

/// One HTTP/2 connection of the set.
struct Conn {
    state: watch::Receiver<Opening>,
    /// Streams the gateway has open on it (counted from checkout to the body's end).
    streams: AtomicUsize,
    /// The server's `SETTINGS_MAX_CONCURRENT_STREAMS`, as h2 last applied it.
    server_max: Arc<AtomicUsize>,
    /// Takes no new streams (a GOAWAY came, or a connection error).
    draining: AtomicBool,
    /// When the last stream ended (for the idle timeout).
    idle_since: Mutex<Instant>,
}

impl Conn {
    fn closed(&self) -> bool {
        if self.draining.load(Ordering::Relaxed) {
            return true;
        }
        match &*self.state.borrow() {
            Opening::Connecting => false,
            Opening::Open(send) => send.is_closed(),
            Opening::Failed(_) => true,
        }
    }

    fn has_room(&self, cap: usize) -> bool {
        self.streams.load(Ordering::Relaxed) < cap.min(self.server_max.load(Ordering::Relaxed))
    }
}

/// The HTTP/2 connections of one endpoint.
pub(super) struct Http2Pool {
    conns: Mutex<Vec<Arc<Conn>>>,
    max_streams: usize,
    idle_timeout: Duration,
    limits: Limits,
    builder: http2::Builder<TokioExecutor>,
}

impl Http2Pool {
    pub(super) fn new(max_streams: usize, stream_window: u32, idle_timeout: Duration, limits: &Limits) -> Self {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        let connection_window = u32::try_from(max_streams).unwrap_or(u32::MAX).saturating_mul(stream_window).min(i32::MAX as u32);
        // h2 decodes header blocks this large; the gateway's own limit is applied after (see the
        // module's comment).
        let decoded = u32::try_from(limits.head_bytes.saturating_mul(16)).unwrap_or(u32::MAX);
        builder
            .timer(TokioTimer::new())
            .initial_stream_window_size(stream_window)
            .initial_connection_window_size(connection_window)
            .initial_max_send_streams(max_streams)
            .max_header_list_size(decoded);
        Self { conns: Mutex::new(Vec::new()), max_streams: max_streams.max(1), idle_timeout, limits: limits.clone(), builder }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A connection with room for one more stream, that stream counted: an open one, one being
    /// opened, or a new one.
    fn checkout(&self, connector: &Connector, endpoint: &Authority) -> Arc<Conn> {
        let mut conns = self.lock();
        conns.retain(|conn| !conn.closed());
        if let Some(conn) = conns.iter().find(|conn| conn.has_room(self.max_streams)) {
            conn.streams.fetch_add(1, Ordering::Relaxed);
            return conn.clone();
        }
        let conn = self.open(connector.clone(), endpoint.clone());
        conn.streams.fetch_add(1, Ordering::Relaxed);
        conns.push(conn.clone());
        conn
    }

    /// Starts opening a connection in a task of its own, which then drives it (an HTTP/2
    /// connection serves many requests: no one request's task can own it).
    fn open(&self, connector: Connector, endpoint: Authority) -> Arc<Conn> {
        let (tell, state) = watch::channel(Opening::Connecting);
        let server_max = Arc::new(AtomicUsize::new(self.max_streams));
        let conn = Arc::new(Conn {
            state,
            streams: AtomicUsize::new(0),
            server_max: server_max.clone(),
            draining: AtomicBool::new(false),
            idle_since: Mutex::new(Instant::now()),
        });
        let builder = self.builder.clone();
        tokio::spawn(async move {
            let opened = match connector.connect(&endpoint).await {
                Ok(io) => builder.handshake(TokioIo::new(io)).await.map_err(UpstreamError::Failed),
                Err(error) => Err(error),
            };
            let mut connection = match opened {
                Ok((send, connection)) => {
                    tell.send_replace(Opening::Open(send));
                    connection
                }
                Err(error) => {
                    tell.send_replace(Opening::Failed(Arc::new(error)));
                    return;
                }
            };
            let ended = std::future::poll_fn(|cx| {
                let polled = Pin::new(&mut connection).poll(cx);
                server_max.store(connection.current_max_send_streams(), Ordering::Relaxed);
                polled
            })
            .await;
            if let Err(error) = ended {
                tracing::debug!(%error, endpoint = endpoint.as_str(), "upstream HTTP/2 connection ended with an error");
            }
        });
        conn
    }

    /// Closes connections without streams for longer than the idle timeout (dropping the
    /// last `SendRequest` ends the connection with a GOAWAY).
    pub(super) fn sweep(&self, now: Instant) {
        self.lock().retain(|conn| {
            let idle = conn.streams.load(Ordering::Relaxed) == 0
                && now.duration_since(*conn.idle_since.lock().unwrap_or_else(|p| p.into_inner())) >= self.idle_timeout;
            !idle && !conn.closed()
        });
    }

    pub(super) async fn send(
        &self,
        connector: &Connector,
        endpoint: &Authority,
        request: Request<BoxBody>,
    ) -> Result<Response<Http2Body>, UpstreamError> {
        let mut request = request;
        let mut resent = false;
        let (response, stream) = loop {
            let stream = Stream(self.checkout(connector, endpoint));
            let mut send = stream.ready(endpoint).await?;
            match send.try_send_request(request).await {
                Ok(response) => break (response, stream),
                Err(mut error) => {
                    let unsent = error.take_message();
                    let error = error.into_error();
                    let Some(unsent) = unsent else {
                        // A connection that is closing or got a GOAWAY takes no new streams; a
                        // stream's own reset leaves it alone.
                        let go_away = super::error::h2_error(&error).is_some_and(::h2::Error::is_go_away);
                        if go_away || send.is_closed() {
                            stream.0.draining.store(true, Ordering::Relaxed);
                        }
                        return Err(UpstreamError::from_hyper(error));
                    };
                    // The connection was closing (a GOAWAY it had not yet acted on): hyper gave
                    // the request back unsent; once more on another connection.
                    stream.0.draining.store(true, Ordering::Relaxed);
                    if resent {
                        return Err(UpstreamError::NotSent(error));
                    }
                    resent = true;
                    request = unsent;
                }
            }
        };
        if over_limits(response.headers(), &self.limits) {
            // Dropping the answer resets this stream alone (CANCEL).
            return Err(UpstreamError::HeadTooLarge);
        }
        let limits = self.limits.clone();
        Ok(response.map(|body| Http2Body { body, limits, _stream: stream }))
    }
}

/// One stream's place on its connection, given back when the body ends or is dropped.
struct Stream(Arc<Conn>);

impl Stream {
    async fn ready(&self, endpoint: &Authority) -> Result<http2::SendRequest<BoxBody>, UpstreamError> {
        let mut state = self.0.state.clone();
        let opened = state.wait_for(|state| !matches!(state, Opening::Connecting)).await.map(|state| state.clone());
        match opened {
            Ok(Opening::Open(send)) => Ok(send),
            Ok(Opening::Failed(error)) => Err(again(&error, endpoint)),
            // The opening task is gone (the runtime is stopping).
            Ok(Opening::Connecting) | Err(_) => {
                Err(UpstreamError::Connect { endpoint: endpoint.clone(), source: std::io::Error::other("connection task ended") })
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.0.streams.fetch_sub(1, Ordering::Relaxed) == 1 {
            *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
    }
}

/// The connect failure of a connection, for each request that waited for it.
fn again(error: &UpstreamError, endpoint: &Authority) -> UpstreamError {
    match error {
        UpstreamError::Connect { endpoint, source } => {
            UpstreamError::Connect { endpoint: endpoint.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
        }
        UpstreamError::ConnectTimeout { endpoint } => UpstreamError::ConnectTimeout { endpoint: endpoint.clone() },
        other => UpstreamError::Connect { endpoint: endpoint.clone(), source: std::io::Error::other(other.to_string()) },
    }
}

/// Whether a head (or trailers) is over the limits, counted as HTTP/2 counts a header list
/// (RFC 9113 section 6.5.2: name, value and 32 bytes per field).
fn over_limits(headers: &HeaderMap, limits: &Limits) -> bool {
    headers.len() > limits.fields
        || headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 32).sum::<usize>() > limits.head_bytes
}

/// The answer's body over HTTP/2; holds the stream's place on its connection.
pub struct Http2Body {
    body: Incoming,
    limits: Limits,
    _stream: Stream,
}

/// The upstream's trailers are over the limits.
#[derive(Debug, thiserror::Error)]
#[error("the upstream's trailers are over the limits")]
pub struct TrailersTooLarge;

impl Body for Http2Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && frame.trailers_ref().is_some_and(|trailers| over_limits(trailers, &self.limits))
        {
            return Poll::Ready(Some(Err(Box::new(TrailersTooLarge))));
        }
        Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
