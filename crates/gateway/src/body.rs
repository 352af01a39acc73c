//! Turning a request body into one JSON text per event, before any event is validated.
//!
//! Pure functions of bytes and headers, so they can be fuzzed: no input may panic, and every
//! failure is an [`ApiError`] that names the line or index when there is one.
//!
//! Memory is bounded by the limits, not by what the body expands to: an array is split into
//! borrowed raw elements and splitting stops at `--max-batch-events + 1` of them (a 10 MiB
//! `[0,0,...]` never becomes five million values); NDJSON lines are counted as they are found;
//! an identity body is not copied; and one event is parsed into values only when its JSON text
//! (without insignificant whitespace) is within `--max-event-bytes`.

use std::{borrow::Cow, cell::Cell, fmt, io::Read};

use flate2::read::MultiGzDecoder;
use serde::de::{self, Deserializer as _, SeqAccess, Visitor};
use serde_json::{value::RawValue, Value};

use crate::error::{ApiError, Position};

/// The body formats the API takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: one event object, or an array of them. Also `text/plain`, read the
    /// same way: what `navigator.sendBeacon` sends for a string, and the one JSON-capable type
    /// a page may post cross-origin without a preflight.
    Json,
    /// `application/x-ndjson`: one event object per line.
    Ndjson,
}

/// Reads the format from a `Content-Type` value. The only parameter that matters is `charset`,
/// which must be UTF-8 (or its subset US-ASCII) when present.
pub fn format(content_type: Option<&str>) -> Result<Format, ApiError> {
    let Some(raw) = content_type else {
        return Err(ApiError::UnsupportedMediaType(
            "missing content-type; use application/json, text/plain (holding JSON) or application/x-ndjson".to_owned(),
        ));
    };
    let mut parts = raw.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let format = match essence.as_str() {
        "application/json" | "text/plain" => Format::Json,
        "application/x-ndjson" | "application/ndjson" | "application/jsonlines" => Format::Ndjson,
        _ => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "content-type {essence:?} is not supported; use application/json, text/plain (holding JSON) or application/x-ndjson"
            )))
        }
    };
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("charset") {
            continue;
        }
        let charset = value.trim().trim_matches('"').to_ascii_lowercase();
        if !matches!(charset.as_str(), "utf-8" | "utf8" | "us-ascii") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "charset {charset:?} is not supported; send UTF-8 (charset=utf-8) or leave the charset out"
            )));
        }
    }
    Ok(format)
}

/// Undoes `Content-Encoding`, refusing to inflate past `limit` bytes (a gzip bomb is a 413).
/// An identity body is borrowed, not copied.
pub fn decode_content<'a>(encoding: Option<&str>, body: &'a [u8], limit: usize) -> Result<Cow<'a, [u8]>, ApiError> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => Ok(Cow::Borrowed(body)),
        Some("gzip") | Some("x-gzip") => {
            // The gzip trailer holds the inflated size (of the last member, modulo 4 GiB): a
            // hint that spares the buffer its doublings and copies, capped by the limit.
            let hint =
                body.len().checked_sub(4).and_then(|at| body.get(at..)).and_then(|t| <[u8; 4]>::try_from(t).ok());
            let hint = hint.map_or(0, |t| u32::from_le_bytes(t) as usize);
            let mut out = Vec::with_capacity(hint.min(limit.saturating_add(1)));
            let mut decoder = MultiGzDecoder::new(body).take(limit as u64 + 1);
            decoder.read_to_end(&mut out).map_err(|e| ApiError::InvalidJson {
                message: format!("gzip body could not be decompressed: {e}"),
                at: None,
            })?;
            if out.len() > limit {
                return Err(ApiError::BodyTooLarge { limit });
            }
            Ok(Cow::Owned(out))
        }
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "content-encoding {other:?} is not supported; use gzip or none"
        ))),
    }
}

