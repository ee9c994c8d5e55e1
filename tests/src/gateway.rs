//! The gateway under test, running in-process on 127.0.0.1 ports from configuration files written
//! to a temporary directory (so reloads can be exercised by rewriting them), and read through the
//! gateway's own admin API types:
//!
//! ```ignore
//! let gateway = TestGateway::builder().file("g.yaml", &yaml).setting("timeouts.route", "1s").otlp(&receiver).start().await;
//! let report = gateway.wait_compared("app/v2", 1).await;
//! metric("gateway_mirror_comparisons_total").label("result", "match").value(1).assert_in(&gateway.metrics().await);
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use gateway::admin::api::{ErrorAnswer, MirrorReport, MirrorsDocument, PromotionReport, VerdictAnswer};
use gateway::settings::GatewaySettings;
use gateway::{Gateway, Reloader};
use metrics_exporter_prometheus::PrometheusHandle;
use service_kit::settings::{Layered, Sources};
use service_kit::telemetry::{LogBuffer, LogSink};
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::otlp::Receiver;
use crate::running::Running;
use crate::services::{telemetry, telemetry_to};

/// How long a typed wait (`wait_compared`, `wait_mirror`) waits before failing the test.
const WAIT: Duration = Duration::from_secs(30);

/// Metrics go to one process-wide recorder; every gateway and service of the test binary renders it.
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| service_kit::metrics::install_prometheus().expect("metrics recorder")).clone()
}

/// A directory of its own under the system temporary directory.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("gateway-test-{}-{tag}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// What the gateway under test starts with: [`TestGateway::builder`].
#[derive(Default)]
pub struct Builder<'a> {
    files: Vec<(String, String)>,
    settings: Vec<(&'static str, String)>,
    receiver: Option<&'a Receiver>,
    capture_logs: bool,
}

impl<'a> Builder<'a> {
    /// A routing file `name` with `yaml`; repeat for several (loaded in order).
    pub fn file(mut self, name: &str, yaml: &str) -> Self {
        self.files.push((name.to_owned(), yaml.to_owned()));
        self
    }

    /// A process setting over the defaults: `("timeouts.route", "1s")`.
    pub fn setting(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.settings.push((key, value.into()));
        self
    }

    /// Several settings at once.
    pub fn settings(self, pairs: &[(&'static str, &str)]) -> Self {
        pairs.iter().fold(self, |builder, (key, value)| builder.setting(key, *value))
    }

    /// Spans exported to `receiver`.
    pub fn otlp(mut self, receiver: &'a Receiver) -> Self {
        self.receiver = Some(receiver);
        self
    }

    /// Every log line at `debug` and above kept, for [`TestGateway::logs`].
    pub fn capture_logs(mut self) -> Self {
        self.capture_logs = true;
        self
    }

    /// Starts the gateway; the test fails if it does not start.
    pub async fn start(self) -> TestGateway {
        self.try_start().await.unwrap_or_else(|error| panic!("the gateway starts: {error}"))
    }

    /// Starts the gateway, or says why it refused to (as its start-up would).
    pub async fn try_start(self) -> Result<TestGateway, String> {
        let dir = scratch_dir("config");
        let paths: Vec<PathBuf> = self
            .files
            .iter()
            .map(|(name, text)| {
                let path = dir.join(name);
                std::fs::write(&path, text).expect("write config");
                path
            })
            .collect();
        let mut overrides = vec![("reload.poll_interval", "0s".to_owned())];
        overrides.extend(self.settings);
        let settings = GatewaySettings::load(Sources { overrides, ..Sources::default() }).map_err(|e| e.to_string())?;
        let settings = GatewaySettings { config: paths.clone(), ..settings };
        let loaded = gateway_config::load_files_with(&paths, &settings.load_options()).map_err(|e| e.to_string())?;
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let admin = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let gateway = Gateway::with_listeners(listener, admin, settings, loaded, Some(recorder())).map_err(|e| e.to_string())?;
        let (addr, admin) = (gateway.local_addr().map_err(|e| e.to_string())?, gateway.admin_addr().map_err(|e| e.to_string())?);
        let reloader = gateway.reloader();
        let logs = self.capture_logs.then(LogBuffer::default);
        let telemetry = match &logs {
            Some(buffer) => telemetry_to("gateway", "test", self.receiver, "debug", LogSink::Buffer(buffer.clone())),
            None => telemetry("gateway", "test", self.receiver),
        };
        let running = Running::spawn(telemetry, |stopped| gateway.run_until(stopped));
        Ok(TestGateway { addr, admin, reloader, files: paths, logs, running })
    }
}

/// A gateway running in this process.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub reloader: Reloader,
    /// The routing files, in the order given: rewrite one and reload.
    pub files: Vec<PathBuf>,
    logs: Option<LogBuffer>,
    running: Running,
}

impl TestGateway {
    pub fn builder<'a>() -> Builder<'a> {
        Builder::default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// The logs kept since start (with [`Builder::capture_logs`]).
    pub fn logs(&self) -> String {
        self.logs.as_ref().expect("started with capture_logs()").text()
    }

    /// `/mirrors`.
    pub async fn mirrors(&self) -> MirrorsDocument {
        let (status, body) = crate::get(&self.admin_url("/mirrors")).await;
        assert_eq!(status, 200, "/mirrors: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/mirrors is not a mirrors document ({e}): {body}"))
    }

