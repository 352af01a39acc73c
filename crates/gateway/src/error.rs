//! Every error the HTTP API answers with, in one place: `{"error": {"code", "message", ...}}`.

use std::time::Duration;

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// Where in the request an offending event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Index in the JSON array (0 for a single object).
    Index(usize),
    /// Line number in an NDJSON body, from 1.
    Line(usize),
}

impl Position {
    /// `event 2: <message>` or `line 3: <message>`: what every per-event message starts with.
    pub fn prefix(self, message: &str) -> String {
        match self {
            Self::Index(i) => format!("event {i}: {message}"),
            Self::Line(n) => format!("line {n}: {message}"),
        }
    }
}

/// Placeholder for [`ApiError::all`]'s examples.
impl Default for Position {
    fn default() -> Self {
        Self::Index(0)
    }
}

/// Where a routes check failed (`--routes`): the route, the column and the path into the event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteColumn {
    pub route: String,
    pub column: String,
    pub path: String,
}

/// Every error answer. The OpenAPI document lists every variant (through [`ApiError::all`]),
/// with its status, code and headers: a new variant is documented without further work (its
/// fields need a `Default`, for the placeholder example).
#[derive(Debug, thiserror::Error, strum::EnumIter)]
pub enum ApiError {
    #[error("{message}")]
    InvalidJson { message: String, at: Option<Position> },
    /// `column`: set when the event failed a declared type or `required` of a route.
    #[error("{message}")]
    InvalidEvent { message: String, at: Position, column: Option<Box<RouteColumn>> },
    /// With `--routes`: the event's type matches no route.
    #[error("{message}")]
    NoRoute { message: String, at: Position },
    #[error("the request holds no events; send at least one")]
    EmptyBatch,
    /// A Segment `/v1/batch` body whose envelope is wrong (no `batch` array, a bad `sentAt`,
    /// `writeKey` or `context`).
    #[error("{message}")]
    InvalidBatch { message: String },
    /// `segment`: answered by a Segment endpoint, whose clients send their write key as the
    /// HTTP Basic username or in the body, so the message says so.
    #[error("{}", if *segment {
        "missing or invalid write key; send it as the HTTP Basic username with an empty password (`Authorization: Basic base64(<key>:)`, curl -u '<key>:') or as the body's `writeKey` (`Authorization: Bearer <key>` and `?api_key=<key>` work too)"
    } else {
        "missing or invalid API key; send `Authorization: Bearer <key>` (or `?api_key=<key>` where headers cannot be set)"
    })]
    Unauthorized { segment: bool },
    /// The request's `Origin` is not allowed: by `--cors-allow-origins`, or by its key's
    /// `allowed_origins`.
    #[error("requests from this origin are not allowed; nothing was written. The gateway's --cors-allow-origins (or this key's allowed_origins) must list the page's origin")]
    OriginNotAllowed,
    #[error("request body is larger than {limit} bytes; split it into smaller requests")]
    BodyTooLarge { limit: usize },
    /// The records a request's events make are more than it may produce: a Segment batch
    /// `context` copied into every message, or numbers that re-encode longer. Code
    /// `body_too_large`: to the client it is a request too big.
    #[error("the request's events come to more than {limit} bytes as written to Kafka, more than one request may produce; split it into smaller requests (a Segment batch `context` is copied into every message: keep it small)")]
    ProducedTooLarge { limit: usize },
    #[error("event is {size} bytes as written to Kafka (key and JSON value), the limit is {limit}; make it smaller")]
    EventTooLarge { size: usize, limit: usize, at: Position },
    /// A Segment message over Segment's 32 KiB per message: its JSON without whitespace as
    /// sent, and again once a batch `context` is merged into it.
    #[error("message is {size} bytes, the limit is {limit} bytes per message (Segment's 32 KB, counted with the batch `context` merged in); make it, or the batch `context`, smaller")]
    MessageTooLarge { size: usize, limit: usize, at: Position },
    /// `count` is where counting stopped (the limit plus one): the rest is never parsed.
    #[error("request holds at least {count} events, the limit is {limit}; split it into smaller requests")]
    BatchTooLarge { count: usize, limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the sinkers are behind (consumer lag {lag}); nothing was written, retry after {} s", retry_after.as_secs())]
    Throttled { lag: u64, retry_after: Duration },
    #[error("this client is over its rate limit; nothing was written, retry after {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    #[error("kafka is unavailable: {reason}; nothing was written, retry later")]
    KafkaUnavailable { reason: String },
    #[error("the gateway is at its in-flight limit; nothing was written, retry later")]
    Overloaded,
    #[error("the broker did not confirm {} of {total} events in time; retry them (resending the whole request is safe)", ids.len())]
    NotConfirmed { ids: Vec<Uuid>, total: usize },
    #[error("no such endpoint; see GET /openapi.json")]
    NotFound,
    #[error("this endpoint takes only {allow}; see GET /openapi.json")]
    MethodNotAllowed { allow: &'static str },
    #[error("the request body was not received within {} s; nothing was written, send it faster or in smaller requests", timeout.as_secs_f64())]
    RequestTimeout { timeout: Duration },
    #[error("the request body could not be read ({reason}); nothing was written, send it again")]
    BodyReadFailed { reason: String },
    #[error("the request's deadline passed before its events could be produced; nothing was written, retry later")]
    DeadlineExceeded,
}

impl ApiError {
    /// One of each variant, with placeholder fields: what the OpenAPI document is built from.
    pub fn all() -> impl Iterator<Item = ApiError> {
        <Self as strum::IntoEnumIterator>::iter()
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidJson { .. }
            | Self::InvalidEvent { .. }
            | Self::NoRoute { .. }
            | Self::EmptyBatch
            | Self::InvalidBatch { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::OriginNotAllowed => StatusCode::FORBIDDEN,
            Self::BodyTooLarge { .. }
            | Self::ProducedTooLarge { .. }
            | Self::EventTooLarge { .. }
            | Self::MessageTooLarge { .. }
            | Self::BatchTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Throttled { .. } | Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::KafkaUnavailable { .. } | Self::Overloaded | Self::NotConfirmed { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::BodyReadFailed { .. } => StatusCode::BAD_REQUEST,
            Self::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson { .. } => "invalid_json",
            Self::InvalidEvent { .. } => "invalid_event",
            Self::NoRoute { .. } => "no_route",
            Self::EmptyBatch => "empty_batch",
            Self::InvalidBatch { .. } => "invalid_batch",
            Self::MessageTooLarge { .. } => "message_too_large",
            Self::Unauthorized { .. } => "unauthorized",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::BodyTooLarge { .. } | Self::ProducedTooLarge { .. } => "body_too_large",
            Self::EventTooLarge { .. } => "event_too_large",
            Self::BatchTooLarge { .. } => "batch_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Throttled { .. } => "throttled",
            Self::RateLimited { .. } => "rate_limited",
            Self::KafkaUnavailable { .. } => "kafka_unavailable",
            Self::Overloaded => "overloaded",
            Self::NotConfirmed { .. } => "not_confirmed",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::RequestTimeout { .. } => "request_timeout",
            Self::BodyReadFailed { .. } => "body_read_failed",
            Self::DeadlineExceeded => "deadline_exceeded",
        }
    }

    fn position(&self) -> Option<Position> {
        match self {
            Self::InvalidJson { at, .. } => *at,
            Self::InvalidEvent { at, .. }
            | Self::NoRoute { at, .. }
            | Self::EventTooLarge { at, .. }
            | Self::MessageTooLarge { at, .. } => Some(*at),
            _ => None,
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after, .. } | Self::RateLimited { retry_after } => Some(*retry_after),
            Self::KafkaUnavailable { .. } | Self::Overloaded | Self::NotConfirmed { .. } | Self::DeadlineExceeded => {
                Some(Duration::from_secs(1))
            }
            _ => None,
        }
    }

    /// The JSON body, without the HTTP framing.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code()));
        error.insert("message".into(), json!(self.to_string()));
        match self.position() {
            Some(Position::Index(i)) => {
                error.insert("index".into(), json!(i));
            }
            Some(Position::Line(n)) => {
                error.insert("line".into(), json!(n));
            }
            None => {}
        }
        if let Self::NotConfirmed { ids, .. } = self {
            error.insert("ids".into(), json!(ids));
        }
        if let Self::InvalidEvent { column: Some(at), .. } = self {
            error.insert("route".into(), json!(at.route));
            error.insert("column".into(), json!(at.column));
            error.insert("path".into(), json!(at.path));
        }
        json!({ "error": error })
    }
}

