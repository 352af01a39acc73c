//! The Segment endpoints: authenticate, read and split the body, map every message, produce
//! them all, answer `200 {"success": true}` once the broker acknowledged each one.
//!
//! Invariant (as for `/v1/events`): a request answered 4xx produced nothing. Every check that
//! can refuse it runs before the first event is handed to the producer.
//!
//! The write key is looked for, in this order, in the `Authorization` header (a bearer token,
//! or the HTTP Basic username, which is how the SDKs send it), in the `api_key` query
//! parameter, and in the body's `writeKey`. The first one found is the one checked: a wrong
//! key is not rescued by a right one elsewhere. A key in the header or the query is checked
//! before the body is read; one in the body only after it is read (within the limits below).

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

use super::{
    envelope,
    message::{self, Envelope, MessageType},
    BATCH_LIMIT_BYTES, MESSAGE_LIMIT_BYTES,
};
use crate::{
    app::AppState,
    auth::{self, Client},
    body::{self, Format},
    body_read,
    error::{ApiError, Position},
    ingest::{self, header_str},
    producer::Outgoing,
    route_check,
};

/// The body of a 200: every message of the request was acknowledged by the broker.
#[derive(Serialize, ToSchema)]
pub struct Success {
    /// Always `true`.
    pub success: bool,
}

/// Ingest a batch of Segment messages (what every Segment SDK sends). Each message becomes
/// one event; validation is all-or-nothing; retrying is safe (ids come from `messageId`).
#[utoipa::path(
    post,
    path = "/v1/batch",
    tag = "segment",
    request_body(description = "A Segment batch.", content((crate::openapi::SegmentBatch = "application/json"))),
    params(
        ("Content-Encoding" = Option<String>, Header, description = "`gzip` or `identity`."),
        ("api_key" = Option<String>, Query, description = "The write key, for clients that cannot set headers."),
    ),
    responses((status = 200, description = "Every message was acknowledged by the broker (acks=all).", body = Success)),
    security((), ("basic" = []), ("bearer" = [])),
)]
pub async fn post_batch(State(state): State<AppState>, headers: HeaderMap, uri: Uri, body: Body) -> Response {
    serve(&state, None, &headers, &uri, body).await
}

/// A track call: one message; its `event` becomes the event's type.
#[utoipa::path(post, path = "/v1/track", tag = "segment",
    request_body(description = "One track message.", content((crate::openapi::SegmentMessage = "application/json", example = json!({"type": "track", "messageId": "m-1", "userId": "u-1", "event": "Order Completed", "properties": {"total": 42.5}, "timestamp": "2026-01-31T12:00:00.000Z"})))),
    params(("Content-Encoding" = Option<String>, Header, description = "`gzip` or `identity`."), ("api_key" = Option<String>, Query, description = "The write key.")),
    responses((status = 200, description = "Acknowledged by the broker.", body = Success)),
    security((), ("basic" = []), ("bearer" = [])))]
pub async fn post_track(State(state): State<AppState>, headers: HeaderMap, uri: Uri, body: Body) -> Response {
    serve(&state, Some(MessageType::Track), &headers, &uri, body).await
}

/// An identify call: one message; the event's type is `identify`.
#[utoipa::path(post, path = "/v1/identify", tag = "segment",
    request_body(description = "One identify message.", content((crate::openapi::SegmentMessage = "application/json", example = json!({"type": "identify", "messageId": "m-2", "userId": "u-1", "traits": {"plan": "pro"}})))),
    params(("Content-Encoding" = Option<String>, Header, description = "`gzip` or `identity`."), ("api_key" = Option<String>, Query, description = "The write key.")),
    responses((status = 200, description = "Acknowledged by the broker.", body = Success)),
    security((), ("basic" = []), ("bearer" = [])))]
pub async fn post_identify(State(state): State<AppState>, headers: HeaderMap, uri: Uri, body: Body) -> Response {
    serve(&state, Some(MessageType::Identify), &headers, &uri, body).await
}

/// A page call: one message; the event's type is `page`.
#[utoipa::path(post, path = "/v1/page", tag = "segment",
    request_body(description = "One page message.", content((crate::openapi::SegmentMessage = "application/json", example = json!({"type": "page", "messageId": "m-3", "anonymousId": "a-1", "name": "Pricing", "properties": {"url": "https://example.com/pricing"}})))),
    params(("Content-Encoding" = Option<String>, Header, description = "`gzip` or `identity`."), ("api_key" = Option<String>, Query, description = "The write key.")),
    responses((status = 200, description = "Acknowledged by the broker.", body = Success)),
    security((), ("basic" = []), ("bearer" = [])))]
pub async fn post_page(State(state): State<AppState>, headers: HeaderMap, uri: Uri, body: Body) -> Response {
    serve(&state, Some(MessageType::Page), &headers, &uri, body).await
}

