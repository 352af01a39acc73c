//! The sinker's record decoder that builds no JSON tree of `data` ([`decode_raw`]).
//!
//! The envelope's small fields are validated by the same rules (and with the same messages) as
//! [`wire::decode`](crate::wire::decode); `data` is kept as the byte range of its JSON text in
//! the record value, scanned (not parsed into a tree) for what `jsonb` refuses. The envelope
//! visitor is shared with the routes' decoder (`crate::pruned`), which takes `data` its own way
//! (`TakeData`); both walk an unknown field's value as the tree decoder parses it.
//!
//! Invariants:
//! - every record [`wire::decode`](crate::wire::decode) refuses is refused here with the same
//!   reason and detail (a record the fast path does not take is decoded by `wire::decode`),
//!   except for what only the tree refuses inside `data`, which `jsonb` stores as sent: numbers
//!   beyond a double's range, nesting deeper than `MAX_DATA_DEPTH`, an invalid earlier `data`
//!   that a repeated `data` replaces, and [`RAW_VALUE_KEY`](crate::raw_value_key::KEY) (the
//!   gateway refuses all of these, so only records from other producers carry them);
//! - every record decoded here is decoded by `wire::decode` to the same id, type, key and
//!   timestamps, and to a `data` whose JSON is equal, except that numbers keep the digits they
//!   were written with (the tree rounds them to a double, and refuses beyond its range).

use std::{borrow::Cow, fmt, ops::Range};

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::{
    event::{check_key, check_type, parse_id, parse_timestamp, to_micros},
    numbers::numbers_fit_numeric,
    scan::{not_raw_value_key, DataSeed},
    wire::{self, Rejection},
};

/// An event whose `data` is left as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    pub id: Uuid,
    pub event_type: String,
    pub key: Option<String>,
    pub ts: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub data: RawData,
}

/// Where an event's `data` JSON text is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawData {
    /// These bytes of the record value (an object).
    Slice(Range<usize>),
    /// Absent or null in the record: `{}`.
    Empty,
    /// Rendered from a tree (records the fast path left to [`wire::decode`]).
    Owned(String),
}

impl RawEvent {
    /// `data`'s JSON text; `value` is the record value it was decoded from.
    pub fn data<'v>(&'v self, value: &'v [u8]) -> &'v str {
        match &self.data {
            // The range is a RawValue's, inside the validated UTF-8 value: always a char boundary.
            RawData::Slice(range) => std::str::from_utf8(&value[range.clone()]).unwrap_or("{}"),
            RawData::Empty => "{}",
            RawData::Owned(text) => text,
        }
    }
}

/// Decodes a record value like [`wire::decode`], without a tree of `data`.
pub fn decode_raw(
    value: Option<&[u8]>,
    record_ts: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    max_bytes: usize,
) -> Result<RawEvent, Rejection> {
    if let Some(bytes) = value.filter(|b| b.len() <= max_bytes) {
        if let Some(event) = fast(bytes, record_ts, now) {
            return Ok(event);
        }
    }
    // Anything unusual (not an object, a wrong field, a NUL in data, a bad escape): the tree
    // decoder says exactly what, or takes it.
    let event = wire::decode(value, record_ts, now, max_bytes)?;
    let data = if event.data.is_empty() {
        RawData::Empty
    } else {
        RawData::Owned(serde_json::to_string(&event.data).unwrap_or_else(|_| "{}".to_owned()))
    };
    Ok(RawEvent {
        id: event.id,
        event_type: event.event_type,
        key: event.key,
        ts: event.ts,
        received_at: event.received_at,
        data,
    })
}

