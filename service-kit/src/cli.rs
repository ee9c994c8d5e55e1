//! What every binary's `main` shares: the runtime, telemetry from the `OTEL_*` variables,
//! and `--health-check`.

use std::process::ExitCode;
use std::time::Duration;

use crate::telemetry::{Telemetry, TelemetrySettings};

/// Builds the runtime and telemetry, runs `serve`, then flushes spans. `serve` gets the version
/// string to log. Errors are printed as one line and give exit code 1.
pub fn run<F, Fut>(name: &str, version: &str, serve: F) -> ExitCode
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(name, &error),
    };
    let telemetry_settings = match TelemetrySettings::from_env(name, version, |key| std::env::var(key).ok()) {
        Ok(settings) => settings,
        Err(error) => return fail(name, &error),
    };
    runtime.block_on(async move {
        // The gRPC exporter must be built inside the runtime.
        let telemetry = match Telemetry::new(&telemetry_settings) {
            Ok(telemetry) => telemetry,
            Err(error) => return fail(name, &error),
        };
        if let Err(error) = telemetry.install_global() {
            return fail(name, &error);
        }
        if let Some(exporter) = &telemetry_settings.exporter {
            tracing::info!(endpoint = %exporter.endpoint, protocol = ?exporter.protocol, "exporting spans over OTLP");
        }
        let outcome = serve(version.to_owned()).await;
        // Flushing blocks: keep it off the runtime's worker threads, which the exporter needs.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(name, &format!("{error:#}")),
        }
    })
}

fn fail(name: &str, error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{name}: {error}");
    ExitCode::FAILURE
}

/// `GET http://127.0.0.1:<port of listen><path>`: exit 0 on 200, 1 otherwise.
pub fn health_check(listen: &str, path: &str) -> ExitCode {
    let port = listen.rsplit(':').next().unwrap_or("80");
    let url = format!("http://127.0.0.1:{port}{path}");
    let checked = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string()).and_then(|runtime| {
        runtime.block_on(async {
            let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
            let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| e.to_string())?;
            let status = tokio::time::timeout(Duration::from_secs(3), client.get(uri))
                .await
                .map_err(|_| "no answer within 3s".to_owned())?
                .map_err(|e| e.to_string())?
                .status();
            if status.is_success() { Ok(()) } else { Err(status.to_string()) }
        })
    });
    match checked {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("{url}: {problem}");
            ExitCode::FAILURE
        }
    }
}
