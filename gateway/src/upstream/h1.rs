//! HTTP/1.1 to one endpoint: connections checked out to the request that uses them and driven
//! from that request's own task (no connection task, so no wake-ups between tasks per request),
//! returned to the endpoint's idle stack when the answer ended cleanly.
//!
//! hyper's `client::conn::http1` gives the two halves of a connection: a `SendRequest` and the
//! `Connection` future that reads and writes the socket. Here the request's future polls the
//! `Connection` while it waits for the head, and the response body ([`Http1Body`]) polls it while
//! the body is read; so the connection makes progress exactly while someone wants its bytes.
//!
//! A connection goes back to the idle stack only when the body was read to its end, the
//! connection can take another request at once (hyper keeps it alive: no `connection: close`, no
//! error, the request's own body fully written) and the stack is not full; otherwise it is
//! closed. Idle connections past `upstream.idle_timeout` are closed when next seen and by a
//! periodic sweep. A pooled connection the upstream closed while idle is noticed at checkout; a
//! request that hyper gives back unsent (the upstream closed just before it) goes on a new
//! connection once, as hyper's pooled client does.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONNECTION, UPGRADE};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::connect::{Connector, Transport};
use super::error::UpstreamError;
use super::{BoxBody, BoxError, Limits};

type Connection = http1::Connection<TokioIo<Transport>, BoxBody>;

/// One HTTP/1.1 connection: both halves, owned by whoever uses it.
struct Conn {
    send: http1::SendRequest<BoxBody>,
    io: Connection,
}

