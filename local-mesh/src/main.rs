//! `cargo run -p local-mesh`: the tutorial's whole mesh on localhost, no Docker needed.
//!
//! Starts the gateway (8080, admin 9901), proxy-svc (8091), target v1 (8092) and target v2
//! (8093) in one process, each with its own telemetry (its own `service.name` and
//! `service.version`), routed exactly like the tutorial: `/proxy/` -> proxy, `/target/` ->
//! target v1, mirrored to target v2 (and compared). Prints what to curl. Traces go to
//! `OTEL_EXPORTER_OTLP_ENDPOINT` when it is set. Any address may use port 0. `--tls` serves
//! HTTPS with a self-signed certificate made at start.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use gateway::Gateway;
use gateway::settings::GatewaySettings;
use mesh_service::{Service, ServiceIdentity, ServiceSettings};
use service_kit::settings::{Layered, Sources};
use service_kit::telemetry::{Telemetry, TelemetrySettings};
use tokio::net::TcpListener;
use tracing::instrument::WithSubscriber;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin_listen: String,
    #[arg(long, default_value = "127.0.0.1:8091")]
    proxy_listen: String,
    #[arg(long, default_value = "127.0.0.1:8092")]
    target_v1_listen: String,
    #[arg(long, default_value = "127.0.0.1:8093")]
    target_v2_listen: String,
    /// Serve HTTPS on `--listen`, with a self-signed certificate for `localhost` made at start
    /// (written to a temporary directory; the printed curls trust it with `--cacert`).
    #[arg(long)]
    tls: bool,
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written where the gateway reads it.
fn self_signed(dir: &std::path::Path) -> anyhow::Result<service_kit::tls::CertificateFiles> {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files =
        service_kit::tls::CertificateFiles { certificate: dir.join("tls.crt"), private_key: dir.join("tls.key"), server_names: Vec::new() };
    std::fs::write(&files.certificate, generated.cert.pem()).with_context(|| format!("writing {}", files.certificate.display()))?;
    std::fs::write(&files.private_key, generated.signing_key.serialize_pem())
        .with_context(|| format!("writing {}", files.private_key.display()))?;
    Ok(files)
}

/// The tutorial's routing in the native format, with the services' actual addresses.
fn routing(proxy: &str, v1: &str, v2: &str) -> String {
    format!(
        r#"services:
  proxy:
    v1: [{proxy}]
  target:
    v1: [{v1}]
    v2: [{v2}]
routes:
  - name: proxy
    match: {{ prefix: /proxy/ }}
    rewrite: /
    to: proxy/v1
  - name: target
    match: {{ prefix: /target/ }}
    rewrite: /
    to: target/v1
    mirrors:
      - to: target/v2
        name: v2
        methods: all
        compare: true
"#
    )
}

fn telemetry(name: &str, version: &str) -> anyhow::Result<Telemetry> {
    let mut settings = TelemetrySettings::from_env(name, version, |key| std::env::var(key).ok())?;
    // One process, four services: each keeps its own name whatever OTEL_SERVICE_NAME says.
    settings.service_name = name.to_owned();
    Ok(Telemetry::new(&settings)?)
}

async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("local-mesh: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("local-mesh: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let service_settings = ServiceSettings::load(Sources::process(None, Vec::new()))?;
    let (proxy_listener, v1_listener, v2_listener) =
        (bind(&cli.proxy_listen).await?, bind(&cli.target_v1_listen).await?, bind(&cli.target_v2_listen).await?);
    let (proxy_addr, v1_addr, v2_addr) = (proxy_listener.local_addr()?, v1_listener.local_addr()?, v2_listener.local_addr()?);

    let stop = service_kit::stop::Stop::new();
    let stopped = || stop.stopped();
    let mut telemetries = Vec::new();
    let mut tasks = Vec::new();
    for (listener, name, version) in
        [(proxy_listener, "proxy", "v1"), (v1_listener, target_svc::NAME, "v1"), (v2_listener, target_svc::NAME, "v2")]
    {
        let telemetry = telemetry(name, version)?;
        let identity = ServiceIdentity { name: name.to_owned(), version: version.to_owned() };
        let service = Service::with_listener(listener, &service_settings, identity)?;
        tasks.push(tokio::spawn(service.run_until(stopped()).with_subscriber(telemetry.dispatch().clone())));
        telemetries.push(telemetry);
    }

    let mut gateway_settings = GatewaySettings::load(Sources::process(None, Vec::new()))?;
    let certificate = if cli.tls {
        let files = self_signed(&std::env::temp_dir().join(format!("local-mesh-tls-{}", std::process::id())))?;
        gateway_settings.tls.certificates = vec![files.clone()];
        Some(files.certificate)
    } else {
        None
    };
    let loaded =
        gateway_config::load_str("local-mesh routing", &routing(&proxy_addr.to_string(), &v1_addr.to_string(), &v2_addr.to_string()))?;
    let metrics = service_kit::metrics::install_prometheus()?;
    let gateway_telemetry = telemetry("gateway", env!("CARGO_PKG_VERSION"))?;
    let gateway =
        Gateway::with_listeners(bind(&cli.listen).await?, bind(&cli.admin_listen).await?, gateway_settings, loaded, Some(metrics))?;
    let (gateway_addr, admin_addr) = (gateway.local_addr()?, gateway.admin_addr()?);
    tasks.push(tokio::spawn(gateway.run_until(stopped()).with_subscriber(gateway_telemetry.dispatch().clone())));
    telemetries.push(gateway_telemetry);

    println!("local mesh is up: gateway {gateway_addr}, proxy {proxy_addr}, target v1 {v1_addr}, target v2 {v2_addr}");
    match &certificate {
        None => {
            println!("  curl http://{gateway_addr}/target/index");
            println!("  curl 'http://{gateway_addr}/proxy/proxy?url=http://{v1_addr}/index'");
        }
        Some(certificate) => {
            let (ca, port) = (certificate.display(), gateway_addr.port());
            println!("  curl --cacert {ca} https://localhost:{port}/target/index");
            println!("  curl --cacert {ca} 'https://localhost:{port}/proxy/proxy?url=http://{v1_addr}/index'");
        }
    }
    println!("  mirror report: http://{admin_addr}/   (JSON: /mirrors, metrics: /metrics)");
    println!("Ctrl-C stops it.");

    service_kit::serve::shutdown_signal().await;
    stop.stop();
    for task in tasks {
        let _ = task.await;
    }
    tokio::task::spawn_blocking(move || telemetries.into_iter().for_each(Telemetry::shutdown)).await?;
    Ok(())
}
