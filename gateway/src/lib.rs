//! The gateway: Istio-style routing and traffic mirroring that never slows the primary.
//!
//! How a request flows (see the README's architecture section):
//! [`proxy`] matches a route in the current [`state::Active`] table (swapped atomically on
//! reload), rewrites, picks a destination ([`upstream`]), plans the copies ([`mirror`]), tees the
//! request body to them ([`body`]), forwards the primary, and streams its answer back. Each copy
//! runs in its own task, traced as a `mirror` span, and, when the mirror compares, is diffed
//! against the primary's answer ([`compare`]) into the [`report`]. The [`admin`] listener serves
//! health, the effective configuration, metrics and the mirror report.

pub mod admin;
pub mod body;
pub mod compare;
pub mod mirror;
pub mod proxy;
pub mod report;
pub mod settings;
pub mod state;
pub mod upstream;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use gateway_config::Loaded;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::settings::GatewaySettings;
use crate::state::{Active, StatsRegistry};

/// What every request and the admin listener share.
pub struct Shared {
    /// The routing generation new requests use.
    pub active: ArcSwap<Active>,
    pub stats: StatsRegistry,
    pub settings: GatewaySettings,
    pub metrics: Option<PrometheusHandle>,
    /// Where shadow and primary answers are diffed, off the request workers.
    pub comparator: Arc<compare::Comparator>,
    reloads: AtomicU64,
    last_reload_error: Mutex<Option<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind { key: &'static str, addr: String, source: std::io::Error },
    #[error("{0}")]
    Config(String),
}

/// A bound gateway, ready to run.
pub struct Gateway {
    listener: TcpListener,
    admin: TcpListener,
    shared: Arc<Shared>,
}

impl Gateway {
    /// Binds the two listeners of `settings` and prepares `loaded` for serving.
    pub async fn bind(settings: GatewaySettings, loaded: Loaded, metrics: Option<PrometheusHandle>) -> Result<Self, BuildError> {
        let listener = TcpListener::bind(&settings.listen).await.map_err(|source| BuildError::Bind {
            key: "listen",
            addr: settings.listen.clone(),
            source,
        })?;
        let admin = TcpListener::bind(&settings.admin_listen).await.map_err(|source| BuildError::Bind {
            key: "admin_listen",
            addr: settings.admin_listen.clone(),
            source,
        })?;
        Self::with_listeners(listener, admin, settings, loaded, metrics)
    }

    /// For callers (tests) that bound the listeners themselves. Must run inside a Tokio runtime.
    pub fn with_listeners(
        listener: TcpListener,
        admin: TcpListener,
        settings: GatewaySettings,
        loaded: Loaded,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Self, BuildError> {
        let stats = StatsRegistry::default();
        let active = Active::build(loaded, &settings.upstream, &settings.report, &stats).map_err(BuildError::Config)?;
        let comparator = compare::Comparator::start(settings.compare.max_pending)
            .map_err(|e| BuildError::Config(format!("cannot start the comparator thread: {e}")))?;
        let shared = Arc::new(Shared {
            active: ArcSwap::from_pointee(active),
            stats,
            settings,
            metrics,
            comparator: Arc::new(comparator),
            reloads: AtomicU64::new(0),
            last_reload_error: Mutex::new(None),
        });
        Ok(Self { listener, admin, shared })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.admin.local_addr()
    }

    /// A handle that swaps in new routing while the gateway runs.
    pub fn reloader(&self) -> Reloader {
        Reloader { shared: self.shared.clone() }
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves both listeners until `shutdown` resolves, then drains in-flight requests up to the
    /// shutdown deadline.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let deadline = self.shared.settings.shutdown_deadline;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let shared = self.shared.clone();
        let proxy = tower::service_fn(move |request| proxy::handle(shared.clone(), request));
        let admin = admin::router(self.shared.clone());
        let data = service_kit::serve::serve(self.listener, proxy, stopped(stop_rx.clone()), deadline);
        let admin = service_kit::serve::serve(self.admin, admin, stopped(stop_rx), deadline);
        let signal = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        tokio::join!(data, admin, signal);
    }
}

/// Swaps in new routing, atomically; an invalid configuration is rejected and the old one kept.
#[derive(Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
}

impl Reloader {
    /// Loads the configured files again. On error the running table is untouched.
    pub fn reload(&self) -> Result<usize, String> {
        let files: &[PathBuf] = &self.shared.settings.config;
        let outcome = gateway_config::load_files(files).map_err(|e| e.to_string()).and_then(|loaded| self.swap(loaded));
        match &outcome {
            Ok(routes) => tracing::info!(routes, "configuration reloaded"),
            Err(error) => tracing::error!(%error, "configuration rejected; the previous one keeps serving"),
        }
        *self.shared.last_reload_error.lock().unwrap_or_else(|p| p.into_inner()) = outcome.as_ref().err().cloned();
        outcome
    }

    /// Swaps in an already loaded table.
    pub fn swap(&self, loaded: Loaded) -> Result<usize, String> {
        for warning in &loaded.warnings {
            tracing::warn!(%warning, "configuration field not implemented");
        }
        let settings = &self.shared.settings;
        let active = Active::build(loaded, &settings.upstream, &settings.report, &self.shared.stats)?;
        let routes = active.table.routes.len();
        self.shared.active.store(Arc::new(active));
        self.shared.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(routes)
    }

    /// Reloads on SIGHUP and whenever a configured file changes (checked every `poll`), until
    /// `stop` resolves.
    pub async fn watch(self, poll: Duration, stop: impl Future<Output = ()>) {
        let mut seen = self.fingerprint();
        let mut tick = tokio::time::interval(if poll.is_zero() { Duration::from_secs(3600) } else { poll });
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        tokio::pin!(stop);
        loop {
            #[cfg(unix)]
            let hup = async {
                match hangup.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<()>();
            tokio::select! {
                () = &mut stop => return,
                () = hup => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    seen = self.fingerprint();
                    let _ = self.reload();
                }
                _ = tick.tick(), if !poll.is_zero() => {
                    let now = self.fingerprint();
                    if now != seen {
                        seen = now;
                        let _ = self.reload();
                    }
                }
            }
        }
    }

    /// Contents of the configured files (they are small); a change of any triggers a reload.
    /// Reading contents rather than mtimes also follows Kubernetes' ConfigMap symlink swaps.
    fn fingerprint(&self) -> Vec<Option<Vec<u8>>> {
        self.shared.settings.config.iter().map(|path| std::fs::read(path).ok()).collect()
    }

    pub fn reload_count(&self) -> u64 {
        self.shared.reloads.load(Ordering::Relaxed)
    }
}

impl Shared {
    pub fn reload_status(&self) -> (u64, Option<String>) {
        (self.reloads.load(Ordering::Relaxed), self.last_reload_error.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}
