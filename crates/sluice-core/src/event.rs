//! The event: what a client posts, what travels on the topic, what becomes a row.
//!
//! Two decoders share the same field rules:
//! - [`Event::from_api`] is strict (unknown fields are an error, `id` and `ts` may be left out
//!   and are filled in by the gateway);
//! - [`Event::from_wire`] (in `wire.rs`) accepts what any producer may write to the topic
//!   (`id` and `type` required, unknown fields ignored).

use chrono::{DateTime, Datelike, SecondsFormat, SubsecRound, TimeDelta, Timelike, Utc};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Longest `type`, in characters.
pub const MAX_TYPE_CHARS: usize = 128;
/// Longest `key`, in characters.
pub const MAX_KEY_CHARS: usize = 256;
/// The earliest timestamp an event may carry, in UTC.
pub const MIN_TS: &str = "0001-01-01T00:00:00Z";
/// The latest timestamp an event may carry, in UTC.
pub const MAX_TS: &str = "9999-12-31T23:59:59.999999Z";
/// Fields a client may send to the HTTP API.
pub const API_FIELDS: [&str; 5] = ["id", "type", "key", "ts", "data"];

/// One validated event. Serializes to the Kafka wire format (see `wire.rs`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(serialize_with = "rfc3339_micros")]
    pub ts: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_micros")]
    pub received_at: DateTime<Utc>,
    pub data: Map<String, Value>,
}

/// Why an event is not valid. `field` names the offending top-level field, when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EventError {
    pub field: Option<&'static str>,
    pub message: String,
}

impl EventError {
    fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self { field: Some(field), message: message.into() }
    }

    fn whole(message: impl Into<String>) -> Self {
        Self { field: None, message: message.into() }
    }
}

impl Event {
    /// Validates an event posted to the HTTP API. `received_at` is the gateway's clock; it is
    /// the default `ts`. A missing `id` becomes a fresh UUIDv7.
    pub fn from_api(value: Value, received_at: DateTime<Utc>) -> Result<Self, EventError> {
        // What the row will hold: the table keeps microseconds.
        let received_at = to_micros(received_at);
        let Value::Object(mut obj) = value else {
            return Err(EventError::whole(format!("an event must be a JSON object, got {}", json_kind(&value))));
        };
        if let Some(unknown) = obj.keys().find(|k| !API_FIELDS.contains(&k.as_str())) {
            return Err(EventError::whole(format!(
                "unknown field `{unknown}`: an event has only the fields id, type, key, ts and data"
            )));
        }
        let id = optional_id(obj.remove("id"))?.unwrap_or_else(Uuid::now_v7);
        let fields = CommonFields::take(&mut obj)?;
        // What the sinker could not read must not be acknowledged (a body parsed by serde_json
        // cannot hold such `data`; a value built by the caller, a Segment message, can).
        let depth = crate::wire::map_depth(&fields.data);
        if depth > crate::wire::MAX_DATA_DEPTH {
            return Err(EventError::field(
                "data",
                format!(
                    "`data` is nested {depth} levels deep (arrays and objects), the limit is {}; flatten it",
                    crate::wire::MAX_DATA_DEPTH
                ),
            ));
        }
        Ok(Self {
            id,
            event_type: fields.event_type,
            key: fields.key,
            ts: fields.ts.unwrap_or(received_at),
            received_at,
            data: fields.data,
        })
    }

    /// The Kafka record key: the event's `key`, or its id when it has none.
    pub fn partition_key(&self) -> String {
        match &self.key {
            Some(key) => key.clone(),
            None => self.id.to_string(),
        }
    }
}

/// The fields both decoders validate the same way.
pub(crate) struct CommonFields {
    pub event_type: String,
    pub key: Option<String>,
    pub ts: Option<DateTime<Utc>>,
    pub data: Map<String, Value>,
}

