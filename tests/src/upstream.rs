//! Test upstreams that answer fast, slowly, never, refuse or reset, and record what they got.

use std::net::SocketAddr;
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
