//! The fast path of [`Event::from_api`]: an event's JSON text validated by one scan, and its
//! record assembled from the validated slices. `data` is never built into a tree nor
//! serialized again; it travels as the client wrote it, less insignificant whitespace.
//!
//! Invariants (tested below against the tree-based path and encoder):
//! - [`ApiEvent::scan`] accepts only texts that `Event::from_api` (on the parsed text)
//!   accepts, and its record ([`ApiEvent::encode_value`]) decodes ([`crate::wire::decode`]) to
//!   exactly the event `Event::from_api` validated;
//! - it accepts every such text but for rare spellings it leaves to the tree path: a key given
//!   twice in the event, an escaped NUL (`\u0000`) anywhere in `data` (the tree path finds its
//!   JSON path for the error message, or accepts when a later duplicate key hides it), and a
//!   number in `data` that PostgreSQL's `numeric` would not store as written
//!   ([`crate::numbers`]: serde_json reads `1e-16384` as 0, jsonb refuses it; the tree writes
//!   `0.0`).
//!
//! A refusal says nothing about why: the caller runs the tree path, which gives the error
//! message (and so keeps every message as it was).
//!
//! What the scan checks: the text is an object of only `id`, `type`, `key`, `ts`, `data`;
//! `id` null or a UUID string; `type` a string of 1 to [`MAX_TYPE_CHARS`] characters without
//! NUL; `key` null or a string of at most [`MAX_KEY_CHARS`] characters without NUL; `ts` null or
//! an RFC 3339 string that [`storable`] keeps; `data` null or an object nested at most
//! [`MAX_DATA_DEPTH`] deep whose strings decode (no lone surrogate), whose numbers are within
//! a double's range (what serde_json's tree and the sinker's decoder require) and which holds
//! no NUL in a string or a key.

use std::{borrow::Cow, fmt, io::Write as _};

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, SeqAccess, Visitor};
use serde_json::{value::RawValue, Map, Value};
use uuid::Uuid;

use crate::{
    event::{storable, to_micros, MAX_KEY_CHARS, MAX_TYPE_CHARS},
    numbers::numbers_fit_numeric,
    wire::{MAX_DATA_DEPTH, RAW_VALUE_KEY},
    Event,
};

/// An event the scan accepted: its fields, and `data` as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiEvent<'a> {
    pub id: Uuid,
    pub event_type: Cow<'a, str>,
    /// `type` as a JSON string, as sent (its escapes kept).
    type_json: &'a str,
    pub key: Option<Cow<'a, str>>,
    /// `key` as a JSON string, as sent.
    key_json: Option<&'a str>,
    pub ts: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    /// `data` as sent (an object), or None for a missing or null `data` (written as `{}`).
    data: Option<&'a str>,
}

impl<'a> ApiEvent<'a> {
    /// Scans one event posted to the API (one JSON value, already known to be well-formed
    /// JSON). `received_at` is the gateway's clock, the default `ts`; a missing `id` becomes a
    /// fresh UUIDv7. None: not accepted by the scan (see the module's invariants).
    pub fn scan(text: &'a str, received_at: DateTime<Utc>) -> Option<Self> {
        let received_at = to_micros(received_at);
        let mut de = serde_json::Deserializer::from_str(text);
        let fields = de.deserialize_map(FieldsVisitor).ok()?;
        de.end().ok()?;
        let id = match optional_string(fields.id)? {
            None => Uuid::now_v7(),
            Some(text) => Uuid::parse_str(&text).ok()?,
        };
        let type_raw = fields.event_type?;
        let event_type = string_or_null(type_raw)??;
        let type_chars = event_type.chars().count();
        if type_chars == 0 || type_chars > MAX_TYPE_CHARS || event_type.contains('\0') {
            return None;
        }
        let (key, key_json) = match fields.key {
            None => (None, None),
            Some(raw) => match string_or_null(raw)? {
                None => (None, None),
                Some(key) => {
                    if key.chars().count() > MAX_KEY_CHARS || key.contains('\0') {
                        return None;
                    }
                    (Some(key), Some(raw.get()))
                }
            },
        };
        let ts = match optional_string(fields.ts)? {
            None => received_at,
            Some(text) => storable(DateTime::parse_from_rfc3339(&text).ok()?.with_timezone(&Utc))?,
        };
        let data = match fields.data.map(RawValue::get) {
            None | Some("null") => None,
            Some(text) => {
                if !text.starts_with('{') {
                    return None;
                }
                DataSeed::at(0).deserialize(&mut serde_json::Deserializer::from_str(text)).ok()?;
                // Kept as written, so every number must be one PostgreSQL stores as written.
                if !numbers_fit_numeric(text.as_bytes()) {
                    return None;
                }
                Some(text)
            }
        };
        Some(Self { id, event_type, type_json: type_raw.get(), key, key_json, ts, received_at, data })
    }

