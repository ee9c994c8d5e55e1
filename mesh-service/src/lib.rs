//! The tutorial's service, ported from its Go program: what `proxy-svc` and `target-svc` run
//! (they differ only in name and version).
//!
//! - [`service`]: the router (`/index`, `/proxy`, `/healthz`, `/readyz`, `/metrics`), its
//!   settings, and a [`Service`] that serves a listener it did not bind;
//! - [`relay`]: `/proxy?url=`, a GET relayed with the trace headers, safe against SSRF;
//! - [`service_main`]: the whole `main` of both binaries.
//!
//! The plumbing it runs on (telemetry, propagation, settings, serving) is `service-kit`'s.

pub mod relay;
pub mod service;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use service_kit::settings::{Layered, Sources};

pub use service::{Service, ServiceIdentity, ServiceSettings};

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
        Err(error) => {
            eprintln!("{name}: {error}");
            return ExitCode::FAILURE;
        }
    };
    if cli.health_check {
        return service_kit::cli::health_check(&settings.listen, "/healthz");
    }
    let identity = ServiceIdentity { name: name.to_owned(), version: version.to_owned() };
    service_kit::cli::run(name, version, service_kit::cli::Workers::Auto, |version| async move {
        let metrics = service_kit::metrics::install_prometheus()?;
        let service = Service::build(&settings, identity, Some(metrics)).await?;
        let addr = service.local_addr()?;
        tracing::info!(%addr, version = %version, "listening");
        service.run_until(service_kit::serve::shutdown_signal()).await;
        Ok(())
    })
}