impl Conn {
    /// Polls the connection once, without waiting: whether it still lives and can take a request.
    fn usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(&mut self.io).poll(&mut cx).is_pending() && self.send.is_ready()
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// The HTTP/1.1 connections of one endpoint that no request holds.
pub(super) struct Http1Pool {
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    builder: http1::Builder,
}

impl Http1Pool {
    pub(super) fn new(max_idle: usize, idle_timeout: Duration, limits: &Limits) -> Self {
        let mut builder = http1::Builder::new();
        builder.max_header_size(limits.head_bytes);
        // hyper parses up to 100 fields on the stack; another count moves them to the heap.
        if limits.fields != 100 {
            builder.max_headers(limits.fields);
        }
        Self { idle: Mutex::new(Vec::new()), max_idle, idle_timeout, builder }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The most recently returned idle connection that still lives.
    fn checkout(&self) -> Option<Conn> {
        let now = Instant::now();
        let mut idle = self.lock();
        while let Some(Idle { mut conn, since }) = idle.pop() {
            if now.duration_since(since) >= self.idle_timeout {
                // The others are older still.
                idle.clear();
                return None;
            }
            if conn.usable() {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, mut conn: Conn) {
        if self.max_idle == 0 || !conn.usable() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() >= self.max_idle {
            idle.remove(0);
        }
        idle.push(Idle { conn, since: Instant::now() });
    }

    /// Closes the connections idle for longer than the idle timeout.
    pub(super) fn sweep(&self, now: Instant) {
        self.lock().retain(|idle| now.duration_since(idle.since) < self.idle_timeout);
    }

    async fn connect(&self, connector: &Connector, endpoint: &http::uri::Authority) -> Result<Conn, UpstreamError> {
        let io = connector.connect(endpoint).await?;
        let (send, io) = self.builder.handshake(TokioIo::new(io)).await.map_err(UpstreamError::Failed)?;
        Ok(Conn { send, io })
    }

    /// Sends `request` on an idle connection or a new one, driving the connection from this
    /// task until the head arrives; the body drives it from then on.
    pub(super) async fn send(
        self: &Arc<Self>,
        connector: &Connector,
        endpoint: &http::uri::Authority,
        request: Request<BoxBody>,
    ) -> Result<Response<Http1Body>, UpstreamError> {
        if is_upgrade(&request) {
            return self.send_upgrade(connector, endpoint, request).await;
        }
        let mut request = request;
        let mut reused = true;
        loop {
            let mut conn = match self.checkout() {
                Some(conn) => conn,
                None => {
                    reused = false;
                    self.connect(connector, endpoint).await?
                }
            };
            let sent = conn.send.try_send_request(request);
            let (answer, io_ended) = drive(&mut conn.io, sent).await;
            match answer {
                Ok(response) => {
                    let home = Arc::downgrade(self);
                    // A connection that already ended (the upstream closed it after this answer)
                    // is not polled again: its bytes are in the body's channel.
                    let conn = (!io_ended).then_some(conn);
                    return Ok(response.map(|body| Http1Body { body, conn, home, done: false }));
                }
                Err(mut error) => match error.take_message() {
                    // The idle connection closed under the request before it was written: once
                    // more on a new connection.
                    Some(unsent) if reused => {
                        reused = false;
                        request = unsent;
                        // Next round: no idle connection is older than this one was.
                        drop(self.lock().drain(..));
                    }
                    Some(_) => return Err(UpstreamError::NotSent(error.into_error())),
                    None => return Err(UpstreamError::from_hyper(error.into_error())),
                },
            }
        }
    }

    /// An upgrade handshake: its connection becomes the tunnel, so it is never pooled, and hyper
    /// needs the connection driven to its end to hand the upgraded socket over: a task of its own.
    async fn send_upgrade(
        &self,
        connector: &Connector,
        endpoint: &http::uri::Authority,
        request: Request<BoxBody>,
    ) -> Result<Response<Http1Body>, UpstreamError> {
        let Conn { mut send, io } = self.connect(connector, endpoint).await?;
        tokio::spawn(async move {
            if let Err(error) = io.with_upgrades().await {
                tracing::debug!(%error, "upstream upgrade connection ended with an error");
            }
        });
        let response = send.send_request(request).await.map_err(UpstreamError::from_hyper)?;
        Ok(response.map(|body| Http1Body { body, conn: None, home: Weak::new(), done: false }))
    }
}

type Answer = Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<BoxBody>>>;

/// Polls the connection and the response future together until the head arrives; with whether
/// the connection ended meanwhile (it must not be polled again).
async fn drive<F: Future<Output = Answer>>(io: &mut Connection, sent: F) -> (Answer, bool) {
    let mut sent = std::pin::pin!(sent);
    let mut io_ended = false;
    let answer = std::future::poll_fn(|cx| {
        if !io_ended {
            // The connection's own end (or error) reaches the response future as its error.
            io_ended = Pin::new(&mut *io).poll(cx).is_ready();
        }
        sent.as_mut().poll(cx)
    })
    .await;
    (answer, io_ended)
}

fn is_upgrade<B>(request: &Request<B>) -> bool {
    request.headers().contains_key(UPGRADE)
        && request
            .headers()
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// The answer's body over HTTP/1.1; it drives its connection, and returns it to the pool when
/// read to the end (or closes it when dropped before).
pub struct Http1Body {
    body: Incoming,
    conn: Option<Conn>,
    home: Weak<Http1Pool>,
    done: bool,
}

impl Http1Body {
    fn release(&mut self) {
        if let (Some(conn), Some(home)) = (self.conn.take(), self.home.upgrade()) {
            home.checkin(conn);
        }
    }
}

impl Body for Http1Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(conn) = &mut this.conn
            && Pin::new(&mut conn.io).poll(cx).is_ready()
        {
            // Ended: what it read is in the body's channel; the connection is not reusable.
            this.conn = None;
        }
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            None => {
                this.done = true;
                this.release();
            }
            Some(Err(_)) => this.conn = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Http1Body {
    /// A body whose end was known without reading it (an empty one: the server never polls it)
    /// ended cleanly too.
    fn drop(&mut self) {
        if !self.done && self.body.is_end_stream() {
            self.release();
        }
    }
}