    /// The Kafka record key: the event's `key`, or its id when it has none.
    pub fn partition_key(&self) -> String {
        match &self.key {
            Some(key) => key.clone().into_owned(),
            None => self.id.to_string(),
        }
    }

    /// The record value, in the wire format (`wire.rs`): the fields in the order the tree-based
    /// encoder writes them, `type` and `key` as sent, `data` as sent less its whitespace.
    pub fn encode_value(&self) -> Vec<u8> {
        // The fixed parts: 140 bytes, 7 more with a key (`,"key":`). One allocation, no growth
        // (whitespace removed from `data` only shortens it).
        let data_len = self.data.map_or(2, str::len);
        let capacity = 147 + self.type_json.len() + self.key_json.map_or(0, str::len) + data_len;
        let mut out = Vec::with_capacity(capacity);
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(self.id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes());
        out.extend_from_slice(b"\",\"type\":");
        out.extend_from_slice(self.type_json.as_bytes());
        if let Some(key) = self.key_json {
            out.extend_from_slice(b",\"key\":");
            out.extend_from_slice(key.as_bytes());
        }
        out.extend_from_slice(b",\"ts\":");
        push_timestamp(&mut out, self.ts);
        out.extend_from_slice(b",\"received_at\":");
        push_timestamp(&mut out, self.received_at);
        out.extend_from_slice(b",\"data\":");
        match self.data {
            Some(data) => push_compact(&mut out, data.as_bytes()),
            None => out.extend_from_slice(b"{}"),
        }
        out.push(b'}');
        debug_assert!(out.len() <= capacity, "the record outgrew its estimate");
        // Whitespace removed from `data` is capacity the record would hold until the broker
        // acknowledges it, uncounted by the in-flight cap (which counts lengths): give it back.
        if out.capacity() > out.len() + 64 {
            out.shrink_to_fit();
        }
        out
    }

    /// The event as a tree ([`Event`]), for what needs paths into `data` (routes checks) and
    /// for tests. `data` was validated by the scan, so it parses.
    pub fn to_event(&self) -> Event {
        let data = self.data.and_then(|text| serde_json::from_str::<Map<String, Value>>(text).ok()).unwrap_or_default();
        Event {
            id: self.id,
            event_type: self.event_type.clone().into_owned(),
            key: self.key.clone().map(Cow::into_owned),
            ts: self.ts,
            received_at: self.received_at,
            data,
        }
    }
}

/// A timestamp as the tree-based encoder writes it: RFC 3339 in UTC with microseconds, quoted.
/// Written field by field (chrono's formatter allocates a string for each).
fn push_timestamp(out: &mut Vec<u8>, t: DateTime<Utc>) {
    let nanos = t.nanosecond();
    // Writing into a Vec cannot fail. Years are 1 to 9999 (`storable`), so always four digits.
    let _ = if nanos >= 1_000_000_000 {
        // A leap second (never from `storable`; only a clock could give one): as the tree writes it.
        write!(out, "\"{}\"", t.to_rfc3339_opts(SecondsFormat::Micros, true))
    } else {
        write!(
            out,
            "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z\"",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            nanos / 1000
        )
    };
}

/// Appends valid JSON text without its insignificant whitespace: the runs between whitespace are
/// copied whole, and a string's content is crossed with `memchr` (to its closing quote or its
/// next escape), not byte by byte.
pub fn push_compact(out: &mut Vec<u8>, text: &[u8]) {
    let (mut run, mut i) = (0, 0);
    while let Some(&b) = text.get(i) {
        match b {
            b'"' => {
                // To the closing quote, past escaped characters.
                i += 1;
                while let Some(at) = memchr::memchr2(b'"', b'\\', &text[i.min(text.len())..]) {
                    i += at;
                    if text[i] == b'"' {
                        break;
                    }
                    i += 2;
                }
                i += 1;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                out.extend_from_slice(&text[run..i]);
                i += 1;
                run = i;
            }
            _ => i += 1,
        }
    }
    out.extend_from_slice(&text[run.min(text.len())..]);
}

