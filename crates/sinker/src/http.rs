//! The sinker's small HTTP server: /metrics, /healthz, /readyz.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use axum::{extract::State, http::header, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{metrics::Metrics, stuck::StuckPartitions};

/// What readiness depends on, kept current by background checks and the partition workers.
pub struct Health {
    pub database_ok: AtomicBool,
    pub consuming: AtomicBool,
    /// Partitions whose batch fails with a permanent error.
    pub stuck: Arc<StuckPartitions>,
}

impl Health {
    pub fn new(stuck: Arc<StuckPartitions>) -> Self {
        Self { database_ok: AtomicBool::new(false), consuming: AtomicBool::new(false), stuck }
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    health: Arc<Health>,
}

pub fn router(metrics: Metrics, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health })
}

async fn render(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, sluice_core::metrics::CONTENT_TYPE)],
        sluice_core::metrics::render(&state.metrics.registry),
    )
}

/// 200 when the database answers, the consumer runs and no partition is stuck on a permanent
/// error; else 503 with the first reason, and every stuck partition with its error.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let db = state.health.database_ok.load(Ordering::SeqCst);
    let consuming = state.health.consuming.load(Ordering::SeqCst);
    let stuck = state.health.stuck.snapshot();
    let stuck_json: Vec<_> = stuck.iter().map(|(p, e)| json!({"partition": p, "error": e})).collect();
    let reason = if !db {
        "the database is unreachable".to_owned()
    } else if !consuming {
        "not consuming yet".to_owned()
    } else if let Some((_, error)) = stuck.first() {
        error.clone()
    } else {
        return (StatusCode::OK, Json(json!({"status": "ready"})));
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "not_ready", "reason": reason, "stuck_partitions": stuck_json})),
    )
}

/// Serves until `shutdown`.
pub async fn serve(listen: SocketAddr, router: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
    axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}