/// The fast path: None when the record is not a valid event with an object (or no) `data`
/// free of what `jsonb` refuses (escapes it cannot hold, numbers `numeric` does not store as
/// written: `crate::numbers`; the tree decoder reads those as doubles, as it always did).
fn fast(bytes: &[u8], record_ts: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<RawEvent> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut envelope = de.deserialize_map(EnvelopeVisitor(AsRawValue)).ok()?;
    de.end().ok()?;
    let small = envelope.small_fields(record_ts, now)?;
    let data = match envelope.data {
        None => RawData::Empty,
        Some(raw) => {
            let text = raw.get();
            match text.as_bytes().first() {
                Some(b'{') if jsonb_takes(text) && numbers_fit_numeric(text.as_bytes()) => {
                    let start = text.as_ptr() as usize - bytes.as_ptr() as usize;
                    RawData::Slice(start..start + text.len())
                }
                Some(b'n') => RawData::Empty,
                _ => return None,
            }
        }
    };
    Some(RawEvent {
        id: small.id,
        event_type: small.event_type,
        key: small.key,
        ts: small.ts,
        received_at: small.received_at,
        data,
    })
}

/// Whether `jsonb` takes this (syntactically valid) JSON text's escapes: no `\u0000`, and
/// every `\u` surrogate in a pair (what the tree decoder also refuses).
fn jsonb_takes(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    let mut pending_high = false;
    // Only escapes matter: from one backslash to the next with memchr.
    while let Some(at) = memchr::memchr(b'\\', b.get(i..).unwrap_or_default()) {
        if pending_high && at != 0 {
            // A high surrogate not followed at once by an escape (its low half).
            return false;
        }
        i += at;
        if b.get(i + 1) != Some(&b'u') {
            if pending_high {
                return false;
            }
            i += 2;
            continue;
        }
        let Some(n) =
            b.get(i + 2..i + 6).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u16::from_str_radix(h, 16).ok())
        else {
            return false;
        };
        match n {
            0 => return false,
            0xD800..=0xDBFF if !pending_high => pending_high = true,
            0xDC00..=0xDFFF if pending_high => pending_high = false,
            0xD800..=0xDFFF => return false,
            _ if pending_high => return false,
            _ => {}
        }
        i += 6;
    }
    !pending_high
}

/// The envelope's fields: the small ones as [`Small`] values, `data` as its [`TakeData`] takes
/// it; a repeated field keeps its last value (as the tree does).
pub(crate) struct Envelope<'a, D> {
    id: Small<'a>,
    event_type: Small<'a>,
    key: Small<'a>,
    ts: Small<'a>,
    received_at: Small<'a>,
    pub(crate) data: Option<D>,
}

/// An envelope's fields but `data`, validated by the tree decoder's own rules (the defaults
/// applied: `ts` and `received_at` from the record's timestamp, else `now`).
pub(crate) struct SmallFields {
    pub(crate) id: Uuid,
    pub(crate) event_type: String,
    pub(crate) key: Option<String>,
    pub(crate) ts: DateTime<Utc>,
    pub(crate) received_at: DateTime<Utc>,
}

impl<D> Envelope<'_, D> {
    /// The small fields (taken out), or None when the tree decoder would refuse one of them
    /// (it says why).
    pub(crate) fn small_fields(&mut self, record_ts: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<SmallFields> {
        let Small::Str(id) = &self.id else { return None };
        let id = parse_id(id).ok()?;
        let Small::Str(event_type) = std::mem::take(&mut self.event_type) else { return None };
        check_type(&event_type).ok()?;
        let key = match std::mem::take(&mut self.key) {
            Small::Str(key) => Some(check_key(&key).map(|()| key.into_owned()).ok()?),
            Small::Null => None,
            Small::Other => return None,
        };
        let timestamp = |field, value: &Small<'_>| match value {
            Small::Str(s) => parse_timestamp(field, s).ok().map(Some),
            Small::Null => Some(None),
            Small::Other => None,
        };
        let ts = timestamp("ts", &self.ts)?;
        let received_at = timestamp("received_at", &self.received_at)?;
        let fallback = to_micros(record_ts.unwrap_or(now));
        Some(SmallFields {
            id,
            event_type: event_type.into_owned(),
            key,
            ts: ts.unwrap_or(fallback),
            received_at: received_at.unwrap_or(fallback),
        })
    }
}

