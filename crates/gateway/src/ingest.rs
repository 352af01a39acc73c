//! `POST /v1/events`: authenticate, decode, validate every event, produce them all, and answer
//! 202 only when the broker acknowledged each one.
//!
//! Invariant: a request answered 4xx produced nothing. Every check that can refuse a request
//! runs before the first event is handed to the producer. Each event becomes its record in
//! `event_record` (scanned, not parsed into a tree); with `--routes`, that includes its routes
//! check (`route_check`): one event that matches no route or fails a declared type refuses the
//! whole request.
//!
//! Time: the body must arrive within `--body-read-timeout` (else 408); `--request-timeout`
//! starts once it has, and covers validation, producing and the acknowledgements. Events are
//! never handed to the producer after that deadline (503 `deadline_exceeded`, nothing written).

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
    Json,
};
use chrono::Utc;
use serde::Serialize;
use tokio::time::Instant;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    app::AppState,
    auth, body, body_read,
    error::ApiError,
    event_record,
    inflight::InflightGuard,
    producer::{self, Outgoing},
};

/// The body of a 202: every event of the request was acknowledged by the broker.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// How many events the request held.
    pub accepted: usize,
    /// Their ids, in request order (generated where the event had none).
    pub ids: Vec<Uuid>,
}

/// Ingest events: one event object, a JSON array of events, or NDJSON (one event per line).
/// `text/plain` is read as JSON (what `navigator.sendBeacon` sends). `Content-Encoding: gzip`
/// is accepted; the decompressed size is capped by --max-body-bytes. Validation is
/// all-or-nothing per request. Retrying with the same ids is always safe: duplicates are
/// dropped at the database. With --cors-allow-origins, answers to an allowed `Origin` carry
/// CORS headers; a request from any other origin is refused (403 `origin_not_allowed`).
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    request_body(
        description = "Events, as JSON (one or an array; also sent as text/plain, read as JSON) or NDJSON (one per line; blank lines are skipped).",
        content(
            (crate::openapi::EventsBody = "application/json"),
            (crate::openapi::EventsBody = "text/plain"),
            (String = "application/x-ndjson"),
        ),
    ),
    params(
        ("Content-Encoding" = Option<String>, Header, description = "`gzip` or `identity`."),
        ("api_key" = Option<String>, Query, description = "The API key, for clients that cannot set `Authorization` (`navigator.sendBeacon`). Used only without a bearer token. Keys used in web pages are public write keys."),
    ),
    responses((status = 202, description = "Every event was acknowledged by the broker (acks=all).", body = Accepted)),
    security((), ("bearer" = []), ("api_key" = [])),
)]
pub async fn post_events(State(state): State<AppState>, uri: Uri, headers: HeaderMap, request_body: Body) -> Response {
    let started = Instant::now();
    let result = ingest(&state, uri.query(), &headers, request_body).await;
    answer(&state, started, result)
}

/// Logs and counts a refusal, and times the request: every ingest endpoint answers through it.
pub(crate) fn answer(state: &AppState, started: Instant, result: Result<Response, ApiError>) -> Response {
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            if error.status().is_server_error() {
                tracing::warn!(code = error.code(), %error, "request not accepted");
            } else {
                tracing::debug!(code = error.code(), %error, "request refused");
            }
            state.metrics.request_errors.with_label_values(&[error.code()]).inc();
            error.into_response()
        }
    };
    let m = &state.metrics;
    m.requests.with_label_values(&[response.status().as_str()]).inc();
    m.request_duration.observe(started.elapsed().as_secs_f64());
    response
}

async fn ingest(
    state: &AppState,
    query: Option<&str>,
    headers: &HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    let config = &state.config;
    // Refusals decided from the headers alone: the body is not read, but it is drained in the
    // background so that the client reads the answer (a 429's Retry-After above all) instead
    // of a connection reset.
    let early = (|| {
        let client = auth::authorize_request(&state.keys, headers, query)?;
        if let Some((lag, retry_after)) = state.backpressure.check() {
            state.metrics.throttled_requests.with_label_values(&["lag"]).inc();
            return Err(ApiError::Throttled { lag, retry_after });
        }
        let format = body::format(header_str(headers, header::CONTENT_TYPE))?;
        Ok((client, format))
    })();
    let (client, format) = match early {
        Ok(checked) => checked,
        Err(error) => {
            body_read::refuse_unread(request_body, headers, config.body_read_timeout);
            return Err(error);
        }
    };
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
        // One event at a time: validated, encoded, its values (if any were built) dropped.
        outgoing.push(event_record::record(config.max_event_bytes, state.routes.as_deref(), raw, at, received_at)?);
    }
    drop(decoded);
    drop(raw);

    produce_validated(state, &client, &outgoing, deadline).await?;
    let ids: Vec<Uuid> = outgoing.iter().map(|o| o.id).collect();
    Ok((StatusCode::ACCEPTED, Json(Accepted { accepted: ids.len(), ids })).into_response())
}

/// Produces a request's validated events and waits for the broker to acknowledge every one:
/// what every ingest endpoint does once nothing in the request can refuse it any more. Checks,
/// in order, the deadline, readiness, the in-flight cap and (last, so a refusal for another
/// reason costs the client nothing) the client's rate limit.
pub(crate) async fn produce_validated(
    state: &AppState,
    client: &auth::Client,
    outgoing: &[Outgoing],
    deadline: Instant,
) -> Result<(), ApiError> {
    let config = &state.config;
    // Nothing below waits: once this passes, the events reach the producer within the deadline.
    if Instant::now() >= deadline {
        return Err(ApiError::DeadlineExceeded);
    }

    // Checked after validation so a bad request learns about its own mistakes first.
    state.readiness.get().map_err(|reason| ApiError::KafkaUnavailable { reason })?;
    let bytes: usize = outgoing.iter().map(Outgoing::size).sum();
    if bytes > config.max_inflight_bytes {
        // Only when re-encoding grew the events past the whole cap: it would never fit.
        return Err(ApiError::ProducedTooLarge { limit: config.max_inflight_bytes });
    }
    let inflight = InflightGuard::try_acquire(&state.inflight, bytes, &state.metrics.inflight_bytes)
        .ok_or(ApiError::Overloaded)?;
    // Tokens last: a request refused for any other reason costs its client nothing.
    if let Some(limit) = state.keys.limit(*client) {
        if let Err(retry_after) = state.rate_limiter.take(client, limit, outgoing.len(), Instant::now()) {
            state.metrics.throttled_requests.with_label_values(&["rate_limit"]).inc();
            return Err(ApiError::RateLimited { retry_after });
        }
    }
    let unconfirmed =
        producer::produce_all(&state.producer, &config.kafka.topic, outgoing, deadline, &state.metrics, inflight).await;

    if !unconfirmed.is_empty() {
        return Err(ApiError::NotConfirmed { ids: unconfirmed, total: outgoing.len() });
    }
    state.metrics.events_accepted.inc_by(outgoing.len() as u64);
    Ok(())
}

pub(crate) fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
