//! Body plumbing for mirroring, none of which ever waits on a shadow:
//!
//! - [`TeeBody`] streams the client's request body to the primary and offers each data frame
//!   (a reference-counted `Bytes`, never copied) to every mirror's bounded channel with
//!   `try_send`. A full channel or a body over the mirror's cap aborts that copy only.
//! - [`ShadowBody`] is the copy's request body: the frames from the channel, ending in an error
//!   when the copy was aborted, so a shadow never takes a truncated body for a complete one.
//! - [`CaptureBody`] streams the primary's response to the client while keeping up to a cap of it
//!   for comparison, handed over when the body ends.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use response_diff::Captured;
use tokio::sync::mpsc;

use crate::stats::DropReason;
use crate::upstream::BoxError;

/// Frames buffered per copy before the copy is given up (the shadow reads too slowly).
pub const COPY_CHANNEL_FRAMES: usize = 64;

/// Why a copy's request body was abandoned, shared between the tee (which sets it once) and the
/// copy's task (which reads it to say why the shadow request failed). Empty until set.
#[derive(Debug, Default)]
pub struct AbortFlag(AtomicU8);

impl AbortFlag {
    pub fn get(&self) -> Option<DropReason> {
        DropReason::from_code(self.0.load(Ordering::Acquire))
    }

    /// The first reason wins: a copy abandoned for backpressure stays that, even if the client
    /// then goes away.
    fn set(&self, why: DropReason) {
        let _ = self.0.compare_exchange(0, why.code(), Ordering::AcqRel, Ordering::Acquire);
    }
}

/// The tee's end of one copy.
pub struct CopySender {
    tx: mpsc::Sender<Bytes>,
    sent: usize,
    cap: usize,
    abort: Arc<AbortFlag>,
}