/// A screen call: one message; the event's type is `screen`.
#[utoipa::path(post, path = "/v1/screen", tag = "segment",
    request_body(description = "One screen message.", content((crate::openapi::SegmentMessage = "application/json", example = json!({"type": "screen", "messageId": "m-4", "userId": "u-1", "name": "Settings"})))),
    params(("Content-Encoding" = Option<String>, Header, description = "`gzip` or `identity`."), ("api_key" = Option<String>, Query, description = "The write key.")),
    responses((status = 200, description = "Acknowledged by the broker.", body = Success)),
    security((), ("basic" = []), ("bearer" = [])))]
pub async fn post_screen(State(state): State<AppState>, headers: HeaderMap, uri: Uri, body: Body) -> Response {
    serve(&state, Some(MessageType::Screen), &headers, &uri, body).await
}

/// A group call: one message; the event's type is `group`.
#[utoipa::path(post, path = "/v1/group", tag = "segment",
    request_body(description = "One group message.", content((crate::openapi::SegmentMessage = "application/json", example = json!({"type": "group", "messageId": "m-5", "userId": "u-1", "groupId": "g-1", "traits": {"name": "Acme"}})))),
    params(("Content-Encoding" = Option<String>, Header, description = "`gzip` or `identity`."), ("api_key" = Option<String>, Query, description = "The write key.")),
    responses((status = 200, description = "Acknowledged by the broker.", body = Success)),
    security((), ("basic" = []), ("bearer" = [])))]
pub async fn post_group(State(state): State<AppState>, headers: HeaderMap, uri: Uri, body: Body) -> Response {
    serve(&state, Some(MessageType::Group), &headers, &uri, body).await
}

/// An alias call: one message; the event's type is `alias`.
#[utoipa::path(post, path = "/v1/alias", tag = "segment",
    request_body(description = "One alias message.", content((crate::openapi::SegmentMessage = "application/json", example = json!({"type": "alias", "messageId": "m-6", "userId": "u-1", "previousId": "a-1"})))),
    params(("Content-Encoding" = Option<String>, Header, description = "`gzip` or `identity`."), ("api_key" = Option<String>, Query, description = "The write key.")),
    responses((status = 200, description = "Acknowledged by the broker.", body = Success)),
    security((), ("basic" = []), ("bearer" = [])))]
pub async fn post_alias(State(state): State<AppState>, headers: HeaderMap, uri: Uri, body: Body) -> Response {
    serve(&state, Some(MessageType::Alias), &headers, &uri, body).await
}

async fn serve(
    state: &AppState,
    endpoint: Option<MessageType>,
    headers: &HeaderMap,
    uri: &Uri,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = ingest_messages(state, endpoint, headers, uri.query(), body).await.map_err(|error| match error {
        // Segment clients send the key as the Basic username or the body's writeKey: say so.
        ApiError::Unauthorized { .. } => ApiError::Unauthorized { segment: true },
        other => other,
    });
    ingest::answer(state, started, result)
}

/// The largest body: Segment's batch limit, or `--max-body-bytes` when lower.
pub fn body_limit(max_body_bytes: usize) -> usize {
    BATCH_LIMIT_BYTES.min(max_body_bytes)
}

/// The most bytes of records one request may produce: twice its body limit, plus the record
/// overhead `/v1/events` allows each event (`producer::RECORD_OVERHEAD`), within
/// `--max-inflight-bytes`.
///
/// Invariant: a request without a batch `context` does not reach it (short of numbers that
/// re-encode longer). A message's record is the message, its id and times (about 200 bytes),
/// and two more copies of its key (the `key` field and the record key) and one of its type,
/// both of which the message holds already: at most one copy of the message plus one key
/// (1 KiB), so under twice the message plus `RECORD_OVERHEAD`. Only a batch `context`, copied
/// into each message, multiplies the bytes: the budget bounds that, and with it the memory a
/// request can take.
pub fn produced_limit(body_limit: usize, messages: usize, max_inflight_bytes: usize) -> usize {
    body_limit
        .saturating_mul(2)
        .saturating_add(messages.saturating_mul(crate::producer::RECORD_OVERHEAD))
        .min(max_inflight_bytes)
}

/// The length of a JSON value written without whitespace (as it is in the record), counted
/// without writing it anywhere.
fn compact_size(data: &serde_json::Map<String, serde_json::Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a JSON map to a sink that cannot fail cannot fail.
    let _ = serde_json::to_writer(&mut count, data);
    count.0
}

