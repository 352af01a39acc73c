//! The routes' record decoder: [`wire::decode`]'s event with `data` pruned to the paths the
//! routes read ([`DataPaths`]), built in one pass over the record ([`decode_pruned`]).
//!
//! One serde_json deserializer runs over the record value. The envelope visitor (`raw.rs`)
//! checks the small fields by the tree decoder's rules and hands `data` to a seed guided by the
//! trie of paths: a field or index some path goes on into is descended into, a path's end is
//! built whole as a value, and everything else is walked by scan's validating walk
//! (`scan::DataSeed`: numbers within a double's range, strings that decode, no NUL, the
//! nesting limit), which keeps nothing. What serde_json checks itself (syntax, UTF-8, its
//! recursion limit) it checks over the whole record, as for the tree.
//!
//! Invariants (property-tested against `wire::decode` and [`DataPaths::prune`]):
//! - a record is refused exactly when [`wire::decode`] refuses it, with the same reason and
//!   detail: the one pass takes only records it is sure the tree decoder takes, and leaves
//!   everything else (any error, a NUL anywhere in `data`, which the tree may refuse or let a
//!   later repeated key hide, `data` that is not an object or null, a key serde_json's `Value`
//!   reads specially: `wire::RAW_VALUE_KEY`) to `wire::decode`, whose event is then pruned;
//! - an accepted record's event is `wire::decode`'s with `data` pruned: a repeated key keeps
//!   its last value (replacing the earlier one whole, as `Map::insert` does in the tree), and
//!   when the paths include `data` itself the tree decoder decodes it.

use std::{borrow::Cow, fmt};

use chrono::{DateTime, Utc};
use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::{
    data_paths::{DataPaths, Node},
    raw::{EnvelopeVisitor, FieldName, TakeData},
    scan::{no_nul, not_raw_value_key, DataSeed},
    wire, Event, Rejection,
};

/// Decodes a record value like [`wire::decode`], building only the parts of `data` that
/// `paths` reach.
pub fn decode_pruned(
    value: Option<&[u8]>,
    record_ts: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    max_bytes: usize,
    paths: &DataPaths,
) -> Result<Event, Rejection> {
    if let Some(bytes) = value.filter(|b| b.len() <= max_bytes) {
        if let Some(event) = one_pass(bytes, record_ts, now, paths) {
            return Ok(event);
        }
    }
    // `data` needed whole, or a record the one pass is not sure of: the tree decoder says what.
    let mut event = wire::decode(value, record_ts, now, max_bytes)?;
    paths.prune(&mut event.data);
    Ok(event)
}

/// The one pass: None when the record is not one the tree decoder surely takes, or when
/// `data` is needed whole (the tree decoder builds it).
fn one_pass(bytes: &[u8], record_ts: Option<DateTime<Utc>>, now: DateTime<Utc>, paths: &DataPaths) -> Option<Event> {
    if paths.whole() {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut envelope = de.deserialize_map(EnvelopeVisitor(PrunedData(paths.root()))).ok()?;
    de.end().ok()?;
    let small = envelope.small_fields(record_ts, now)?;
    Some(Event {
        id: small.id,
        event_type: small.event_type,
        key: small.key,
        ts: small.ts,
        received_at: small.received_at,
        data: envelope.data.flatten().unwrap_or_default(),
    })
}

/// `data` pruned to the paths from `data`'s root node: an object (Some) or null (None).
/// Anything else fails (the tree decoder says why, or takes a later repeated `data`).
struct PrunedData<'p>(&'p Node);

impl<'de> TakeData<'de> for PrunedData<'_> {
    type Data = Option<Map<String, Value>>;

    fn data<A: MapAccess<'de>>(&self, map: &mut A) -> Result<Self::Data, A::Error> {
        map.next_value_seed(DataObject(self.0))
    }

    fn other<A: MapAccess<'de>>(&self, map: &mut A) -> Result<(), A::Error> {
        map.next_value_seed(DataSeed::beside_data())
    }
}

struct DataObject<'p>(&'p Node);