impl CommonFields {
    pub(crate) fn take(obj: &mut Map<String, Value>) -> Result<Self, EventError> {
        let event_type = event_type(obj.remove("type"))?;
        let key = optional_key(obj.remove("key"))?;
        let ts = optional_timestamp("ts", obj.remove("ts"))?;
        let data = match obj.remove("data") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => {
                if let Some(path) = find_nul_in_object(&map) {
                    return Err(EventError::field(
                        "data",
                        format!(
                            "`data` holds a NUL character (\\u0000) at {path}: PostgreSQL cannot store it; remove it"
                        ),
                    ));
                }
                map
            }
            Some(other) => {
                return Err(EventError::field(
                    "data",
                    format!("`data` must be a JSON object, got {}", json_kind(&other)),
                ))
            }
        };
        Ok(Self { event_type, key, ts, data })
    }
}

/// `type`: a string of 1 to [`MAX_TYPE_CHARS`] characters without NUL.
pub(crate) fn event_type(value: Option<Value>) -> Result<String, EventError> {
    match value {
        None | Some(Value::Null) => Err(EventError::field("type", "missing field `type`: every event needs a type")),
        Some(Value::String(s)) => check_type(&s).map(|()| s),
        Some(other) => Err(EventError::field("type", format!("`type` must be a string, got {}", json_kind(&other)))),
    }
}

/// [`event_type`]'s rules for a string.
pub(crate) fn check_type(event_type: &str) -> Result<(), EventError> {
    let type_chars = event_type.chars().count();
    if type_chars == 0 || type_chars > MAX_TYPE_CHARS {
        return Err(EventError::field(
            "type",
            format!("`type` must be 1 to {MAX_TYPE_CHARS} characters, got {type_chars}"),
        ));
    }
    check_no_nul("type", event_type)
}

/// `key`: absent, null, or a string of at most [`MAX_KEY_CHARS`] characters without NUL.
pub(crate) fn optional_key(value: Option<Value>) -> Result<Option<String>, EventError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => check_key(&s).map(|()| Some(s)),
        Some(other) => Err(EventError::field("key", format!("`key` must be a string, got {}", json_kind(&other)))),
    }
}

/// [`optional_key`]'s rules for a string.
pub(crate) fn check_key(key: &str) -> Result<(), EventError> {
    let chars = key.chars().count();
    if chars > MAX_KEY_CHARS {
        return Err(EventError::field("key", format!("`key` must be at most {MAX_KEY_CHARS} characters, got {chars}")));
    }
    check_no_nul("key", key)
}

pub(crate) fn optional_id(value: Option<Value>) -> Result<Option<Uuid>, EventError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_id(&s).map(Some),
        Some(other) => Err(EventError::field("id", format!("`id` must be a UUID string, got {}", json_kind(&other)))),
    }
}

/// [`optional_id`]'s rules for a string.
pub(crate) fn parse_id(s: &str) -> Result<Uuid, EventError> {
    Uuid::parse_str(s).map_err(|_| {
        EventError::field("id", format!("`id` must be a UUID (e.g. 0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b), got {s:?}"))
    })
}

pub(crate) fn optional_timestamp(
    field: &'static str,
    value: Option<Value>,
) -> Result<Option<DateTime<Utc>>, EventError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_timestamp(field, &s).map(Some),
        Some(other) => Err(EventError::field(
            field,
            format!("`{field}` must be an RFC 3339 timestamp string, got {}", json_kind(&other)),
        )),
    }
}

/// [`optional_timestamp`]'s rules for a string.
pub(crate) fn parse_timestamp(field: &'static str, s: &str) -> Result<DateTime<Utc>, EventError> {
    let parsed = DateTime::parse_from_rfc3339(s).map_err(|_| {
        EventError::field(
            field,
            format!("`{field}` must be an RFC 3339 timestamp (e.g. 2026-01-31T12:00:00Z), got {s:?}"),
        )
    })?;
    storable(parsed.with_timezone(&Utc)).ok_or_else(|| {
        EventError::field(
            field,
            format!("`{field}` must be between {MIN_TS} and {MAX_TS} once converted to UTC, got {s:?}"),
        )
    })
}

