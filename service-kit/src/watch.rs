//! Watching small files for a reload: on SIGHUP, and whenever their contents change (checked at
//! an interval). The gateway's routing files and its TLS certificates reload this way.
//!
//! Contents are compared, not modification times: Kubernetes updates a mounted ConfigMap or
//! Secret by swapping a symlink, which leaves the old file's time as it was.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// Why a watcher asks for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The process got SIGHUP: reload whether or not anything changed.
    Hangup,
    /// The watched contents changed.
    Changed,
}

/// The contents of `paths` (small files; an unreadable one is `None`), to compare with a later
/// reading.
pub fn contents<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<Option<Vec<u8>>> {
    paths.into_iter().map(|path| std::fs::read(path).ok()).collect()
}

/// Calls `reload` on SIGHUP and whenever `fingerprint` (usually [`contents`]) gives something
/// else than it last did, checked every `poll` (zero: SIGHUP only), until `stop` resolves.
pub async fn on_change<F, R>(poll: Duration, stop: impl Future<Output = ()>, mut fingerprint: F, mut reload: R)
where
    F: FnMut() -> Vec<Option<Vec<u8>>>,
    R: FnMut(Trigger),
{
    let mut seen = fingerprint();
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
        let trigger = tokio::select! {
            () = &mut stop => return,
            () = hup => Trigger::Hangup,
            _ = tick.tick(), if !poll.is_zero() => {
                let now = fingerprint();
                if now == seen {
                    continue;
                }
                Trigger::Changed
            }
        };
        seen = fingerprint();
        reload(trigger);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_change_of_contents_reloads_once_and_the_same_contents_never() {
        let version = AtomicUsize::new(0);
        let reloads = std::sync::Mutex::new(Vec::new());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let watching = on_change(
            Duration::from_secs(1),
            async {
                let _ = stopped.await;
            },
            || vec![Some(version.load(Ordering::Relaxed).to_le_bytes().to_vec())],
            |trigger| reloads.lock().unwrap().push(trigger),
        );
        let driving = async {
            tokio::time::sleep(Duration::from_millis(3500)).await;
            assert!(reloads.lock().unwrap().is_empty(), "nothing changed in three polls");
            version.store(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = stop.send(());
        };
        tokio::join!(watching, driving);
        assert_eq!(*reloads.lock().unwrap(), [Trigger::Changed], "one change, one reload");
    }

    #[test]
    fn an_unreadable_file_reads_as_none() {
        let dir = std::env::temp_dir().join(format!("watch-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a");
        std::fs::write(&file, b"x").unwrap();
        let missing = dir.join("missing");
        assert_eq!(contents([file.as_path(), missing.as_path()]), [Some(b"x".to_vec()), None]);
    }
}
