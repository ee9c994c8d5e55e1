//! What every binary's `main` shares: the runtime, telemetry from the `OTEL_*` variables,
//! `--health-check`, and the whole `main` of the two tutorial services.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::service::{Service, ServiceIdentity, ServiceSettings};
use crate::settings::{Layered, Sources};
use crate::telemetry::{Telemetry, TelemetrySettings};

/// Flags of `proxy-svc` and `target-svc`.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct ServiceCli {
    /// Address to listen on [default: 0.0.0.0:8090; env SVC_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Settings file (YAML) layered over the embedded defaults
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Ask the running service on this host whether it is healthy (for container health checks)
    #[arg(long)]
    pub health_check: bool,
}

/// Runs a tutorial service (`proxy-svc`, `target-svc`) until SIGTERM or Ctrl-C.
pub fn service_main(name: &str, version: &str) -> ExitCode {
    let cli = ServiceCli::parse();
    let sources = Sources::process(cli.config.as_deref(), cli.listen.into_iter().map(|listen| ("listen", listen)).collect());
    let settings = match ServiceSettings::load(sources) {
        Ok(settings) => settings,
        Err(error) => return fail(name, &error),
    };
    if cli.health_check {
        return health_check(&settings.listen, "/healthz");
    }
    let identity = ServiceIdentity { name: name.to_owned(), version: version.to_owned() };
    run(name, version, |version| async move {
        let metrics = crate::metrics::install_prometheus()?;
        let service = Service::build(&settings, identity, Some(metrics)).await?;
        let addr = service.local_addr()?;
        tracing::info!(%addr, version = %version, "listening");
        service.run_until(crate::serve::shutdown_signal()).await;
        Ok(())
    })
}

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
    crate::install_crypto_provider();
    let checked = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string()).and_then(|runtime| {
        runtime.block_on(async {
            let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(3)).build().map_err(|e| e.to_string())?;
            let status = client.get(&url).send().await.map_err(|e| e.to_string())?.status();
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
