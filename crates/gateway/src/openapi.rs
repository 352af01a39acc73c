//! The OpenAPI document served at `GET /openapi.json`, generated from the code: the paths and
//! their success answers from the handlers' `#[utoipa::path]`, the schemas from the types, and
//! every error answer (status, code, headers) from [`ApiError::all`], so a new error variant
//! is documented without anyone remembering to.

use std::{collections::BTreeMap, sync::LazyLock};

use axum::{http::StatusCode, response::IntoResponse};
use serde::Serialize;
use serde_json::Value;
use sluice_core::event::{MAX_KEY_CHARS, MAX_TYPE_CHARS};
use utoipa::{
    openapi::{
        self,
        header::HeaderBuilder,
        path::{OperationBuilder, ParameterBuilder, ParameterIn},
        schema::{AdditionalProperties, ObjectBuilder, Schema, Type},
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
        ContentBuilder, RefOr, Required, ResponseBuilder,
    },
    Modify, OpenApi, ToSchema,
};
use uuid::Uuid;

use crate::{
    app, auth, cors,
    error::{ApiError, ErrorBody, ErrorDetail},
    ingest,
    segment::handler as segment,
};

/// The paths that ingest events: each answers every error of [`ApiError::all`].
pub const INGEST_PATHS: [&str; 15] = [
    "/v1/events",
    "/v1/batch",
    "/v1/track",
    "/v1/identify",
    "/v1/page",
    "/v1/screen",
    "/v1/group",
    "/v1/alias",
    "/v1/b",
    "/v1/t",
    "/v1/i",
    "/v1/p",
    "/v1/s",
    "/v1/g",
    "/v1/a",
];

/// The short paths of Segment's other SDKs (analytics.js, analytics-kotlin,
/// analytics-react-native) and the endpoint each one is (`app::router` routes both to one
/// handler; [`Aliases`] documents them as copies).
pub const SEGMENT_ALIASES: [(&str, &str); 7] = [
    ("/v1/b", "/v1/batch"),
    ("/v1/t", "/v1/track"),
    ("/v1/i", "/v1/identify"),
    ("/v1/p", "/v1/page"),
    ("/v1/s", "/v1/screen"),
    ("/v1/g", "/v1/group"),
    ("/v1/a", "/v1/alias"),
];

/// Whether a path is one of the Segment endpoints (every ingest path but `/v1/events`).
fn is_segment(path: &str) -> bool {
    path != "/v1/events"
}

/// The document, rendered once.
pub static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")));

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sluice gateway",
        description = "Write-behind ingest: events are validated, produced to Kafka with acks=all, and written to \
            PostgreSQL by the sinkers. A 202 means the broker has every event of the request; a 4xx means nothing \
            was produced. Every error answer has the body `{\"error\": {\"code\", \"message\", ...}}`; an unknown \
            path answers 404 `not_found`. The `segment` endpoints take what Segment's SDKs send (README: \
            \"Segment-compatible API\"), also at the short paths Segment's other SDKs post to (/v1/b, /v1/t, /v1/i, \
            /v1/p, /v1/s, /v1/g, /v1/a): each message becomes one event, `id` from `messageId` (as is when it is a \
            UUID, else its UUIDv5 in the namespace 167b82ba-c7dd-46be-a6d1-43e7838f763c; without `messageId` a \
            fresh UUIDv7, so a retry of such a message is a second row), `type` from a track's `event` or the \
            message type, `key` from `userId` or `anonymousId`, `ts` from `timestamp` (else `originalTimestamp`) \
            corrected by `received_at - sentAt`, `data` the message; they answer 200 `{\"success\": true}` once the \
            broker acknowledged every message. Limits: 32 KiB per message, counted with the batch `context` merged \
            in (413 `message_too_large`), 500 KiB per body or --max-body-bytes if lower (413 `body_too_large`), \
            nesting 126 levels per message (400 `invalid_event`)."
    ),
    paths(
        ingest::post_events,
        segment::post_batch,
        segment::post_track,
        segment::post_identify,
        segment::post_page,
        segment::post_screen,
        segment::post_group,
        segment::post_alias,
        app::healthz,
        app::readyz,
        app::metrics,
        app::openapi
    ),
    components(schemas(EventInput, EventsBody, ingest::Accepted, SegmentMessage, SegmentBatch, segment::Success, ErrorBody, ErrorDetail, app::Health, app::Ready, app::ReadyStatus, app::LagState)),
    modifiers(&Aliases, &Security, &ErrorAnswers, &EventLimits, &SegmentFields, &Cors)
)]
pub struct ApiDoc;

