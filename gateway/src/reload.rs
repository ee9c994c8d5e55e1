//! Hot reload: on SIGHUP or a change of a configured file, load and validate the files again and
//! swap the routing generation atomically; an invalid configuration is rejected and the running
//! one keeps serving.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gateway_config::Loaded;

use crate::state::Shared;

/// Swaps in new routing, atomically; an invalid configuration is rejected and the old one kept.
#[derive(Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
}

impl Reloader {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Loads the configured files again. On error the running table is untouched.
    pub fn reload(&self) -> Result<usize, String> {
        let files: &[PathBuf] = &self.shared.settings.config;
        let outcome = gateway_config::load_files_with(files, &self.shared.settings.load_options())
            .map_err(|e| e.to_string())
            .map(|loaded| self.swap(loaded));
        match &outcome {
            Ok(routes) => tracing::info!(routes, "configuration reloaded"),
            Err(error) => tracing::error!(%error, "configuration rejected; the previous one keeps serving"),
        }
        self.shared.set_reload_error(outcome.as_ref().err().cloned());
        outcome
    }

    /// Swaps in an already loaded table; returns its number of routes.
    pub fn swap(&self, loaded: Loaded) -> usize {
        log_loaded(&loaded);
        self.shared.swap(loaded)
    }

    /// Reloads on SIGHUP and whenever a configured file changes (checked every `poll`), until
    /// `stop` resolves.
    pub async fn watch(self, poll: Duration, stop: impl Future<Output = ()>) {
        let files = || service_kit::watch::contents(self.shared.settings.config.iter().map(PathBuf::as_path));
        service_kit::watch::on_change(poll, stop, files, |trigger| {
            if trigger == service_kit::watch::Trigger::Hangup {
                tracing::info!("SIGHUP: reloading the configuration");
            }
            let _ = self.reload();
        })
        .await;
    }

    pub fn reload_count(&self) -> u64 {
        self.shared.reload_status().0
    }
}

/// Logs what loading could not honour and every object it rejected (the others serve).
pub fn log_loaded(loaded: &Loaded) {
    for warning in &loaded.warnings {
        tracing::warn!(%warning, "configuration field not implemented");
    }
    for object in loaded.rejected() {
        tracing::error!(object = %object.title(), status = %object.summary(), "object rejected; the other objects serve");
    }
}