/// A timestamp as the row stores it, or None when the wire format (a four-digit year) and
/// PostgreSQL cannot both hold it: a leap second becomes the next second's start (as in
/// PostgreSQL), digits past the microsecond are truncated (the table keeps microseconds), and
/// the year, in UTC, must be 1 to 9999.
pub fn storable(t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let t = match t.nanosecond().checked_sub(1_000_000_000) {
        Some(past_leap) => t.with_nanosecond(past_leap)?.checked_add_signed(TimeDelta::seconds(1))?,
        None => t,
    };
    let t = to_micros(t);
    (1..=9999).contains(&t.year()).then_some(t)
}

/// Truncates to whole microseconds.
pub fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

fn check_no_nul(field: &'static str, s: &str) -> Result<(), EventError> {
    if s.contains('\0') {
        return Err(EventError::field(
            field,
            format!("`{field}` holds a NUL character (\\u0000): PostgreSQL cannot store it; remove it"),
        ));
    }
    Ok(())
}

/// The JSON path of the first string (or object key) holding a NUL, which `jsonb` rejects.
fn find_nul(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some("$".to_owned()),
        Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, v)| find_nul(v).map(|p| format!("$[{i}]{}", &p[1..])))
        }
        Value::Object(map) => find_nul_in_object(map),
        _ => None,
    }
}

fn find_nul_in_object(map: &Map<String, Value>) -> Option<String> {
    map.iter().find_map(|(k, v)| {
        if k.contains('\0') {
            Some(format!("$.{}", k.escape_debug()))
        } else {
            find_nul(v).map(|p| format!("$.{k}{}", &p[1..]))
        }
    })
}

