//! The HTTP/1.1 server: hyper with a timer, so slow clients cannot hold connections forever.
//!
//! - `--header-read-timeout`: a client that does not finish its headers in time (or a
//!   kept-alive connection idle that long) is disconnected by hyper;
//! - `--body-read-timeout` is enforced where the body is read (`body_read.rs`, a 408);
//! - `--max-connections`: at most that many connections are served at once; the next ones wait
//!   in the listen backlog, unread, until a connection closes;
//! - shutdown: the listener closes, connections with no request being handled close at once
//!   (idle, or still sending headers), and requests being handled get `--body-read-timeout` +
//!   `--request-timeout` to finish (they cannot take longer by themselves), after which their
//!   connections are dropped too. A stalled client never holds the process up.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{body::Body, Router};
use hyper::{body::Incoming, server::conn::http1, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{watch, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};
use tower::ServiceExt;

/// How the server treats connections; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// How long a request being handled at shutdown may still take.
    pub shutdown_grace: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes, then winds down (see above).
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        reap(&mut connections);
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                connections.spawn(connection(stream, router.clone(), limits, stop_rx.clone(), slot));
            }
            Err(error) => {
                // Out of file descriptors and the like: the slot is released, try again shortly
                // rather than spinning.
                tracing::warn!(%error, "could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    tracing::info!(open = connections.len(), "stopped accepting connections; closing the open ones");
    while let Some(result) = connections.join_next().await {
        log_end(result);
    }
}

/// Logs connection tasks that ended, so a panic in one is never silent.
fn reap(connections: &mut JoinSet<()>) {
    while let Some(result) = connections.try_join_next() {
        log_end(result);
    }
}

fn log_end(result: Result<(), tokio::task::JoinError>) {
    if let Err(error) = result {
        tracing::error!(%error, "a connection task failed");
    }
}

async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let busy = Arc::new(AtomicUsize::new(0));
    let service = {
        let busy = busy.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let handling = Handling::start(&busy);
            let response = router.clone().oneshot(request.map(Body::new));
            async move {
                let response = response.await;
                drop(handling);
                response
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        () = stopped(&mut stop) => {
            if busy.load(Ordering::SeqCst) == 0 {
                // Idle, or a client still sending its headers: nothing to finish.
                return;
            }
            conn.as_mut().graceful_shutdown();
            if tokio::time::timeout(limits.shutdown_grace, conn).await.is_err() {
                tracing::warn!(grace = ?limits.shutdown_grace, "closing a connection whose request did not finish in time at shutdown");
            }
        }
    }
}

/// Completes once the server stops (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await.map(|_| ());
}

/// Counts a request being handled on a connection, for as long as it lives.
struct Handling(Arc<AtomicUsize>);

impl Handling {
    fn start(busy: &Arc<AtomicUsize>) -> Self {
        busy.fetch_add(1, Ordering::SeqCst);
        Self(busy.clone())
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
