//! `otlp-receiver [--grpc-listen ADDR] [--http-listen ADDR] [--health-check]`: keeps every span
//! sent to it over OTLP (gRPC or HTTP/protobuf) and serves them as JSON at `GET /spans`.
//! Used by CI in place of Jaeger; not part of the product.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(about)]
struct Cli {
    #[arg(long, default_value = "0.0.0.0:4317")]
    grpc_listen: String,
    #[arg(long, default_value = "0.0.0.0:4318")]
    http_listen: String,
    /// Ask the running receiver whether it is up (container health check).
    #[arg(long)]
    health_check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.health_check {
        return service_kit::cli::health_check(&cli.http_listen, "/healthz");
    }
    service_kit::cli::run("otlp-receiver", "ci", service_kit::cli::Workers::Auto, |_| async move {
        let grpc = tokio::net::TcpListener::bind(&cli.grpc_listen).await?;
        let http = tokio::net::TcpListener::bind(&cli.http_listen).await?;
        let receiver = e2e_tests::otlp::Receiver::start(grpc, http)?;
        tracing::info!(grpc = %receiver.grpc_addr, http = %receiver.http_addr, "receiving OTLP traces");
        service_kit::serve::shutdown_signal().await;
        Ok(())
    })
}
