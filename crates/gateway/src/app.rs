//! The router and the state every handler shares.

use std::sync::Arc;

use axum::{
    extract::{DefaultBodyLimit, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use rdkafka::producer::{FutureProducer, Producer};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::{
    backpressure::{Backpressure, RateLimiter},
    config::Config,
    error::ApiError,
    health::Readiness,
    ingest,
    metrics::Metrics,
};

/// The OpenAPI description of this service, served at `GET /openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub producer: FutureProducer,
    pub metrics: Metrics,
    pub readiness: Readiness,
    /// One permit per byte of events being produced; see `--max-inflight-bytes`.
    pub inflight: Arc<Semaphore>,
    pub backpressure: Backpressure,
    /// Per-client rate limit, when configured.
    pub rate_limiter: Option<Arc<RateLimiter>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/events",
            post(ingest::post_events).fallback(|| async { ApiError::MethodNotAllowed { allow: "POST" } }),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::NotFound })
        // The ingest handler reads the body itself, with its own limit and error.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let mut body = match state.readiness.get() {
        Ok(()) => json!({"status": "ready"}),
        Err(reason) => json!({"status": "not_ready", "reason": reason}),
    };
    // Unknown lag does not make the gateway unready (writes still work), but it is explained.
    if let Some(lag) = state.backpressure.stale_reason() {
        body["lag"] = json!(lag);
    } else if let Some(lag) = state.backpressure.view().lag {
        body["lag"] = json!(lag);
        body["throttled"] = json!(state.backpressure.check().is_some());
    }
    let status = if body["status"] == "ready" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.producer_queue.set(i64::from(state.producer.in_flight_count()));
    (
        [(header::CONTENT_TYPE, sluice_core::metrics::CONTENT_TYPE)],
        sluice_core::metrics::render(&state.metrics.registry),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
