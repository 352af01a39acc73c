//! Paths into an event: `id`, `type`, `key`, `ts`, `received_at`, `data`, and into `data`:
//! `data.a.b.c`, `data.items[0].sku`, `data."odd key"`.
//!
//! Grammar: a root (one of the six field names), then, for `data` only, segments: `.name`
//! where name is made of `A-Z a-z 0-9 _ -`, `."quoted name"` (with `\"` and `\\` escapes) for
//! any other object key, or `[n]` (a decimal array index). [`Path`]'s `Display` gives back a
//! string that parses to the same path (the original text, up to quoting).

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sluice_core::Event;
use uuid::Uuid;

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Path {
    Id,
    Type,
    Key,
    Ts,
    ReceivedAt,
    /// `data` followed by zero or more segments.
    Data(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Field(String),
    Index(usize),
}

/// What a path finds in an event. JSON `null` is a value (`Json(Value::Null)`), not `Missing`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Extracted<'e> {
    /// The path leads nowhere: an absent object key, an index past the end, a segment into a
    /// scalar, or `key` on an event without one.
    Missing,
    /// `id`.
    Uuid(Uuid),
    /// `type`, and `key` when the event has one.
    Str(&'e str),
    /// `ts` and `received_at`.
    Timestamp(DateTime<Utc>),
    /// The whole `data` object.
    Object(&'e Map<String, Value>),
    /// A value inside `data`.
    Json(&'e Value),
}

impl Extracted<'_> {
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Missing)
    }

    /// A JSON null inside `data`.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Json(Value::Null))
    }
}

/// Why a string is not a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path:?} is not a valid path: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: String,
}

const ROOTS: &str = "id, type, key, ts, received_at or data";

impl Path {
    pub fn parse(text: &str) -> Result<Self, PathError> {
        let fail = |reason: String| PathError { path: text.to_owned(), reason };
        let root_end = text.find(['.', '[']).unwrap_or(text.len());
        let (root, mut rest) = text.split_at(root_end);
        let simple = match root {
            "id" => Some(Self::Id),
            "type" => Some(Self::Type),
            "key" => Some(Self::Key),
            "ts" => Some(Self::Ts),
            "received_at" => Some(Self::ReceivedAt),
            "data" => None,
            "" => return Err(fail(format!("a path starts with {ROOTS}"))),
            other => return Err(fail(format!("it starts with {other:?}: a path starts with {ROOTS}"))),
        };
        if let Some(path) = simple {
            if !rest.is_empty() {
                return Err(fail(format!("{root} has no fields: only data takes .field and [index] segments")));
            }
            return Ok(path);
        }
        let mut segments = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let (segment, remaining) = if let Some(quoted) = after.strip_prefix('"') {
                    parse_quoted(quoted).map_err(&fail)?
                } else {
                    let end = after.find(['.', '[']).unwrap_or(after.len());
                    let name = &after[..end];
                    if name.is_empty() {
                        return Err(fail("empty field name after a dot".to_owned()));
                    }
                    if let Some(bad) = name.chars().find(|c| !is_plain(*c)) {
                        return Err(fail(format!(
                            "{bad:?} in field {name:?}: plain names are letters, digits, _ and -; quote others \
                             (data.\"odd key\")"
                        )));
                    }
                    (name.to_owned(), &after[end..])
                };
                segments.push(Segment::Field(segment));
                rest = remaining;
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after.find(']').ok_or_else(|| fail("an index [n] is not closed".to_owned()))?;
                let digits = &after[..end];
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(fail(format!("index [{digits}] must be a non-negative integer")));
                }
                let index = digits.parse().map_err(|_| fail(format!("index [{digits}] is too large")))?;
                if segments.is_empty() {
                    return Err(fail("data is an object: name a field before an index".to_owned()));
                }
                segments.push(Segment::Index(index));
                rest = &after[end + 1..];
            } else {
                return Err(fail(format!("unexpected {rest:?}: segments are .field, .\"quoted field\" or [index]")));
            }
        }
        Ok(Self::Data(segments))
    }

    /// What the path finds in `event`.
    pub fn extract<'e>(&self, event: &'e Event) -> Extracted<'e> {
        match self {
            Self::Id => Extracted::Uuid(event.id),
            Self::Type => Extracted::Str(&event.event_type),
            Self::Key => event.key.as_deref().map_or(Extracted::Missing, Extracted::Str),
            Self::Ts => Extracted::Timestamp(event.ts),
            Self::ReceivedAt => Extracted::Timestamp(event.received_at),
            Self::Data(segments) => {
                let Some((first, rest)) = segments.split_first() else {
                    return Extracted::Object(&event.data);
                };
                let Segment::Field(name) = first else {
                    return Extracted::Missing;
                };
                let Some(mut value) = event.data.get(name) else {
                    return Extracted::Missing;
                };
                for segment in rest {
                    let next = match (segment, value) {
                        (Segment::Field(name), Value::Object(map)) => map.get(name),
                        (Segment::Index(i), Value::Array(items)) => items.get(*i),
                        _ => None,
                    };
                    match next {
                        Some(v) => value = v,
                        None => return Extracted::Missing,
                    }
                }
                Extracted::Json(value)
            }
        }
    }
}

fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// A quoted name after its opening quote: the name and what follows the closing quote.
fn parse_quoted(text: &str) -> Result<(String, &str), String> {
    let mut name = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((name, &text[i + 1..])),
            '\\' => match chars.next() {
                Some((_, escaped @ ('"' | '\\'))) => name.push(escaped),
                _ => return Err("in a quoted field only \\\" and \\\\ are escapes".to_owned()),
            },
            c => name.push(c),
        }
    }
    Err("a quoted field is not closed".to_owned())
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id => f.write_str("id"),
            Self::Type => f.write_str("type"),
            Self::Key => f.write_str("key"),
            Self::Ts => f.write_str("ts"),
            Self::ReceivedAt => f.write_str("received_at"),
            Self::Data(segments) => {
                f.write_str("data")?;
                for segment in segments {
                    match segment {
                        Segment::Field(name) if !name.is_empty() && name.chars().all(is_plain) => write!(f, ".{name}")?,
                        Segment::Field(name) => {
                            f.write_str(".\"")?;
                            for c in name.chars() {
                                if matches!(c, '"' | '\\') {
                                    f.write_str("\\")?;
                                }
                                write!(f, "{c}")?;
                            }
                            f.write_str("\"")?;
                        }
                        Segment::Index(i) => write!(f, "[{i}]")?,
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::event;
    use serde_json::json;

    fn parse(s: &str) -> Path {
        Path::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn paths_parse_and_display_back() {
        let cases = [
            ("id", Path::Id),
            ("type", Path::Type),
            ("key", Path::Key),
            ("ts", Path::Ts),
            ("received_at", Path::ReceivedAt),
            ("data", Path::Data(vec![])),
            (
                "data.a.b.c",
                Path::Data(vec![Segment::Field("a".into()), Segment::Field("b".into()), Segment::Field("c".into())]),
            ),
            (
                "data.items[0].sku",
                Path::Data(vec![Segment::Field("items".into()), Segment::Index(0), Segment::Field("sku".into())]),
            ),
            ("data.m[1][2]", Path::Data(vec![Segment::Field("m".into()), Segment::Index(1), Segment::Index(2)])),
            ("data.x-y_Z9", Path::Data(vec![Segment::Field("x-y_Z9".into())])),
            ("data.\"odd key\"", Path::Data(vec![Segment::Field("odd key".into())])),
            ("data.\"a.b\".c", Path::Data(vec![Segment::Field("a.b".into()), Segment::Field("c".into())])),
            ("data.\"say \\\"hi\\\" \\\\\"", Path::Data(vec![Segment::Field("say \"hi\" \\".into())])),
            ("data.\"\"", Path::Data(vec![Segment::Field(String::new())])),
        ];
        for (text, path) in cases {
            assert_eq!(parse(text), path, "{text}");
            assert_eq!(parse(text).to_string(), text, "{text}");
        }
        // Quoting a plain name is allowed; it displays unquoted.
        assert_eq!(parse("data.\"plain\"").to_string(), "data.plain");
    }

    #[test]
    fn bad_paths_are_refused_naming_the_path() {
        let cases = [
            ("", "\"\" is not a valid path: a path starts with id, type, key, ts, received_at or data"),
            (
                "payload.a",
                "\"payload.a\" is not a valid path: it starts with \"payload\": a path starts with id, type, key, ts, \
                 received_at or data",
            ),
            ("id.x", "\"id.x\" is not a valid path: id has no fields: only data takes .field and [index] segments"),
            ("data..a", "\"data..a\" is not a valid path: empty field name after a dot"),
            ("data.", "\"data.\" is not a valid path: empty field name after a dot"),
            (
                "data.a b",
                "\"data.a b\" is not a valid path: ' ' in field \"a b\": plain names are letters, digits, _ and -; \
                 quote others (data.\"odd key\")",
            ),
            ("data.a[x]", "\"data.a[x]\" is not a valid path: index [x] must be a non-negative integer"),
            ("data.a[-1]", "\"data.a[-1]\" is not a valid path: index [-1] must be a non-negative integer"),
            ("data.a[1", "\"data.a[1\" is not a valid path: an index [n] is not closed"),
            ("data[0]", "\"data[0]\" is not a valid path: data is an object: name a field before an index"),
            ("data.\"open", "\"data.\\\"open\" is not a valid path: a quoted field is not closed"),
            ("data.a]", "\"data.a]\" is not a valid path: ']' in field \"a]\": plain names are letters, digits, _ and -; quote others (data.\"odd key\")"),
            ("data.\"a\"b", "\"data.\\\"a\\\"b\" is not a valid path: unexpected \"b\": segments are .field, .\"quoted field\" or [index]"),
            ("data.a[99999999999999999999999]", "\"data.a[99999999999999999999999]\" is not a valid path: index [99999999999999999999999] is too large"),
        ];
        for (text, message) in cases {
            let err = Path::parse(text).expect_err(text);
            assert_eq!(err.to_string(), message, "{text}");
        }
    }

    #[test]
    fn extraction_finds_typed_fields_and_data_values() {
        let e = event(
            json!({"total": 12.5, "customer": {"id": "c-1"}, "items": [{"sku": "A"}, {"sku": null}], "odd key": 1, "n": null}),
            Some("order-7"),
        );
        assert_eq!(parse("id").extract(&e), Extracted::Uuid(e.id));
        assert_eq!(parse("type").extract(&e), Extracted::Str("order.created"));
        assert_eq!(parse("key").extract(&e), Extracted::Str("order-7"));
        assert_eq!(parse("ts").extract(&e), Extracted::Timestamp(e.ts));
        assert_eq!(parse("received_at").extract(&e), Extracted::Timestamp(e.received_at));
        assert_eq!(parse("data").extract(&e), Extracted::Object(&e.data));
        assert_eq!(parse("data.total").extract(&e), Extracted::Json(&json!(12.5)));
        assert_eq!(parse("data.customer.id").extract(&e), Extracted::Json(&json!("c-1")));
        assert_eq!(parse("data.items[0].sku").extract(&e), Extracted::Json(&json!("A")));
        assert_eq!(parse("data.\"odd key\"").extract(&e), Extracted::Json(&json!(1)));
        // JSON null is a value, not a missing path.
        assert!(parse("data.items[1].sku").extract(&e).is_null());
        assert!(parse("data.n").extract(&e).is_null());
        for missing in [
            "data.nope",
            "data.items[2].sku",
            "data.items[0].nope",
            "data.total.x",
            "data.total[0]",
            "data.customer[0]",
            "data.items.sku",
            "data.n.x",
        ] {
            assert!(parse(missing).extract(&e).is_missing(), "{missing}");
        }
        let keyless = event(json!({}), None);
        assert!(parse("key").extract(&keyless).is_missing());
    }
}
