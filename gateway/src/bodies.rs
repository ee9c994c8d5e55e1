//! Body wrappers of the primary path, one concern each (linkerd2-proxy's layers are the model):
//!
//! - [`Watched`]: the client's request body, noting why it fails ([`BodyFailure`]: malformed
//!   chunk, bad length, client gone; past the listener's size limit), so the gateway answers
//!   400 or 413 instead of blaming the upstream. Its error reaches the upstream connection, which
//!   is reset: an upstream never takes a cut body for a whole one.
//! - [`buffer_small`]: a request body of small declared length is read whole before anything is
//!   sent (NGINX's request buffering), so an upload cut short never reaches the upstream at all,
//!   not even one whose server would run its handler on what arrived before the reset
//!   ([`client_body`] is both, with the deadline for the read: past it, 408).
//! - [`Deadline`]: the upstream's response body under the route's whole-response deadline and the
//!   stream idle timeout (Envoy's meanings): past either the body ends in an error, which resets
//!   the client's stream, and the upstream's is dropped.
//! - [`Metered`]: the response on its way to the client; the request is counted and its
//!   duration recorded when the body has been sent in full, or as `client_closed` when the client
//!   left first ([`RequestRecord`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use metrics::SharedString;
use pin_project_lite::pin_project;
use service_kit::serve::{Refusal, RequestBodyError};
use tokio::time::Sleep;

use crate::upstream::{BoxBody, BoxError};

/// Why the client's request body failed: noted once, by the body that saw it ([`Watched`]) or
/// by the read that waited for it ([`client_body`]); the gateway answers it by [`GatewayError`]'s
/// status (400, 413, 408), never blaming the upstream.
///
/// [`GatewayError`]: crate::error::GatewayError
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyFailure {
    /// Malformed (chunk framing, length) or cut short.
    #[error("request body malformed or incomplete")]
    Malformed,
    /// It streamed past `listener.max_request_body_bytes` (the listener's limit, which refuses
    /// a declared length over it before this).
    #[error("{}", Refusal::BodyTooLarge)]
    TooLarge,
    /// A body read whole first (`requests.buffer_body`) did not arrive within the route's deadlines.
    #[error("request body not received in time")]
    TooSlow,
}

impl BodyFailure {
    const ALL: [BodyFailure; 3] = [BodyFailure::Malformed, BodyFailure::TooLarge, BodyFailure::TooSlow];

    /// What a body error says: the listener's limit, or anything else that broke the body.
    fn of(error: &BoxError) -> Self {
        match error.downcast_ref::<RequestBodyError>() {
            Some(RequestBodyError::TooLarge) => BodyFailure::TooLarge,
            _ => BodyFailure::Malformed,
        }
    }
}

/// How a [`Watched`] body failed, if it did; shared with the code that reads the upstream's
/// error (a failing request body resets the upstream request, whose error then says nothing of
/// why). The first failure noted is the one kept.
#[derive(Clone, Debug, Default)]
pub struct BodyWatch(Arc<AtomicU8>);

impl BodyWatch {
    pub fn failure(&self) -> Option<BodyFailure> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            code => BodyFailure::ALL.get(usize::from(code) - 1).copied(),
        }
    }

    fn note(&self, failure: BodyFailure) {
        let code = BodyFailure::ALL.iter().position(|f| *f == failure).map_or(1, |i| i as u8 + 1);
        let _ = self.0.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
    }
}

pin_project! {
    /// A request body whose failure is noted in a [`BodyWatch`].
    pub struct Watched<B> {
        #[pin]
        inner: B,
        watch: BodyWatch,
    }
}

