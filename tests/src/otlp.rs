//! A real OTLP trace receiver (gRPC and HTTP/protobuf) that keeps every span it is sent, for
//! tests to assert on, and serves them as JSON at `GET /spans` (the CI compose stack uses it in
//! place of Jaeger, whose image cannot be pulled there).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One received span, flattened for assertions.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// `server`, `client`, `internal`, `producer`, `consumer` or `unspecified`.
    pub kind: String,
    pub service_name: String,
    pub service_version: String,
    pub attributes: BTreeMap<String, serde_json::Value>,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&serde_json::Value> {
        self.attributes.get(key)
    }

    pub fn is_shadow(&self) -> bool {
        self.attr("traffic.shadow") == Some(&serde_json::Value::Bool(true))
    }
}

#[derive(Default)]
struct Store {
    spans: Mutex<Vec<ReceivedSpan>>,
    arrived: Notify,
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    store: Arc<Store>,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
}

impl Receiver {
    /// Serves on the two listeners until the runtime ends.
    pub fn start(grpc: TcpListener, http: TcpListener) -> std::io::Result<Self> {
        let store = Arc::new(Store::default());
        let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
        let service = TraceServiceServer::new(Grpc(store.clone()));
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
            if let Err(error) = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await {
                eprintln!("otlp-receiver: gRPC server failed: {error}");
            }
        });
        let router = Router::new()
            .route("/v1/traces", post(http_export))
            .route("/spans", get(list_spans).delete(clear_spans))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(store.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(http, router).await {
                eprintln!("otlp-receiver: HTTP server failed: {error}");
            }
        });
        Ok(Self { store, grpc_addr, http_addr })
    }

    /// Binds both on 127.0.0.1 with ports chosen by the system.
    pub async fn start_local() -> std::io::Result<Self> {
        Self::start(TcpListener::bind("127.0.0.1:0").await?, TcpListener::bind("127.0.0.1:0").await?)
    }

    /// The full OTLP/HTTP traces URL.
    pub fn http_traces_url(&self) -> String {
        format!("http://{}/v1/traces", self.http_addr)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.store.spans.lock().map(|spans| spans.clone()).unwrap_or_default()
    }

    /// Waits until `done` holds for the received spans, or `timeout` passes; returns the spans.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&[ReceivedSpan]) -> bool) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.store.arrived.notified();
            let spans = self.spans();
            if done(&spans) || tokio::time::Instant::now() >= deadline {
                return spans;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

impl Store {
    fn add(&self, request: ExportTraceServiceRequest) {
        let mut received = Vec::new();
        for resource_spans in request.resource_spans {
            let resource = resource_spans.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
            let text = |key: &str| resource.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(ReceivedSpan {
                        trace_id: hex::encode(&span.trace_id),
                        span_id: hex::encode(&span.span_id),
                        parent_span_id: hex::encode(&span.parent_span_id),
                        kind: kind_name(span.kind).to_owned(),
                        name: span.name,
                        service_name: text("service.name"),
                        service_version: text("service.version"),
                        attributes: attributes(&span.attributes),
                    });
                }
            }
        }
        if let Ok(mut spans) = self.spans.lock() {
            spans.extend(received);
        }
        self.arrived.notify_waiters();
    }
}

fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

fn attributes(pairs: &[KeyValue]) -> BTreeMap<String, serde_json::Value> {
    pairs.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(serde_json::Value::Null, json_value))).collect()
}

fn json_value(value: &AnyValue) -> serde_json::Value {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone().into(),
        Some(any_value::Value::BoolValue(b)) => (*b).into(),
        Some(any_value::Value::IntValue(i)) => (*i).into(),
        Some(any_value::Value::DoubleValue(d)) => (*d).into(),
        Some(any_value::Value::ArrayValue(array)) => array.values.iter().map(json_value).collect(),
        Some(other) => format!("{other:?}").into(),
        None => serde_json::Value::Null,
    }
}

struct Grpc(Arc<Store>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

async fn http_export(State(store): State<Arc<Store>>, body: Bytes) -> Result<Vec<u8>, (StatusCode, String)> {
    let request =
        ExportTraceServiceRequest::decode(body).map_err(|e| (StatusCode::BAD_REQUEST, format!("not an OTLP protobuf export: {e}")))?;
    store.add(request);
    Ok(ExportTraceServiceResponse { partial_success: None }.encode_to_vec())
}

async fn list_spans(State(store): State<Arc<Store>>) -> axum::Json<Vec<ReceivedSpan>> {
    axum::Json(store.spans.lock().map(|spans| spans.clone()).unwrap_or_default())
}

async fn clear_spans(State(store): State<Arc<Store>>) -> StatusCode {
    if let Ok(mut spans) = store.spans.lock() {
        spans.clear();
    }
    StatusCode::NO_CONTENT
}
