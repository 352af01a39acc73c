//! `POST /v1/events`: authenticate, decode, validate every event, produce them all, and answer
//! 202 only when the broker acknowledged each one.
//!
//! Invariant: a request answered 4xx produced nothing. Every check that can refuse a request
//! runs before the first event is handed to the producer.
//!
//! Time: the body must arrive within `--body-read-timeout` (else 408); `--request-timeout`
//! starts once it has, and covers validation, producing and the acknowledgements. Events are
//! never handed to the producer after that deadline (503 `deadline_exceeded`, nothing written).

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use chrono::Utc;
use serde_json::json;
use sluice_core::Event;
use tokio::time::Instant;

use crate::{
    app::AppState,
    auth, body, body_read,
    error::{ApiError, Position},
    producer::{self, Outgoing},
};

pub async fn post_events(State(state): State<AppState>, headers: HeaderMap, request_body: Body) -> Response {
    let started = Instant::now();
    let response = match ingest(&state, &headers, request_body).await {
        Ok(response) => response,
        Err(error) => {
            if error.status().is_server_error() {
                tracing::warn!(code = error.code(), %error, "request not accepted");
            } else {
                tracing::debug!(code = error.code(), %error, "request refused");
            }
            error.into_response()
        }
    };
    let m = &state.metrics;
    m.requests.with_label_values(&[response.status().as_str()]).inc();
    m.request_duration.observe(started.elapsed().as_secs_f64());
    response
}

async fn ingest(state: &AppState, headers: &HeaderMap, request_body: Body) -> Result<Response, ApiError> {
    let config = &state.config;
    let Some(client) = auth::client(&config.api_keys, headers) else {
        return Err(ApiError::Unauthorized);
    };
    if let Some((lag, retry_after)) = state.backpressure.check() {
        state.metrics.throttled_requests.with_label_values(&["lag"]).inc();
        return Err(ApiError::Throttled { lag, retry_after });
    }
    let format = body::format(header_str(headers, header::CONTENT_TYPE))?;
    let encoding = header_str(headers, header::CONTENT_ENCODING);
    let limit = config.max_body_bytes;
    let raw = body_read::read(request_body, headers, limit, config.body_read_timeout).await?;
    // The deadline starts now: upload time is the body read timeout's business.
    let deadline = Instant::now() + config.request_timeout;
    let decoded = body::decode_content(encoding, &raw, limit)?;
    let raws = body::events(format, &decoded, config.max_batch_events)?;

    let received_at = Utc::now();
    let mut outgoing = Vec::with_capacity(raws.len());
    for (at, raw) in raws {
        // One event's values at a time: parsed, validated, encoded, dropped.
        let value = body::value(raw, at, config.max_event_bytes)?;
        let event = Event::from_api(value, received_at)
            .map_err(|e| ApiError::InvalidEvent { message: prefixed(at, &e.message), at })?;
        let record = Outgoing::new(&event);
        if record.size() > config.max_event_bytes {
            return Err(ApiError::EventTooLarge { size: record.size(), limit: config.max_event_bytes, at });
        }
        outgoing.push(record);
    }
    drop(decoded);
    drop(raw);

    // Nothing below waits: once this passes, the events reach the producer within the deadline.
    if Instant::now() >= deadline {
        return Err(ApiError::DeadlineExceeded);
    }

    if let Some(limiter) = &state.rate_limiter {
        if let Err(retry_after) = limiter.take(client, outgoing.len(), Instant::now()) {
            state.metrics.throttled_requests.with_label_values(&["rate_limit"]).inc();
            return Err(ApiError::RateLimited { retry_after });
        }
    }
    // Checked after validation so a bad request learns about its own mistakes first.
    state.readiness.get().map_err(|reason| ApiError::KafkaUnavailable { reason })?;
    let bytes: usize = outgoing.iter().map(Outgoing::size).sum();
    let permits = u32::try_from(bytes).map_err(|_| ApiError::Overloaded)?;
    let _inflight = state.inflight.try_acquire_many(permits).map_err(|_| ApiError::Overloaded)?;
    state.metrics.inflight_bytes.add(bytes as i64);
    let unconfirmed =
        producer::produce_all(&state.producer, &config.kafka.topic, &outgoing, deadline, &state.metrics).await;
    state.metrics.inflight_bytes.sub(bytes as i64);

    if !unconfirmed.is_empty() {
        return Err(ApiError::NotConfirmed { ids: unconfirmed, total: outgoing.len() });
    }
    state.metrics.events_accepted.inc_by(outgoing.len() as u64);
    let ids: Vec<_> = outgoing.iter().map(|o| o.id).collect();
    Ok((StatusCode::ACCEPTED, Json(json!({"accepted": ids.len(), "ids": ids}))).into_response())
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn prefixed(at: Position, message: &str) -> String {
    match at {
        Position::Index(i) => format!("event {i}: {message}"),
        Position::Line(n) => format!("line {n}: {message}"),
    }
}
