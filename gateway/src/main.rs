//! `gateway --config FILE [--config FILE ...] [--listen ADDR] [--admin-listen ADDR]`
//!
//! Routes and mirrors HTTP traffic as the configuration files say (native YAML or Istio
//! documents), until SIGTERM or Ctrl-C. `gateway --check-config FILE` only validates.
//! SIGHUP, or a change of a file, reloads the configuration.
//! `gateway verdict --admin URL [--admin URL ...] [--mirror NAME] [--wait DURATION]` asks running
//! gateways whether their shadows are safe to ship (see `gateway::admin::cli`).
//! `gateway replay FILE... --candidate URL [--baseline URL] ...` replays captured traffic against a
//! build before it is deployed and judges it the same way (see `gateway::replay`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use gateway::Gateway;
use gateway::settings::GatewaySettings;
use service_kit::settings::{Layered, Sources};

/// mimalloc's thread-local free lists instead of glibc's malloc: a proxied request allocates and
/// frees a few dozen small buffers (header maps, `Bytes`, futures), and glibc's allocator was
/// 10% of the gateway's CPU in the profile (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Routing configuration (native YAML or Istio documents); repeat to merge several files
    /// [env GATEWAY_CONFIG, comma-separated]
    #[arg(long, value_name = "FILE")]
    config: Vec<PathBuf>,
    /// Data-plane address [default: 0.0.0.0:8080; env GATEWAY_LISTEN]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Admin address (health, /config, /metrics, /mirrors) [default: 0.0.0.0:9901; env GATEWAY_ADMIN_LISTEN]
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// Threads serving requests: `auto` (the CPUs this process may use) or a number
    /// [default: auto; env GATEWAY_WORKERS]
    #[arg(long, value_name = "N")]
    workers: Option<String>,
    /// Gateway settings file (YAML) layered over the embedded defaults
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Validate these routing files (and any --config ones), print warnings, and exit
    #[arg(long, value_name = "FILE", num_args = 0..)]
    check_config: Option<Vec<PathBuf>>,
    /// Ask the running gateway on this host whether it is healthy (container health checks)
    #[arg(long)]
    health_check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Ask running gateways whether each mirror's shadow is safe to ship: exit 0 all pass, 1 one
    /// fails, 3 one is still pending after --wait, 2 cannot tell
    Verdict(gateway::admin::cli::Args),
    /// Send captured requests (HAR files) to a candidate build and judge its answers against the
    /// recorded ones (or a live --baseline's): exit 0 pass, 1 fail, 3 pending, 2 cannot tell
    Replay(gateway::replay::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Verdict(args)) => return gateway::admin::cli::run(args),
        Some(Command::Replay(args)) => return gateway::replay::run(args),
        None => {}
    }
    let mut overrides: Vec<(&'static str, String)> = Vec::new();
    overrides.extend(cli.listen.clone().map(|v| ("listen", v)));
    overrides.extend(cli.admin_listen.clone().map(|v| ("admin_listen", v)));
    overrides.extend(cli.workers.clone().map(|v| ("workers", v)));
    let mut settings = match GatewaySettings::load(Sources::process(cli.settings.as_deref(), overrides)) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("gateway: {error}");
            return ExitCode::from(2);
        }
    };
    if !cli.config.is_empty() {
        settings.config = cli.config.clone();
    }
    if cli.health_check {
        return service_kit::cli::health_check(&settings.admin_listen, "/readyz");
    }
    if let Some(files) = cli.check_config {
        let mut all = settings.config.clone();
        all.extend(files);
        return check_config(&all, &settings.load_options());
    }
    if settings.config.is_empty() {
        eprintln!("gateway: config: no routing file given (use --config FILE or GATEWAY_CONFIG)");
        return ExitCode::from(2);
    }
    let loaded = match gateway_config::load_files_with(&settings.config, &settings.load_options()) {
        Ok(loaded) => loaded,
        Err(error) => {
            for warning in &error.warnings {
                eprintln!("gateway: warning: {warning}");
            }
            eprintln!("gateway: {error}");
            return ExitCode::FAILURE;
        }
    };
    let workers = settings.workers;
    service_kit::cli::run("gateway", env!("CARGO_PKG_VERSION"), workers, |version| async move {
        let metrics = service_kit::metrics::install_prometheus().context("installing the metrics recorder")?;
        gateway::reload::log_loaded(&loaded);
        let routes = loaded.table.routes.len();
        let poll = settings.reload.poll_interval;
        let gateway = Gateway::bind(settings, loaded, Some(metrics)).await?;
        tracing::info!(addr = %gateway.local_addr()?, admin = %gateway.admin_addr()?, routes, workers = workers.threads(), %version, "gateway listening");
        let stop = service_kit::stop::Stop::new();
        let watcher = tokio::spawn(gateway.reloader().watch(poll, stop.stopped()));
        gateway.run_until(service_kit::serve::shutdown_signal()).await;
        stop.stop();
        let _ = watcher.await;
        Ok(())
    })
}

fn check_config(files: &[PathBuf], scope: &gateway_config::LoadOptions) -> ExitCode {
    if files.is_empty() {
        eprintln!("gateway: --check-config: no file given");
        return ExitCode::from(2);
    }
    match gateway_config::load_files_with(files, scope) {
        Ok(loaded) => {
            print_file_reports(&loaded);
            let mirrors: usize = loaded.table.routes.iter().map(|r| r.mirrors.len()).sum();
            let rejected = loaded.rejected().count();
            if rejected == 0 {
                println!("ok: {} routes, {} mirrors, {} destinations", loaded.table.routes.len(), mirrors, loaded.table.destinations.len());
                return ExitCode::SUCCESS;
            }
            // The gateway would serve the rest; a check still fails, so CI catches the object.
            // One line per rejected object: what a refused configuration would have said.
            for object in loaded.rejected() {
                let reason = object.conditions.first().map_or("Invalid", |c| c.reason.as_str());
                eprintln!("rejected: {} ({reason}): {}", object.title(), object.rejection().unwrap_or_default());
            }
            println!(
                "{rejected} object{} rejected (not served; the rest would be): {} routes, {} mirrors, {} destinations",
                if rejected == 1 { "" } else { "s" },
                loaded.table.routes.len(),
                mirrors,
                loaded.table.destinations.len()
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            for warning in &error.warnings {
                eprintln!("warning: {warning}");
            }
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Per input file: what was loaded, what was scoped out and why, and every warning.
fn print_file_reports(loaded: &gateway_config::Loaded) {
    for report in &loaded.files {
        println!("{}:", report.file);
        for line in &report.loaded {
            println!("  loaded: {line}");
        }
        for line in &report.scoped_out {
            println!("  scoped out: {line}");
        }
        for object in loaded.objects.iter().filter(|o| o.file == report.file) {
            println!("  object: {} [{}]: {}", object.title(), object.state.as_str(), object.summary());
        }
        for warning in loaded.warnings.iter().filter(|w| w.file == report.file) {
            println!("  not implemented / warning: {}: {}", warning.path, warning.message);
        }
    }
}
