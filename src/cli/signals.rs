//! SIGTERM and Ctrl-C: the first stops cleanly, a second quits at once.

use crate::exit::Exit;
use tokio_util::sync::CancellationToken;

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// On the first signal, cancels `stop` (no new calls; calls in flight finish and are
/// recorded); on a second, quits at once with exit 7 (calls then in flight go to review
/// once their leases run out).
pub fn stop_on_signals(stop: CancellationToken) {
    tokio::spawn(async move {
        shutdown_signal().await;
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
