//! Turning a request body into JSON values, one per event, before any event is validated.
//!
//! Pure functions of bytes and headers, so they can be fuzzed: no input may panic, and every
//! failure is an [`ApiError`] that names the line or index when there is one.

use std::io::Read;

use flate2::read::MultiGzDecoder;
use serde_json::Value;

use crate::error::{ApiError, Position};

/// The body formats the API takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: one event object, or an array of them.
    Json,
    /// `application/x-ndjson`: one event object per line.
    Ndjson,
}

/// Reads the format from a `Content-Type` value (parameters such as `charset=utf-8` allowed).
pub fn format(content_type: Option<&str>) -> Result<Format, ApiError> {
    let Some(raw) = content_type else {
        return Err(ApiError::UnsupportedMediaType(
            "missing content-type; use application/json or application/x-ndjson".to_owned(),
        ));
    };
    let essence = raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Format::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonlines" => Ok(Format::Ndjson),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "content-type {essence:?} is not supported; use application/json or application/x-ndjson"
        ))),
    }
}

/// Undoes `Content-Encoding`, refusing to inflate past `limit` bytes (a gzip bomb is a 413).
pub fn decode_content(encoding: Option<&str>, body: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => Ok(body.to_vec()),
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::new();
            let mut decoder = MultiGzDecoder::new(body).take(limit as u64 + 1);
            decoder.read_to_end(&mut out).map_err(|e| ApiError::InvalidJson {
                message: format!("gzip body could not be decompressed: {e}"),
                at: None,
            })?;
            if out.len() > limit {
                return Err(ApiError::BodyTooLarge { limit });
            }
            Ok(out)
        }
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "content-encoding {other:?} is not supported; use gzip or none"
        ))),
    }
}

/// Splits a decoded body into one JSON value per event, with its position.
pub fn events(format: Format, body: &[u8], max_events: usize) -> Result<Vec<(Position, Value)>, ApiError> {
    let values = match format {
        Format::Json => match parse(body, None)? {
            Value::Array(items) => items.into_iter().enumerate().map(|(i, v)| (Position::Index(i), v)).collect(),
            single => vec![(Position::Index(0), single)],
        },
        Format::Ndjson => {
            let lines: Vec<(usize, &[u8])> = body
                .split(|b| *b == b'\n')
                .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
                .enumerate()
                .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
                .collect();
            // The count alone decides a too-large batch: don't parse what will be refused.
            if lines.len() > max_events {
                return Err(ApiError::BatchTooLarge { count: lines.len(), limit: max_events });
            }
            let mut values = Vec::with_capacity(lines.len());
            for (n, line) in lines {
                let at = Position::Line(n + 1);
                values.push((at, parse(line, Some(at))?));
            }
            values
        }
    };
    if values.is_empty() {
        return Err(ApiError::EmptyBatch);
    }
    if values.len() > max_events {
        return Err(ApiError::BatchTooLarge { count: values.len(), limit: max_events });
    }
    Ok(values)
}

fn parse(bytes: &[u8], at: Option<Position>) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let message = match e.classify() {
            serde_json::error::Category::Eof => {
                format!("body is not valid JSON, it ends too early: {e}")
            }
            _ => format!("body is not valid JSON: {e}"),
        };
        ApiError::InvalidJson { message, at }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use proptest::prelude::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).expect("write");
        enc.finish().expect("finish")
    }

    #[test]
    fn content_types() {
        assert_eq!(format(Some("application/json; charset=utf-8")).ok(), Some(Format::Json));
        assert_eq!(format(Some("Application/X-NDJSON")).ok(), Some(Format::Ndjson));
        assert_eq!(format(Some("text/plain")).map_err(|e| e.code()).err(), Some("unsupported_media_type"));
        assert_eq!(format(None).map_err(|e| e.code()).err(), Some("unsupported_media_type"));
    }

    #[test]
    fn gzip_is_inflated_and_bombs_are_refused() {
        let body = gzip(br#"{"type":"a"}"#);
        assert_eq!(decode_content(Some("gzip"), &body, 100).expect("inflates"), br#"{"type":"a"}"#);
        let bomb = gzip(&vec![b' '; 10_000_000]);
        assert!(bomb.len() < 20_000);
        let err = decode_content(Some("gzip"), &bomb, 1_000_000).expect_err("bomb");
        assert_eq!(err.code(), "body_too_large");
        assert_eq!(decode_content(Some("gzip"), b"not gzip", 100).map_err(|e| e.code()).err(), Some("invalid_json"));
        assert_eq!(decode_content(Some("br"), b"", 100).map_err(|e| e.code()).err(), Some("unsupported_media_type"));
    }

    #[test]
    fn json_single_array_and_errors() {
        assert_eq!(events(Format::Json, br#"{"type":"a"}"#, 10).expect("one").len(), 1);
        assert_eq!(events(Format::Json, br#"[{"type":"a"},{"type":"b"}]"#, 10).expect("two").len(), 2);
        assert_eq!(events(Format::Json, b"[]", 10).map_err(|e| e.code()).err(), Some("empty_batch"));
        assert_eq!(events(Format::Json, b"[1,2,3]", 2).map_err(|e| e.code()).err(), Some("batch_too_large"));
        let truncated = events(Format::Json, br#"[{"type":"a"#, 10).expect_err("truncated");
        assert_eq!(truncated.code(), "invalid_json");
        assert!(truncated.to_string().contains("ends too early"), "{truncated}");
        assert_eq!(events(Format::Json, b"{\"type\":\"\xff\"}", 10).map_err(|e| e.code()).err(), Some("invalid_json"));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(events(Format::Json, deep.as_bytes(), 10).map_err(|e| e.code()).err(), Some("invalid_json"));
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
        assert_eq!(over.to_string(), "request holds 3 events, the limit is 2; split it into smaller requests");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn no_body_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), ndjson in any::<bool>(), gz in any::<bool>()) {
            let fmt = if ndjson { Format::Ndjson } else { Format::Json };
            let encoding = if gz { Some("gzip") } else { None };
            if let Ok(decoded) = decode_content(encoding, &bytes, 4096) {
                let _ = events(fmt, &decoded, 16);
            }
        }

        #[test]
        fn json_like_bodies_never_panic(s in r#"[\[\]\{\}",:0-9a-z\\ \n]{0,256}"#, ndjson in any::<bool>()) {
            let fmt = if ndjson { Format::Ndjson } else { Format::Json };
            let _ = events(fmt, s.as_bytes(), 16);
        }
    }
}