/// The body of every error answer (the schema in the OpenAPI document; see `body`).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The stable, machine-readable code.
    pub code: String,
    /// What went wrong and what to do; lowercase.
    pub message: String,
    /// Index of the offending event in a JSON body (0 for a single object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Line of the offending event in an NDJSON body, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// `not_confirmed`: the ids the broker did not confirm (resend them, or the whole request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<Uuid>>,
    /// `invalid_event` with `--routes`: the route whose declared `type` or `required = true` the
    /// event failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// With `route`: the column (as named in the routes file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// With `route`: the column's path into the event (`data.total`), as written in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        let headers = response.headers_mut();
        if let Some(after) = self.retry_after() {
            let secs = after.as_secs().max(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, Self::Unauthorized { .. }) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Self::MethodNotAllowed { allow } = &self {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_code_message_and_position() {
        let err = ApiError::InvalidEvent {
            message: "`type` must be a string, got a number".into(),
            at: Position::Line(3),
            column: None,
        };
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            err.body(),
            json!({"error": {"code": "invalid_event", "message": "`type` must be a string, got a number", "line": 3}})
        );
        let at = RouteColumn { route: "orders".into(), column: "amount".into(), path: "data.total".into() };
        let err = ApiError::InvalidEvent { message: "m".into(), at: Position::Index(2), column: Some(Box::new(at)) };
        assert_eq!(
            err.body(),
            json!({"error": {"code": "invalid_event", "message": "m", "index": 2, "route": "orders",
                "column": "amount", "path": "data.total"}})
        );
        let err = ApiError::NoRoute { message: "m".into(), at: Position::Line(1) };
        assert_eq!(
            (err.status(), err.body()),
            (StatusCode::BAD_REQUEST, json!({"error": {"code": "no_route", "message": "m", "line": 1}}))
        );
        let id = Uuid::nil();
        let err = ApiError::NotConfirmed { ids: vec![id], total: 2 };
        assert_eq!(err.body()["error"]["ids"], json!([id]));
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    }
}