/// One event as posted (the API form; `sluice_core::Event::from_api` is what reads it).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // reason: a schema only; requests are read as JSON values and validated by sluice-core
pub struct EventInput {
    /// Idempotency key end to end. Default: a fresh UUIDv7.
    id: Option<Uuid>,
    /// The event's type; 1 to 128 characters.
    #[serde(rename = "type")]
    event_type: String,
    /// Partition key (default: the id). Events with one key share a partition and keep their order.
    key: Option<String>,
    /// RFC 3339 timestamp. Default: the receive time.
    #[schema(format = DateTime)]
    ts: Option<String>,
    /// Any JSON object. Default `{}`. Strings may not contain NUL (\u0000).
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
}

/// The `application/json` body: one event or an array of them.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // reason: a schema only, see EventInput
pub enum EventsBody {
    One(EventInput),
    Many(Vec<EventInput>),
}

/// One Segment message. The fields sluice reads are listed; any others (`properties`,
/// `traits`, `context`, `integrations`, `name`, `groupId`, `previousId`, ...) are kept, with
/// these, in the event's `data`, which is the message as sent less its `writeKey`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // reason: a schema only; messages are read as JSON values (segment::message)
pub struct SegmentMessage {
    /// `track`, `identify`, `page`, `screen`, `group` or `alias`. Required in a batch; on a
    /// single-message endpoint it may be left out and must otherwise match the path (else 400).
    #[serde(rename = "type")]
    message_type: Option<String>,
    /// The event's id: itself when it is a UUID, else UUIDv5(167b82ba-c7dd-46be-a6d1-43e7838f763c,
    /// messageId); a resent message is the same row. Every SDK sends one. Left out, the id is a
    /// fresh UUIDv7: a retry of such a message is not idempotent (a second row).
    message_id: Option<String>,
    /// The event's key (partition key); required unless `anonymousId` is set. A string or a
    /// number (taken as its text).
    user_id: Option<String>,
    /// The event's key when there is no `userId`. A string or a number.
    anonymous_id: Option<String>,
    /// Track only, required: the event's type; 1 to 128 characters.
    event: Option<String>,
    /// When it happened, by the client's clock (RFC 3339). Default: `originalTimestamp`, else the
    /// receive time.
    #[schema(format = DateTime)]
    timestamp: Option<String>,
    /// What RudderStack's SDKs stamp instead of `timestamp`: used, with the same correction,
    /// when `timestamp` is absent.
    #[schema(format = DateTime)]
    original_timestamp: Option<String>,
    /// When the client sent it (RFC 3339); the batch's `sentAt` is used instead when the batch has one.
    /// `ts` = `timestamp` (or `originalTimestamp`) + (receive time - `sentAt`).
    #[schema(format = DateTime)]
    sent_at: Option<String>,
    /// The write key (removed before the message becomes `data`).
    write_key: Option<String>,
}

/// A Segment batch (`POST /v1/batch`). Other top-level fields are ignored.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // reason: a schema only, see SegmentMessage
pub struct SegmentBatch {
    /// The messages, at least one, at most --max-batch-events.
    batch: Vec<SegmentMessage>,
    /// When the client sent the batch (RFC 3339): corrects every message's `timestamp`.
    #[schema(format = DateTime)]
    sent_at: Option<String>,
    /// The write key, when it is not in the `Authorization` header or the `api_key` parameter.
    write_key: Option<String>,
    /// Added to each message's `context` (the message's own keys win).
    #[schema(value_type = Option<Object>)]
    context: Option<Value>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("Required only when the gateway runs with --api-keys or --api-keys-file."))
            .build();
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
        let basic = HttpBuilder::new()
            .scheme(HttpAuthScheme::Basic)
            .description(Some(
                "The Segment endpoints: the API key (write key) as the username, the password empty (ignored). \
                 Also accepted there: a bearer token, `?api_key=`, or the body's `writeKey`, in that order (`/v1/events` takes a Basic username too).",
            ))
            .build();
        components.add_security_scheme("basic", SecurityScheme::Http(basic));
        let query = ApiKey::Query(ApiKeyValue::with_description(
            auth::QUERY_PARAMETER,
            "The same keys as `bearer`, in the query string, for clients that cannot set headers \
             (`navigator.sendBeacon`); a bearer token wins when both are sent. Keys in web pages are public \
             write keys: restrict them with `allowed_origins` in --api-keys-file and a rate limit.",
        ));
        components.add_security_scheme("api_key", SecurityScheme::ApiKey(query));
    }
}