/// A small field's value as the checks need it: a string (borrowed when it has no escapes),
/// null (or absent: the same to the tree decoder), or anything else, which every small field
/// refuses but which is walked as the tree parses it (a later repeated field may replace it;
/// what the tree cannot parse fails the envelope).
#[derive(Default)]
enum Small<'de> {
    Str(Cow<'de, str>),
    #[default]
    Null,
    Other,
}

impl<'de> de::Deserialize<'de> for Small<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Small<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Small::Null)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Small::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Small::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Small::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Small::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Small::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Small::Other)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                DataSeed::beside_data().visit_seq(seq).map(|()| Small::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                DataSeed::beside_data().visit_map(map).map(|()| Small::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// How [`EnvelopeVisitor`] takes `data`'s value, and skips the value of a field it does not know.
pub(crate) trait TakeData<'de> {
    type Data;

    fn data<A: MapAccess<'de>>(&self, map: &mut A) -> Result<Self::Data, A::Error>;

    fn other<A: MapAccess<'de>>(&self, map: &mut A) -> Result<(), A::Error>;
}

/// `data` as its JSON text ([`decode_raw`]).
struct AsRawValue;

impl<'de> TakeData<'de> for AsRawValue {
    type Data = &'de RawValue;

    fn data<A: MapAccess<'de>>(&self, map: &mut A) -> Result<&'de RawValue, A::Error> {
        map.next_value()
    }

    fn other<A: MapAccess<'de>>(&self, map: &mut A) -> Result<(), A::Error> {
        map.next_value_seed(DataSeed::beside_data())
    }
}

/// A record value's envelope, its `data` taken by `T`.
pub(crate) struct EnvelopeVisitor<T>(pub(crate) T);

impl<'de, T: TakeData<'de>> Visitor<'de> for EnvelopeVisitor<T> {
    type Value = Envelope<'de, T::Data>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut e = Envelope {
            id: Small::Null,
            event_type: Small::Null,
            key: Small::Null,
            ts: Small::Null,
            received_at: Small::Null,
            data: None,
        };
        while let Some(key) = map.next_key::<FieldName<'de>>()? {
            not_raw_value_key(&key.0)?;
            let slot = match &*key.0 {
                "id" => &mut e.id,
                "type" => &mut e.event_type,
                "key" => &mut e.key,
                "ts" => &mut e.ts,
                "received_at" => &mut e.received_at,
                "data" => {
                    e.data = Some(self.0.data(&mut map)?);
                    continue;
                }
                _ => {
                    self.0.other(&mut map)?;
                    continue;
                }
            };
            *slot = map.next_value()?;
        }
        Ok(e)
    }
}

/// An object key, borrowed when it has no escapes.
pub(crate) struct FieldName<'de>(pub(crate) Cow<'de, str>);

