//! A Segment request body, split into its messages: `/v1/batch`'s
//! `{"batch": [...], "sentAt"?, "writeKey"?, "context"?}` (other fields are ignored, as
//! Segment ignores them), or one message (the single-message endpoints).
//!
//! Messages stay raw JSON text here: each is measured against the per-message limit before it
//! is parsed into values (see `handler`). Splitting reuses `body::events`, which stops one past
//! `--max-batch-events`.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{value::RawValue, Map, Value};
use sluice_core::event::json_kind;

use super::message::parse_time;
use crate::{
    body::{self, Format},
    error::ApiError,
};

/// What the handler needs of a request body.
#[derive(Debug)]
pub struct Request<'a> {
    /// Each message's JSON text, in order (a single message is index 0).
    pub messages: Vec<&'a RawValue>,
    /// The body's `writeKey`, when it is a string.
    pub write_key: Option<String>,
    /// The batch's `sentAt`.
    pub sent_at: Option<DateTime<Utc>>,
    /// The batch's `context`.
    pub context: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow, default)]
    batch: Option<&'a RawValue>,
    #[serde(rename = "sentAt", default)]
    sent_at: Option<Value>,
    #[serde(rename = "writeKey", default)]
    write_key: Option<Value>,
    #[serde(default)]
    context: Option<Value>,
}

#[derive(Deserialize)]
struct KeyOnly {
    #[serde(rename = "writeKey", default)]
    write_key: Option<Value>,
}

/// A `/v1/batch` body.
pub fn batch(body: &[u8], max_messages: usize) -> Result<Request<'_>, ApiError> {
    // serde would read a struct from an array too: only an object is a batch.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let value: Value = serde_json::from_slice(body).map_err(|e| body::json_error(&e, None))?;
        return Err(ApiError::InvalidBatch {
            message: format!(
                "the body must be a JSON object with a `batch` array of messages, got {}",
                json_kind(&value)
            ),
        });
    }
    let envelope: BatchBody<'_> = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::InvalidBatch {
            message: format!("the body must be a JSON object with a `batch` array of messages: {e}"),
        },
        _ => body::json_error(&e, None),
    })?;
    let Some(batch) = envelope.batch else {
        return Err(ApiError::InvalidBatch {
            message: "missing field `batch`: the body must be a JSON object with a `batch` array of messages"
                .to_owned(),
        });
    };
    if !batch.get().starts_with('[') {
        let kind = serde_json::from_str::<Value>(batch.get()).map_or("not an array", |v| json_kind(&v));
        return Err(ApiError::InvalidBatch { message: format!("`batch` must be an array of messages, got {kind}") });
    }
    let messages =
        body::events(Format::Json, batch.get().as_bytes(), max_messages)?.into_iter().map(|(_, m)| m).collect();
    let sent_at = parse_time("sentAt", envelope.sent_at.as_ref())
        .map_err(|e| ApiError::InvalidBatch { message: format!("the batch's {e}") })?;
    let context = match envelope.context {
        None | Some(Value::Null) => None,
        Some(Value::Object(context)) => Some(context),
        Some(other) => {
            return Err(ApiError::InvalidBatch {
                message: format!("the batch's `context` must be a JSON object, got {}", json_kind(&other)),
            })
        }
    };
    Ok(Request { messages, write_key: string(envelope.write_key), sent_at, context })
}

/// A single-message body. Anything but an object is left for the mapping to refuse.
pub fn single(body: &[u8]) -> Result<Request<'_>, ApiError> {
    let message: &RawValue = serde_json::from_slice(body).map_err(|e| body::json_error(&e, None))?;
    let write_key = serde_json::from_str::<KeyOnly>(message.get()).ok().and_then(|k| string(k.write_key));
    Ok(Request { messages: vec![message], write_key, sent_at: None, context: None })
}

/// A `writeKey` that is not a string is no key (401 when keys are configured).
fn string(value: Option<Value>) -> Option<String> {
    match value {
        Some(Value::String(key)) => Some(key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn code(result: Result<Request<'_>, ApiError>) -> (String, String) {
        let err = result.expect_err("refused");
        (err.code().to_owned(), err.to_string())
    }

    #[test]
    fn a_batch_is_split_with_its_envelope() {
        let body = json!({"batch": [{"type": "page"}, {"type": "track"}], "sentAt": "2026-01-01T00:00:00.5+01:00",
            "writeKey": "wk", "context": {"ip": "1"}, "other": [1]})
        .to_string();
        let request = batch(body.as_bytes(), 10).expect("valid");
        assert_eq!(request.messages.len(), 2);
        assert_eq!(request.messages[1].get(), r#"{"type":"track"}"#);
        assert_eq!(request.write_key.as_deref(), Some("wk"));
        assert_eq!(request.sent_at.map(|t| t.to_rfc3339()).as_deref(), Some("2025-12-31T23:00:00.500+00:00"));
        assert_eq!(request.context, json!({"ip": "1"}).as_object().cloned());
        let bare = batch(br#"{"batch":[{}],"writeKey":5}"#, 10).expect("valid");
        assert_eq!((bare.write_key, bare.sent_at, bare.context), (None, None, None));
    }

    #[test]
    fn a_wrong_envelope_is_refused() {
        let cases: [(&[u8], &str, &str); 10] = [
            (b"{\"batch\": [", "invalid_json", "body is not valid JSON, it ends too early: EOF while parsing a list at line 1 column 11"),
            (b"[{}]", "invalid_batch", "the body must be a JSON object with a `batch` array of messages, got an array"),
            (br#"{"batch": [], "batch": [{}]}"#, "invalid_batch", "the body must be a JSON object with a `batch` array of messages: duplicate field `batch` at line 1 column 21"),
            (b"{}", "invalid_batch", "missing field `batch`: the body must be a JSON object with a `batch` array of messages"),
            (br#"{"batch": {"type": "page"}}"#, "invalid_batch", "`batch` must be an array of messages, got an object"),
            (br#"{"batch": null}"#, "invalid_batch", "missing field `batch`: the body must be a JSON object with a `batch` array of messages"),
            (br#"{"batch": []}"#, "empty_batch", "the request holds no events; send at least one"),
            (br#"{"batch": [{}, {}, {}]}"#, "batch_too_large", "request holds at least 3 events, the limit is 2; split it into smaller requests"),
            (br#"{"batch": [{}], "sentAt": "now"}"#, "invalid_batch", "the batch's `sentAt` must be an RFC 3339 timestamp (e.g. 2026-01-31T12:00:00.000Z), got \"now\""),
            (br#"{"batch": [{}], "context": []}"#, "invalid_batch", "the batch's `context` must be a JSON object, got an array"),
        ];
        for (body, expected_code, message) in cases {
            assert_eq!(
                code(batch(body, 2)),
                (expected_code.to_owned(), message.to_owned()),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_single_message_carries_its_key() {
        let request = single(br#" {"type": "track", "writeKey": "wk"} "#).expect("valid");
        assert_eq!((request.messages.len(), request.write_key.as_deref()), (1, Some("wk")));
        assert_eq!(single(b"[1]").expect("left to the mapping").write_key, None);
        assert_eq!(code(single(b"{")).0, "invalid_json");
    }

    proptest! {
        #[test]
        fn no_body_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), s in r#"[\[\]\{\}",:0-9a-z ]{0,128}"#) {
            let _ = batch(&bytes, 4);
            let _ = single(&bytes);
            let wrapped = format!(r#"{{"batch":{s}}}"#);
            let _ = batch(wrapped.as_bytes(), 4);
        }
    }
}
