//! The gateway running in-process on 127.0.0.1 ports, from configuration files written to a
//! temporary directory (so reloads can be exercised by rewriting them).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use gateway::settings::GatewaySettings;
use gateway::{Gateway, Reloader};
use metrics_exporter_prometheus::PrometheusHandle;
use service_kit::settings::{Layered, Sources};
use tokio::net::TcpListener;

use crate::otlp::Receiver;
use crate::running::Running;
use crate::services::{telemetry, telemetry_to};
use service_kit::telemetry::{LogBuffer, LogSink, Telemetry};

/// Metrics go to one process-wide recorder; every gateway of the test binary renders it.
pub fn metrics() -> PrometheusHandle {
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

pub struct RunningGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub reloader: Reloader,
    pub files: Vec<PathBuf>,
    running: Running,
}

impl RunningGateway {
    /// Writes `files` (name, YAML) and starts a gateway on them.
    pub async fn start(files: &[(&str, &str)], receiver: Option<&Receiver>) -> Self {
        Self::try_start(files, receiver).await.expect("gateway starts")
    }

    pub async fn try_start(files: &[(&str, &str)], receiver: Option<&Receiver>) -> Result<Self, String> {
        Self::try_start_with(files, &[], receiver).await
    }

    /// Like [`Self::start`], with process settings changed (`("timeouts.route", "1s")`).
    pub async fn start_with_settings(files: &[(&str, &str)], settings: &[(&'static str, &str)]) -> Self {
        let settings: Vec<(&'static str, String)> = settings.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        Self::try_start_with(files, &settings, None).await.expect("gateway starts")
    }

    /// [`Self::try_start`] with settings overrides, e.g. `("scope.mesh", "true")`.
    pub async fn try_start_with(
        files: &[(&str, &str)],
        settings: &[(&'static str, String)],
        receiver: Option<&Receiver>,
    ) -> Result<Self, String> {
        Self::try_start_logging(files, settings, telemetry("gateway", "test", receiver)).await
    }

    /// Like [`RunningGateway::start`], every log line at `debug` and above kept in the returned
    /// buffer.
    pub async fn start_capturing_logs(files: &[(&str, &str)], receiver: Option<&Receiver>) -> (Self, LogBuffer) {
        let buffer = LogBuffer::default();
        let telemetry = telemetry_to("gateway", "test", receiver, "debug", LogSink::Buffer(buffer.clone()));
        (Self::try_start_logging(files, &[], telemetry).await.expect("gateway starts"), buffer)
    }

    async fn try_start_logging(files: &[(&str, &str)], settings: &[(&'static str, String)], telemetry: Telemetry) -> Result<Self, String> {
        let dir = scratch_dir("config");
        let paths: Vec<PathBuf> = files
            .iter()
            .map(|(name, text)| {
                let path = dir.join(name);
                std::fs::write(&path, text).expect("write config");
                path
            })
            .collect();
        let mut overrides = vec![("reload.poll_interval", "0s".to_owned())];
        overrides.extend(settings.iter().cloned());
        let settings = GatewaySettings::load(Sources { overrides, ..Sources::default() }).map_err(|e| e.to_string())?;
        let settings = GatewaySettings { config: paths.clone(), ..settings };
        let loaded = gateway_config::load_files_with(&paths, &settings.scope).map_err(|e| e.to_string())?;
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let admin = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let gateway = Gateway::with_listeners(listener, admin, settings, loaded, Some(metrics())).map_err(|e| e.to_string())?;
        let (addr, admin) = (gateway.local_addr().map_err(|e| e.to_string())?, gateway.admin_addr().map_err(|e| e.to_string())?);
        let reloader = gateway.reloader();
        let running = Running::spawn(telemetry, |stopped| gateway.run_until(stopped));
        Ok(Self { addr, admin, reloader, files: paths, running })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// The mirror report (`/mirrors`) as JSON.
    pub async fn mirrors(&self) -> serde_json::Value {
        let body = reqwest_get(&self.admin_url("/mirrors")).await;
        serde_json::from_str(&body).expect("mirrors JSON")
    }

    pub async fn flush(&self) {
        self.running.flush().await;
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// A plain GET, returning the body.
async fn reqwest_get(url: &str) -> String {
    crate::client().get(url).send().await.expect("GET").text().await.expect("body")
}
