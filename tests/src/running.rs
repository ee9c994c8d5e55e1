//! A component (service or gateway) running in this process under its own telemetry.

use std::future::Future;

use service_kit::telemetry::Telemetry;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::instrument::WithSubscriber;

pub struct Running {
    telemetry: Telemetry,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// Spawns `run(stopped)` under `telemetry`'s dispatcher; `stopped` resolves on [`Running::stop`].
    pub fn spawn<F, Fut>(telemetry: Telemetry, run: F) -> Self
    where
        F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = Box::pin(async {
            let _ = stopped.await;
        });
        let task = tokio::spawn(run(stopped).with_subscriber(telemetry.dispatch().clone()));
        Self { telemetry, stop, task }
    }

    /// Exports every finished span now.
    pub async fn flush(&self) {
        tokio::task::block_in_place(|| self.telemetry.flush());
    }

    /// Graceful stop, then span flush.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let telemetry = self.telemetry;
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    }
}