    /// The report of the mirror `name` names (`mirror` or `route/mirror`); the test fails when it
    /// names none or several.
    pub async fn mirror(&self, name: &str) -> MirrorReport {
        let document = self.mirrors().await;
        match document.mirror(name) {
            Ok(report) => report.clone(),
            Err(unresolved) => panic!("no one mirror {name:?}: {unresolved:?}"),
        }
    }

    /// Waits until the report of mirror `name` satisfies `done` (`what` says what that is); returns it.
    pub async fn wait_mirror(&self, what: &str, name: &str, done: impl Fn(&MirrorReport) -> bool) -> MirrorReport {
        let last = std::cell::RefCell::new(None);
        crate::eventually(&format!("{name}: {what}"), WAIT, || async {
            let report = self.mirror(name).await;
            let ok = done(&report);
            *last.borrow_mut() = Some(report);
            ok
        })
        .await;
        last.into_inner().expect("eventually checked at least once")
    }

    /// Waits until mirror `name` has at least `n` comparison results (of any kind); returns its
    /// report. (Comparisons run on an idle-priority thread, late on a busy machine.)
    pub async fn wait_compared(&self, name: &str, n: u64) -> MirrorReport {
        self.wait_mirror(&format!("{n} comparisons"), name, |r| r.comparison.total() >= n).await
    }

    /// Sends `request` and waits until its comparison is recorded at mirror `name`, so the next
    /// request always finds a comparator slot (none is skipped as "comparator busy"). The
    /// answer is read to the end first, as a client does: the primary's answer is compared once
    /// fully delivered.
    pub async fn send_compared<F, R>(&self, name: &str, request: F) -> reqwest::StatusCode
    where
        F: FnOnce() -> R,
        R: Future<Output = reqwest::Result<reqwest::Response>>,
    {
        let before = self.mirror(name).await.comparison.total();
        let response = request().await.expect("the gateway answers");
        let status = response.status();
        response.bytes().await.expect("body");
        self.wait_compared(name, before + 1).await;
        status
    }

    /// The promotion of `route` (the test fails without one).
    pub async fn promotion(&self, route: &str) -> PromotionReport {
        self.mirrors().await.promotion(route).cloned().unwrap_or_else(|| panic!("route {route:?} has no promotion"))
    }

    /// `/verdict/<name>` (with a query if `name` has one): its status, and its answer or, for a
    /// name that names no mirror or several, the error.
    pub async fn verdict(&self, name: &str) -> (u16, Result<VerdictAnswer, ErrorAnswer>) {
        let (status, body) = crate::get(&self.admin_url(&format!("/verdict/{name}"))).await;
        let answer = match status.as_u16() {
            404 | 409 => Err(serde_json::from_str(&body).unwrap_or_else(|e| panic!("/verdict/{name}: not an error answer ({e}): {body}"))),
            _ => Ok(serde_json::from_str(&body).unwrap_or_else(|e| panic!("/verdict/{name}: not a verdict answer ({e}): {body}"))),
        };
        (status.as_u16(), answer)
    }

    /// `/config` (its routes and destinations are the model's, as JSON).
    pub async fn config(&self) -> serde_json::Value {
        crate::get_json(&self.admin_url("/config")).await.1
    }

    /// `/config`'s `objects`: every Kubernetes object with its status.
    pub async fn objects(&self) -> Vec<gateway_config::ObjectStatus> {
        let config = self.config().await;
        serde_json::from_value(config["objects"].clone()).unwrap_or_else(|e| panic!("/config objects: {e}: {config}"))
    }

    /// The status of `kind namespace/name` in `/config`.
    pub async fn object(&self, kind: &str, namespace: &str, name: &str) -> gateway_config::ObjectStatus {
        let all = self.objects().await;
        all.iter()
            .find(|o| o.kind == kind && o.namespace == namespace && o.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} in /config: {all:?}"))
    }

    /// `/metrics`.
    pub async fn metrics(&self) -> Metrics {
        Metrics::scrape(&self.admin_url("/metrics")).await
    }

    pub async fn flush(&self) {
        self.running.flush().await;
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}
