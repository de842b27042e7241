//! Process plumbing the daemons share.

/// Resolves on SIGTERM or SIGINT (or at once, logged, if the handlers cannot
/// be installed: a daemon that cannot be stopped cleanly should not run).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stopping");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown signal received"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "shutdown signal received"),
    }
}
