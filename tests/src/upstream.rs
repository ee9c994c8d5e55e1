//! Test upstreams that answer fast, slowly, never, refuse or reset, and record what they got
//! ([`Upstream`]); and raw-socket ones that answer garbage, close mid-body, answer before reading
//! the body, or hang while noticing when they are given up on ([`FaultyUpstream`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// How a test upstream answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// `status`, `body`, and extra headers, at once.
    Answer { status: StatusCode, body: String, headers: Vec<(&'static str, String)> },
    /// 200 with `body` after `delay`.
    Slow { delay: Duration, body: String },
    /// Reads the request, never answers.
    Hang,
    /// 200 with `body` once `gate` hands out a permit (`gate.add_permits(n)` in the test): a
    /// request held in flight exactly as long as the test needs.
    Gated { gate: Arc<tokio::sync::Semaphore>, body: String },
    /// Accepts the connection and closes it without a word.
    Reset,
    /// 200 with the body given for the request's path, else `default`.
    ByPath { bodies: Vec<(&'static str, String)>, default: String, content_type: &'static str },
    /// 200 with JSON whose `seq` field differs on every call, and between upstreams (noise).
    Noisy { name: String },
}

impl Behaviour {
    pub fn ok(body: &str) -> Self {
        Self::Answer { status: StatusCode::OK, body: body.to_owned(), headers: Vec::new() }
    }

    /// 200 with `body` as `application/json`.
    pub fn json(body: &str) -> Self {
        Self::Answer { status: StatusCode::OK, body: body.to_owned(), headers: vec![("content-type", "application/json".to_owned())] }
    }
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct Log {
    requests: Mutex<Vec<Recorded>>,
    arrived: Notify,
    calls: std::sync::atomic::AtomicU64,
    /// TCP connections accepted: tells a warm pooled connection from a new one.
    connections: std::sync::atomic::AtomicU64,
}

/// A running test upstream.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    log: Arc<Log>,
}

impl Upstream {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a test upstream");
        let addr = listener.local_addr().expect("local address");
        let log = Arc::new(Log::default());
        if let Behaviour::Reset = behaviour {
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    drop(stream);
                }
            });
            return Self { addr, log };
        }
        let router = Router::new().fallback(answer).with_state((log.clone(), Arc::new(behaviour)));
        let counted = log.clone();
        let listener = listener.tap_io(move |_| {
            counted.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { addr, log }
    }

    /// An address where nothing listens (connections are refused).
    pub async fn refusing() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("local address")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.log.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Waits until at least `n` requests arrived, or `timeout`; returns them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.log.arrived.notified();
            let requests = self.requests();
            if requests.len() >= n || tokio::time::Instant::now() >= deadline {
                return requests;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

async fn answer(State((log, behaviour)): State<(Arc<Log>, Arc<Behaviour>)>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let uri = parts.uri.path_and_query().map(|pq| pq.as_str().to_owned()).unwrap_or_default();
    if let Ok(mut requests) = log.requests.lock() {
        requests.push(Recorded { method: parts.method, uri: uri.clone(), headers: parts.headers, body });
    }
    log.arrived.notify_waiters();
    let call = log.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match behaviour.as_ref() {
        Behaviour::Answer { status, body, headers } => {
            let mut response = (*status, body.clone()).into_response();
            for (name, value) in headers {
                if let Ok(value) = value.parse() {
                    response.headers_mut().insert(*name, value);
                }
            }
            response
        }
        Behaviour::Slow { delay, body } => {
            tokio::time::sleep(*delay).await;
            body.clone().into_response()
        }
        Behaviour::Gated { gate, body } => match gate.acquire().await {
            Ok(permit) => {
                permit.forget();
                body.clone().into_response()
            }
            Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        },
        Behaviour::ByPath { bodies, default, content_type } => {
            let path = uri.split('?').next().unwrap_or_default();
            let body = bodies.iter().find(|(p, _)| *p == path).map_or(default, |(_, body)| body);
            ([("content-type", *content_type)], body.clone()).into_response()
        }
        Behaviour::Noisy { name } => {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            let body = serde_json::json!({ "name": name, "seq": format!("{nanos}-{call}") }).to_string();
            ([("content-type", "application/json")], body).into_response()
        }
        Behaviour::Hang | Behaviour::Reset => std::future::pending().await,
    }
}

/// Misbehaviour below HTTP, on the raw socket: what a broken or hostile upstream does that an
/// HTTP framework would not let it do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Reads the request head, then answers bytes that are not HTTP and closes.
    Garbage,
    /// Sends a 200 head announcing `content-length: 1000`, ten bytes of it, then closes.
    CloseMidBody,
    /// Answers 200 as soon as the head has arrived, without reading the body, and closes at once
    /// (unread bytes make the kernel reset the connection).
    AnswerBeforeBody,
    /// Reads the head and whatever follows, never answers, and notes when the peer closes.
    HangUntilClosed,
}

/// What a [`FaultyUpstream`] saw.
#[derive(Default)]
struct FaultLog {
    accepted: AtomicUsize,
    open: AtomicUsize,
    heads: AtomicUsize,
    /// Connections the peer closed while this side still waited (read returned 0 or failed).
    closed_by_peer: AtomicUsize,
    /// Body bytes received after each head, per connection (in order of arrival).
    body_bytes: Mutex<Vec<usize>>,
    /// Request heads, as text.
    head_texts: Mutex<Vec<String>>,
}

/// A test upstream that misbehaves on the raw socket (see [`Fault`]) and counts connections, so
/// tests can prove the gateway closed what it opened.
#[derive(Clone)]
pub struct FaultyUpstream {
    pub addr: SocketAddr,
    pub fault: Fault,
    log: Arc<FaultLog>,
}

impl FaultyUpstream {
    pub async fn start(fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a faulty upstream");
        let addr = listener.local_addr().expect("local address");
        let log = Arc::new(FaultLog::default());
        let shared = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                shared.open.fetch_add(1, Ordering::SeqCst);
                let log = shared.clone();
                tokio::spawn(async move {
                    serve_fault(stream, fault, &log).await;
                    log.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self { addr, fault, log }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.log.accepted.load(Ordering::SeqCst)
    }

    /// Connections still open on this side.
    pub fn open(&self) -> usize {
        self.log.open.load(Ordering::SeqCst)
    }

    /// Request heads received so far.
    pub fn heads(&self) -> usize {
        self.log.heads.load(Ordering::SeqCst)
    }

    /// Connections the peer closed while this upstream was still waiting on them.
    pub fn closed_by_peer(&self) -> usize {
        self.log.closed_by_peer.load(Ordering::SeqCst)
    }

    /// Body bytes each connection received after its head (the final count once it closed).
    pub fn body_bytes(&self) -> Vec<usize> {
        self.log.body_bytes.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// The request heads received, as text.
    pub fn head_texts(&self) -> Vec<String> {
        self.log.head_texts.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

async fn serve_fault(mut stream: tokio::net::TcpStream, fault: Fault, log: &FaultLog) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                log.closed_by_peer.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    log.heads.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut heads) = log.head_texts.lock() {
        heads.push(String::from_utf8_lossy(&buffer[..head_end]).into_owned());
    }
    let index = log
        .body_bytes
        .lock()
        .map(|mut b| {
            b.push(buffer.len() - head_end);
            b.len() - 1
        })
        .ok();
    let write = match fault {
        Fault::Garbage => Some(&b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02 this is not HTTP\r\n\r\n"[..]),
        Fault::CloseMidBody => Some(&b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\ncontent-type: text/plain\r\n\r\n0123456789"[..]),
        Fault::AnswerBeforeBody => Some(&b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nearly"[..]),
        Fault::HangUntilClosed => None,
    };
    if let Some(bytes) = write {
        let _ = stream.write_all(bytes).await;
        let _ = stream.flush().await;
        return;
    }
    // Hang: keep reading (the body, if any) until the peer gives up on us.
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                log.closed_by_peer.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Ok(n) => {
                if let (Some(i), Ok(mut bytes)) = (index, log.body_bytes.lock()) {
                    bytes[i] += n;
                }
            }
        }
    }
}
