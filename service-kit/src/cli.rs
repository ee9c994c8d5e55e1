//! What every binary's `main` shares: the runtime, telemetry from the `OTEL_*` variables,
//! and `--health-check`.

use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use crate::telemetry::{Telemetry, TelemetrySettings};

/// How many threads serve requests: Envoy's `--concurrency`, NGINX's `worker_processes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workers {
    /// One per CPU this process may use: its affinity mask (`taskset`, `cpuset`) and its cgroup
    /// CPU quota in whole CPUs, rounded down, at least one (a Kubernetes limit of 1.5 CPUs gives
    /// 1: a second thread would only be throttled), as `available_parallelism` reads them.
    #[default]
    Auto,
    Count(NonZeroUsize),
}

impl Workers {
    /// The number of runtime worker threads this resolves to on this machine, now.
    pub fn threads(self) -> usize {
        match self {
            Workers::Auto => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            Workers::Count(n) => n.get(),
        }
    }

    /// The runtime builder for this many workers. One worker is a current-thread runtime: the
    /// thread that runs `main` serves every connection itself, with no second thread to hand
    /// work to and no cross-thread wake-ups (a multi-thread runtime of one worker still runs
    /// the accept loop on `main`'s thread and the connections on the worker, two threads on one
    /// CPU). More workers share the work by stealing it.
    pub fn runtime(self) -> tokio::runtime::Builder {
        match self.threads() {
            1 => tokio::runtime::Builder::new_current_thread(),
            n => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(n);
                builder
            }
        }
    }
}

impl FromStr for Workers {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value.trim() {
            "auto" => Ok(Workers::Auto),
            number => number
                .parse::<NonZeroUsize>()
                .map(Workers::Count)
                .map_err(|_| format!("expected \"auto\" or a number of threads from 1, got {value:?}")),
        }
    }
}

impl std::fmt::Display for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Workers::Auto => f.write_str("auto"),
            Workers::Count(n) => write!(f, "{n}"),
        }
    }
}

/// From `auto` or a number; environment variables arrive as strings, so `"4"` is a number too.
impl<'de> serde::Deserialize<'de> for Workers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Workers;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"auto\" or a number of threads from 1")
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Workers, E> {
                usize::try_from(value)
                    .ok()
                    .and_then(NonZeroUsize::new)
                    .map(Workers::Count)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Unsigned(value), &self))
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Workers, E> {
                u64::try_from(value)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(value), &self))
                    .and_then(|value| self.visit_u64(value))
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Workers, E> {
                value.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Builds the runtime (`workers` threads) and telemetry, runs `serve`, then flushes spans.
/// `serve` gets the version string to log. Errors are printed as one line and give exit code 1.
pub fn run<F, Fut>(name: &str, version: &str, workers: Workers, serve: F) -> ExitCode
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match workers.runtime().enable_all().build() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Holder {
        workers: Workers,
    }

    fn parse(yaml: &str) -> Result<Workers, String> {
        config::Config::builder()
            .add_source(config::File::from_str(yaml, config::FileFormat::Yaml))
            .build()
            .and_then(|c| c.try_deserialize::<Holder>())
            .map(|h| h.workers)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn workers_are_auto_or_a_positive_count() {
        assert_eq!(parse("workers: auto"), Ok(Workers::Auto));
        assert_eq!(parse("workers: 3"), Ok(Workers::Count(NonZeroUsize::new(3).unwrap())));
        // As an environment variable delivers it.
        assert_eq!(parse("workers: \"2\""), Ok(Workers::Count(NonZeroUsize::new(2).unwrap())));
        assert_eq!(Workers::Count(NonZeroUsize::new(3).unwrap()).threads(), 3);
    }

    #[test]
    fn a_bad_worker_count_says_what_is_expected() {
        for bad in ["workers: 0", "workers: -1", "workers: many"] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains("auto") && error.contains("number of threads"), "{bad}: {error}");
        }
    }

    /// `Auto` must count only the CPUs the process may use. Runs this test binary again under
    /// `taskset` with one CPU: the child prints what `Auto` resolves to there.
    #[test]
    fn auto_follows_the_cpus_this_process_may_use() {
        const CHILD: &str = "SERVICE_KIT_WORKERS_CHILD";
        if std::env::var_os(CHILD).is_some() {
            println!("auto-threads={}", Workers::Auto.threads());
            return;
        }
        let all = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let has_taskset = std::process::Command::new("taskset").arg("-V").output().is_ok_and(|o| o.status.success());
        if all < 2 || !has_taskset {
            eprintln!("skipped: needs taskset and two CPUs (have {all} CPUs, taskset: {has_taskset})");
            return;
        }
        let output = std::process::Command::new("taskset")
            .args(["-c", "0"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "cli::tests::auto_follows_the_cpus_this_process_may_use", "--nocapture"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("auto-threads=1\n"), "pinned to one CPU of {all}, Auto gave: {stdout}");
        assert_eq!(Workers::Auto.threads(), all);
    }
}
