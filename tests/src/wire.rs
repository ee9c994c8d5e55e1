//! HTTP at the level the protocol tests need: raw bytes on a socket (framing errors a normal
//! client cannot produce), an HTTP/2 prior-knowledge client (hyper's), an upstream that streams
//! its answer slowly, and one that records whether each request body arrived whole.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sends `request` on a new connection; returns what came back until the peer closed the
/// connection or sent nothing for `quiet`.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], quiet: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    read_until_quiet(&mut stream, quiet).await
}

/// Reads until the peer closes or is silent for `quiet`.
pub async fn read_until_quiet(stream: &mut TcpStream, quiet: Duration) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(Ok(n)) = tokio::time::timeout(quiet, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// The status code of the first response in `raw`, if there is one.
pub fn status_of(raw: &str) -> Option<u16> {
    raw.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// One HTTP/2 request with prior knowledge; `headers` may repeat a name (each is its own field,
/// as HTTP/2 clients send cookies).
pub async fn h2_request(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Bytes) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut request = Request::get(format!("http://{addr}{path}")).version(http::Version::HTTP_2);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender.send_request(request.body(Empty::<Bytes>::new()).expect("request")).await.expect("h2 response");
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body.collect().await.expect("body").to_bytes())
}

/// An upstream that answers 200 at once and then sends `chunks` pieces of body, one every
/// `interval`; it notices when the receiver goes away before the end.
#[derive(Clone)]
pub struct TrickleUpstream {
    pub addr: SocketAddr,
    sent: Arc<AtomicUsize>,
    cut: Arc<AtomicBool>,
}

impl TrickleUpstream {
    pub async fn start(chunks: usize, interval: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (sent, cut) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (s, c) = (sent.clone(), cut.clone());
        let app = axum::Router::new().fallback(move || {
            let (sent, cut) = (s.clone(), c.clone());
            async move {
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
                tokio::spawn(async move {
                    for i in 0..chunks {
                        if tx.send(Ok(Bytes::from(format!("chunk {i}\n")))).await.is_err() {
                            cut.store(true, Ordering::SeqCst);
                            return;
                        }
                        sent.fetch_add(1, Ordering::SeqCst);
                        tokio::select! {
                            () = tokio::time::sleep(interval) => {}
                            () = tx.closed() => {
                                cut.store(true, Ordering::SeqCst);
                                return;
                            }
                        }
                    }
                });
                axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, sent, cut }
    }

    /// Chunks handed to the connection so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }

    /// Whether the receiving side went away before the last chunk.
    pub fn cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

/// What a [`BodyRecorder`] saw of one request.
#[derive(Debug, Clone)]
pub struct BodySeen {
    pub method: http::Method,
    pub uri: String,
    pub headers: HeaderMap,
    /// Body bytes received so far.
    pub received: usize,
    /// `None` while the body is still arriving; `Some(Ok)` when it ended as its framing said,
    /// `Some(Err)` when it was cut (the request was reset).
    pub outcome: Option<Result<(), String>>,
}

/// A strict HTTP/1.1 upstream (hyper) that records each request as soon as its head arrives and
/// then whether its body completed, answering `200 received N` after a complete one.
#[derive(Clone)]
pub struct BodyRecorder {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<BodySeen>>>,
}

impl BodyRecorder {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log: Arc<Mutex<Vec<BodySeen>>> = Arc::default();
        let shared = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = shared.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| record(log.clone(), request));
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Self { addr, log }
    }

    pub fn seen(&self) -> Vec<BodySeen> {
        self.log.lock().expect("log").clone()
    }
}

async fn record(log: Arc<Mutex<Vec<BodySeen>>>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, mut body) = request.into_parts();
    let index = {
        let mut log = log.lock().expect("log");
        log.push(BodySeen {
            method: parts.method,
            uri: parts.uri.path_and_query().map(|pq| pq.to_string()).unwrap_or_default(),
            headers: parts.headers,
            received: 0,
            outcome: None,
        });
        log.len() - 1
    };
    let outcome = loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    log.lock().expect("log")[index].received += data.len();
                }
            }
            Some(Err(error)) => break Err(error.to_string()),
            None => break Ok(()),
        }
    };
    let complete = outcome.is_ok();
    let received = {
        let mut log = log.lock().expect("log");
        log[index].outcome = Some(outcome);
        log[index].received
    };
    let mut response = Response::new(Full::new(Bytes::from(format!("received {received}"))));
    if !complete {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(response)
}