impl<'de> de::Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// The byte-by-byte version `jsonb_takes` replaced (memchr now skips to each escape).
    fn jsonb_takes_bytewise(text: &str) -> bool {
        let b = text.as_bytes();
        let (mut i, mut pending_high) = (0, false);
        while i < b.len() {
            if b[i] != b'\\' {
                if pending_high {
                    return false;
                }
                i += 1;
                continue;
            }
            if b.get(i + 1) != Some(&b'u') {
                if pending_high {
                    return false;
                }
                i += 2;
                continue;
            }
            let Some(n) = b
                .get(i + 2..i + 6)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u16::from_str_radix(h, 16).ok())
            else {
                return false;
            };
            match n {
                0 => return false,
                0xD800..=0xDBFF if !pending_high => pending_high = true,
                0xDC00..=0xDFFF if pending_high => pending_high = false,
                0xD800..=0xDFFF => return false,
                _ if pending_high => return false,
                _ => {}
            }
            i += 6;
        }
        !pending_high
    }

    proptest! {
        #[test]
        fn jsonb_takes_agrees_with_the_bytewise_scan(parts in proptest::collection::vec(prop_oneof![
            Just("a".to_owned()), Just("\\\\".to_owned()), Just("\\\"".to_owned()), Just("\\n".to_owned()),
            Just("\\u0000".to_owned()), Just("\\u00e9".to_owned()), Just("\\ud83d".to_owned()), Just("\\ude00".to_owned()),
            Just("\\udbff".to_owned()), Just("\\udfff".to_owned()), Just("\\uzzzz".to_owned()), Just("\\u12".to_owned()),
            Just("x y".to_owned()),
        ], 0..8)) {
            let text = parts.concat();
            prop_assert_eq!(jsonb_takes(&text), jsonb_takes_bytewise(&text), "{}", text);
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
    }

    /// decode_raw agrees with wire::decode: same rejection, or the same event with equal data.
    fn agrees(bytes: &[u8]) {
        let now = t("2026-01-01T00:00:00Z");
        let tree = wire::decode(Some(bytes), Some(now), now, 4096);
        let raw = decode_raw(Some(bytes), Some(now), now, 4096);
        match (tree, raw) {
            (Err(a), Err(b)) => assert_eq!(a, b),
            (Ok(a), Ok(b)) => {
                assert_eq!(
                    (a.id, &a.event_type, &a.key, a.ts, a.received_at),
                    (b.id, &b.event_type, &b.key, b.ts, b.received_at)
                );
                let data: Value = serde_json::from_str(b.data(bytes)).expect("data is JSON");
                assert_eq!(data, Value::Object(a.data), "{}", String::from_utf8_lossy(bytes));
            }
            (a, b) => panic!("disagree on {}: tree {a:?}, raw {b:?}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn the_gateways_records_decode_with_data_as_a_slice() {
        let event = Event::from_api(
            json!({"type": "click", "key": "u1", "data": {"x": [1, 2], "s": "é\n"}}),
            t("2026-01-01T00:00:00Z"),
        )
        .expect("valid");
        let (_, value) = wire::encode(&event);
        let raw = decode_raw(Some(&value), None, t("2030-01-01T00:00:00Z"), 1 << 20).expect("decodes");
        assert!(matches!(raw.data, RawData::Slice(_)));
        assert_eq!(raw.data(&value), r#"{"s":"é\n","x":[1,2]}"#);
        agrees(&value);
    }

    #[test]
    fn unusual_records_agree_with_the_tree_decoder() {
        let id = "0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b";
        for value in [
            format!(r#"{{"id":"{id}","type":"x"}}"#),
            format!(r#"{{"id":"{id}","type":"x","data":null}}"#),
            format!(r#"{{"id":"{id}","type":"x","data":[]}}"#),
            format!(r#"{{"id":"{id}","type":"x","data":"s"}}"#),
            format!(r#"{{"id":"{id}","type":"x","data":{{"a":"\u0000"}}}}"#),
            format!(r#"{{"id":"{id}","type":"x","data":{{"a":"\\u0000"}}}}"#),
            format!(r#"{{"id":"{id}","type":"x","data":{{"\u0000":1}}}}"#),
            format!(r#"{{"id":"{id}","type":"x","data":{{"a":"\ud83d\ude00"}}}}"#),
            format!(r#"{{"id":"{id}","type":"x","data":{{"a":"\ud83d"}}}}"#),
            format!(r#"{{"id":"{id}","type":"x","data":{{"a":"\ude00x"}}}}"#),
            format!(r#"{{"id":"{id}","type":"x","type":"y","data":{{"a":1}},"data":{{"b":2}}}}"#),
            format!(r#"{{"id":"{id}","ty\u0070e":"x"}}"#),
            format!(r#"{{"id":"{id}","type":"","data":{{}}}}"#),
            format!(r#"{{"id":"{id}","type":"x","key":7}}"#),
            format!(r#"{{"id":"{id}","type":"x","ts":"nope"}}"#),
            format!(r#"{{"id":"{id}","type":"x","received_at":"0000-01-01T00:00:00Z"}}"#),
            format!(r#"{{"id":"{id}","type":"x","extra":{{"deep":[1,{{"a":null}}]}}}}"#),
            // An unknown field is parsed by the tree decoder: refused by its rules, NUL taken.
            format!(r#"{{"id":"{id}","type":"x","extra":1e400}}"#),
            format!(r#"{{"id":"{id}","type":"x","extra":["\ud800"]}}"#),
            format!(r#"{{"id":"{id}","type":"x","extra":{}1{}}}"#, "[".repeat(127), "]".repeat(127)),
            format!(r#"{{"id":"{id}","type":"x","extra":{}1{}}}"#, "[".repeat(126), "]".repeat(126)),
            format!(r#"{{"id":"{id}","type":"x","extra":{{"\u0000":"\u0000"}}}}"#),
            // The key serde_json's Value reads as a raw value.
            format!(r#"{{"$serde_json::private::RawValue":"1","id":"{id}","type":"x"}}"#),
            // A repeated field's earlier value is parsed (and refused) by the tree decoder.
            format!(r#"{{"id":"{id}","type":1e400,"type":"x"}}"#),
            format!(r#"{{"id":"{id}","type":"x","key":"\udc00","key":"k"}}"#),
            format!(r#"{{"id":"{id}","type":"x","ts":{}1{},"ts":null}}"#, "[".repeat(127), "]".repeat(127)),
            format!(r#"{{"id":"{id}","type":"x","extra":{{"$serde_json::private::RawValue":"1e400"}}}}"#),
            format!(r#"{{"id":"{id}","type":"x"}} trailing"#),
            r#"{"type":"x"}"#.to_owned(),
            "[]".to_owned(),
            "not json".to_owned(),
        ] {
            agrees(value.as_bytes());
        }
        let mut invalid_utf8 = format!(r#"{{"id":"{id}","type":"x","extra":"ab"}}"#).into_bytes();
        let at = invalid_utf8.len() - 3;
        invalid_utf8[at] = 0xff;
        agrees(&invalid_utf8);
    }

    #[test]
    fn numbers_keep_their_digits() {
        let id = "0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b";
        let value = format!(r#"{{"id":"{id}","type":"x","data":{{"n":123456789012345678901234567890,"f":1.10}}}}"#);
        let raw = decode_raw(Some(value.as_bytes()), None, t("2030-01-01T00:00:00Z"), 1 << 20).expect("decodes");
        assert_eq!(raw.data(value.as_bytes()), r#"{"n":123456789012345678901234567890,"f":1.10}"#);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "\\PC{0,8}".prop_map(Value::String),
            prop_oneof![Just("\u{0}"), Just("\u{1F600}"), Just("\\u0000"), Just("\"\\")].prop_map(|s| json!(s)),
            Just(json!("0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b")),
            Just(json!("2026-01-01T00:00:00Z")),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("id".to_owned()),
                        Just("type".to_owned()),
                        Just("key".to_owned()),
                        Just("ts".to_owned()),
                        Just("received_at".to_owned()),
                        Just("data".to_owned()),
                        "\\PC{0,6}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn any_json_decodes_as_the_tree_decoder_does(value in json_value(), id in any::<bool>()) {
            let mut value = value;
            if id {
                if let Value::Object(map) = &mut value {
                    map.insert("id".into(), json!("0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b"));
                    map.entry("type").or_insert(json!("t"));
                }
            }
            agrees(&serde_json::to_vec(&value).unwrap_or_default());
        }

        #[test]
        fn any_bytes_decode_as_the_tree_decoder_does(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            agrees(&bytes);
        }
    }
}