/// Error answers of the routes themselves, not of a handler (e.g. 404 for an unknown path).
fn answered_by_the_router(error: &ApiError) -> bool {
    matches!(error, ApiError::NotFound)
}

/// One status's documentation: the lines for `/v1/events`, the lines for the Segment
/// endpoints, the headers its answers carry.
type StatusDoc = (Vec<String>, Vec<String>, Vec<String>);

/// Adds every error answer of each ingest path, grouped by status, with the headers the real
/// answer carries, and lists every code in the `ErrorDetail.code` enum.
struct ErrorAnswers;

impl Modify for ErrorAnswers {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let mut by_status: BTreeMap<u16, StatusDoc> = BTreeMap::new();
        let mut codes = Vec::new();
        for error in ApiError::all() {
            if !codes.contains(&error.code()) {
                codes.push(error.code());
            }
            if answered_by_the_router(&error) {
                continue;
            }
            let (events, segment, headers) = by_status.entry(error.status().as_u16()).or_default();
            events.push(format!("`{}`: {}", error.code(), explain(&error, false)));
            segment.push(format!("`{}`: {}", error.code(), explain(&error, true)));
            let response = error.into_response();
            for name in response.headers().keys() {
                let name = name.as_str();
                if name != "content-type" && !headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                    headers.push(canonical(name));
                }
            }
        }
        let content =
            ContentBuilder::new().schema(Some(RefOr::Ref(openapi::Ref::from_schema_name("ErrorBody")))).build();
        for path in INGEST_PATHS {
            let Some(post) = doc.paths.paths.get_mut(path).and_then(|item| item.post.as_mut()) else { continue };
            for (status, (events, segment, headers)) in &by_status {
                let lines = if is_segment(path) { segment } else { events };
                let reason = StatusCode::from_u16(*status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
                let mut response = ResponseBuilder::new()
                    .description(format!(
                        "{reason}. Nothing was produced unless the code says so.\n\n- {}",
                        lines.join("\n- ")
                    ))
                    .content("application/json", content.clone());
                for header in headers {
                    response = response.header(header.clone(), header_doc(header));
                }
                post.responses.responses.insert(status.to_string(), RefOr::T(response.build()));
            }
        }
        let code = ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("The stable, machine-readable code."))
            .enum_values(Some(codes))
            .build();
        if let Some(RefOr::T(Schema::Object(detail))) =
            doc.components.as_mut().and_then(|c| c.schemas.get_mut("ErrorDetail"))
        {
            detail.properties.insert("code".to_owned(), RefOr::T(Schema::Object(code)));
        }
    }
}

