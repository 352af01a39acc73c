//! Waiting for SIGTERM or SIGINT.

use tokio::signal::unix::{self, SignalKind};

/// Resolves on the first SIGTERM or SIGINT. Panics only if the signal handlers cannot be
/// installed at all, which happens at start-up or never.
pub async fn signal() -> &'static str {
    #[allow(clippy::expect_used)]
    let mut term = unix::signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    #[allow(clippy::expect_used)]
    let mut int = unix::signal(SignalKind::interrupt()).expect("install the SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
