//! The router and the state every handler shares.

use std::sync::Arc;

use axum::{
    extract::{DefaultBodyLimit, State},
    http::{header, StatusCode},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use rdkafka::producer::{FutureProducer, Producer};
use serde::Serialize;
use sluice_routes::RoutesFile;
use tokio::sync::Semaphore;
use utoipa::ToSchema;

use crate::{
    backpressure::Backpressure, config::Config, cors, error::ApiError, health::Readiness, ingest, keys::Keys,
    metrics::Metrics, openapi, origin::AllowedOrigins, rate_limit::RateLimiter, segment::handler as segment,
};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub producer: FutureProducer,
    pub metrics: Metrics,
    pub readiness: Readiness,
    /// One permit per byte of events being produced; see `--max-inflight-bytes`.
    pub inflight: Arc<Semaphore>,
    pub backpressure: Backpressure,
    /// Who may write, from which origins, how fast (--api-keys, --api-keys-file, --rate-limit).
    pub keys: Arc<Keys>,
    /// Per-client token buckets, drawn from when a client has a limit (`Keys::limit`).
    pub rate_limiter: Arc<RateLimiter>,
    /// `--cors-allow-origins` (`None`: unset, no browser may post; see `cors`).
    pub cors: Option<Arc<AllowedOrigins>>,
    /// `--routes`: what every event must match and pass (see `ingest`).
    pub routes: Option<Arc<RoutesFile>>,
}

/// Every route. The ingest endpoints are one router behind the CORS layer (`cors::guard`):
/// an endpoint added there gets preflights, origin checks and CORS headers with no more work.
pub fn router(state: AppState) -> Router {
    let post_only = || async { ApiError::MethodNotAllowed { allow: "POST" } };
    let ingest = Router::new()
        .route("/v1/events", post(ingest::post_events).fallback(post_only))
        // The Segment-compatible API (see `segment`).
        .route("/v1/batch", post(segment::post_batch).fallback(post_only))
        .route("/v1/track", post(segment::post_track).fallback(post_only))
        .route("/v1/identify", post(segment::post_identify).fallback(post_only))
        .route("/v1/page", post(segment::post_page).fallback(post_only))
        .route("/v1/screen", post(segment::post_screen).fallback(post_only))
        .route("/v1/group", post(segment::post_group).fallback(post_only))
        .route("/v1/alias", post(segment::post_alias).fallback(post_only))
        // The short paths Segment's other SDKs post to (analytics.js: `/v1/t`, `/v1/p`, ... for
        // each call, `/v1/b` when batching; analytics-kotlin and analytics-react-native: `/v1/b`):
        // the same handlers (`openapi::SEGMENT_ALIASES` documents them).
        .route("/v1/b", post(segment::post_batch).fallback(post_only))
        .route("/v1/t", post(segment::post_track).fallback(post_only))
        .route("/v1/i", post(segment::post_identify).fallback(post_only))
        .route("/v1/p", post(segment::post_page).fallback(post_only))
        .route("/v1/s", post(segment::post_screen).fallback(post_only))
        .route("/v1/g", post(segment::post_group).fallback(post_only))
        .route("/v1/a", post(segment::post_alias).fallback(post_only))
        .layer(middleware::from_fn_with_state(state.clone(), cors::guard));
    Router::new()
        .merge(ingest)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::NotFound })
        // The ingest handlers read the body themselves, with their own limits and errors.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// The body of `/healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// The body of `/readyz`.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    pub status: ReadyStatus,
    /// Why the gateway is not ready (with `not_ready`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The sinker group's lag as the gateway last measured it. Absent before the first check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<LagState>,
    /// Whether writes are answered 429 `throttled` now; present when the lag is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttled: Option<bool>,
}

#[derive(Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    /// The broker answers and the topic has a leader for every partition (200).
    Ready,
    /// Writes would fail; `reason` says why (503).
    NotReady,
}

/// Lag in records, or (a sentence) why it is unknown: unknown lag does not make the gateway
/// unready and does not throttle writes.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LagState {
    Records(u64),
    Unknown(String),
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive.", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the broker answers and the topic exists; also says the consumer lag.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready.", body = Ready),
    (status = 503, description = "Not ready; `reason` says why.", body = Ready),
))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (status, reason) = match state.readiness.get() {
        Ok(()) => (ReadyStatus::Ready, None),
        Err(reason) => (ReadyStatus::NotReady, Some(reason)),
    };
    let mut body = Ready { status, reason, lag: None, throttled: None };
    // Unknown lag does not make the gateway unready (writes still work), but it is explained.
    if let Some(unknown) = state.backpressure.stale_reason() {
        body.lag = Some(LagState::Unknown(unknown));
    } else if let Some(lag) = state.backpressure.view().lag {
        body.lag = Some(LagState::Records(lag));
        body.throttled = Some(state.backpressure.check().is_some());
    }
    let code = if body.status == ReadyStatus::Ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

/// Prometheus metrics, text format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Metrics (Prometheus text format).", body = String, content_type = "text/plain"),
))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.producer_queue.set(i64::from(state.producer.in_flight_count()));
    (
        [(header::CONTENT_TYPE, sluice_core::metrics::CONTENT_TYPE)],
        sluice_core::metrics::render(&state.metrics.registry),
    )
        .into_response()
}

/// This document (OpenAPI 3.1), generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses(
    (status = 200, description = "The OpenAPI document.", body = Object),
))]
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi::DOCUMENT.as_str()).into_response()
}
