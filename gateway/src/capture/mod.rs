//! Recording a mirror's compared exchanges to a HAR 1.2 file ([`har`]): the request, the
//! primary's response, the shadow's, timings, route, mirror, trace id and what the comparison
//! found. A share of all compared exchanges is recorded (`capture.sample`), and every mismatch.
//!
//! Off the request path with bounded memory: a copy's task offers its finished exchange to the
//! file's writer thread with `try_send` on a bounded queue, under a byte budget; a full queue
//! drops the entry and counts it (`gateway_capture_entries_total{outcome="dropped"}`), never
//! blocking anything. Redaction ([`redact`]), the mapping to HAR and the writes (rotation by
//! size and count, [`writer`]) all happen on that thread.

pub mod har;
mod redact;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use gateway_config::CaptureSpec;
use http::HeaderMap;
use metrics::Counter;
use response_diff::{Captured, Classified};

pub use self::writer::rotated_path;

/// Entries waiting for the writer, per file, at most.
const QUEUE_ENTRIES: usize = 1024;
/// Bytes of bodies waiting for the writer, per file, at most.
const QUEUE_BYTES: usize = 32 * 1024 * 1024;

/// The request as the primary got it (before the gateway's copy marks).
pub struct RequestHead {
    pub method: http::Method,
    /// `http://host/path?query`.
    pub url: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body was longer than `capture.max_body` and was cut.
    pub body_truncated: bool,
}

/// One compared exchange, as the copy's task hands it over.
pub struct Exchange {
    pub started: SystemTime,
    pub route: String,
    pub mirror: String,
    pub request: RequestHead,
    pub primary: Captured,
    pub primary_ms: f64,
    pub shadow: Captured,
    pub shadow_ms: f64,
    pub trace_id: String,
    pub request_id: String,
    pub result: Classified,
}

/// A mirror's capture: which exchanges it records and the file they go to.
pub struct CaptureSink {
    pub spec: Arc<CaptureSpec>,
    file: Arc<CaptureFile>,
    written: Counter,
    dropped: Counter,
    failed: Counter,
}

impl CaptureSink {
    /// Whether this exchange is recorded: every mismatch, and the configured share of the
    /// rest, decided on the request id (as mirroring is) so replicas record the same ones.
    pub fn wants(&self, result: &Classified, request_id: &str) -> bool {
        matches!(result, Classified::Mismatch(_))
            || crate::mirror::sampled(self.spec.sample_percent, (!request_id.is_empty()).then_some(request_id.as_bytes()))
    }

    /// Hands `exchange` to the writer, or drops and counts it when the queue is full.
    pub fn offer(&self, exchange: Exchange) {
        let size = exchange.request.body.len() + exchange.primary.body.len() + exchange.shadow.body.len();
        let queued = &self.file.queued_bytes;
        if queued.fetch_add(size, Ordering::Relaxed) + size > QUEUE_BYTES {
            queued.fetch_sub(size, Ordering::Relaxed);
            self.dropped.increment(1);
            return;
        }
        let job = Job { exchange, spec: self.spec.clone(), written: self.written.clone(), failed: self.failed.clone(), size };
        if self.file.queue.try_send(job).is_err() {
            queued.fetch_sub(size, Ordering::Relaxed);
            self.dropped.increment(1);
        }
    }
}

/// What the writer thread gets: the exchange and how to record it.
struct Job {
    exchange: Exchange,
    spec: Arc<CaptureSpec>,
    written: Counter,
    failed: Counter,
    size: usize,
}

/// One capture file and its writer thread (ended when the last sink using it is dropped).
struct CaptureFile {
    queue: std::sync::mpsc::SyncSender<Job>,
    queued_bytes: Arc<AtomicUsize>,
    /// The rotation settings the writer was started with.
    rotation: (u64, usize),
}

/// Every capture file in use, by path, kept across reloads: a reload keeps writing the same file
/// (new rotation settings start a new writer, which rotates the old file away first).
#[derive(Default)]
pub struct Captures {
    by_file: Mutex<HashMap<PathBuf, std::sync::Weak<CaptureFile>>>,
}

