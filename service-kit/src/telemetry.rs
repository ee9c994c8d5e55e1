//! Telemetry set-up: `tracing` logs to a sink of the caller's choice, and, when an OTLP endpoint is
//! configured, OpenTelemetry spans exported over OTLP (gRPC or HTTP/protobuf).
//!
//! The set-up is a value ([`Telemetry`]), not a hidden global: `main` installs it as the global
//! default, while tests run several services in one process, each under its own dispatcher, so that
//! every service exports with its own `service.name` and `service.version`.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Dispatch;
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};

/// Which wire format the OTLP exporter speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (port 4317 by convention).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318 by convention).
    HttpProtobuf,
}

/// Where spans go. `None` in [`TelemetrySettings::exporter`] means logs only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpExporter {
    /// The traces endpoint exactly as the transport needs it: for HTTP the full `/v1/traces` URL.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
}

/// Where log lines are written.
#[derive(Debug, Clone)]
pub enum LogSink {
    Stdout,
    /// Captured by the test harness (shown only for failing tests).
    TestWriter,
    /// No log output (benchmarks).
    Discard,
    /// Kept in memory, for tests that read what was logged (that no secret was, for one).
    Buffer(LogBuffer),
}

/// Log lines kept in memory ([`LogSink::Buffer`]).
#[derive(Debug, Clone, Default)]
pub struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    pub service_name: String,
    pub service_version: String,
    pub exporter: Option<OtlpExporter>,
    /// An `EnvFilter` directive string, e.g. `info` or `gateway=debug,info`.
    pub log_filter: String,
    pub log_sink: LogSink,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{variable}: unsupported OTLP protocol {value:?} (use grpc or http/protobuf)")]
    Protocol { variable: &'static str, value: String },
    #[error("RUST_LOG: invalid log filter: {0}")]
    Filter(String),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

impl TelemetrySettings {
    /// Reads the standard OpenTelemetry variables from an environment lookup function
    /// (`std::env::var` in `main`; a map in tests). `default_name` applies when
    /// `OTEL_SERVICE_NAME` is unset. No endpoint, or `OTEL_SDK_DISABLED=true`: logs only.
    pub fn from_env(default_name: &str, version: &str, var: impl Fn(&str) -> Option<String>) -> Result<Self, TelemetryError> {
        let non_empty = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let disabled = non_empty("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let protocol_var = if non_empty("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").is_some() {
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
        } else {
            "OTEL_EXPORTER_OTLP_PROTOCOL"
        };
        let protocol = match non_empty(protocol_var).as_deref().map(str::trim) {
            None | Some("grpc") => OtlpProtocol::Grpc,
            Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some(other) => {
                return Err(TelemetryError::Protocol { variable: protocol_var, value: other.to_owned() });
            }
        };
        // The signal-specific variable is used as written; the generic one is a base URL to which
        // HTTP appends the signal path (OpenTelemetry specification, "Endpoint URLs for OTLP/HTTP").
        let endpoint = match (non_empty("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), non_empty("OTEL_EXPORTER_OTLP_ENDPOINT")) {
            (Some(traces), _) => Some(traces),
            (None, Some(base)) => Some(match protocol {
                OtlpProtocol::Grpc => base,
                OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
            }),
            (None, None) => None,
        };
        Ok(Self {
            service_name: non_empty("OTEL_SERVICE_NAME").unwrap_or_else(|| default_name.to_owned()),
            service_version: version.to_owned(),
            exporter: endpoint.filter(|_| !disabled).map(|endpoint| OtlpExporter { endpoint, protocol }),
            log_filter: non_empty("RUST_LOG").unwrap_or_else(|| "info".to_owned()),
            log_sink: LogSink::Stdout,
        })
    }
}

/// An initialised telemetry pipeline. Dropping it without [`Telemetry::shutdown`] may lose spans.
pub struct Telemetry {
    dispatch: Dispatch,
    provider: Option<SdkTracerProvider>,
}

/// Crates whose own events must never become spans: the exporter's traffic would feed itself.
fn exporter_noise() -> Targets {
    Targets::new()
        .with_default(tracing::Level::TRACE)
        .with_target("hyper", tracing::level_filters::LevelFilter::OFF)
        .with_target("hyper_util", tracing::level_filters::LevelFilter::OFF)
        .with_target("h2", tracing::level_filters::LevelFilter::OFF)
        .with_target("tonic", tracing::level_filters::LevelFilter::OFF)
        .with_target("tower", tracing::level_filters::LevelFilter::OFF)
        .with_target("reqwest", tracing::level_filters::LevelFilter::OFF)
        .with_target("opentelemetry", tracing::level_filters::LevelFilter::OFF)
        .with_target("opentelemetry_sdk", tracing::level_filters::LevelFilter::OFF)
        .with_target("opentelemetry_otlp", tracing::level_filters::LevelFilter::OFF)
}

impl Telemetry {
    /// Builds the pipeline. With a gRPC exporter this must run inside a Tokio runtime.
    pub fn new(settings: &TelemetrySettings) -> Result<Self, TelemetryError> {
        let filter = EnvFilter::try_new(&settings.log_filter).map_err(|e| TelemetryError::Filter(e.to_string()))?;
        crate::install_crypto_provider();
        let provider = settings.exporter.as_ref().map(|exporter| build_provider(settings, exporter)).transpose()?;
        // Without an exporter no layer wants spans, so span callsites are disabled outright
        // (`Span::is_disabled`) and cost nothing; an absent `Option` layer would still make the
        // registry track every span.
        let dispatch = match &provider {
            Some(provider) => {
                let otel = tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer(settings.service_name.clone()))
                    .with_threads(false)
                    .with_tracked_inactivity(false)
                    .with_filter(exporter_noise());
                let registry = Registry::default().with(otel);
                let logs = log_layer(settings.log_sink.clone(), filter);
                Dispatch::new(registry.with(logs))
            }
            None => Dispatch::new(Registry::default().with(log_layer(settings.log_sink.clone(), filter))),
        };
        Ok(Self { dispatch, provider })
    }

    /// The dispatcher to run a service under (`WithSubscriber::with_subscriber` in tests).
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// Whether spans are exported (trace context is then re-injected from the service's own spans).
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Makes this pipeline the process-wide default (once, in `main`).
    pub fn install_global(&self) -> Result<(), tracing::dispatcher::SetGlobalDefaultError> {
        tracing::dispatcher::set_global_default(self.dispatch.clone())
    }

    /// Exports every finished span now. Blocks like [`Telemetry::shutdown`].
    pub fn flush(&self) {
        if let Some(Err(error)) = self.provider.as_ref().map(SdkTracerProvider::force_flush) {
            tracing::warn!(%error, "flushing spans failed");
        }
    }

    /// Flushes and stops the exporter. Blocks: call it off the async runtime's worker threads
    /// (after the runtime is done, or in `spawn_blocking`).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(error) = provider.force_flush() {
                eprintln!("telemetry: flushing spans failed: {error}");
            }
            let _ = provider.shutdown();
        }
    }
}