async fn ingest_messages(
    state: &AppState,
    endpoint: Option<MessageType>,
    headers: &HeaderMap,
    query: Option<&str>,
    request_body: Body,
) -> Result<Response, ApiError> {
    let config = &state.config;
    let sent_key = auth::presented(headers, query);
    let origin = headers.get(header::ORIGIN);
    // Refusals decided from the headers alone, as in `ingest`: the body is drained unread.
    let early = (|| {
        let client = match &sent_key {
            Some(key) => Some(auth::authorize(&state.keys, Some(key), origin)?),
            None if state.keys.is_empty() => Some(Client::Anonymous),
            // The key may be in the body.
            None => None,
        };
        if let Some((lag, retry_after)) = state.backpressure.check() {
            state.metrics.throttled_requests.with_label_values(&["lag"]).inc();
            return Err(ApiError::Throttled { lag, retry_after });
        }
        if body::format(header_str(headers, header::CONTENT_TYPE))? != Format::Json {
            return Err(ApiError::UnsupportedMediaType(
                "the Segment endpoints take application/json (or text/plain, as browsers send it) only".to_owned(),
            ));
        }
        Ok(client)
    })();
    let client = match early {
        Ok(client) => client,
        Err(error) => {
            body_read::refuse_unread(request_body, headers, config.body_read_timeout);
            return Err(error);
        }
    };
    let limit = body_limit(config.max_body_bytes);
    let raw = body_read::read(request_body, headers, limit, config.body_read_timeout).await?;
    let deadline = Instant::now() + config.request_timeout;
    let decoded = body::decode_content(header_str(headers, header::CONTENT_ENCODING), &raw, limit)?;
    let request = match endpoint {
        None => envelope::batch(&decoded, config.max_batch_events)?,
        Some(_) => envelope::single(&decoded)?,
    };
    let client = match client {
        Some(client) => client,
        None => auth::authorize(&state.keys, request.write_key.as_deref(), origin)?,
    };

    let context = Envelope { endpoint, sent_at: request.sent_at, context: request.context.as_ref() };
    let merges = request.context.as_ref().is_some_and(|c| !c.is_empty());
    let budget = produced_limit(limit, request.messages.len(), config.max_inflight_bytes);
    let mut produced = 0usize;
    let received_at = Utc::now();
    let mut outgoing = Vec::with_capacity(request.messages.len());
    for (index, raw_message) in request.messages.iter().enumerate() {
        let at = Position::Index(index);
        let size = body::compact_len(raw_message.get().as_bytes());
        if size > MESSAGE_LIMIT_BYTES {
            return Err(ApiError::MessageTooLarge { size, limit: MESSAGE_LIMIT_BYTES, at });
        }
        let value = serde_json::from_str(raw_message.get()).map_err(|e| body::json_error(&e, Some(at)))?;
        let event = message::to_event(value, &context, received_at).map_err(|e| ApiError::InvalidEvent {
            message: format!("message {index}: {e}"),
            at,
            column: None,
        })?;
        if merges {
            // The limit holds for the message as stored, the batch's `context` merged in.
            let size = compact_size(&event.data);
            if size > MESSAGE_LIMIT_BYTES {
                return Err(ApiError::MessageTooLarge { size, limit: MESSAGE_LIMIT_BYTES, at });
            }
        }
        if let Some(routes) = &state.routes {
            routes.check_event(&event).map_err(|refusal| route_check::refused(refusal, at))?;
        }
        let record = Outgoing::new(&event);
        drop(event);
        if record.size() > config.max_event_bytes {
            return Err(ApiError::EventTooLarge { size: record.size(), limit: config.max_event_bytes, at });
        }
        produced += record.size();
        if produced > budget {
            return Err(ApiError::ProducedTooLarge { limit: budget });
        }
        outgoing.push(record);
    }
    drop(request);
    drop(decoded);
    drop(raw);

    ingest::produce_validated(state, &client, &outgoing, deadline).await?;
    Ok((StatusCode::OK, Json(Success { success: true })).into_response())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// `produced_limit`'s invariant: a batch without `context` never reaches it, even with
        /// the longest keys and types (multi-byte characters), whatever its body limit is at least.
        #[test]
        fn a_batch_without_context_stays_within_its_budget(
            messages in proptest::collection::vec(("[a-zé€😀]{1,256}", "[a-zé€😀]{1,128}", any::<bool>(), 0u32..1000), 1..40),
        ) {
            let batch: Vec<Value> = messages
                .iter()
                .enumerate()
                .map(|(i, (key, event, number_key, n))| {
                    let user: Value = if *number_key { json!(n) } else { json!(key) };
                    json!({"type": "track", "messageId": format!("m{i}"), "userId": user, "event": event})
                })
                .collect();
            let body = json!({"batch": batch}).to_string();
            let envelope = Envelope::default();
            let received = Utc::now();
            let mut produced = 0;
            for message in batch {
                let event = message::to_event(message, &envelope, received).expect("maps");
                produced += Outgoing::new(&event).size();
            }
            let budget = produced_limit(body.len(), messages.len(), usize::MAX);
            prop_assert!(produced <= budget, "{produced} bytes of records, budget {budget}");
        }
    }

    #[test]
    fn the_budget_is_twice_the_body_plus_the_record_overhead_within_the_inflight_cap() {
        let overhead = crate::producer::RECORD_OVERHEAD;
        assert_eq!(produced_limit(512_000, 120, usize::MAX), 1_024_000 + 120 * overhead);
        assert_eq!(produced_limit(512_000, 120, 700_000), 700_000);
        assert_eq!(compact_size(json!({"a": [1, "x"]}).as_object().expect("object")), r#"{"a":[1,"x"]}"#.len());
    }
}