/// Splits a decoded body into one syntactically valid JSON text per event, with its position.
/// Stops at `max_events + 1` events (413 `batch_too_large`) without looking further.
pub fn events(format: Format, body: &[u8], max_events: usize) -> Result<Vec<(Position, &RawValue)>, ApiError> {
    let raws = match format {
        Format::Json => json_elements(body, max_events)?,
        Format::Ndjson => {
            let mut lines = Vec::new();
            for (n, line) in body.split(|b| *b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                // The count alone decides a too-large batch: don't parse what will be refused.
                if lines.len() == max_events {
                    return Err(too_many(max_events));
                }
                lines.push((Position::Line(n + 1), line));
            }
            let mut raws = Vec::with_capacity(lines.len());
            for (at, line) in lines {
                let raw: &RawValue = serde_json::from_slice(line).map_err(|e| json_error(&e, Some(at)))?;
                raws.push((at, raw));
            }
            raws
        }
    };
    if raws.is_empty() {
        return Err(ApiError::EmptyBatch);
    }
    Ok(raws)
}

/// Parses one event's JSON text, refusing first (413 `event_too_large`) a text that cannot fit
/// in `max_event_bytes` however it is written, so its values are never built.
pub fn value(raw: &RawValue, at: Position, max_event_bytes: usize) -> Result<Value, ApiError> {
    let text = raw.get();
    if text.len() > max_event_bytes {
        let size = compact_len(text.as_bytes());
        if size > max_event_bytes {
            return Err(ApiError::EventTooLarge { size, limit: max_event_bytes, at });
        }
    }
    serde_json::from_str(text).map_err(|e| json_error(&e, Some(at)))
}

/// The length of valid JSON text without its insignificant whitespace.
pub(crate) fn compact_len(text: &[u8]) -> usize {
    let (mut len, mut in_string, mut escaped) = (0, false, false);
    for &b in text {
        if in_string {
            len += 1;
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            len += 1;
            in_string = b == b'"';
        }
    }
    len
}

fn too_many(max_events: usize) -> ApiError {
    ApiError::BatchTooLarge { count: max_events + 1, limit: max_events }
}

/// A JSON body: an array of events, or one event.
fn json_elements(body: &[u8], max_events: usize) -> Result<Vec<(Position, &RawValue)>, ApiError> {
    let is_array = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    if !is_array {
        let raw: &RawValue = serde_json::from_slice(body).map_err(|e| json_error(&e, None))?;
        return Ok(vec![(Position::Index(0), raw)]);
    }
    let over = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = de.deserialize_seq(Elements { max: max_events, over: &over }).and_then(|raws| de.end().map(|()| raws));
    match parsed {
        Ok(raws) => Ok(raws.into_iter().enumerate().map(|(i, raw)| (Position::Index(i), raw)).collect()),
        Err(_) if over.get() => Err(too_many(max_events)),
        Err(e) => Err(json_error(&e, None)),
    }
}

/// Collects an array's elements as borrowed raw JSON, at most `max` of them.
struct Elements<'c> {
    max: usize,
    over: &'c Cell<bool>,
}

impl<'de> Visitor<'de> for Elements<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut raws = Vec::new();
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if raws.len() == self.max {
                self.over.set(true);
                return Err(de::Error::custom("too many events"));
            }
            raws.push(raw);
        }
        Ok(raws)
    }
}