/// What a code means for the client, for the document (`segment`: on a Segment endpoint). A
/// variant not listed here is documented with its own message (with placeholder values), so
/// nothing is left out.
fn explain(error: &ApiError, segment: bool) -> String {
    let text = match error {
        ApiError::Unauthorized { .. } if segment => {
            "API keys are configured and the request has no valid write key. Send it as the HTTP Basic username \
             with an empty password (what the SDKs do) or as the body's `writeKey`; a bearer token or \
             `?api_key=<key>` also work. The first place that has a key is the one checked"
        }
        ApiError::UnsupportedMediaType(_) if segment => {
            "a content type other than application/json or text/plain (read as JSON; what browsers send); NDJSON \
             is not taken here; or an encoding other than gzip"
        }
        ApiError::NotConfirmed { .. } if segment => {
            "the broker did not confirm some messages in time: `ids` lists their sluice event ids (each the \
             `messageId` when it is a UUID, else its UUIDv5 in the namespace 167b82ba-c7dd-46be-a6d1-43e7838f763c, \
             not the `messageId` itself); resend the whole request (some may have been written; resent messages \
             with a `messageId` are the same rows)"
        }
        ApiError::InvalidJson { .. } => "the body is not JSON (or NDJSON), not UTF-8, truncated or nested too deep",
        ApiError::InvalidEvent { .. } if segment => {
            "a message is wrong (no `type` in a batch, an unknown type, a track without `event`, neither `userId` \
             nor `anonymousId`, a bad `timestamp`, nested deeper than 126 levels, ...); `index` says which and the \
             message names the field"
        }
        ApiError::InvalidEvent { .. } => {
            "an event is wrong; `index` or `line` says which. With --routes, also an event that fails a `type` or \
             `required = true` its routes declare: `route`, `column` and `path` say where"
        }
        ApiError::NoRoute { .. } => {
            "with --routes: an event's type matches no route (the sinker would dead-letter it); `index` or `line` \
             says which"
        }
        ApiError::EmptyBatch => "the request holds no events (an empty `batch` on /v1/batch)",
        ApiError::InvalidBatch { .. } => {
            "/v1/batch: the body is not an object with a `batch` array, or its `sentAt` or `context` is malformed"
        }
        ApiError::MessageTooLarge { .. } => {
            "Segment endpoints: one message is over 32 KiB (its JSON without whitespace, as sent and again with \
             the batch `context` merged in); `index` says which"
        }
        ApiError::ProducedTooLarge { .. } => {
            "the request's records as written to Kafka would be more than it may produce: on the Segment \
             endpoints twice the body limit plus about 1 KiB per message (a batch `context` copied into many \
             messages), anywhere --max-inflight-bytes (numbers that re-encode longer); the message gives the number"
        }
        ApiError::Unauthorized { .. } => {
            "API keys are configured and the request has no valid key: `Authorization: Bearer <key>`, a Basic \
             username, `?api_key=<key>` or, on the Segment endpoints, the body's `writeKey`"
        }
        ApiError::OriginNotAllowed => {
            "the request's `Origin` is not in --cors-allow-origins, or not in its key's `allowed_origins`; without \
             --cors-allow-origins, a simple request (text/plain, a form type, no content type) that carries an \
             `Origin`. The answer has no CORS headers unless --cors-allow-origins allows the origin. Requests \
             without `Origin` are never refused for it"
        }
        ApiError::BodyTooLarge { .. } => {
            "the body is over --max-body-bytes (before or after gzip); on the Segment endpoints, over 500 KiB or \
             --max-body-bytes, whichever is lower; the message says which number"
        }
        ApiError::EventTooLarge { .. } => "one event is over --max-event-bytes as written to Kafka; `index`/`line` says which",
        ApiError::BatchTooLarge { .. } => "the request holds more than --max-batch-events events",
        ApiError::UnsupportedMediaType(_) => "a content type other than application/json, text/plain (read as JSON) or application/x-ndjson, or an encoding other than gzip",
        ApiError::Throttled { .. } => "the sinkers are too far behind (consumer lag over --lag-throttle); retry after Retry-After",
        ApiError::RateLimited { .. } => "this API key is over --rate-limit; retry after Retry-After",
        ApiError::KafkaUnavailable { .. } => "the broker is unreachable or the topic is missing",
        ApiError::Overloaded => "the gateway is at --max-inflight-bytes",
        ApiError::NotConfirmed { .. } => {
            "the broker did not confirm some events in time: `ids` lists them; resend them or the whole request (some may have been written)"
        }
        _ => return error.to_string(),
    };
    text.to_owned()
}

fn canonical(name: &str) -> String {
    match name {
        "retry-after" => "Retry-After".to_owned(),
        "www-authenticate" => "WWW-Authenticate".to_owned(),
        other => other.to_owned(),
    }
}

fn header_doc(name: &str) -> openapi::header::Header {
    let (description, schema) = match name {
        "Retry-After" => {
            ("Seconds to wait before retrying (at least 1).", ObjectBuilder::new().schema_type(Type::Integer))
        }
        "WWW-Authenticate" => ("`Bearer`.", ObjectBuilder::new().schema_type(Type::String)),
        _ => ("", ObjectBuilder::new().schema_type(Type::String)),
    };
    HeaderBuilder::new().schema(schema).description(Some(description)).build()
}