/// Log lines: events only, as `filter` (`RUST_LOG`) selects, to `sink`. A formatting layer that
/// sees spans formats every span's fields when the span opens (three spans per proxied request),
/// whether or not a line is ever logged inside it: 12% of the gateway's CPU per request in the
/// profile (BENCHMARKS.md). Spans are for the exporter; events that need a request's context
/// carry it as fields.
fn log_layer<S>(sink: LogSink, filter: EnvFilter) -> impl Layer<S> + Send + Sync
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let fmt = tracing_subscriber::fmt::layer().with_target(false);
    let fmt = match sink {
        LogSink::Stdout => fmt.boxed(),
        LogSink::TestWriter => fmt.with_test_writer().boxed(),
        LogSink::Discard => fmt.with_writer(std::io::sink).boxed(),
        LogSink::Buffer(buffer) => fmt.with_ansi(false).with_writer(move || buffer.clone()).boxed(),
    };
    fmt.with_filter(filter.and(filter_fn(|metadata| metadata.is_event())))
}

fn build_provider(settings: &TelemetrySettings, exporter: &OtlpExporter) -> Result<SdkTracerProvider, TelemetryError> {
    let built = match exporter.protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(exporter.endpoint.clone())
            .with_timeout(Duration::from_secs(5))
            .build(),
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(exporter.endpoint.clone())
            .with_timeout(Duration::from_secs(5))
            .build(),
    }
    .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", settings.service_version.clone()))
        .build();
    Ok(SdkTracerProvider::builder().with_resource(resource).with_batch_exporter(built).build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<TelemetrySettings, TelemetryError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TelemetrySettings::from_env("target", "v1", |k| vars.get(k).cloned())
    }

    /// Without an exporter no layer wants spans: they must be disabled (free), while log events
    /// at the filter's level stay enabled. Before, the log layer took every span and formatted
    /// its fields (12% of a proxied request's CPU).
    #[test]
    fn without_an_exporter_spans_cost_nothing_and_events_still_log() {
        let mut settings = settings(&[]).unwrap();
        settings.log_sink = LogSink::Discard;
        let telemetry = Telemetry::new(&settings).unwrap();
        tracing::dispatcher::with_default(telemetry.dispatch(), || {
            let span = tracing::info_span!("request", url.path = "/index");
            assert!(span.is_disabled(), "a span nobody exports is still created");
            assert!(tracing::event_enabled!(tracing::Level::INFO), "info events must still be logged");
            assert!(!tracing::event_enabled!(tracing::Level::DEBUG), "the filter (info) still applies to events");
        });
    }

    #[test]
    fn no_endpoint_means_logs_only() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.exporter, None);
        assert_eq!(s.service_name, "target");
    }

    #[test]
    fn http_appends_the_signal_path_to_the_base_url() {
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).unwrap();
        let e = s.exporter.unwrap();
        assert_eq!(e.endpoint, "http://c:4318/v1/traces");
        assert_eq!(e.protocol, OtlpProtocol::HttpProtobuf);
    }

    #[test]
    fn grpc_is_the_default_protocol_and_keeps_the_url() {
        let e = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]).unwrap().exporter.unwrap();
        assert_eq!((e.endpoint.as_str(), e.protocol), ("http://c:4317", OtlpProtocol::Grpc));
    }

    #[test]
    fn sdk_disabled_and_service_name_are_honoured() {
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_SDK_DISABLED", "true"), ("OTEL_SERVICE_NAME", "t2")])
            .unwrap();
        assert_eq!((s.exporter, s.service_name.as_str()), (None, "t2"));
    }

    #[test]
    fn an_unknown_protocol_names_the_variable() {
        let err = settings(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).unwrap_err();
        assert!(err.to_string().starts_with("OTEL_EXPORTER_OTLP_PROTOCOL:"), "{err}");
    }
}