impl<B> Watched<B> {
    pub fn new(inner: B) -> (Self, BodyWatch) {
        let watch = BodyWatch::default();
        (Self { inner, watch: watch.clone() }, watch)
    }
}

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Err(error))) => {
                let error = error.into();
                this.watch.note(BodyFailure::of(&error));
                Poll::Ready(Some(Err(error)))
            }
            other => other.map(|frame| frame.map(|frame| frame.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's request body on its way to the upstream: [`Watched`], and read whole first when
/// small ([`buffer_small`] under `buffer` bytes), waiting for it until `by`, so that a cut or
/// slow one never reaches the upstream or the copies at all.
pub async fn client_body<B>(body: B, buffer: u64, by: Option<Instant>) -> Result<(RequestBody, BodyWatch), BodyFailure>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (body, watch) = Watched::new(body);
    let read = buffer_small(body, buffer);
    let read = match by {
        Some(by) => match tokio::time::timeout_at(by.into(), read).await {
            Ok(read) => read,
            Err(_) => {
                watch.note(BodyFailure::TooSlow);
                return Err(BodyFailure::TooSlow);
            }
        },
        None => read.await,
    };
    match read {
        Ok(body) => Ok((body, watch)),
        Err(error) => {
            tracing::info!(%error, "the client's request body failed before it was sent");
            Err(watch.failure().unwrap_or(BodyFailure::Malformed))
        }
    }
}

/// A request body as the primary's attempts get it.
pub enum RequestBody {
    /// Empty, or read whole: every attempt sends the same bytes, so the request can be retried.
    InHand(Whole),
    /// Streamed as it comes: sent once, never retried (its bytes may have gone out).
    Streamed(BoxBody),
}

/// A body held whole: its bytes (reference-counted, never copied per attempt) and trailers.
#[derive(Clone, Debug, Default)]
pub struct Whole {
    data: Bytes,
    trailers: Option<http::HeaderMap>,
}

impl Whole {
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// A body of these bytes, for one attempt.
    pub fn body(&self) -> BoxBody {
        let whole = Full::new(self.data.clone()).map_err(|never| match never {});
        match self.trailers.clone() {
            Some(trailers) => whole.with_trailers(async move { Some(Ok(trailers)) }).boxed_unsync(),
            None => whole.boxed_unsync(),
        }
    }
}

impl From<http_body_util::Collected<Bytes>> for Whole {
    fn from(collected: http_body_util::Collected<Bytes>) -> Self {
        let trailers = collected.trailers().cloned();
        Self { data: collected.to_bytes(), trailers }
    }
}

/// The request body as the upstream will get it: in hand when empty or when its declared length
/// is at most `limit` bytes (read whole first: an error if it fails or is cut short), streamed
/// otherwise.
pub async fn buffer_small<B>(body: B, limit: u64) -> Result<RequestBody, BoxError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if body.is_end_stream() {
        return Ok(RequestBody::InHand(Whole::default()));
    }
    if !body.size_hint().exact().is_some_and(|len| len > 0 && len <= limit) {
        return Ok(RequestBody::Streamed(body.map_err(Into::into).boxed_unsync()));
    }
    let collected = body.collect().await.map_err(Into::into)?;
    Ok(RequestBody::InHand(Whole::from(collected)))
}

/// The deadlines one request's response runs under. `None` is no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// The route timeout: until the whole response has arrived.
    pub total: Option<Instant>,
    /// The longest the response may stay silent (before its headers, and between frames).
    pub idle: Option<Duration>,
}

impl Deadlines {
    /// From the route's `timeout` (else the default one) and the idle timeout; zero turns
    /// either off.
    pub fn new(start: Instant, route: Option<Duration>, default_route: Duration, idle: Duration) -> Self {
        let total = route.unwrap_or(default_route);
        Self { total: (!total.is_zero()).then(|| start + total), idle: (!idle.is_zero()).then_some(idle) }
    }

