//! The tutorial's services run in-process, each under its own telemetry (own `service.name` and
//! `service.version`), as they would in separate containers.

use std::net::SocketAddr;

use mesh_service::{Service, ServiceIdentity, ServiceSettings};
use service_kit::settings::{Layered, Sources};
use service_kit::telemetry::{LogSink, OtlpExporter, OtlpProtocol, Telemetry, TelemetrySettings};
use tokio::net::TcpListener;

use crate::otlp::Receiver;
use crate::running::Running;

/// Telemetry for one in-process component, exporting to `receiver` over OTLP/HTTP when given.
pub fn telemetry(name: &str, version: &str, receiver: Option<&Receiver>) -> Telemetry {
    telemetry_to(name, version, receiver, "info", LogSink::TestWriter)
}

/// Like [`telemetry`], logging at `filter` to `sink`.
pub fn telemetry_to(name: &str, version: &str, receiver: Option<&Receiver>, filter: &str, sink: LogSink) -> Telemetry {
    let settings = TelemetrySettings {
        service_name: name.to_owned(),
        service_version: version.to_owned(),
        exporter: receiver.map(|r| OtlpExporter { endpoint: r.http_traces_url(), protocol: OtlpProtocol::HttpProtobuf }),
        log_filter: filter.to_owned(),
        log_sink: sink,
    };
    Telemetry::new(&settings).expect("telemetry")
}

/// The embedded default service settings with `(key, value)` overrides.
pub fn service_settings(overrides: &[(&'static str, &str)]) -> ServiceSettings {
    service_settings_with_env(overrides, &[])
}

/// Like [`service_settings`], with `SVC_*` variables as a user would set them.
pub fn service_settings_with_env(overrides: &[(&'static str, &str)], env: &[(&str, &str)]) -> ServiceSettings {
    ServiceSettings::load(Sources {
        file: None,
        env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        overrides: overrides.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
    })
    .expect("valid settings")
}

/// A service running in this process on a 127.0.0.1 port.
pub struct RunningService {
    pub addr: SocketAddr,
    running: Running,
}

impl RunningService {
    pub async fn start(name: &str, version: &str, settings: &ServiceSettings, receiver: Option<&Receiver>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let identity = ServiceIdentity { name: name.to_owned(), version: version.to_owned() };
        let service = Service::with_metrics(listener, settings, identity, Some(crate::gateway::recorder())).expect("service");
        let addr = service.local_addr().expect("address");
        let running = Running::spawn(telemetry(name, version, receiver), |stopped| service.run_until(stopped));
        Self { addr, running }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Exports every finished span now.
    pub async fn flush(&self) {
        self.running.flush().await;
    }

    /// Graceful stop, then span flush.
    pub async fn stop(self) {
        self.running.stop().await;
    }
}