/// A field that may be missing, null or a string: None when it is anything else.
fn optional_string(raw: Option<&RawValue>) -> Option<Option<Cow<'_, str>>> {
    raw.map_or(Some(None), string_or_null)
}

/// A JSON string (borrowed when it holds no escape) or null; None for anything else.
fn string_or_null(raw: &RawValue) -> Option<Option<Cow<'_, str>>> {
    if raw.get() == "null" {
        return Some(None);
    }
    serde_json::Deserializer::from_str(raw.get()).deserialize_str(StrVisitor).ok().map(Some)
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}

/// The event's fields as raw JSON.
#[derive(Default)]
struct Fields<'a> {
    id: Option<&'a RawValue>,
    event_type: Option<&'a RawValue>,
    key: Option<&'a RawValue>,
    ts: Option<&'a RawValue>,
    data: Option<&'a RawValue>,
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::default();
        while let Some(name) = map.next_key_seed(FieldName)? {
            let slot = match name {
                Field::Id => &mut fields.id,
                Field::Type => &mut fields.event_type,
                Field::Key => &mut fields.key,
                Field::Ts => &mut fields.ts,
                Field::Data => &mut fields.data,
            };
            // A duplicate is left to the tree path (which keeps the last value).
            if slot.replace(map.next_value()?).is_some() {
                return Err(de::Error::custom("duplicate field"));
            }
        }
        Ok(fields)
    }
}

enum Field {
    Id,
    Type,
    Key,
    Ts,
    Data,
}

struct FieldName;

impl<'de> DeserializeSeed<'de> for FieldName {
    type Value = Field;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Field, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldName {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event field")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Field, E> {
        match s {
            "id" => Ok(Field::Id),
            "type" => Ok(Field::Type),
            "key" => Ok(Field::Key),
            "ts" => Ok(Field::Ts),
            "data" => Ok(Field::Data),
            _ => Err(E::custom("unknown field")),
        }
    }
}

/// Walks a value inside `data` without keeping it: every string and number is decoded (as the
/// tree would), containers are counted (`data` itself is depth 1), NULs are refused, and so is
/// an object with the key `Value` reads as a raw value ([`RAW_VALUE_KEY`]). (serde's
/// `IgnoredAny` and the `RawValue` split skip values without decoding them: they would let a
/// number out of a double's range or a lone surrogate through, which the sinker cannot read.)
///
/// Also skips the value of a record's unknown field ([`DataSeed::beside_data`]), which the
/// tree decoder parses (and refuses by the same rules) but for NULs, which it takes there.
#[derive(Clone, Copy)]
pub(crate) struct DataSeed {
    depth: usize,
    nul_refused: bool,
}

impl DataSeed {
    /// A value nested in `depth` containers of `data` (`data` itself is 0, its fields 1).
    pub(crate) fn at(depth: usize) -> Self {
        Self { depth, nul_refused: true }
    }

    /// The value of a field of the record beside `data` (as deep as `data` itself), where a
    /// NUL is allowed.
    pub(crate) fn beside_data() -> Self {
        Self { depth: 0, nul_refused: false }
    }

