//! The Kafka wire format, the contract between anything that produces to the topic and the sinker.
//!
//! - record key: the event's `key`, or its `id` as text when it has none (so one key's events
//!   share a partition and keep their order);
//! - record value: one UTF-8 JSON object
//!   `{"id": uuid, "type": str, "key"?: str, "ts": rfc3339, "received_at": rfc3339, "data": object}`.
//!
//! The gateway always writes every field. Other producers must write `id` and `type`; a missing
//! `ts` or `received_at` is taken from the record's timestamp, a missing `data` is `{}`, and
//! unknown fields are ignored. The table's `key` column comes from the value's `key` field only,
//! never from the record key.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::event::{json_kind, optional_id, optional_timestamp, CommonFields, Event, EventError};

/// The deepest nesting of arrays and objects a record value can have and still be read by
/// [`decode`]: serde_json's recursion limit (it starts with 128 levels and refuses the 128th
/// container), which `decode` parses with. `a_record_at_the_depth_limit_decodes` pins it, so a
/// serde_json that changes it fails the tests rather than the sinker.
pub const MAX_RECORD_DEPTH: usize = 127;

/// The deepest an event's `data` can be: its record's own object holds it, one level up. A
/// producer must refuse deeper data: the sinker could not read the record (`not_json`).
pub const MAX_DATA_DEPTH: usize = MAX_RECORD_DEPTH - 1;

/// The object key serde_json's `Value` reads as a raw value when it comes first in an object
/// (its `raw_value` feature, which this crate turns on, does it): to [`decode`],
/// `{"$serde_json::private::RawValue": "[1]"}` is the array `[1]`, and the string must be JSON.
/// The decoders that do not build the tree leave any object with this key to [`decode`]
/// (`raw_value_key_is_read_as_json` pins it, so a serde_json that changes it fails the tests).
pub(crate) const RAW_VALUE_KEY: &str = "$serde_json::private::RawValue";

