//! What both loops share: the time plan, stopping on Ctrl-C, and why sending stopped.

use std::sync::{Mutex, PoisonError};

use tokio::{sync::watch, time::Instant};

use crate::report::StoppedBy;

/// The run's time line: warmup from `start` to `warmup_end`, then measurement until `end`.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub start: Instant,
    pub warmup_end: Instant,
    pub end: Instant,
    /// Most measured requests (--requests).
    pub requests: Option<u64>,
}

/// Set once the user asked to stop (Ctrl-C or SIGTERM).
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Listens for Ctrl-C and SIGTERM: the first stops sending (requests in flight still
    /// finish, within --timeout), the second exits at once.
    pub fn on_signals() -> Self {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            if wait_for_signal().await.is_err() {
                // No signal handling: never stop early; keep the sender so waiters keep waiting.
                std::future::pending::<()>().await;
            }
            eprintln!("loadgen: stopping: waiting for the requests in flight (again to quit now)");
            let _ = tx.send(true);
            let _ = wait_for_signal().await;
            std::process::exit(130);
        });
        Self(rx)
    }

    #[cfg(test)]
    pub fn manual() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once stop is set; never if it cannot be anymore.
    pub async fn wait(&mut self) {
        if self.0.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// The first reason sending stopped, and when.
#[derive(Default)]
pub struct FirstStop(Mutex<Option<(Instant, StoppedBy)>>);

impl FirstStop {
    pub fn mark(&self, at: Instant, why: StoppedBy) {
        let mut first = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some((at, why));
        }
    }

    /// When and why; the end of the plan when nothing was marked.
    pub fn get(&self, plan: &Plan) -> (Instant, StoppedBy) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).unwrap_or((plan.end, StoppedBy::Duration))
    }
}