/// CORS, on every POST endpoint (all of them are ingest endpoints, behind `cors::guard`): the
/// preflight (`OPTIONS`), and the headers an allowed origin's answers carry.
struct Cors;

impl Modify for Cors {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let string = || ObjectBuilder::new().schema_type(Type::String).build();
        let header = |name: &str, required: bool, description: &str| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Header)
                .required(if required { Required::True } else { Required::False })
                .description(Some(description))
                .schema(Some(string()))
                .build()
        };
        let answer_header =
            |description: &str| HeaderBuilder::new().schema(string()).description(Some(description.to_owned())).build();
        let error = ContentBuilder::new().schema(Some(RefOr::Ref(openapi::Ref::from_schema_name("ErrorBody")))).build();
        for (path, item) in doc.paths.paths.iter_mut() {
            let Some(post) = item.post.as_mut() else { continue };
            for response in post.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.headers.insert(
                        "Access-Control-Allow-Origin".to_owned(),
                        answer_header("With --cors-allow-origins: the request's `Origin`, when it is allowed."),
                    );
                    response.headers.insert(
                        "Access-Control-Expose-Headers".to_owned(),
                        answer_header(&format!("With `Access-Control-Allow-Origin`: `{}`.", cors::EXPOSE_HEADERS)),
                    );
                }
            }
            let allowed = ResponseBuilder::new()
                .description(format!("The origin is in --cors-allow-origins: the browser may send the {path} request."))
                .header("Access-Control-Allow-Origin", answer_header("The request's `Origin`."))
                .header("Access-Control-Allow-Methods", answer_header(&format!("`{}`.", cors::ALLOW_METHODS)))
                .header("Access-Control-Allow-Headers", answer_header(&format!("`{}`.", cors::ALLOW_HEADERS)))
                .header(
                    "Access-Control-Max-Age",
                    answer_header(&format!("`{}` (seconds; browsers cap it).", cors::MAX_AGE_SECS)),
                )
                .header("Vary", answer_header("`origin`."))
                .build();
            let refused = ResponseBuilder::new()
                .description(format!(
                    "`origin_not_allowed`: {} No CORS headers: the browser does not send the request.",
                    explain(&ApiError::OriginNotAllowed, false)
                ))
                .content("application/json", error.clone())
                .build();
            let not_preflight = ResponseBuilder::new()
                .description("`method_not_allowed`: an OPTIONS request that is not a preflight (no `Origin` or no `Access-Control-Request-Method`).")
                .content("application/json", error.clone())
                .build();
            let preflight = OperationBuilder::new()
                .tag("events")
                .summary(Some("CORS preflight"))
                .description(Some(
                    "What a browser asks before a cross-origin POST that is not a simple request (a JSON content \
                     type, `Authorization`, `Content-Encoding`). Answered by the gateway, never by a handler. Simple \
                     requests (text/plain, `navigator.sendBeacon`) are not preflighted: they are refused with 403 \
                     `origin_not_allowed` when their origin is not allowed.",
                ))
                .parameter(header("Origin", true, "The page's origin."))
                .parameter(header("Access-Control-Request-Method", true, "`POST`."))
                .parameter(header("Access-Control-Request-Headers", false, "Headers the request will set."))
                .response("204", allowed)
                .response("403", refused)
                .response("405", not_preflight)
                .build();
            item.options = Some(preflight);
        }
    }
}

/// The short Segment paths ([`SEGMENT_ALIASES`]), documented as copies of their endpoints.
/// Runs first, so every later modifier treats them as the endpoints they are.
struct Aliases;

impl Modify for Aliases {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        for (alias, path) in SEGMENT_ALIASES {
            let Some(mut item) = doc.paths.paths.get(path).cloned() else { continue };
            if let Some(post) = item.post.as_mut() {
                post.operation_id = post.operation_id.as_ref().map(|id| format!("{id}_short"));
                post.summary = Some(format!("{path}, at the short path Segment's SDKs post to"));
                post.description = Some(format!(
                    "The same endpoint as {path} (same body, answers and errors). analytics.js posts each call to \
                     the short path of its type (/v1/t, /v1/i, /v1/p, /v1/s, /v1/g, /v1/a) and batches to /v1/b; \
                     analytics-kotlin and analytics-react-native post their batches to /v1/b."
                ));
            }
            doc.paths.paths.insert(alias.to_owned(), item);
        }
    }
}