/// A short name for a JSON value's kind, for error messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn rfc3339_micros<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    // PostgreSQL keeps microseconds; writing more would promise precision the table drops.
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default()
    }

    #[test]
    fn minimal_event_gets_a_v7_id_and_the_receive_time() {
        let e = Event::from_api(json!({"type": "page_view"}), now()).expect("valid");
        assert_eq!(e.id.get_version_num(), 7);
        assert_eq!(e.ts, now());
        assert_eq!(e.received_at, now());
        assert!(e.data.is_empty());
        assert_eq!(e.partition_key(), e.id.to_string());
    }

    #[test]
    fn data_the_sinker_could_not_read_is_refused() {
        use crate::wire::MAX_DATA_DEPTH;
        // `data` itself is one level; `data.a` holds the rest.
        let nested = |levels: usize| (1..levels).fold(json!(1), |inner, _| json!([inner]));
        let at_limit = json!({"type": "t", "data": {"a": nested(MAX_DATA_DEPTH)}});
        assert!(Event::from_api(at_limit, now()).is_ok());
        let past = json!({"type": "t", "data": {"a": nested(MAX_DATA_DEPTH + 1)}});
        let err = Event::from_api(past, now()).expect_err("too deep");
        assert_eq!(err.field, Some("data"));
        assert_eq!(err.message, "`data` is nested 127 levels deep (arrays and objects), the limit is 126; flatten it");
    }

    #[test]
    fn client_fields_are_kept() {
        let id = "0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b";
        let e = Event::from_api(
            json!({"id": id, "type": "t", "key": "user-1", "ts": "2026-01-01T00:00:00+01:00", "data": {"a": 1}}),
            now(),
        )
        .expect("valid");
        assert_eq!(e.id.to_string(), id);
        assert_eq!(e.partition_key(), "user-1");
        assert_eq!(e.ts.to_rfc3339(), "2025-12-31T23:00:00+00:00");
        assert_eq!(e.data["a"], 1);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"data": {}}), Some("type"), "missing field `type`: every event needs a type"),
            (json!({"type": 5}), Some("type"), "`type` must be a string, got a number"),
            (json!({"type": ""}), Some("type"), "`type` must be 1 to 128 characters, got 0"),
            (
                json!({"type": "t", "id": "nope"}),
                Some("id"),
                "`id` must be a UUID (e.g. 0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b), got \"nope\"",
            ),
            (json!({"type": "t", "data": [1]}), Some("data"), "`data` must be a JSON object, got an array"),
            (
                json!({"type": "t", "ts": "yesterday"}),
                Some("ts"),
                "`ts` must be an RFC 3339 timestamp (e.g. 2026-01-31T12:00:00Z), got \"yesterday\"",
            ),
            (
                json!({"type": "t", "extra": 1}),
                None,
                "unknown field `extra`: an event has only the fields id, type, key, ts and data",
            ),
            (json!([1]), None, "an event must be a JSON object, got an array"),
        ];
        for (value, field, message) in cases {
            let err = Event::from_api(value.clone(), now()).expect_err("invalid");
            assert_eq!((err.field, err.message.as_str()), (field, message), "for {value}");
        }
    }

    #[test]
    fn length_limits_count_characters() {
        let ok_type = "é".repeat(MAX_TYPE_CHARS);
        assert!(Event::from_api(json!({"type": ok_type}), now()).is_ok());
        let long_type = "x".repeat(MAX_TYPE_CHARS + 1);
        assert!(Event::from_api(json!({"type": long_type}), now()).is_err());
        let long_key = "k".repeat(MAX_KEY_CHARS + 1);
        let err = Event::from_api(json!({"type": "t", "key": long_key}), now()).expect_err("too long");
        assert_eq!(err.field, Some("key"));
    }

    #[test]
    fn nul_characters_are_refused_with_their_path() {
        let err = Event::from_api(json!({"type": "t", "data": {"a": [1, {"b": "x\u{0}y"}]}}), now()).expect_err("nul");
        assert_eq!(
            err.message,
            "`data` holds a NUL character (\\u0000) at $.a[1].b: PostgreSQL cannot store it; remove it"
        );
    }

    #[test]
    fn timestamps_are_kept_to_what_the_row_and_the_wire_hold() {
        let ts = |s: &str| {
            Event::from_api(json!({"type": "t", "ts": s}), now())
                .map(|e| e.ts.to_rfc3339_opts(SecondsFormat::Micros, true))
        };
        let accepted = [
            ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000Z"),
            ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
            // Past the microsecond: truncated, never rounded up (not even into year 10000).
            ("9999-12-31T23:59:59.9999999999Z", "9999-12-31T23:59:59.999999Z"),
            ("2026-01-01T00:00:00.1234567-00:00", "2026-01-01T00:00:00.123456Z"),
            ("0001-01-01T23:59:00+23:59", "0001-01-01T00:00:00.000000Z"),
            ("9999-12-31T00:00:00-23:59", "9999-12-31T23:59:00.000000Z"),
            ("2024-02-29T23:30:00-01:00", "2024-03-01T00:30:00.000000Z"),
            // A leap second is the next second's start, as PostgreSQL stores it.
            ("2016-12-31T23:59:60.5Z", "2017-01-01T00:00:00.500000Z"),
        ];
        for (input, stored) in accepted {
            assert_eq!(ts(input).as_deref(), Ok(stored), "{input}");
        }
        for refused in [
            "9999-12-31T23:59:59-23:59",
            "0000-01-01T00:00:00+01:00",
            "0000-12-31T23:59:59.999999Z",
            "9999-12-31T23:59:60Z",
            "2023-02-29T00:00:00Z",
        ] {
            let err = ts(refused).expect_err(refused);
            assert_eq!(err.field, Some("ts"), "{refused}");
        }
        let err = ts("9999-12-31T23:59:59-23:59").expect_err("year 10000");
        assert_eq!(err.message, "`ts` must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z once converted to UTC, got \"9999-12-31T23:59:59-23:59\"");
    }

    #[test]
    fn serializes_micros_in_utc() {
        let e = Event::from_api(json!({"type": "t", "ts": "2026-01-01T00:00:00.123456789Z"}), now()).expect("valid");
        let v = serde_json::to_value(&e).expect("serialize");
        assert_eq!(v["ts"], "2026-01-01T00:00:00.123456Z");
        assert_eq!(v["received_at"], "2026-11-26T10:00:00.000000Z");
        assert!(v.get("key").is_none());
    }
}
