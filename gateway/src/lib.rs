//! The gateway: Istio-style routing and traffic mirroring that never slows the primary.
//!
//! How a request flows (see the README's architecture section): the listener
//! (`service_kit::serve`) refuses what breaks the generic limits; [`proxy`] takes the rest
//! through its phases: the gateway's own checks ([`edge`]), route match in the current
//! [`state::Active`] generation (swapped atomically by [`reload`]), rewrite, proxy headers, a
//! [`mirror::MirrorPlan`] for its copies, the primary call over a pooled [`upstream`], and the
//! answer streamed back (or the gateway's own, [`error`]). Each copy runs in
//! its own task, traced as a `mirror` span, and, when the mirror compares, is diffed against the
//! primary's answer on the [`compare`] thread into the mirror's [`stats`], judged by [`verdict`]
//! (and, with `promote:`, moving traffic by [`promote`]). The [`admin`] listener serves
//! health, the effective configuration, metrics and the mirror report.

pub mod admin;
pub mod bodies;
pub mod capture;
pub mod compare;
pub mod edge;
pub mod error;
pub mod mirror;
pub mod promote;
pub mod proxy;
pub mod reload;
pub mod replay;
pub mod settings;
pub mod shadow;
pub mod state;
pub mod stats;
pub mod upgrade;
pub mod upstream;
pub mod verdict;

use std::future::Future;
use std::sync::Arc;

use gateway_config::Loaded;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

pub use crate::reload::Reloader;
use crate::settings::GatewaySettings;
pub use crate::state::Shared;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind { key: &'static str, addr: String, source: std::io::Error },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Tls(#[from] service_kit::tls::TlsError),
}

/// A bound gateway, ready to run.
pub struct Gateway {
    listener: TcpListener,
    admin: TcpListener,
    shared: Arc<Shared>,
    /// The data-plane listener's TLS, when `tls.certificates` names any.
    tls: Option<service_kit::tls::TlsTerminator>,
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
        let tls = service_kit::tls::TlsTerminator::from_settings(&settings.tls)?;
        let shared = Arc::new(Shared::new(settings, loaded, metrics).map_err(BuildError::Config)?);
        Ok(Self { listener, admin, shared, tls })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.admin.local_addr()
    }

    /// A handle that swaps in new routing while the gateway runs.
    pub fn reloader(&self) -> Reloader {
        Reloader::new(self.shared.clone())
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves both listeners until `shutdown` resolves, then drains in-flight requests up to the
    /// shutdown deadline.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let deadline = self.shared.settings.shutdown_deadline;
        let stop = service_kit::stop::Stop::new();
        let shared = self.shared.clone();
        let limits = self.shared.settings.listener.clone();
        // The listener holds every request to `limits` (sizes, `Host`) before the proxy sees it.
        let proxy =
            tower::service_fn(move |request: http::Request<service_kit::serve::RequestBody>| proxy::handle(shared.clone(), request));
        let admin = admin::router(self.shared.clone());
        let data = async {
            match self.tls {
                Some(tls) => {
                    // Certificates are polled like the routing files, and reloaded on SIGHUP.
                    let watcher = tokio::spawn(tls.clone().watch(self.shared.settings.reload.poll_interval, stop.stopped()));
                    service_kit::serve::serve_tls_with(self.listener, tls, proxy, stop.stopped(), deadline, &limits).await;
                    let _ = watcher.await;
                }
                None => service_kit::serve::serve_with(self.listener, proxy, stop.stopped(), deadline, &limits).await,
            }
        };
        let admin = service_kit::serve::serve(self.admin, admin, stop.stopped(), deadline);
        let signal = async {
            shutdown.await;
            stop.stop();
        };
        tokio::join!(data, admin, signal);
    }
}