impl CopySender {
    /// Offers a frame; false when the copy is over (aborted, or the shadow stopped reading).
    fn offer(&mut self, data: &Bytes) -> bool {
        self.sent += data.len();
        if self.sent > self.cap {
            self.abort.set(DropReason::BodyOverCap);
            return false;
        }
        match self.tx.try_send(data.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.abort.set(DropReason::BodyBackpressure);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// A new copy channel: the tee's sender and the shadow request's body.
pub fn copy_channel(cap: usize) -> (CopySender, ShadowBody, Arc<AbortFlag>) {
    let (tx, rx) = mpsc::channel(COPY_CHANNEL_FRAMES);
    let abort = Arc::new(AbortFlag::default());
    (CopySender { tx, sent: 0, cap, abort: abort.clone() }, ShadowBody { rx, abort: abort.clone() }, abort)
}

/// A request body already in hand, offered whole to every copy at once (as [`TeeBody`] offers a
/// streamed one frame by frame); the senders dropped after it end each copy complete.
pub fn offer_whole(copies: Vec<CopySender>, data: &Bytes) {
    for mut copy in copies {
        if !data.is_empty() {
            copy.offer(data);
        }
    }
}

pin_project! {
    /// The client's request body on its way to the primary, copied to mirrors on the side.
    pub struct TeeBody<B> {
        #[pin]
        inner: B,
        copies: Vec<CopySender>,
    }

    impl<B> PinnedDrop for TeeBody<B> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the end (primary failed, client gone): the copies are incomplete.
            for copy in this.project().copies.drain(..) {
                copy.abort.set(DropReason::ClientAborted);
            }
        }
    }
}

impl<B> TeeBody<B> {
    pub fn new(inner: B, copies: Vec<CopySender>) -> Self {
        Self { inner, copies }
    }
}

impl<B> Body for TeeBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.copies.retain_mut(|copy| copy.offer(data));
                }
                // A body of known length is not polled again after its last frame: end the
                // copies now, complete.
                if this.inner.is_end_stream() {
                    this.copies.clear();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                for copy in this.copies.drain(..) {
                    copy.abort.set(DropReason::ClientAborted);
                }
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                // Dropping the senders ends each copy normally.
                this.copies.clear();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body of one shadow copy.
pub struct ShadowBody {
    rx: mpsc::Receiver<Bytes>,
    abort: Arc<AbortFlag>,
}

/// The error a shadow body ends with when its copy was abandoned.
#[derive(Debug, thiserror::Error)]
#[error("request body copy abandoned: {0}")]
pub struct CopyAbandoned(&'static str);

impl Body for ShadowBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Poll::Ready(None) => match self.abort.get() {
                None => Poll::Ready(None),
                Some(why) => Poll::Ready(Some(Err(Box::new(CopyAbandoned(why.as_str()))))),
            },
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The primary's whole answer as a comparing copy receives it: what it said, and how long the
/// primary took to answer (to its response headers).
#[derive(Clone)]
pub struct PrimaryAnswer {
    pub captured: Captured,
    pub latency: std::time::Duration,
}

/// Where a comparing copy waits for the primary's answer.
pub type AnswerWaiter = tokio::sync::oneshot::Sender<PrimaryAnswer>;

pin_project! {
    /// The primary's response body on its way to the client, with a capped copy kept aside.
    pub struct CaptureBody<B> {
        #[pin]
        inner: B,
        kept: BytesMut,
        cap: usize,
        truncated: bool,
        head: Option<(u16, HeaderMap)>,
        latency: std::time::Duration,
        // Handed the answer when the body has been sent to the client in full; dropped (their
        // copies then skip the comparison) when it fails.
        waiters: Vec<AnswerWaiter>,
    }
}

impl<B> CaptureBody<B> {
    pub fn new(inner: B, status: u16, headers: HeaderMap, latency: std::time::Duration, cap: usize, waiters: Vec<AnswerWaiter>) -> Self {
        Self { inner, kept: BytesMut::new(), cap, truncated: false, head: Some((status, headers)), latency, waiters }
    }
}

/// Hands the primary's answer to every waiting copy.
pub fn hand_over(waiters: Vec<AnswerWaiter>, answer: PrimaryAnswer) {
    for waiter in waiters {
        let _ = waiter.send(answer.clone());
    }
}

impl<B> Body for CaptureBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        let finished = match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let room = this.cap.saturating_sub(this.kept.len());
                    if data.len() > room {
                        *this.truncated = true;
                    }
                    this.kept.extend_from_slice(&data[..data.len().min(room)]);
                }
                // Trailers (gRPC's grpc-status) are compared as headers.
                if let (Some(trailers), Some((_, headers))) = (frame.trailers_ref(), this.head.as_mut()) {
                    headers.extend(trailers.clone());
                }
                // A body of known length is not polled again after its last frame.
                this.inner.is_end_stream()
            }
            Poll::Ready(None) => true,
            // An error: nothing to compare (the waiters are dropped, their copies see that).
            Poll::Ready(Some(Err(_))) => {
                this.waiters.clear();
                false
            }
            Poll::Pending => false,
        };
        if finished && let Some((status, headers)) = this.head.take() {
            let captured = Captured { status, headers, body: std::mem::take(this.kept).freeze(), truncated: *this.truncated };
            hand_over(std::mem::take(this.waiters), PrimaryAnswer { captured, latency: *this.latency });
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
    use tokio::sync::oneshot;

    fn frames(chunks: &[&'static str]) -> impl Body<Data = Bytes, Error = BoxError> {
        let items: Vec<Result<Frame<Bytes>, BoxError>> = chunks.iter().map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes())))).collect();
        StreamBody::new(futures_util::stream::iter(items))
    }

    #[tokio::test]
    async fn a_copy_receives_the_whole_body_and_ends_cleanly() {
        let (sender, shadow, abort) = copy_channel(1024);
        let tee = TeeBody::new(frames(&["ab", "cd"]), vec![sender]);
        assert_eq!(tee.collect().await.unwrap().to_bytes(), "abcd");
        assert_eq!(shadow.collect().await.unwrap().to_bytes(), "abcd");
        assert_eq!(abort.get(), None);
    }

    #[tokio::test]
    async fn a_body_over_the_cap_aborts_the_copy_not_the_primary() {
        let (sender, shadow, abort) = copy_channel(3);
        let tee = TeeBody::new(frames(&["ab", "cd"]), vec![sender]);
        assert_eq!(tee.collect().await.unwrap().to_bytes(), "abcd");
        assert!(shadow.collect().await.is_err(), "the shadow sees an error, not a short body");
        assert_eq!(abort.get(), Some(DropReason::BodyOverCap));
    }

    #[tokio::test]
    async fn a_shadow_that_does_not_read_never_holds_the_primary_back() {
        let (sender, _shadow, abort) = copy_channel(usize::MAX);
        let chunks: Vec<&'static str> = vec!["x"; COPY_CHANNEL_FRAMES + 10];
        let tee = TeeBody::new(frames(&chunks), vec![sender]);
        assert_eq!(tee.collect().await.unwrap().to_bytes().len(), COPY_CHANNEL_FRAMES + 10);
        assert_eq!(abort.get(), Some(DropReason::BodyBackpressure));
    }

    #[tokio::test]
    async fn the_capture_keeps_at_most_the_cap_and_marks_truncation() {
        let (waiter, answer) = oneshot::channel();
        let body = CaptureBody::new(frames(&["hello ", "world"]), 200, HeaderMap::new(), std::time::Duration::ZERO, 8, vec![waiter]);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello world");
        let captured = answer.await.unwrap().captured;
        assert_eq!((captured.body.as_ref(), captured.truncated), (&b"hello wo"[..], true));
    }

    #[tokio::test]
    async fn trailers_are_captured_with_the_headers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "5".parse().unwrap());
        let items: Vec<Result<Frame<Bytes>, BoxError>> = vec![Ok(Frame::data(Bytes::from_static(b"m"))), Ok(Frame::trailers(trailers))];
        let (waiter, answer) = oneshot::channel();
        let body = CaptureBody::new(
            StreamBody::new(futures_util::stream::iter(items)),
            200,
            HeaderMap::new(),
            Default::default(),
            8,
            vec![waiter],
        );
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().map(|t| t["grpc-status"].clone()), Some("5".parse().unwrap()), "the client still gets them");
        assert_eq!(answer.await.unwrap().captured.headers["grpc-status"], "5");
    }
}