    /// When waiting for the response headers must stop: the sooner of the two.
    pub fn headers_by(&self, now: Instant) -> Option<Instant> {
        match (self.total, self.idle.map(|idle| now + idle)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Why a response body was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Expired {
    #[error("the route timeout passed before the response ended")]
    Route,
    #[error("the response stream was idle for longer than the stream idle timeout")]
    Idle,
}

pin_project! {
    /// A response body that errors once its deadline passes or it stays silent too long.
    pub struct Deadline<B> {
        #[pin]
        inner: B,
        total: Option<tokio::time::Instant>,
        idle: Option<Duration>,
        // One timer, for the sooner of the two, armed only when the body has to wait (a small
        // answer read in one go never allocates it); re-aimed at the first wait after a frame.
        timer: Option<Pin<Box<Sleep>>>,
        moved: bool,
        expired: bool,
    }
}

impl<B> Deadline<B> {
    pub fn new(inner: B, deadlines: Deadlines) -> Self {
        Self { inner, total: deadlines.total.map(Into::into), idle: deadlines.idle, timer: None, moved: false, expired: false }
    }
}

impl<B> Body for Deadline<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            *this.moved = true;
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let idle_until = this.idle.map(|idle| tokio::time::Instant::now() + idle);
        let wake = match (*this.total, idle_until) {
            (Some(total), Some(idle)) => total.min(idle),
            (Some(at), None) | (None, Some(at)) => at,
            (None, None) => return Poll::Pending,
        };
        let timer = match this.timer {
            Some(timer) => {
                if *this.moved {
                    timer.as_mut().reset(wake);
                }
                timer
            }
            None => this.timer.insert(Box::pin(tokio::time::sleep_until(wake))),
        };
        *this.moved = false;
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let why = if this.total.is_some_and(|total| total <= timer.deadline()) { Expired::Route } else { Expired::Idle };
        *this.expired = true;
        tracing::info!(reason = %why, "response stream reset");
        Poll::Ready(Some(Err(Box::new(why))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request metrics of one route and destination: `gateway_request_duration_seconds{route}`
/// and `gateway_requests_total{route,destination,status}`. Each handle is registered the first
/// time it is needed (a series appears once it has something to count) and kept, so that
/// recording a request is an atomic add, not a registry lookup that builds, hashes and finds a
/// label set.
pub struct RequestMetrics {
    route: SharedString,
    destination: SharedString,
    duration: std::sync::OnceLock<metrics::Histogram>,
    /// One counter per status seen so far (few: a route answers a handful of statuses); 0 is
    /// `client_closed`.
    by_status: std::sync::RwLock<Vec<(u16, metrics::Counter)>>,
}

/// The status label of a request the client abandoned.
pub const CLIENT_CLOSED: &str = "client_closed";

impl RequestMetrics {
    pub fn new(route: SharedString, destination: SharedString) -> Self {
        Self { route, destination, duration: Default::default(), by_status: Default::default() }
    }

    fn duration(&self) -> &metrics::Histogram {
        self.duration.get_or_init(|| metrics::histogram!("gateway_request_duration_seconds", "route" => self.route.clone()))
    }

    /// The counter of requests answered `status` (`None`: the client left first).
    fn requests(&self, status: Option<StatusCode>) -> metrics::Counter {
        let code = status.map_or(0, |status| status.as_u16());
        let known = |list: &[(u16, metrics::Counter)]| list.iter().find(|(c, _)| *c == code).map(|(_, counter)| counter.clone());
        if let Some(counter) = known(&self.by_status.read().unwrap_or_else(|p| p.into_inner())) {
            return counter;
        }
        let mut list = self.by_status.write().unwrap_or_else(|p| p.into_inner());
        if let Some(counter) = known(&list) {
            return counter;
        }
        let label = match status {
            Some(status) => SharedString::from(status.as_str().to_owned()),
            None => SharedString::const_str(CLIENT_CLOSED),
        };
        let counter = metrics::counter!("gateway_requests_total", "route" => self.route.clone(), "destination" => self.destination.clone(), "status" => label);
        list.push((code, counter.clone()));
        counter
    }
}

/// One request's entry in `gateway_requests_total` and `gateway_request_duration_seconds`,
/// made when the request is routed and written exactly once: with the response status when the
/// response has been sent in full (or failed on the way), as `client_closed` when dropped before
/// (the client went away first, like NGINX's 499).
pub struct RequestRecord {
    metrics: Arc<RequestMetrics>,
    started: Instant,
    status: Option<StatusCode>,
    written: bool,
}

impl RequestRecord {
    pub fn new(metrics: Arc<RequestMetrics>, started: Instant) -> Self {
        Self { metrics, started, status: None, written: false }
    }

    /// The response's status, once its head is known.
    pub fn answered(&mut self, status: StatusCode) {
        self.status = Some(status);
    }

    /// Writes the record now (the response has ended).
    pub fn finish(mut self) {
        self.write();
    }

    fn write(&mut self) {
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        self.metrics.duration().record(self.started.elapsed().as_secs_f64());
        self.metrics.requests(self.status).increment(1);
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        // Dropped unwritten: the client left before the response ended.
        self.status = None;
        self.write();
    }
}

pin_project! {
    /// The response body on its way to the client, writing its [`RequestRecord`] at the end.
    pub struct Metered<B> {
        #[pin]
        inner: B,
        record: Option<RequestRecord>,
    }
}

impl<B: Body> Metered<B> {
    /// A body already at its end (hyper never polls those) is recorded at once.
    pub fn new(inner: B, record: RequestRecord) -> Self {
        if inner.is_end_stream() {
            record.finish();
            return Self { inner, record: None };
        }
        Self { inner, record: Some(record) }
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
            // A body of known length is not polled again after its last frame.
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if ended && let Some(record) = this.record.take() {
            record.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use tokio_stream::wrappers::ReceiverStream;

    type Item = Result<Frame<Bytes>, BoxError>;

    fn channel_body() -> (tokio::sync::mpsc::Sender<Item>, StreamBody<ReceiverStream<Item>>) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (tx, StreamBody::new(ReceiverStream::new(rx)))
    }

    #[tokio::test]
    async fn a_failed_request_body_is_noted_and_its_error_passed_on() {
        let (tx, body) = channel_body();
        let (watched, failed) = Watched::new(body);
        tx.send(Ok(Frame::data(Bytes::from_static(b"ab")))).await.unwrap();
        tx.send(Err("invalid chunk size".into())).await.unwrap();
        drop(tx);
        assert!(watched.collect().await.is_err(), "the error reaches the upstream side");
        assert_eq!(failed.failure(), Some(BodyFailure::Malformed));
        let (whole, failed) = Watched::new(http_body_util::Full::new(Bytes::from_static(b"ok")));
        assert_eq!(whole.collect().await.unwrap().to_bytes(), "ok");
        assert_eq!(failed.failure(), None);
    }

    #[tokio::test]
    async fn a_body_past_the_listener_s_limit_is_noted_as_too_large_and_only_the_first_failure_is_kept() {
        let (tx, body) = channel_body();
        let (watched, watch) = Watched::new(body);
        tx.send(Err(Box::new(RequestBodyError::TooLarge))).await.unwrap();
        drop(tx);
        assert!(watched.collect().await.is_err());
        assert_eq!(watch.failure(), Some(BodyFailure::TooLarge));
        watch.note(BodyFailure::Malformed);
        assert_eq!(watch.failure(), Some(BodyFailure::TooLarge), "noted once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_small_body_read_first_fails_as_cut_or_as_too_slow() {
        let by = Some(Instant::now() + Duration::from_secs(5));
        let cut = Declared::new(vec![Ok(Frame::data(Bytes::from_static(b"cut"))), Err("client gone".into())], 10);
        assert_eq!(client_body(cut, 10, by).await.err(), Some(BodyFailure::Malformed));
        let whole = Declared::new(vec![Ok(Frame::data(Bytes::from_static(b"0123456789")))], 10);
        assert!(client_body(whole, 10, by).await.is_ok());
        // Five of its ten bytes, then nothing: the read gives up at the deadline.
        let (tx, body) = channel_body();
        tx.send(Ok(Frame::data(Bytes::from_static(b"12345")))).await.unwrap();
        let slow = Declared::streaming(body, 10);
        assert_eq!(client_body(slow, 10, by).await.err(), Some(BodyFailure::TooSlow));
        drop(tx);
    }

    /// A body that declares `len` bytes, whatever it then sends: its frames, then those of
    /// `rest` when there is one.
    struct Declared {
        frames: std::collections::VecDeque<Item>,
        rest: Option<StreamBody<ReceiverStream<Item>>>,
        len: u64,
    }

    impl Declared {
        fn new(frames: Vec<Item>, len: u64) -> Self {
            Self { frames: frames.into(), rest: None, len }
        }

        fn streaming(rest: StreamBody<ReceiverStream<Item>>, len: u64) -> Self {
            Self { frames: Default::default(), rest: Some(rest), len }
        }
    }

    impl Body for Declared {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
            if let Some(frame) = self.frames.pop_front() {
                return Poll::Ready(Some(frame));
            }
            match self.rest.as_mut() {
                Some(rest) => Pin::new(rest).poll_frame(cx),
                None => Poll::Ready(None),
            }
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(self.len)
        }
    }

    #[tokio::test]
    async fn a_small_body_is_read_whole_first_and_a_cut_one_never_goes_on() {
        let whole = Declared::new(vec![Ok(Frame::data(Bytes::from_static(b"01234"))), Ok(Frame::data(Bytes::from_static(b"56789")))], 10);
        let Ok(RequestBody::InHand(buffered)) = buffer_small(whole, 10).await else { panic!("read whole") };
        assert_eq!(buffered.body().collect().await.unwrap().to_bytes(), "0123456789");
        assert_eq!(buffered.body().collect().await.unwrap().to_bytes(), "0123456789", "in hand: the same bytes for every attempt");

        let cut = Declared::new(vec![Ok(Frame::data(Bytes::from_static(b"cut"))), Err("client gone".into())], 10);
        assert!(buffer_small(cut, 10).await.is_err(), "a cut body is an error before anything is sent");

        let large = Declared::new(vec![Ok(Frame::data(Bytes::from_static(b"big")))], 11);
        let Ok(RequestBody::Streamed(streamed)) = buffer_small(large, 10).await else { panic!("streamed, not read") };
        assert_eq!(streamed.size_hint().exact(), Some(11), "over the limit: streamed as it comes");
        let empty = http_body_util::Empty::<Bytes>::new();
        assert!(matches!(buffer_small(empty, 0).await, Ok(RequestBody::InHand(_))), "an empty body is in hand whatever the limit");
    }

    #[test]
    fn deadlines_take_the_route_timeout_else_the_default_and_zero_is_none() {
        let now = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(Deadlines::new(now, Some(s(2)), s(15), s(300)).total, Some(now + s(2)));
        assert_eq!(Deadlines::new(now, None, s(15), s(300)).total, Some(now + s(15)));
        assert_eq!(Deadlines::new(now, Some(s(0)), s(15), s(0)), Deadlines { total: None, idle: None });
        assert_eq!(Deadlines::new(now, None, s(15), s(1)).headers_by(now), Some(now + s(1)), "the sooner of the two");
        assert_eq!(Deadlines::new(now, None, s(0), s(0)).headers_by(now), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_still_running_at_the_route_deadline_ends_in_an_error() {
        let (tx, body) = channel_body();
        let deadlines = Deadlines { total: Some(Instant::now() + Duration::from_secs(1)), idle: None };
        let mut body = Deadline::new(body, deadlines);
        tx.send(Ok(Frame::data(Bytes::from_static(b"first")))).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let error = body.frame().await.expect("an error, not the end").unwrap_err();
        assert_eq!(error.downcast_ref::<Expired>(), Some(&Expired::Route));
        assert!(body.frame().await.is_none(), "nothing after the error");
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_is_cut_by_the_idle_timeout_and_a_moving_one_is_not() {
        let (tx, body) = channel_body();
        let mut body = Deadline::new(body, Deadlines { total: None, idle: Some(Duration::from_secs(5)) });
        let feeder = tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(tx);
        });
        for _ in 0..4 {
            assert!(body.frame().await.unwrap().is_ok(), "frames 3 s apart keep the stream alive past 5 s");
        }
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(error.downcast_ref::<Expired>(), Some(&Expired::Idle));
        feeder.abort();
    }

    #[tokio::test]
    async fn a_body_within_its_deadlines_is_untouched() {
        let deadlines = Deadlines { total: Some(Instant::now() + Duration::from_secs(60)), idle: Some(Duration::from_secs(60)) };
        let body = Deadline::new(http_body_util::Full::new(Bytes::from_static(b"whole")), deadlines);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "whole");
    }

    /// Renders what the local recorder holds.
    fn recorded(f: impl FnOnce()) -> String {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, f);
        handle.render()
    }

    #[tokio::test]
    async fn a_request_is_recorded_with_its_status_when_its_body_ends() {
        let (tx, body) = channel_body();
        tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await.unwrap();
        drop(tx);
        let text = recorded(|| {
            // The handles are registered when the route is compiled, here under the test's recorder.
            let mut record = RequestRecord::new(Arc::new(RequestMetrics::new("r".into(), "d".into())), Instant::now());
            record.answered(StatusCode::OK);
            let mut body = Metered::new(body, record);
            let mut cx = Context::from_waker(std::task::Waker::noop());
            while let Poll::Ready(Some(_)) = Pin::new(&mut body).poll_frame(&mut cx) {}
        });
        assert!(text.contains(r#"gateway_requests_total{route="r",destination="d",status="200"} 1"#), "{text}");
        assert!(text.contains(r#"gateway_request_duration_seconds_count{route="r"} 1"#), "{text}");
    }

    #[test]
    fn a_request_dropped_before_its_end_is_recorded_as_client_closed_once() {
        let text = recorded(|| {
            let mut record = RequestRecord::new(Arc::new(RequestMetrics::new("r".into(), "d".into())), Instant::now());
            record.answered(StatusCode::OK);
            drop(Metered::new(http_body_util::Full::new(Bytes::from_static(b"never read")), record));
            drop(RequestRecord::new(Arc::new(RequestMetrics::new("before-headers".into(), "d".into())), Instant::now()));
        });
        assert!(text.contains(r#"gateway_requests_total{route="r",destination="d",status="client_closed"} 1"#), "{text}");
        assert!(text.contains(r#"route="before-headers",destination="d",status="client_closed"} 1"#), "{text}");
        assert!(!text.contains(r#"status="200""#), "{text}");
        let empty = recorded(|| {
            let mut record = RequestRecord::new(Arc::new(RequestMetrics::new("e".into(), "d".into())), Instant::now());
            record.answered(StatusCode::NO_CONTENT);
            drop(Metered::new(http_body_util::Empty::<Bytes>::new(), record));
        });
        assert!(empty.contains(r#"status="204"} 1"#), "an empty body is never polled: recorded at once: {empty}");
    }
}