impl<'de> DeserializeSeed<'de> for DataObject<'_> {
    type Value = Option<Map<String, Value>>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DataObject<'_> {
    type Value = Option<Map<String, Value>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        // `data` itself is nested in no container of `data`.
        pruned_map(self.0, 0, map).map(Some)
    }
}

/// A value on a path's way (its node is not `whole`), nested in `depth` containers of `data`.
struct OnPath<'p> {
    node: &'p Node,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for OnPath<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for OnPath<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    // No path goes further into a scalar: it is kept as it is, as `Whole` builds it.
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Whole.visit_bool(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Whole.visit_i64(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Whole.visit_u64(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Whole.visit_f64(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Whole.visit_unit()
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Value, E> {
        Whole.visit_borrowed_str(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Whole.visit_str(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.depth + 1;
        let kept = self.node.items_kept();
        let mut items = Vec::new();
        loop {
            let index = items.len();
            if index == kept {
                // Past the last index a path goes on into: walked, not kept.
                while seq.next_element_seed(DataSeed::at(depth))?.is_some() {}
                break;
            }
            let item = match self.node.index(index) {
                Some(node) => seq.next_element_seed(AtNode { node, depth })?,
                None => seq.next_element_seed(DataSeed::at(depth))?.map(|()| Value::Null),
            };
            match item {
                Some(item) => items.push(item),
                None => break,
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        pruned_map(self.node, self.depth, map).map(Value::Object)
    }
}

/// An object's fields that paths go on into (each pruned; the last of a repeated key replaces
/// the earlier whole, as in the tree); the others walked, not kept. `depth`: the object's own.
fn pruned_map<'de, A: MapAccess<'de>>(node: &Node, depth: usize, mut map: A) -> Result<Map<String, Value>, A::Error> {
    let depth = depth + 1;
    let mut out = Map::new();
    while let Some(FieldName(name)) = map.next_key()? {
        let name = plain_key(name)?;
        match node.field(&name) {
            Some(node) => {
                let value = map.next_value_seed(AtNode { node, depth })?;
                out.insert(name.into_owned(), value);
            }
            None => map.next_value_seed(DataSeed::at(depth))?,
        }
    }
    Ok(out)
}

/// An object key inside `data`, refused when it holds a NUL (only an escape can write one:
/// `FieldName` borrows a key without escapes) or is [`wire::RAW_VALUE_KEY`].
fn plain_key<E: de::Error>(name: Cow<'_, str>) -> Result<Cow<'_, str>, E> {
    if let Cow::Owned(name) = &name {
        no_nul(name)?;
    }
    not_raw_value_key(&name)?;
    Ok(name)
}

/// The value at a node: whole at a path's end, else on a path's way.
struct AtNode<'p> {
    node: &'p Node,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for AtNode<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.node.whole {
            deserializer.deserialize_any(Whole)
        } else {
            deserializer.deserialize_any(OnPath { node: self.node, depth: self.depth })
        }
    }
}

/// A value at a path's end, built whole as serde_json's `Value` builds it, NULs and
/// [`wire::RAW_VALUE_KEY`] refused. (Nesting is serde_json's recursion limit, over the record.)
#[derive(Clone, Copy)]
struct Whole;

impl<'de> DeserializeSeed<'de> for Whole {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Whole {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // As serde_json's `Value` (a parsed double is finite).
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Value, E> {
        // No escape in it, so no NUL.
        Ok(Value::String(v.to_owned()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        no_nul(v)?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Whole)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(FieldName(name)) = map.next_key()? {
            let name = plain_key(name)?;
            let value = map.next_value_seed(Whole)?;
            out.insert(name.into_owned(), value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::{
        data_paths::Step,
        wire::{MAX_DATA_DEPTH, RAW_VALUE_KEY},
        RejectReason,
    };

    const ID: &str = "0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b";

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
    }

    /// A path as generated (owned steps).
    #[derive(Debug, Clone)]
    enum OwnedStep {
        Field(String),
        Index(usize),
    }

    fn data_paths(paths: &[Vec<OwnedStep>]) -> DataPaths {
        let mut out = DataPaths::new();
        for path in paths {
            out.add(path.iter().map(|step| match step {
                OwnedStep::Field(name) => Step::Field(name),
                OwnedStep::Index(i) => Step::Index(*i),
            }));
        }
        out
    }

    /// Paths written as in a routes file, after `data`: `.a.b`, `.items[1]` (`~` for a space).
    fn paths(list: &[&str]) -> DataPaths {
        let parsed: Vec<Vec<OwnedStep>> = list
            .iter()
            .map(|text| {
                text.split('.')
                    .filter(|s| !s.is_empty())
                    .flat_map(|segment| {
                        let mut parts = segment.split('[');
                        let name = parts.next().unwrap_or_default();
                        let field = (!name.is_empty()).then(|| OwnedStep::Field(name.replace('~', " ")));
                        field.into_iter().chain(
                            parts.map(|index| OwnedStep::Index(index.trim_end_matches(']').parse().unwrap_or(0))),
                        )
                    })
                    .collect()
            })
            .collect();
        data_paths(&parsed)
    }

    /// The tree decoder's event, pruned: what `decode_pruned` must give.
    fn tree(bytes: &[u8], paths: &DataPaths, max: usize) -> Result<Event, Rejection> {
        let now = t("2026-01-01T00:00:00Z");
        let mut event = wire::decode(Some(bytes), Some(now), now, max)?;
        paths.prune(&mut event.data);
        Ok(event)
    }

    fn pruned(bytes: &[u8], paths: &DataPaths, max: usize) -> Result<Event, Rejection> {
        let now = t("2026-01-01T00:00:00Z");
        decode_pruned(Some(bytes), Some(now), now, max, paths)
    }

    fn fast(bytes: &[u8], paths: &DataPaths) -> Option<Event> {
        let now = t("2026-01-01T00:00:00Z");
        one_pass(bytes, Some(now), now, paths)
    }

    /// `decode_pruned` gives the tree's result (pruned), and so does the one pass whenever it
    /// decides.
    fn agrees(bytes: &[u8], paths: &DataPaths) -> Result<(), TestCaseError> {
        let expected = tree(bytes, paths, 1 << 20);
        let text = String::from_utf8_lossy(bytes);
        prop_assert_eq!(&pruned(bytes, paths, 1 << 20), &expected, "{}", text);
        if let Some(event) = fast(bytes, paths) {
            prop_assert_eq!(Ok(event), expected, "the one pass on {}", text);
        }
        Ok(())
    }

    /// JSON text, and whether the one pass may leave it to the tree decoder (`unsure`: a NUL
    /// in `data`, the raw value key, `data` not an object).
    #[derive(Debug, Clone)]
    struct Text {
        json: String,
        unsure: bool,
    }

    fn sure(json: impl Into<String>) -> Text {
        Text { json: json.into(), unsure: false }
    }

    /// `levels` nested arrays around a 1.
    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    /// Scalars, mostly ones the tree takes; now and then one it refuses (a number out of a
    /// double's range, a lone surrogate, nesting past the limit) or a NUL.
    fn leaf_text() -> impl Strategy<Value = Text> + Clone {
        let number = prop_oneof![
            20 => any::<i64>().prop_map(|n| n.to_string()),
            5 => any::<u64>().prop_map(|n| n.to_string()),
            15 => prop_oneof![
                Just("-0"),
                Just("1.5e3"),
                Just("-1E-2"),
                Just("0.1"),
                Just("18446744073709551616"),
                Just("123456789012345678901234567890"),
                Just("1e-400"),
                Just("1e-16384"),
            ]
            .prop_map(str::to_owned),
            1 => prop_oneof![Just("1e400"), Just("-1e309")].prop_map(str::to_owned),
        ];
        let string = prop_oneof![
            20 => "[a-z ]{0,5}".prop_map(|s| format!("\"{s}\"")),
            10 => prop_oneof![
                Just(r#""caf\u00e9""#),
                Just(r#""a\/b\n\"q\"\\""#),
                Just(r#""\ud83d\ude00""#),
                Just(r#""x\\u0000""#),
                Just("\"é 😀\""),
            ]
            .prop_map(str::to_owned),
            1 => prop_oneof![Just(r#""\ud800""#), Just(r#""\udc00x""#)].prop_map(str::to_owned),
        ];
        prop_oneof![
            200 => prop_oneof![Just("null".to_owned()), Just("true".to_owned()), Just("false".to_owned()), number, string]
                .prop_map(sure),
            1 => prop_oneof![Just(r#""\u0000""#), Just(r#""x\u0000y""#)].prop_map(|s| Text { json: s.to_owned(), unsure: true }),
            1 => (MAX_DATA_DEPTH - 4..MAX_DATA_DEPTH + 2).prop_map(|levels| sure(nested(levels))),
        ]
    }

    /// Keys: mostly the paths' names (sometimes written with escapes, sometimes repeated), now
    /// and then one with a NUL or the raw value key.
    fn key_text() -> impl Strategy<Value = &'static str> + Clone {
        prop_oneof![
            30 => prop_oneof![Just(r#""a""#), Just(r#""b""#), Just(r#""c""#), Just(r#""odd key""#), Just(r#""z""#)],
            8 => prop_oneof![Just(r#""\u0061""#), Just(r#""odd\u0020key""#)],
            1 => prop_oneof![
                Just(r#""x\u0000""#),
                Just(r#""$serde_json::private::RawValue""#),
                Just(r#""$serde_json::private::Raw\u0056alue""#),
            ],
        ]
    }

    fn object_text(inner: impl Strategy<Value = Text> + Clone) -> impl Strategy<Value = Text> + Clone {
        prop::collection::vec((key_text(), inner, any::<bool>()), 0..6).prop_map(|fields| {
            let unsure = fields.iter().any(|(k, v, _)| v.unsure || k.contains("u0000") || k.contains("Raw"));
            let body: Vec<String> = fields
                .iter()
                .map(|(k, v, spaced)| if *spaced { format!(" {k} : {} ", v.json) } else { format!("{k}:{}", v.json) })
                .collect();
            Text { json: format!("{{{}}}", body.join(",")), unsure }
        })
    }

    fn value_text() -> impl Strategy<Value = Text> + Clone {
        leaf_text().prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|items| Text {
                    json: format!("[{}]", items.iter().map(|i| i.json.as_str()).collect::<Vec<_>>().join(",")),
                    unsure: items.iter().any(|i| i.unsure),
                }),
                object_text(inner),
            ]
        })
    }

    /// Records: the envelope's fields in any order, sometimes repeated or unknown, each well
    /// or badly typed; `data` of any shape, mostly an object; sometimes not an object at all.
    fn record_text() -> impl Strategy<Value = Text> {
        let id = prop_oneof![
            12 => Just(format!("\"{ID}\"")),
            1 => Just("\"nope\"".to_owned()),
            1 => Just("null".to_owned()),
            1 => Just("7".to_owned()),
        ];
        let ty = prop_oneof![
            12 => Just("\"order.paid\"".to_owned()),
            1 => Just("\"\"".to_owned()),
            1 => Just(r#""t\u0000""#.to_owned()),
            1 => Just("5".to_owned()),
            1 => Just("1e400".to_owned()),
        ];
        let key = prop_oneof![
            4 => Just("\"k\"".to_owned()),
            2 => Just("null".to_owned()),
            1 => Just("[1]".to_owned()),
        ];
        let ts = prop_oneof![
            6 => Just("\"2026-02-03T04:05:06.1234567+01:00\"".to_owned()),
            2 => Just("null".to_owned()),
            1 => Just("\"nope\"".to_owned()),
            1 => Just(format!("[{}]", nested(MAX_DATA_DEPTH))),
        ];
        let data = prop_oneof![
            10 => object_text(value_text()),
            1 => Just(sure("null")),
            1 => value_text().prop_map(|v| if v.json.starts_with('{') { v } else { Text { unsure: true, ..v } }),
        ];
        let field = prop_oneof![
            1 => id.prop_map(|v| sure(format!("\"id\":{v}"))),
            1 => ty.prop_map(|v| sure(format!("\"type\":{v}"))),
            2 => key.prop_map(|v| sure(format!("\"key\":{v}"))),
            2 => ts.clone().prop_map(|v| sure(format!("\"ts\":{v}"))),
            2 => ts.prop_map(|v| sure(format!("\"received_at\":{v}"))),
            2 => data.clone().prop_map(|v| Text { json: format!("\"data\":{}", v.json), ..v }),
            // An unknown field: parsed by the tree, NULs allowed there.
            2 => value_text().prop_map(|v| Text { json: format!("\"other\":{}", v.json), unsure: v.json.contains("Raw") }),
        ];
        let record = (prop::collection::vec(field, 0..4), data, 0usize..4, any::<bool>(), 0u8..20).prop_map(
            |(fields, data, data_at, spaced, trailing)| {
                let mut parts = vec![sure(format!("\"id\":\"{ID}\"")), sure("\"type\":\"order.paid\"")];
                parts.extend(fields);
                parts.insert(data_at.min(parts.len()), Text { json: format!("\"data\":{}", data.json), ..data });
                let separator = if spaced { " ,\n " } else { "," };
                let body: Vec<&str> = parts.iter().map(|p| p.json.as_str()).collect();
                let trail = if trailing == 0 { " x" } else { "" };
                Text { json: format!("{{{}}}{trail}", body.join(separator)), unsure: parts.iter().any(|p| p.unsure) }
            },
        );
        prop_oneof![
            40 => record,
            1 => Just(sure("[1]")),
            1 => Just(sure("5")),
            1 => Just(sure("not json")),
            1 => Just(Text { json: format!(r#"{{"{RAW_VALUE_KEY}":"{{\"id\":\"{ID}\",\"type\":\"t\"}}"}}"#), unsure: true }),
        ]
    }

    /// Paths into `data` over the generated keys and small indices; now and then `data` itself.
    fn path_set() -> impl Strategy<Value = Vec<Vec<OwnedStep>>> {
        let name = || prop_oneof![Just("a"), Just("b"), Just("c"), Just("odd key"), Just(RAW_VALUE_KEY)];
        let step = prop_oneof![
            3 => name().prop_map(|name| OwnedStep::Field(name.to_owned())),
            1 => (0usize..3).prop_map(OwnedStep::Index),
        ];
        let path = prop_oneof![
            30 => (name(), prop::collection::vec(step, 0..3))
                .prop_map(|(first, rest)| std::iter::once(OwnedStep::Field(first.to_owned())).chain(rest).collect()),
            1 => Just(Vec::new()),
        ];
        prop::collection::vec(path, 0..5)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6000))]
        /// Whatever the record and the paths, the tree decoder's result, pruned; and the one
        /// pass decides every record it need not leave to the tree.
        #[test]
        fn the_one_pass_agrees_with_the_tree(record in record_text(), paths in path_set()) {
            let paths = data_paths(&paths);
            let bytes = record.json.as_bytes();
            agrees(bytes, &paths)?;
            if !record.unsure && !paths.whole() && tree(bytes, &paths, 1 << 20).is_ok() {
                prop_assert!(fast(bytes, &paths).is_some(), "left to the tree: {}", record.json);
            }
        }

        #[test]
        fn any_bytes_agree(bytes in proptest::collection::vec(any::<u8>(), 0..200), paths in path_set()) {
            agrees(&bytes, &data_paths(&paths))?;
        }

        /// What the gateway writes (no NUL in `data`: it refuses one) always takes the one pass.
        #[test]
        fn the_gateways_records_take_the_one_pass(record in record_text().prop_filter("an event", |r| !r.unsure), paths in path_set()) {
            let paths = data_paths(&paths);
            let now = t("2026-01-01T00:00:00Z");
            let Ok(event) = wire::decode(Some(record.json.as_bytes()), Some(now), now, 1 << 20) else { return Ok(()) };
            let (_, value) = wire::encode(&event);
            agrees(&value, &paths)?;
            if !paths.whole() {
                prop_assert!(fast(&value, &paths).is_some(), "left to the tree: {}", String::from_utf8_lossy(&value));
            }
        }
    }

    /// Decodes by the one pass (asserting it took the record) and agrees with the tree.
    fn one(record: &str, paths: &DataPaths) -> Value {
        agrees(record.as_bytes(), paths).unwrap_or_else(|e| panic!("{e}"));
        let event = fast(record.as_bytes(), paths).unwrap_or_else(|| panic!("left to the tree: {record}"));
        Value::Object(event.data)
    }

    fn record(data: &str) -> String {
        format!(r#"{{"id":"{ID}","type":"order.paid","data":{data}}}"#)
    }

    #[test]
    fn only_what_paths_reach_is_built() {
        let data = r#"{"order_id":"o-1","customer":{"id":7,"name":"n"},"items":[{"sku":"a"},{"sku":"b","qty":2}],"pad":"xxxx","tags":["t"]}"#;
        assert_eq!(one(&record(data), &paths(&[".order_id"])), json!({"order_id": "o-1"}));
        assert_eq!(
            one(&record(data), &paths(&[".customer.id", ".items[1].sku", ".absent"])),
            json!({"customer": {"id": 7}, "items": [null, {"sku": "b"}]})
        );
        assert_eq!(
            one(&record(data), &paths(&[".customer", ".items[0]"])),
            json!({"customer": {"id": 7, "name": "n"}, "items": [{"sku": "a"}]})
        );
        assert_eq!(one(&record(data), &paths(&[])), json!({}));
        assert_eq!(one(&record("null"), &paths(&[".a"])), json!({}));
        assert_eq!(one(&format!(r#"{{"id":"{ID}","type":"t"}}"#), &paths(&[".a"])), json!({}));
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_whole() {
        let p = paths(&[".c.id", ".c.list[1]"]);
        // The earlier value was an object the trie went into: replaced, not merged.
        assert_eq!(one(&record(r#"{"c":{"id":1,"x":2},"c":{"y":3}}"#), &p), json!({"c": {}}));
        assert_eq!(one(&record(r#"{"c":{"id":1},"c":5}"#), &p), json!({"c": 5}));
        assert_eq!(one(&record(r#"{"c":5,"c":{"id":1,"z":0}}"#), &p), json!({"c": {"id": 1}}));
        assert_eq!(one(&record(r#"{"c":{"list":[1,2,3]},"c":{"list":[4]}}"#), &p), json!({"c": {"list": [null]}}));
        assert_eq!(one(&record(r#"{"c":{"id":1,"id":2}}"#), &p), json!({"c": {"id": 2}}));
        // At a path's end too, and a repeated `data`.
        assert_eq!(one(&record(r#"{"a":{"x":1},"a":[2]}"#), &paths(&[".a"])), json!({"a": [2]}));
        let twice = format!(r#"{{"id":"{ID}","type":"t","data":{{"a":1,"b":2}},"data":{{"b":3}}}}"#);
        assert_eq!(one(&twice, &paths(&[".a", ".b"])), json!({"b": 3}));
    }

    #[test]
    fn arrays_are_indexed() {
        let p = paths(&[".m[1][0]", ".items[2].sku"]);
        assert_eq!(
            one(&record(r#"{"m":[[1],[2,3],[4]],"items":[{"sku":"a"},1,{"sku":"c","n":1},{"sku":"d"}]}"#), &p),
            json!({"m": [null, [2]], "items": [null, null, {"sku": "c"}]})
        );
        // Shorter than the index, not an array, empty.
        assert_eq!(one(&record(r#"{"m":[[1]],"items":{"2":1}}"#), &p), json!({"m": [null], "items": {}}));
        assert_eq!(one(&record(r#"{"m":[],"items":"s"}"#), &p), json!({"m": [], "items": "s"}));
    }

    #[test]
    fn keys_match_as_decoded() {
        let p = paths(&[".odd~key.x", ".a"]);
        assert_eq!(one(&record(r#"{"odd key":{"x":1,"y":2}}"#), &p), json!({"odd key": {"x": 1}}));
        assert_eq!(
            one(&record(r#"{"odd\u0020key":{"\u0078":1},"\u0061":[true]}"#), &p),
            json!({"odd key": {"x": 1}, "a": [true]})
        );
        let mut dotted = DataPaths::new();
        dotted.add([Step::Field("a.b"), Step::Field("\"q\"")]);
        assert_eq!(one(&record(r#"{"a.b":{"\"q\"":1,"q":2},"a":{"b":3}}"#), &dotted), json!({"a.b": {"\"q\"": 1}}));
    }

    #[test]
    fn data_itself_is_decoded_whole_by_the_tree() {
        let mut p = paths(&[".a"]);
        p.add([]);
        let text = record(r#"{"a":1,"b":{"c":[1,2]}}"#);
        let now = t("2026-01-01T00:00:00Z");
        assert_eq!(pruned(text.as_bytes(), &p, 1 << 20), wire::decode(Some(text.as_bytes()), Some(now), now, 1 << 20));
        assert_eq!(pruned(text.as_bytes(), &p, 1 << 20).map(|e| e.data.len()), Ok(2));
    }

    #[test]
    fn unknown_envelope_fields_are_validated_as_the_tree_validates_them() {
        let p = paths(&[".a"]);
        let with = |other: &str| format!(r#"{{"id":"{ID}","other":{other},"type":"t","data":{{"a":1}}}}"#);
        assert_eq!(one(&with(r#"{"x":[1,"\u0000"],"\u0000":null}"#), &p), json!({"a": 1}));
        for refused in ["1e400", r#""\ud800""#, &nested(MAX_DATA_DEPTH + 1)] {
            let text = with(refused);
            agrees(text.as_bytes(), &p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                pruned(text.as_bytes(), &p, 1 << 20).map_err(|r| r.reason),
                Err(RejectReason::NotJson),
                "{refused}"
            );
        }
        assert_eq!(one(&with(&nested(MAX_DATA_DEPTH)), &p), json!({"a": 1}));
    }

    #[test]
    fn a_repeated_envelope_field_keeps_its_last_value() {
        let p = paths(&[".a"]);
        let text = format!(
            r#"{{"id":7,"id":"{ID}","type":["x",{{"y":null}}],"type":"t","key":"k","key":null,"ts":"nope","ts":null,"data":{{"a":1}}}}"#
        );
        assert_eq!(one(&text, &p), json!({"a": 1}));
        let event = fast(text.as_bytes(), &p).expect("one pass");
        assert_eq!((event.event_type.as_str(), event.key), ("t", None));
        // What the tree cannot parse fails the record even in an earlier value.
        for refused in ["1e400", r#""\ud800""#, &format!("[{}]", nested(MAX_DATA_DEPTH))] {
            let text = format!(r#"{{"id":"{ID}","type":{refused},"type":"t"}}"#);
            agrees(text.as_bytes(), &p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                pruned(text.as_bytes(), &p, 1 << 20).map_err(|r| r.reason),
                Err(RejectReason::NotJson),
                "{refused}"
            );
        }
    }

    #[test]
    fn what_the_one_pass_is_not_sure_of_goes_to_the_tree() {
        let p = paths(&[".a", ".b"]);
        for (text, expected) in [
            // A NUL the tree refuses (with its path), or that a later repeated key hides.
            (
                record(r#"{"b":{"x":"\u0000"}}"#),
                Err("`data` holds a NUL character (\\u0000) at $.b.x: PostgreSQL cannot store it; remove it"),
            ),
            (
                record(r#"{"z":["\u0000"]}"#),
                Err("`data` holds a NUL character (\\u0000) at $.z[0]: PostgreSQL cannot store it; remove it"),
            ),
            (
                record(r#"{"a":{"x\u0000":1}}"#),
                Err("`data` holds a NUL character (\\u0000) at $.a.x\\0: PostgreSQL cannot store it; remove it"),
            ),
            (record(r#"{"a":"\u0000","a":1}"#), Ok(json!({"a": 1}))),
            (record(r#"{"z":{"\u0000":1},"z":2,"b":3}"#), Ok(json!({"b": 3}))),
            // `data` not an object, unless a later `data` is one.
            (record("[1]"), Err("`data` must be a JSON object, got an array")),
            (format!(r#"{{"id":"{ID}","type":"t","data":5,"data":{{"a":1}}}}"#), Ok(json!({"a": 1}))),
            // The key serde_json's Value reads as JSON text.
            (record(&format!(r#"{{"a":{{"{RAW_VALUE_KEY}":"[1]"}}}}"#)), Ok(json!({"a": [1]}))),
            (
                record(&format!(r#"{{"z":{{"{RAW_VALUE_KEY}":"1e400"}}}}"#)),
                Err("record value is not JSON: number out of range at line 1 column 5"),
            ),
        ] {
            agrees(text.as_bytes(), &p).unwrap_or_else(|e| panic!("{e}"));
            assert!(fast(text.as_bytes(), &p).is_none(), "{text}");
            let got = pruned(text.as_bytes(), &p, 1 << 20).map(|e| Value::Object(e.data)).map_err(|r| r.detail);
            assert_eq!(got, expected.map_err(str::to_owned), "{text}");
        }
    }

    #[test]
    fn refusals_are_the_tree_decoders() {
        let p = paths(&[".a"]);
        let now = t("2026-01-01T00:00:00Z");
        assert_eq!(
            decode_pruned(None, None, now, 1024, &p),
            Err(Rejection::new(RejectReason::NotJson, "record has no value (a tombstone)"))
        );
        let long = record(&format!(r#"{{"a":"{}"}}"#, "x".repeat(2000)));
        let too_large = pruned(long.as_bytes(), &p, 1024).expect_err("too large");
        assert_eq!(too_large, tree(long.as_bytes(), &p, 1024).expect_err("too large"));
        assert_eq!(too_large.reason, RejectReason::TooLarge);
        for text in [
            "not json".to_owned(),
            "[]".to_owned(),
            r#"{"type":"t"}"#.to_owned(),
            format!(r#"{{"id":"{ID}","type":7}}"#),
            format!(r#"{{"id":"{ID}","type":"t","ts":"nope"}}"#),
            format!(r#"{{"id":"{ID}","type":"t","data":{{"a":1}}}} trailing"#),
            record(r#"{"a":1e400}"#),
            record(r#"{"b":[1,2,1e400]}"#),
            record(r#"{"b":"\ud800"}"#),
            record(r#"{"a":{"b":"\udc00"}}"#),
            record(r#"{"a":1,}"#),
        ] {
            agrees(text.as_bytes(), &p).unwrap_or_else(|e| panic!("{e}"));
            assert!(pruned(text.as_bytes(), &p, 1 << 20).is_err(), "{text}");
        }
    }

    #[test]
    fn nesting_at_the_record_limit_agrees() {
        let mut accepted = Vec::new();
        for levels in MAX_DATA_DEPTH - 3..MAX_DATA_DEPTH + 3 {
            let text = record(&format!(r#"{{"a":{},"b":{}}}"#, nested(levels - 1), nested(levels - 1)));
            for p in [paths(&[".a"]), paths(&[".b"]), paths(&[".a[0][0]"]), paths(&[])] {
                agrees(text.as_bytes(), &p).unwrap_or_else(|e| panic!("{levels} levels: {e}"));
            }
            accepted.push(tree(text.as_bytes(), &paths(&[]), 1 << 20).is_ok());
            if accepted.last() == Some(&true) {
                one(&text, &paths(&[".a[0][0]"]));
            }
        }
        // Both sides of the limit were tried.
        assert!(accepted.contains(&true) && accepted.contains(&false), "{accepted:?}");
    }
}
