//! One stop signal shared by several listeners and tasks: [`Stop::stop`] once, and as many
//! [`Stop::stopped`] futures as there are things to stop.

use std::future::Future;

use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Stop {
    sender: watch::Sender<bool>,
}

impl Default for Stop {
    fn default() -> Self {
        Self { sender: watch::Sender::new(false) }
    }
}

impl Stop {
    pub fn new() -> Self {
        Self::default()
    }

    /// Resolves every `stopped` future, past and future.
    pub fn stop(&self) {
        self.sender.send_replace(true);
    }

    /// Resolves once [`Stop::stop`] has been called (at once if it already was).
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.sender.subscribe();
        async move {
            let _ = receiver.wait_for(|stopped| *stopped).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_stopped_future_resolves_on_stop_even_one_made_after() {
        let stop = Stop::new();
        let before = tokio::spawn(stop.stopped());
        stop.stop();
        before.await.unwrap();
        stop.stopped().await;
    }
}