    fn check<E: de::Error>(self, s: &str) -> Result<(), E> {
        if self.nul_refused {
            no_nul(s)?;
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DataSeed {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<(), E> {
        // No escape in it, so no NUL: JSON text cannot hold a raw control character.
        Ok(())
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.check(s)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = Self { depth: deeper(self.depth)?, ..self };
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = Self { depth: deeper(self.depth)?, ..self };
        while map.next_key_seed(KeySeed { nul_refused: self.nul_refused })?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

fn deeper<E: de::Error>(depth: usize) -> Result<usize, E> {
    if depth >= MAX_DATA_DEPTH {
        return Err(E::custom("too deep"));
    }
    Ok(depth + 1)
}

pub(crate) fn no_nul<E: de::Error>(s: &str) -> Result<(), E> {
    if s.contains('\0') {
        return Err(E::custom("NUL"));
    }
    Ok(())
}

/// Refuses [`RAW_VALUE_KEY`], which the tree decoder does not read as an object key.
pub(crate) fn not_raw_value_key<E: de::Error>(key: &str) -> Result<(), E> {
    if key == RAW_VALUE_KEY {
        return Err(E::custom("a raw value key"));
    }
    Ok(())
}

/// An object key inside `data`: decoded, refused when it holds a NUL or is [`RAW_VALUE_KEY`].
struct KeySeed {
    nul_refused: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<(), E> {
        not_raw_value_key(s)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        if self.nul_refused {
            no_nul(s)?;
        }
        not_raw_value_key(s)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::{decode, encode};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
    }

    /// What the API did before the scan: parse a tree, validate it.
    fn tree_path(text: &str, received_at: DateTime<Utc>) -> Option<Event> {
        Event::from_api(serde_json::from_str(text).ok()?, received_at).ok()
    }

    /// JSON text as clients write it, including spellings the tree path rewrites: escapes,
    /// exponents, big integers, `-0`, whitespace, and values the sinker could not read.
    fn json_text() -> impl Strategy<Value = String> {
        let number = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            Just("-0".to_owned()),
            Just("18446744073709551616".to_owned()),
            Just("123456789012345678901234567890".to_owned()),
            Just("1e400".to_owned()),
            Just("-1E400".to_owned()),
            Just("1e-400".to_owned()),
            Just("1E2".to_owned()),
            Just("2.50".to_owned()),
            (-100_000i32..100_000, 0u8..100).prop_map(|(a, b)| format!("{a}.{b:02}")),
        ];
        let string = prop_oneof![
            "[a-z ]{0,6}".prop_map(|s| format!("\"{s}\"")),
            Just(r#""caf\u00e9""#.to_owned()),
            Just(r#""a\/b\n\"q\"""#.to_owned()),
            Just(r#""\ud83d\ude00""#.to_owned()),
            Just(r#""\ud800""#.to_owned()),
            Just(r#""x\u0000y""#.to_owned()),
            Just(r#""x\\u0000y""#.to_owned()),
            Just("\"é 😀\"".to_owned()),
        ];
        let leaf = prop_oneof![Just("null".to_owned()), Just("true".to_owned()), number, string.clone()];
        leaf.prop_recursive(4, 24, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|items| format!("[{}]", items.join(","))),
                prop::collection::vec((prop_oneof![string.clone(), Just("\"a\"".to_owned())], inner), 0..4).prop_map(
                    |fields| {
                        let body: Vec<String> = fields.into_iter().map(|(k, v)| format!("{k} : {v}")).collect();
                        format!("{{ {} }}", body.join(" ,\n"))
                    }
                ),
            ]
        })
    }

    /// `levels` nested arrays around a 1.
    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    /// Event texts: the five fields in any order (sometimes twice, sometimes an unknown one),
    /// each well or badly typed.
    fn event_text() -> impl Strategy<Value = String> {
        let id = prop_oneof![
            Just("\"0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b\"".to_owned()),
            Just("\"0190B7A46B1E7C4E9F3A2D1C5E8F9A0B\"".to_owned()),
            Just("\"nope\"".to_owned()),
            Just("null".to_owned()),
            Just("7".to_owned()),
        ];
        let ty = prop_oneof![
            "[a-z.]{0,8}".prop_map(|s| format!("\"{s}\"")),
            Just(format!("\"{}\"", "é".repeat(MAX_TYPE_CHARS))),
            Just(format!("\"{}\"", "x".repeat(MAX_TYPE_CHARS + 1))),
            Just(r#""t\u00e9""#.to_owned()),
            Just(r#""t\u0000""#.to_owned()),
            Just("null".to_owned()),
            Just("[\"t\"]".to_owned()),
        ];
        let key = prop_oneof![
            "[a-z0-9-]{0,8}".prop_map(|s| format!("\"{s}\"")),
            Just(format!("\"{}\"", "k".repeat(MAX_KEY_CHARS))),
            Just(format!("\"{}\"", "k".repeat(MAX_KEY_CHARS + 1))),
            Just(r#""u\/1""#.to_owned()),
            Just("null".to_owned()),
            Just("1".to_owned()),
        ];
        let ts = prop_oneof![
            Just("\"2026-01-01T00:00:00.1234567+01:00\"".to_owned()),
            Just("\"2016-12-31T23:59:60.5Z\"".to_owned()),
            Just("\"9999-12-31T23:59:59-23:59\"".to_owned()),
            Just("\"0001-01-01T00:00:00Z\"".to_owned()),
            Just("\"yesterday\"".to_owned()),
            Just("null".to_owned()),
            Just("1".to_owned()),
        ];
        let data = prop_oneof![
            4 => json_text(),
            1 => Just(format!("{{\"a\":{}}}", nested(MAX_DATA_DEPTH - 1))),
            1 => Just(format!("{{\"a\":{}}}", nested(MAX_DATA_DEPTH))),
            1 => Just(format!("{{\"a\":{}}}", nested(MAX_DATA_DEPTH + 5))),
            1 => Just("{\"a\":1,\"a\":\"x\\u0000\",\"a\":2}".to_owned()),
        ];
        let field = prop_oneof![
            id.prop_map(|v| ("id", v)),
            ty.clone().prop_map(|v| ("type", v)),
            key.prop_map(|v| ("key", v)),
            ts.prop_map(|v| ("ts", v)),
            data.prop_map(|v| ("data", v)),
            Just(("extra", "1".to_owned())),
        ];
        (ty, prop::collection::vec(field, 0..6), any::<bool>(), any::<bool>()).prop_map(
            |(ty, fields, with_type, spaced)| {
                let mut parts: Vec<String> = fields.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                if with_type {
                    parts.insert(0, format!("\"type\":{ty}"));
                }
                let sep = if spaced { " ,\n  " } else { "," };
                format!("{{{}}}", parts.join(sep))
            },
        )
    }

    /// A key given twice in the event, or a NUL escape somewhere: the scan may leave those to
    /// the tree path.
    fn left_to_the_tree(text: &str) -> bool {
        let Ok(Value::Object(_)) = serde_json::from_str::<Value>(text) else { return false };
        let mut de = serde_json::Deserializer::from_str(text);
        let duplicate = matches!(de.deserialize_map(FieldsVisitor), Err(e) if e.to_string().contains("duplicate"));
        duplicate || text.contains("\\u0000")
    }

    /// Equal, but for the last bit of a double that the tree-based encoder's second parse may
    /// change (serde_json without `float_roundtrip` parses some numbers a unit off).
    fn same_json(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
                let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                x == y || (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON
            }
            (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|((kx, vx), (ky, vy))| kx == ky && same_json(vx, vy))
            }
            _ => a == b,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        /// The scan accepts what the tree path accepts (but for what it leaves to it), nothing
        /// else; its record decodes to exactly the event the tree path validated, and to the
        /// row the tree-based encoder's record decodes to.
        #[test]
        fn the_scan_agrees_with_the_tree(text in event_text(), secs in -62_135_596_800i64..253_402_300_799, nanos in 0u32..1_000_000_000) {
            let received_at = DateTime::from_timestamp(secs, nanos).unwrap_or_default();
            let tree = tree_path(&text, received_at);
            let scanned = ApiEvent::scan(&text, received_at);
            match (&tree, &scanned) {
                (None, None) => {}
                (None, Some(_)) => prop_assert!(false, "the scan accepted what the tree path refuses: {}", text),
                (Some(_), None) => prop_assert!(left_to_the_tree(&text), "the scan left a plain event to the tree: {}", text),
                (Some(tree), Some(scanned)) => {
                    // A generated id differs; everything else must not.
                    let mut tree = tree.clone();
                    tree.id = scanned.id;
                    let later = t("2030-01-01T00:00:00Z");
                    let value = scanned.encode_value();
                    let back = decode(Some(&value), Some(later), later, usize::MAX);
                    prop_assert_eq!(back.as_ref(), Ok(&tree), "record {}", String::from_utf8_lossy(&value));
                    prop_assert_eq!(scanned.to_event(), tree.clone());
                    prop_assert_eq!(scanned.partition_key(), tree.partition_key());
                    let (old_key, old_value) = encode(&tree);
                    prop_assert_eq!(&old_key, &scanned.partition_key());
                    let old = decode(Some(&old_value), Some(later), later, usize::MAX).map_err(|r| r.detail);
                    let (Ok(old), Ok(back)) = (old, back) else { panic!("both decode") };
                    let old_data = Value::Object(old.data.clone());
                    prop_assert!(same_json(&Value::Object(back.data.clone()), &old_data));
                    prop_assert_eq!(Event { data: Map::new(), ..back }, Event { data: Map::new(), ..old });
                }
            }
        }
    }

    #[test]
    fn records_are_compact_and_keep_what_was_sent() {
        let text = "{ \"type\" : \"caf\\u00e9\", \"key\":\"u1\",\n \"data\" : { \"n\" : 123456789012345678901234567890 , \"s\" : \"a b\" } }";
        let event = ApiEvent::scan(text, t("2026-01-01T00:00:00.1234567Z")).expect("accepted");
        assert_eq!(event.event_type, "café");
        let value = String::from_utf8(event.encode_value()).expect("utf-8");
        assert_eq!(
            value,
            format!(
                "{{\"id\":\"{}\",\"type\":\"caf\\u00e9\",\"key\":\"u1\",\"ts\":\"2026-01-01T00:00:00.123456Z\",\
                 \"received_at\":\"2026-01-01T00:00:00.123456Z\",\"data\":{{\"n\":123456789012345678901234567890,\"s\":\"a b\"}}}}",
                event.id
            )
        );
        assert_eq!(event.id.get_version_num(), 7);
        let minimal = ApiEvent::scan(r#"{"type":"t","data":null}"#, t("2026-01-01T00:00:00Z")).expect("accepted");
        assert!(String::from_utf8(minimal.encode_value()).expect("utf-8").ends_with(r#""data":{}}"#));
    }

    proptest! {
        #[test]
        fn timestamps_are_written_as_the_tree_writes_them(secs in -62_135_596_800i64..253_402_300_799, nanos in 0u32..2_000_000_000) {
            let Some(t) = DateTime::from_timestamp(secs, nanos) else { return Ok(()) };
            let mut out = Vec::new();
            push_timestamp(&mut out, t);
            prop_assert_eq!(String::from_utf8_lossy(&out), serde_json::json!(t.to_rfc3339_opts(SecondsFormat::Micros, true)).to_string());
        }
    }

    #[test]
    fn compacting_keeps_strings_whole() {
        for (text, compact) in [
            (" { \"a b\" : [ 1 , \"x \\\" y\\\\\" ] } ", "{\"a b\":[1,\"x \\\" y\\\\\"]}"),
            ("{}", "{}"),
            ("{\"\":\"\\\\\"}\n", "{\"\":\"\\\\\"}"),
        ] {
            let mut out = Vec::new();
            push_compact(&mut out, text.as_bytes());
            assert_eq!(String::from_utf8_lossy(&out), compact, "{text}");
        }
    }

    #[test]
    fn refusals_are_left_to_the_tree_path() {
        let now = t("2026-01-01T00:00:00Z");
        for text in [
            "[1]",
            r#"{"type":"t","extra":1}"#,
            r#"{"type":"t","type":"u"}"#,
            r#"{"data":{}}"#,
            r#"{"type":"t","data":[1]}"#,
            r#"{"type":"t","data":{"a":1e400}}"#,
            r#"{"type":"t","data":{"a":"\ud800"}}"#,
            r#"{"type":"t","data":{"a\u0000":1}}"#,
            r#"{"type":"t","ts":"9999-12-31T23:59:60Z"}"#,
            // Numbers serde_json reads as 0 that PostgreSQL's numeric refuses as written.
            r#"{"type":"t","data":{"a":1e-16384}}"#,
            r#"{"type":"t","data":{"a":[0e1073741823]}}"#,
            // What the tree reads as raw JSON (here a number out of range).
            r#"{"type":"t","data":{"a":{"$serde_json::private::RawValue":"1e400"}}}"#,
        ] {
            assert_eq!(ApiEvent::scan(text, now), None, "{text}");
        }
    }

    /// A record is held until the broker acknowledges it and counted by its length: whitespace
    /// taken out of `data` must not stay behind as capacity.
    #[test]
    fn a_record_holds_no_capacity_for_the_whitespace_it_dropped() {
        let text = format!("{{\"type\":\"t\",\"data\":{{\"a\":1{}}}}}", " ".repeat(1 << 20));
        let record = ApiEvent::scan(&text, t("2026-01-01T00:00:00Z")).expect("accepted").encode_value();
        assert!(record.len() < 200, "{} bytes", record.len());
        assert!(record.capacity() <= record.len() + 64, "capacity {} for {} bytes", record.capacity(), record.len());
    }
}
