//! SIGTERM and Ctrl-C: the first stops cleanly, a second quits at once. SIGHUP (the
//! daemon): the campaign file read again.

use crate::config::{Config, ConfigPath};
use crate::exit::Exit;
use crate::service::Stop;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Completes on Ctrl-C or SIGTERM. The handlers are installed when this is called, not
/// when it is first awaited: a stop that comes in between (`systemctl stop` right after a
/// start) is a clean stop, not the default action that kills the process.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        // A handler that could not be installed never fires (the signal keeps its default).
        async fn next(signal: Option<Signal>) {
            match signal {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        async move {
            tokio::select! {
                () = next(term) => {},
                () = next(interrupt) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// On the first signal, cancels `stop` (no new calls; calls in flight finish and are
/// recorded); on a second, quits at once with exit 7 (calls then in flight go to review
/// once their leases run out).
pub fn stop_on_signals(stop: CancellationToken) {
    // Installed now, not when the task first runs: a signal in between is a clean stop.
    let first = shutdown_signal();
    tokio::spawn(async move {
        first.await;
        tracing::warn!(
            "stopping: no new calls; calls in flight finish and are recorded (a second signal quits at once)"
        );
        stop.cancel();
        shutdown_signal().await;
        eprintln!(
            "error: quit at once on a second signal: calls in flight go to review, and the leads this runner had claimed wait, when their leases run out (`status` shows until when)"
        );
        std::process::exit(i32::from(Exit::Stopped.code()));
    });
}

/// On each SIGHUP, reads the campaign file at `path` again and checks it as `check` does;
/// a file with an error is logged (naming the file, line and key) and goes no further,
/// the daemon keeping its running configuration; a good one is handed to the service
/// (`service::Service::reloading`), the newest only if several come before it is taken.
/// The handler is installed now: a SIGHUP during start-up is a reload once the daemon
/// runs, not the default action (which ends the process).
pub fn reload_on_hangup(path: ConfigPath) -> watch::Receiver<Option<Arc<Config>>> {
    let (tx, rx) = watch::channel(None);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hangups) => {
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        let file = path.path.display().to_string();
                        tracing::info!(%file, "SIGHUP: reading the campaign file again");
                        // Read and checked off the runtime's threads: a slow disk (or a
                        // file that is not one) never holds the daemon's tasks.
                        let reading = path.clone();
                        let loaded =
                            tokio::task::spawn_blocking(move || crate::config::load(&reading))
                                .await;
                        let Ok(loaded) = loaded else {
                            tracing::error!(%file, "the campaign file was not reloaded: its reading failed");
                            continue;
                        };
                        match loaded {
                            Ok(config) => {
                                tx.send_replace(Some(Arc::new(config)));
                            }
                            Err(error) => tracing::error!(
                                %file, %error,
                                "the campaign file was not reloaded: it has an error (`fluidtalk-runner check` shows it); the daemon keeps its running configuration"
                            ),
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP cannot be caught: reloading the campaign file needs a restart")
            }
        }
    }
    #[cfg(not(unix))]
    drop((path, tx));
    rx
}

/// On the first signal, asks `stop` (the daemon's: every part winds down within its grace).
/// The handlers are installed now: a signal during start-up stops cleanly too.
pub fn ask_on_signal(stop: Stop) {
    let signal = shutdown_signal();
    tokio::spawn(async move {
        signal.await;
        stop.ask();
    });
}