pub(crate) fn json_error(e: &serde_json::Error, at: Option<Position>) -> ApiError {
    let message = match e.classify() {
        serde_json::error::Category::Eof => {
            format!("body is not valid JSON, it ends too early: {e}")
        }
        _ => format!("body is not valid JSON: {e}"),
    };
    ApiError::InvalidJson { message, at }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use proptest::prelude::*;
    use serde_json::json;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).expect("write");
        enc.finish().expect("finish")
    }

    #[test]
    fn content_types() {
        assert_eq!(format(Some("application/json; charset=utf-8")).ok(), Some(Format::Json));
        assert_eq!(format(Some("application/json;charset=\"UTF-8\"")).ok(), Some(Format::Json));
        assert_eq!(format(Some("application/json; charset=us-ascii")).ok(), Some(Format::Json));
        assert_eq!(format(Some("Application/X-NDJSON")).ok(), Some(Format::Ndjson));
        assert_eq!(format(Some("text/plain")).ok(), Some(Format::Json), "sendBeacon's type");
        assert_eq!(format(Some("text/plain;charset=UTF-8")).ok(), Some(Format::Json), "as Chromium sends it");
        let latin1 = format(Some("text/plain; charset=iso-8859-1")).map_err(|e| e.code()).err();
        assert_eq!(latin1, Some("unsupported_media_type"), "the charset rule is the same");
        assert_eq!(format(Some("text/html")).map_err(|e| e.code()).err(), Some("unsupported_media_type"));
        let form = format(Some("application/x-www-form-urlencoded")).map_err(|e| e.code()).err();
        assert_eq!(form, Some("unsupported_media_type"));
        assert_eq!(
            format(Some("multipart/form-data; boundary=x")).map_err(|e| e.code()).err(),
            Some("unsupported_media_type")
        );
        assert_eq!(format(None).map_err(|e| e.code()).err(), Some("unsupported_media_type"));
        let utf16 = format(Some("application/json; charset=utf-16")).expect_err("utf-16");
        assert_eq!(utf16.code(), "unsupported_media_type");
        assert_eq!(
            utf16.to_string(),
            "charset \"utf-16\" is not supported; send UTF-8 (charset=utf-8) or leave the charset out"
        );
    }

    #[test]
    fn gzip_is_inflated_and_bombs_are_refused() {
        let body = gzip(br#"{"type":"a"}"#);
        assert_eq!(&*decode_content(Some("gzip"), &body, 100).expect("inflates"), br#"{"type":"a"}"#);
        assert!(matches!(decode_content(None, b"{}", 100), Ok(Cow::Borrowed(_))), "identity is not copied");
        let bomb = gzip(&vec![b' '; 10_000_000]);
        assert!(bomb.len() < 20_000);
        let err = decode_content(Some("gzip"), &bomb, 1_000_000).expect_err("bomb");
        assert_eq!(err.code(), "body_too_large");
        assert_eq!(decode_content(Some("gzip"), b"not gzip", 100).map_err(|e| e.code()).err(), Some("invalid_json"));
        assert_eq!(decode_content(Some("br"), b"", 100).map_err(|e| e.code()).err(), Some("unsupported_media_type"));
    }

    fn values(format: Format, body: &[u8], max: usize) -> Result<Vec<(Position, Value)>, ApiError> {
        events(format, body, max)?.into_iter().map(|(at, raw)| Ok((at, value(raw, at, 1 << 20)?))).collect()
    }

    #[test]
    fn json_single_array_and_errors() {
        assert_eq!(
            values(Format::Json, br#" {"type":"a"} "#, 10).expect("one"),
            vec![(Position::Index(0), json!({"type": "a"}))]
        );
        assert_eq!(values(Format::Json, br#"[{"type":"a"},{"type":"b"}]"#, 10).expect("two").len(), 2);
        assert_eq!(events(Format::Json, b"[]", 10).map_err(|e| e.code()).err(), Some("empty_batch"));
        assert_eq!(events(Format::Json, b"[1,2,3]", 2).map_err(|e| e.code()).err(), Some("batch_too_large"));
        let truncated = events(Format::Json, br#"[{"type":"a"#, 10).expect_err("truncated");
        assert_eq!(truncated.code(), "invalid_json");
        assert!(truncated.to_string().contains("ends too early"), "{truncated}");
        assert_eq!(events(Format::Json, b"[{}] x", 10).map_err(|e| e.code()).err(), Some("invalid_json"));
        assert_eq!(events(Format::Json, b"{\"type\":\"\xff\"}", 10).map_err(|e| e.code()).err(), Some("invalid_json"));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let err = values(Format::Json, deep.as_bytes(), 10).expect_err("too deep");
        assert_eq!((err.code(), err.body()["error"]["index"].clone()), ("invalid_json", json!(0)));
    }

    #[test]
    fn splitting_stops_one_past_the_batch_limit() {
        // The rest is not looked at: not even the syntax error at the end.
        let mut body = b"[".to_vec();
        body.extend(std::iter::repeat_n(&b"0,"[..], 100_000).flatten());
        body.extend_from_slice(b"oops");
        let err = events(Format::Json, &body, 1000).expect_err("too many");
        assert_eq!(
            err.to_string(),
            "request holds at least 1001 events, the limit is 1000; split it into smaller requests"
        );
        let ndjson: Vec<u8> = std::iter::repeat_n(&b"0\n"[..], 100_000).flatten().copied().collect();
        assert_eq!(events(Format::Ndjson, &ndjson, 1000).map_err(|e| e.code()).err(), Some("batch_too_large"));
        assert_eq!(events(Format::Json, b"[1,2]", 2).expect("at the limit").len(), 2);
    }

    #[test]
    fn an_event_too_large_in_any_spelling_is_refused_before_parsing() {
        let big = format!(r#"{{"type":"t","data":{{"a":[{}0]}}}}"#, "0,".repeat(1000));
        let raw: &RawValue = serde_json::from_str(&big).expect("raw");
        let err = value(raw, Position::Index(3), 1000).expect_err("too large");
        assert_eq!((err.code(), err.body()["error"]["index"].clone()), ("event_too_large", json!(3)));
        // Whitespace does not count: the same event spread out is parsed, and judged later.
        let spaced = format!(r#"{{ "type" : "t" , "data" : {{ "s" : "a b" }} }}{}"#, " ".repeat(2000));
        let raw: &RawValue = serde_json::from_str(&spaced).expect("raw");
        assert_eq!(value(raw, Position::Index(0), 100).expect("fits")["data"]["s"], "a b");
        assert_eq!(compact_len(br#" { "a" : "x \" y" , "b" : [ 1 , 2 ] } "#), r#"{"a":"x \" y","b":[1,2]}"#.len());
    }

    #[test]
    fn ndjson_names_the_bad_line() {
        let body = b"{\"type\":\"a\"}\r\n\n{\"type\":\"b\"}\nnot json\n";
        let err = events(Format::Ndjson, body, 10).expect_err("bad line");
        assert_eq!(err.body()["error"]["line"], 4);
        let ok = events(Format::Ndjson, b"{\"type\":\"a\"}\n\n{\"type\":\"b\"}\n", 10).expect("two");
        assert_eq!(ok.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![Position::Line(1), Position::Line(3)]);
        assert_eq!(events(Format::Ndjson, b"\n \n", 10).map_err(|e| e.code()).err(), Some("empty_batch"));
        let over = events(Format::Ndjson, b"{}\n{}\n{}\n", 2).expect_err("over");
        assert_eq!(over.to_string(), "request holds at least 3 events, the limit is 2; split it into smaller requests");
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn no_body_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), ndjson in any::<bool>(), gz in any::<bool>()) {
            let fmt = if ndjson { Format::Ndjson } else { Format::Json };
            let encoding = if gz { Some("gzip") } else { None };
            if let Ok(decoded) = decode_content(encoding, &bytes, 4096) {
                let _ = values(fmt, &decoded, 16);
            }
        }

        /// Splitting into raw elements finds exactly the values a whole-body parse finds,
        /// however the body is spaced.
        #[test]
        fn splitting_agrees_with_parsing_the_whole(generated in proptest::collection::vec(json_value(), 1..20), pretty in any::<bool>()) {
            let array = Value::Array(generated);
            let body = if pretty { serde_json::to_vec_pretty(&array) } else { serde_json::to_vec(&array) }.unwrap_or_default();
            // (Compared with serde_json's own parse: without float_roundtrip it may not give back
            // the exact f64 it wrote, either way.)
            let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&body) else { panic!("an array") };
            let got: Vec<Value> = values(Format::Json, &body, 20).expect("valid").into_iter().map(|(_, v)| v).collect();
            prop_assert_eq!(&got, &items);
            let ndjson: Vec<u8> = items.iter().flat_map(|v| { let mut line = serde_json::to_vec(v).unwrap_or_default(); line.push(b'\n'); line }).collect();
            let lines: Vec<Value> = ndjson.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap_or_default()).collect();
            let got: Vec<Value> = values(Format::Ndjson, &ndjson, 20).expect("valid").into_iter().map(|(_, v)| v).collect();
            prop_assert_eq!(&got, &lines);
            if items.len() > 1 {
                prop_assert_eq!(values(Format::Json, &body, items.len() - 1).map_err(|e| e.code()).err(), Some("batch_too_large"));
            }
        }

        #[test]
        fn json_like_bodies_never_panic(s in r#"[\[\]\{\}",:0-9a-z\\ \n]{0,256}"#, ndjson in any::<bool>()) {
            let fmt = if ndjson { Format::Ndjson } else { Format::Json };
            let _ = values(fmt, s.as_bytes(), 16);
        }
    }
}