/// How deeply a JSON value nests arrays and objects: 0 for a scalar, 1 for `[]`, `{"a": 1}`,
/// 2 for `[[1]]`. Iterative, so any value can be measured, however deep.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((value, level)) = stack.pop() {
        match value {
            Value::Array(items) => {
                deepest = deepest.max(level);
                stack.extend(items.iter().map(|v| (v, level + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(level);
                stack.extend(map.values().map(|v| (v, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// [`depth`] of an object given as its map.
pub fn map_depth(map: &serde_json::Map<String, Value>) -> usize {
    1 + map.values().map(depth).max().unwrap_or(0)
}

/// Why a record cannot become a row. The code is stable: it is the dead-letter reason header
/// and the `reason` label of `sinker_dlq_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The value is missing (a tombstone) or is not UTF-8 JSON.
    NotJson,
    /// JSON, but not a valid event (wrong types, missing `id` or `type`, ...).
    InvalidEvent,
    /// Larger than the configured maximum event size.
    TooLarge,
    /// PostgreSQL refused the row for a permanent reason (a data or constraint error).
    DatabaseRejected,
    /// With routes (`sinker --routes`): no route takes the event's type, or the record is a
    /// tombstone and no route declares a `tombstone_key`.
    NoRoute,
    /// With routes: a value of the event does not convert to its column's type, or a NOT NULL
    /// column without a default has no value. The detail names route, column, path and what
    /// was found. The event is written to none of its routes.
    MappingFailed,
}

impl RejectReason {
    pub const ALL: [RejectReason; 6] =
        [Self::NotJson, Self::InvalidEvent, Self::TooLarge, Self::DatabaseRejected, Self::NoRoute, Self::MappingFailed];

    pub fn code(self) -> &'static str {
        match self {
            Self::NotJson => "not_json",
            Self::InvalidEvent => "invalid_event",
            Self::TooLarge => "too_large",
            Self::DatabaseRejected => "database_rejected",
            Self::NoRoute => "no_route",
            Self::MappingFailed => "mapping_failed",
        }
    }
}

/// A record the sinker could not turn into a row, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }
}

/// Encodes an event as a record `(key, value)`.
pub fn encode(event: &Event) -> (String, Vec<u8>) {
    // Serializing a struct of strings, timestamps and a JSON map cannot fail.
    let value = serde_json::to_vec(event).unwrap_or_default();
    (event.partition_key(), value)
}

/// Decodes a record value. `record_ts` is the Kafka record timestamp, used where the value has
/// no `ts` or `received_at`; `now` is the last resort when the record has no timestamp either.
pub fn decode(
    value: Option<&[u8]>,
    record_ts: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    max_bytes: usize,
) -> Result<Event, Rejection> {
    let Some(bytes) = value else {
        return Err(Rejection::new(RejectReason::NotJson, "record has no value (a tombstone)"));
    };
    if bytes.len() > max_bytes {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!("record value is {} bytes, the limit is {max_bytes}", bytes.len()),
        ));
    }
    let parsed: Value = serde_json::from_slice(bytes)
        .map_err(|e| Rejection::new(RejectReason::NotJson, format!("record value is not JSON: {e}")))?;
    let Value::Object(mut obj) = parsed else {
        return Err(Rejection::new(
            RejectReason::InvalidEvent,
            format!("an event must be a JSON object, got {}", json_kind(&parsed)),
        ));
    };
    let invalid = |e: EventError| Rejection::new(RejectReason::InvalidEvent, e.message);
    let id = optional_id(obj.remove("id")).map_err(invalid)?.ok_or_else(|| {
        Rejection::new(RejectReason::InvalidEvent, "missing field `id`: records on the topic need an id")
    })?;
    let fields = CommonFields::take(&mut obj).map_err(invalid)?;
    let fallback = crate::event::to_micros(record_ts.unwrap_or(now));
    let received_at = optional_timestamp("received_at", obj.remove("received_at")).map_err(invalid)?;
    Ok(Event {
        id,
        event_type: fields.event_type,
        key: fields.key,
        ts: fields.ts.unwrap_or(fallback),
        received_at: received_at.unwrap_or(fallback),
        data: fields.data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn outcome_is_a_row_or_a_reasoned_rejection(value: Option<&[u8]>) {
        let now = t("2026-01-01T00:00:00Z");
        match decode(value, Some(now), now, 4096) {
            Ok(event) => {
                // A row PostgreSQL will take: the checks the table relies on hold.
                assert!(
                    !event.event_type.is_empty() && event.event_type.chars().count() <= crate::event::MAX_TYPE_CHARS
                );
                assert!(!event.event_type.contains('\0'));
                assert!(event.key.as_ref().is_none_or(|k| k.chars().count() <= crate::event::MAX_KEY_CHARS));
            }
            Err(rejection) => assert!(!rejection.detail.is_empty(), "a rejection says why"),
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,12}".prop_map(serde_json::Value::String),
            Just(json!("0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b")),
            Just(json!("2026-01-01T00:00:00Z")),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("id".to_owned()),
                        Just("type".to_owned()),
                        Just("key".to_owned()),
                        Just("ts".to_owned()),
                        Just("received_at".to_owned()),
                        Just("data".to_owned()),
                        ".{0,6}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn any_bytes_decode_to_a_row_or_a_dead_letter(bytes in proptest::collection::vec(any::<u8>(), 0..300), tombstone in any::<bool>()) {
            outcome_is_a_row_or_a_reasoned_rejection(if tombstone { None } else { Some(&bytes) });
        }

        #[test]
        fn any_json_decodes_to_a_row_or_a_dead_letter(value in json_value()) {
            let bytes = serde_json::to_vec(&value).unwrap_or_default();
            outcome_is_a_row_or_a_reasoned_rejection(Some(&bytes));
        }
    }

    /// Timestamps as a client may write them, around and beyond the calendar's edges.
    fn api_timestamp() -> impl Strategy<Value = String> {
        let year = prop_oneof![Just(0i32), Just(1), Just(9999), Just(10000), 0i32..=10000];
        let offset = prop_oneof![
            Just("Z".to_owned()),
            (any::<bool>(), 0u32..24, 0u32..60)
                .prop_map(|(neg, h, m)| format!("{}{h:02}:{m:02}", if neg { '-' } else { '+' })),
        ];
        let fraction = prop_oneof![Just(String::new()), "[0-9]{1,12}".prop_map(|d| format!(".{d}"))];
        (year, 1u32..=12, 1u32..=31, 0u32..24, 0u32..60, 0u32..=60, fraction, offset).prop_map(
            |(y, mo, d, h, mi, s, frac, off)| format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{off}"),
        )
    }

    fn api_event() -> impl Strategy<Value = serde_json::Value> {
        (
            prop_oneof![
                Just(None),
                Just(Some(json!("0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b"))),
                Just(Some(json!("nope")))
            ],
            prop_oneof![".{0,140}".prop_map(|s| json!(s)), Just(json!(1))],
            prop_oneof![Just(None), Just(Some(json!(null))), ".{0,260}".prop_map(|s| Some(json!(s)))],
            prop_oneof![Just(None), api_timestamp().prop_map(|s| Some(json!(s)))],
            prop_oneof![Just(None), json_value().prop_map(Some)],
        )
            .prop_map(|(id, ty, key, ts, data)| {
                let mut obj = serde_json::Map::new();
                obj.insert("type".into(), ty);
                for (name, value) in [("id", id), ("key", key), ("ts", ts), ("data", data)] {
                    if let Some(value) = value {
                        obj.insert(name.into(), value);
                    }
                }
                serde_json::Value::Object(obj)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        /// Every event the API accepts is written as a record the sinker reads back as the
        /// same row: no 202 ends in the dead letters.
        #[test]
        fn every_accepted_event_decodes_to_the_same_row(value in api_event(), secs in -62_135_596_800i64..253_402_300_799, nanos in 0u32..1_000_000_000) {
            let received_at = DateTime::from_timestamp(secs, nanos).unwrap_or_default();
            if let Ok(event) = Event::from_api(value, received_at) {
                let (key, record) = encode(&event);
                prop_assert_eq!(&key, &event.partition_key());
                let later = t("2030-01-01T00:00:00Z");
                let back = decode(Some(&record), Some(later), later, usize::MAX);
                prop_assert_eq!(back, Ok(event));
            }
        }
    }

    #[test]
    fn the_calendar_edges_round_trip() {
        for ts in [
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "2024-02-29T12:00:00+23:59",
            "0001-01-01T23:59:00+23:59",
            "9999-12-31T00:00:00.1234567-23:59",
        ] {
            let event = Event::from_api(json!({"type": "t", "ts": ts}), t("9999-12-31T23:59:59.999999999Z")).expect(ts);
            let (_, record) = encode(&event);
            assert_eq!(decode(Some(&record), None, t("2030-01-01T00:00:00Z"), 1 << 20), Ok(event), "{ts}");
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
    }

    #[test]
    fn round_trips_what_the_gateway_writes() {
        let event =
            Event::from_api(json!({"type": "click", "key": "u1", "data": {"x": [1, 2]}}), t("2026-01-01T00:00:00Z"))
                .expect("valid");
        let (key, value) = encode(&event);
        assert_eq!(key, "u1");
        let back = decode(Some(&value), None, t("2030-01-01T00:00:00Z"), 1 << 20).expect("decodes");
        assert_eq!(back, event);
    }

    /// `[[...[]...]]`, `levels` deep.
    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn a_record_at_the_depth_limit_decodes() {
        let now = t("2026-01-01T00:00:00Z");
        let record = |data_levels: usize| {
            // The record object, `data`'s object, then `data.a`'s arrays.
            format!(
                r#"{{"id":"0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b","type":"t","data":{{"a":{}}}}}"#,
                nested(data_levels - 1)
            )
        };
        let at_limit = record(MAX_DATA_DEPTH);
        let event = decode(Some(at_limit.as_bytes()), None, now, usize::MAX).expect("a record at the limit decodes");
        assert_eq!(map_depth(&event.data), MAX_DATA_DEPTH);
        let past = decode(Some(record(MAX_DATA_DEPTH + 1).as_bytes()), None, now, usize::MAX).expect_err("too deep");
        assert_eq!(past.reason, RejectReason::NotJson);
        assert!(past.detail.contains("recursion limit"), "{}", past.detail);
        // The same limit for any value serde_json reads: MAX_RECORD_DEPTH containers.
        assert!(serde_json::from_str::<Value>(&nested(MAX_RECORD_DEPTH)).is_ok());
        assert!(serde_json::from_str::<Value>(&nested(MAX_RECORD_DEPTH + 1)).is_err());
    }

    #[test]
    fn raw_value_key_is_read_as_json() {
        let id = "0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b";
        let now = t("2026-01-01T00:00:00Z");
        let record = |inner: &str| {
            format!(r#"{{"id":"{id}","type":"t","data":{{"a":{{"{RAW_VALUE_KEY}":{}}}}}}}"#, json!(inner))
        };
        let event = decode(Some(record("[1]").as_bytes()), None, now, 1 << 20).expect("decodes");
        assert_eq!(event.data["a"], json!([1]));
        let refused = decode(Some(record("1e400").as_bytes()), None, now, 1 << 20).expect_err("out of range");
        assert_eq!(refused.reason, RejectReason::NotJson);
    }

    #[test]
    fn depth_counts_containers() {
        for (value, expected) in [
            (json!(1), 0),
            (json!([]), 1),
            (json!({}), 1),
            (json!({"a": [1, {"b": []}], "c": 2}), 4),
            (json!([[1], [[2]]]), 3),
        ] {
            assert_eq!(depth(&value), expected, "{value}");
        }
        assert_eq!(map_depth(json!({"a": {"b": 1}}).as_object().expect("object")), 2);
        let deep: Value = serde_json::from_str(&nested(MAX_RECORD_DEPTH)).expect("parses");
        assert_eq!(depth(&deep), MAX_RECORD_DEPTH);
    }

    #[test]
    fn foreign_records_get_defaults_from_the_record() {
        let value = br#"{"id":"0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b","type":"x","extra":true}"#;
        let e = decode(Some(value), Some(t("2026-05-05T05:05:05Z")), t("2030-01-01T00:00:00Z"), 1024).expect("decodes");
        assert_eq!(e.ts, t("2026-05-05T05:05:05Z"));
        assert_eq!(e.received_at, t("2026-05-05T05:05:05Z"));
        assert_eq!(e.key, None);
        assert!(e.data.is_empty());
    }

    #[test]
    fn rejections_carry_a_reason() {
        let now = t("2026-01-01T00:00:00Z");
        let cases: [(Option<&[u8]>, RejectReason); 7] = [
            (None, RejectReason::NotJson),
            (Some(b"not json"), RejectReason::NotJson),
            (Some(b"{\"id\": \"\xff\"}"), RejectReason::NotJson),
            (Some(b"[]"), RejectReason::InvalidEvent),
            (Some(br#"{"type":"x"}"#), RejectReason::InvalidEvent),
            (Some(br#"{"id":"0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b","type":7}"#), RejectReason::InvalidEvent),
            (Some(&[b' '; 2048]), RejectReason::TooLarge),
        ];
        for (value, reason) in cases {
            let got = decode(value, None, now, 1024).expect_err("rejected");
            assert_eq!(got.reason, reason, "{got:?}");
        }
    }
}
