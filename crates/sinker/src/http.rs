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

use crate::metrics::Metrics;

/// What readiness depends on, kept current by background checks.
#[derive(Default)]
pub struct Health {
    pub database_ok: AtomicBool,
    pub consuming: AtomicBool,
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

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let db = state.health.database_ok.load(Ordering::SeqCst);
    let consuming = state.health.consuming.load(Ordering::SeqCst);
    if db && consuming {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        let reason = if !db { "the database is unreachable" } else { "not consuming yet" };
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not_ready", "reason": reason})))
    }
}

/// Serves until `shutdown`.
pub async fn serve(listen: SocketAddr, router: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
    axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}