/// Fields of the Segment schema the derive cannot say: `userId` and `anonymousId` take
/// numbers too.
struct SegmentFields;

impl Modify for SegmentFields {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let Some(RefOr::T(Schema::Object(message))) =
            doc.components.as_mut().and_then(|c| c.schemas.get_mut("SegmentMessage"))
        else {
            return;
        };
        for field in ["userId", "anonymousId"] {
            if let Some(RefOr::T(Schema::Object(property))) = message.properties.get_mut(field) {
                property.schema_type =
                    utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Number, Type::Null]);
            }
        }
    }
}

/// The event schema's limits come from sluice-core's constants, not from copies of them; no
/// field but the API's; an array holds at least one event.
struct EventLimits;

impl Modify for EventLimits {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let Some(components) = doc.components.as_mut() else { return };
        if let Some(RefOr::T(Schema::OneOf(body))) = components.schemas.get_mut("EventsBody") {
            for item in &mut body.items {
                if let RefOr::T(Schema::Array(array)) = item {
                    array.min_items = Some(1);
                }
            }
        }
        let Some(RefOr::T(Schema::Object(event))) = components.schemas.get_mut("EventInput") else { return };
        event.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        if let Some(RefOr::T(Schema::Object(t))) = event.properties.get_mut("type") {
            t.min_length = Some(1);
            t.max_length = Some(MAX_TYPE_CHARS);
        }
        if let Some(RefOr::T(Schema::Object(k))) = event.properties.get_mut("key") {
            k.max_length = Some(MAX_KEY_CHARS);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn document() -> Value {
        serde_json::from_str(&DOCUMENT).expect("the document is JSON")
    }

    #[test]
    fn every_error_status_and_code_is_documented() {
        let doc = document();
        assert!(doc["paths"]["/v1/events"]["post"]["responses"].get("202").is_some());
        for path in INGEST_PATHS {
            errors_are_documented(&doc, path);
        }
    }

    fn errors_are_documented(doc: &Value, path: &str) {
        let responses = &doc["paths"][path]["post"]["responses"];
        let codes = doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"].as_array().expect("enum");
        for error in ApiError::all() {
            assert!(codes.contains(&Value::from(error.code())), "{} in the code enum", error.code());
            if answered_by_the_router(&error) {
                continue;
            }
            let status = error.status().as_u16().to_string();
            let description = responses[&status]["description"].as_str().unwrap_or("");
            assert!(
                description.contains(&format!("`{}`", error.code())),
                "{path}: {status} documents {}",
                error.code()
            );
            if error.retry_after().is_some() {
                assert!(responses[&status]["headers"].get("Retry-After").is_some(), "{path}: {status} has Retry-After");
            }
        }
        assert!(responses["401"]["headers"].get("WWW-Authenticate").is_some());
    }

    #[test]
    fn the_segment_endpoints_are_documented_with_their_mapping() {
        let doc = document();
        assert!(doc["paths"]["/v1/batch"]["post"]["responses"]["200"].is_object());
        let message = &doc["components"]["schemas"]["SegmentMessage"];
        assert!(message.get("required").is_none(), "no field is required of every message: {message}");
        assert_eq!(message["properties"]["userId"]["type"], serde_json::json!(["string", "number", "null"]));
        assert_eq!(message["properties"]["anonymousId"]["type"], serde_json::json!(["string", "number", "null"]));
        assert!(message["properties"].get("originalTimestamp").is_some());
        assert!(doc["components"]["securitySchemes"]["basic"].is_object());
        let namespace = crate::segment::message::NAMESPACE.to_string();
        assert!(DOCUMENT.contains(&namespace), "the UUIDv5 namespace is in the document");
        for kind in crate::segment::message::MessageType::ALL {
            let path = format!("/v1/{}", kind.name());
            let example = &doc["paths"][&path]["post"]["requestBody"]["content"]["application/json"]["example"];
            assert_eq!(example["type"], kind.name(), "{path} has an example");
        }
        for (alias, path) in SEGMENT_ALIASES {
            let (short, long) = (&doc["paths"][alias]["post"], &doc["paths"][path]["post"]);
            assert_eq!(short["requestBody"], long["requestBody"], "{alias} takes what {path} takes");
            assert_eq!(short["responses"], long["responses"], "{alias} answers as {path}");
            assert!(short["description"].as_str().unwrap_or("").contains(path), "{alias} names {path}");
            assert!(doc["paths"][alias].get("options").is_some(), "{alias} has its preflight");
        }
        // The Segment endpoints' own words for what differs from /v1/events.
        let responses = &doc["paths"]["/v1/batch"]["post"]["responses"];
        let says = |status: &str, what: &str| responses[status]["description"].as_str().unwrap_or("").contains(what);
        assert!(says("401", "HTTP Basic username") && says("401", "`writeKey`"));
        assert!(says("415", "NDJSON is not taken here") && !says("415", "application/x-ndjson"));
        assert!(says("503", "sluice event ids"));
        let events = &doc["paths"]["/v1/events"]["post"]["responses"];
        assert!(events["415"]["description"].as_str().unwrap_or("").contains("application/x-ndjson"));
    }

    #[test]
    fn every_error_body_matches_the_documented_schema() {
        let doc = document();
        let properties = doc["components"]["schemas"]["ErrorDetail"]["properties"].as_object().expect("properties");
        // The placeholders leave optional parts out: add an invalid_event with its route column.
        let routed = ApiError::InvalidEvent {
            message: String::new(),
            at: Default::default(),
            column: Some(Box::new(crate::error::RouteColumn::default())),
        };
        for error in ApiError::all().chain([routed]) {
            let body = error.body();
            for key in body["error"].as_object().expect("error object").keys() {
                assert!(properties.contains_key(key), "{}: `{key}` is documented", error.code());
            }
        }
    }

    #[test]
    fn the_event_schema_has_the_api_fields_and_limits() {
        let doc = document();
        let event = &doc["components"]["schemas"]["EventInput"];
        let mut fields: Vec<&str> =
            event["properties"].as_object().expect("properties").keys().map(String::as_str).collect();
        fields.sort_unstable();
        let mut api: Vec<&str> = sluice_core::event::API_FIELDS.to_vec();
        api.sort_unstable();
        assert_eq!(fields, api);
        assert_eq!(event["required"], serde_json::json!(["type"]));
        assert_eq!(event["properties"]["type"]["maxLength"], MAX_TYPE_CHARS);
        assert_eq!(event["properties"]["key"]["maxLength"], MAX_KEY_CHARS);
    }

    #[test]
    fn every_post_endpoint_documents_cors_and_the_key_in_the_query() {
        let doc = document();
        let mut posts = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            let Some(post) = item.get("post") else { continue };
            posts += 1;
            let options = &item["options"];
            assert!(options["responses"]["204"]["headers"].get("Access-Control-Allow-Headers").is_some(), "{path}");
            assert!(options["responses"]["403"]["description"].as_str().unwrap_or("").contains("origin_not_allowed"));
            for (status, response) in post["responses"].as_object().expect("responses") {
                assert!(response["headers"].get("Access-Control-Allow-Origin").is_some(), "{path} {status}");
            }
        }
        assert!(posts >= 1);
        let events = &doc["paths"]["/v1/events"]["post"];
        assert!(events["requestBody"]["content"].get("text/plain").is_some());
        let params = events["parameters"].as_array().expect("parameters");
        assert!(params.iter().any(|p| p["name"] == "api_key" && p["in"] == "query"));
        assert!(events["responses"]["403"]["description"].as_str().unwrap_or("").contains("`origin_not_allowed`"));
        assert_eq!(doc["components"]["securitySchemes"]["api_key"]["in"], "query");
    }

    #[test]
    fn every_route_is_documented() {
        let doc = document();
        for path in INGEST_PATHS.into_iter().chain(["/healthz", "/readyz", "/metrics", "/openapi.json"]) {
            assert!(doc["paths"].get(path).is_some(), "{path}");
        }
        assert!(doc["paths"]["/readyz"]["get"]["responses"].get("503").is_some());
    }
}