impl Captures {
    /// The capture of mirror `route/mirror`, writing to its `spec.file`.
    pub fn sink(&self, route: &str, mirror: &str, spec: &CaptureSpec) -> Result<Arc<CaptureSink>, String> {
        let mut files = self.by_file.lock().unwrap_or_else(|p| p.into_inner());
        let rotation = (spec.max_file_bytes, spec.keep_files);
        let file = match files.get(&spec.file).and_then(std::sync::Weak::upgrade) {
            Some(file) if file.rotation == rotation => file,
            _ => {
                let (queue, jobs) = std::sync::mpsc::sync_channel(QUEUE_ENTRIES);
                let queued_bytes = Arc::new(AtomicUsize::new(0));
                let writer = writer::HarWriter::open(spec.file.clone(), spec.max_file_bytes, spec.keep_files)
                    .map_err(|e| format!("capture.file {}: {e}", spec.file.display()))?;
                let budget = queued_bytes.clone();
                std::thread::Builder::new()
                    .name("capture".to_owned())
                    .spawn(move || writer::run(writer, jobs, &budget))
                    .map_err(|e| format!("capture.file {}: cannot start the writer thread: {e}", spec.file.display()))?;
                let file = Arc::new(CaptureFile { queue, queued_bytes, rotation });
                files.insert(spec.file.clone(), Arc::downgrade(&file));
                file
            }
        };
        let counter = |outcome: &'static str| metrics::counter!("gateway_capture_entries_total", "route" => route.to_owned(), "mirror" => mirror.to_owned(), "outcome" => outcome);
        Ok(Arc::new(CaptureSink {
            spec: Arc::new(spec.clone()),
            file,
            written: counter("written"),
            dropped: counter("dropped"),
            failed: counter("failed"),
        }))
    }
}

/// The request body of a copy as it is sent, kept up to a cap for the capture.
#[derive(Default)]
pub struct BodyRecord {
    pub kept: bytes::BytesMut,
    pub truncated: bool,
}

impl BodyRecord {
    pub fn add(&mut self, data: &[u8], cap: usize) {
        let room = cap.saturating_sub(self.kept.len());
        self.truncated |= data.len() > room;
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(body: usize) -> Exchange {
        let request = RequestHead {
            method: http::Method::GET,
            url: "http://shop/cart".to_owned(),
            version: http::Version::HTTP_11,
            headers: HeaderMap::new(),
            body: Bytes::from(vec![b'x'; body]),
            body_truncated: false,
        };
        Exchange {
            started: SystemTime::now(),
            route: "shop".to_owned(),
            mirror: "v2".to_owned(),
            request,
            primary: Captured { status: 200, ..Captured::default() },
            primary_ms: 1.0,
            shadow: Captured { status: 200, ..Captured::default() },
            shadow_ms: 1.0,
            trace_id: String::new(),
            request_id: "r-1".to_owned(),
            result: Classified::Match,
        }
    }

    #[test]
    fn an_entry_over_the_queue_budget_is_dropped_and_counted_and_the_next_written() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let dir = std::env::temp_dir().join(format!("gateway-capture-budget-{}", std::process::id()));
        let spec = CaptureSpec {
            file: dir.join("c.har"),
            sample_percent: 100.0,
            max_body_bytes: 1024,
            max_file_bytes: 1 << 20,
            keep_files: 1,
            redact_headers: Vec::new(),
            redact_paths: Vec::new(),
        };
        let captures = Captures::default();
        let sink = metrics::with_local_recorder(&recorder, || captures.sink("shop", "v2", &spec).expect("a capture"));
        sink.offer(exchange(QUEUE_BYTES + 1));
        sink.offer(exchange(10));
        let series = |outcome: &str| format!(r#"gateway_capture_entries_total{{route="shop",mirror="v2",outcome="{outcome}"}} 1"#);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !handle.render().contains(&series("written")) {
            assert!(std::time::Instant::now() < deadline, "{}", handle.render());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(handle.render().contains(&series("dropped")), "{}", handle.render());
        let har: serde_json::Value = serde_json::from_slice(&std::fs::read(&spec.file).unwrap()).unwrap();
        assert_eq!(har["log"]["entries"].as_array().map(Vec::len), Some(1));
        assert!(sink.wants(&Classified::Mismatch(Vec::new()), "r-1"));
    }
}
