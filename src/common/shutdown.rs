//! Shutdown: SIGINT and SIGTERM cancel a token that every long-running loop of the
//! agent and the coordinator watches.

use tokio_util::sync::CancellationToken;

/// Spawns a task that cancels `cancel` on the first SIGINT or SIGTERM.
pub fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot install the SIGTERM handler");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
        cancel.cancel();
    });
}
