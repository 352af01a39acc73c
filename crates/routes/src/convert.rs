//! Strict conversion of what a path found to a column's type, producing the PostgreSQL text
//! literal of the value (`None` is SQL NULL). The sinker sends every column as a `text[]` array
//! and casts in SQL (`u."c"::integer`), so the literal is all it needs.
//!
//! # Conversion table
//!
//! A JSON `null` is SQL NULL in every column type except json and jsonb (see below). A string
//! holding a NUL character (`\u0000`) is refused for every type: PostgreSQL cannot store it.
//!
//! | column type | takes | refuses |
//! |---|---|---|
//! | text, varchar, char | a JSON string as is; `type` and `key`; `id` (hyphenated lowercase); `ts` and `received_at` (RFC 3339, microseconds, `Z`) | numbers, booleans, arrays, objects (no implicit formatting) |
//! | uuid | a string in the hyphenated 36-character form, any case (written lowercase); `id` | braced, URN and unhyphenated forms, anything else |
//! | smallint, integer, bigint | a JSON integer in the column's range (`-0` is 0); a string holding one (optional sign, digits only) | `1.5`, `1.0`, `1e3` (a JSON number written with a fraction or an exponent), `" 1"`, `"0x1"`, out of range (the message gives the range) |
//! | numeric | a JSON number (written as serde_json prints it); a string holding a decimal number: optional sign, digits with an optional fraction, optional exponent (`"-12.50"`, `"1e-3"`, `".5"`), within PostgreSQL's numeric range: at most 131072 digits before the point and 16383 after it once the exponent is applied | `"NaN"`, `"Infinity"`, `"1e999999"`, `"1e-20000"`, anything else |
//! | real, double precision | a JSON number or a string holding a decimal number, within the type's range (no overflow, no underflow to zero) | `"NaN"`, `"Infinity"`, out of range |
//! | boolean | JSON `true` and `false` | strings (`"true"`), numbers |
//! | timestamptz | an RFC 3339 string; `ts` and `received_at`. Written in UTC with microseconds (digits past the microsecond are truncated, a leap second is the next second's start); between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z in UTC | anything else |
//! | timestamp | an RFC 3339 string, converted to UTC and written without an offset; a string `YYYY-MM-DDTHH:MM:SS[.fraction]` without an offset, taken as is; `ts` and `received_at` (in UTC) | anything else |
//! | date | a `YYYY-MM-DD` string; `ts` and `received_at` (their UTC date) | timestamps in strings, anything else |
//! | json, jsonb | any JSON value, written as JSON (object keys sorted and whitespace dropped: a json column does not keep the sender's text); an explicit JSON `null` is the JSON value `null` (a missing path is not: see `mapping.rs`); `data` whole; `id`, `type`, `key`, `ts`, `received_at` as JSON strings | strings and object keys holding NUL |
//! | arrays of the above (one dimension) | a JSON array whose items each convert to the element type; a `null` item is a NULL element (a JSON `null` in json[] and jsonb[]) | anything but a JSON array; items that are arrays (except in json[] and jsonb[]) |
//!
//! JSON numbers reach the sinker as 64-bit integers or double-precision floats (serde_json
//! without `arbitrary_precision`): a number with a fraction or an exponent, or an integer beyond
//! 64 bits, keeps about 15 significant digits (`12345678901234567.25` becomes
//! `12345678901234568`). Put a numeric value that needs more digits in a string.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Number, Value};
use sluice_core::event::{storable, MAX_TS, MIN_TS};

use crate::{
    path::Extracted,
    types::{ColumnType, Scalar},
};

/// Why a value does not convert: what the column takes and what the event holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found}")]
pub struct ConvertError {
    /// A short description of the value, e.g. `a number (1.5)`.
    pub found: String,
    /// The column type and what it takes, e.g. `integer (a JSON integer in ... or a string holding one)`.
    pub expected: String,
}

/// Converts what a path found to the literal of `ty`. `Missing` gives `Ok(None)`: whether a
/// missing value is allowed is the mapping's decision, not the conversion's.
pub fn convert(value: Extracted<'_>, ty: ColumnType) -> Result<Option<String>, ConvertError> {
    match ty {
        ColumnType::Scalar(scalar) => scalar_value(value, scalar)
            .map_err(|found| ConvertError { found: found.describe(), expected: expected(scalar) }),
        ColumnType::Array(element) => array(value, element),
    }
}

/// What the column type takes, for messages (also used by the gateway's 400 answers).
pub fn expected(scalar: Scalar) -> String {
    let rule = match scalar {
        Scalar::Text => "a string".to_owned(),
        Scalar::Uuid => "a string in the hyphenated form 0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b".to_owned(),
        Scalar::Int2 | Scalar::Int4 | Scalar::Int8 => {
            let (min, max) = int_range(scalar);
            format!("a JSON integer in {min}..{max} or a string holding one")
        }
        Scalar::Numeric => "a JSON number or a string holding a decimal number".to_owned(),
        Scalar::Float4 | Scalar::Float8 => {
            format!("a JSON number or a string holding a decimal number, within {}'s range", scalar.sql_name())
        }
        Scalar::Bool => "true or false".to_owned(),
        Scalar::Timestamptz => {
            format!("an RFC 3339 string such as 2026-01-31T12:00:00Z, between {MIN_TS} and {MAX_TS} in UTC")
        }
        Scalar::Timestamp => {
            "an RFC 3339 string, or YYYY-MM-DDTHH:MM:SS[.ffffff] without an offset, in years 0001 to 9999".to_owned()
        }
        Scalar::Date => "a YYYY-MM-DD string".to_owned(),
        Scalar::Json | Scalar::Jsonb => "any JSON value without NUL characters".to_owned(),
    };
    format!("{} ({rule})", scalar.sql_name())
}

/// The value that did not convert, kept until its description is needed.
enum Found<'a> {
    Value(Extracted<'a>),
    Nul,
    Item(Box<Found<'a>>, usize),
}

impl Found<'_> {
    fn describe(&self) -> String {
        match self {
            Self::Nul => "a string holding a NUL character (\\u0000), which PostgreSQL cannot store".to_owned(),
            Self::Item(found, index) => format!("{} at index {index}", found.describe()),
            Self::Value(value) => match value {
                Extracted::Missing => "nothing (the path is missing)".to_owned(),
                Extracted::Uuid(id) => format!("a uuid ({id})"),
                Extracted::Str(s) => describe_string(s),
                Extracted::Timestamp(t) => format!("a timestamp ({})", rfc3339(*t)),
                Extracted::Object(_) => "an object".to_owned(),
                Extracted::Json(v) => match v {
                    Value::Null => "null".to_owned(),
                    Value::Bool(b) => format!("a boolean ({b})"),
                    Value::Number(n) => format!("a number ({n})"),
                    Value::String(s) => describe_string(s),
                    Value::Array(items) => format!("an array of {} items", items.len()),
                    Value::Object(_) => "an object".to_owned(),
                },
            },
        }
    }
}

fn describe_string(s: &str) -> String {
    const SHOWN: usize = 40;
    let chars = s.chars().count();
    if chars <= SHOWN {
        format!("a string ({s:?})")
    } else {
        let head: String = s.chars().take(SHOWN).collect();
        format!("a string of {chars} characters ({head:?}...)")
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The text a string-like value holds: JSON strings and `type` / `key`.
fn text<'a>(value: &Extracted<'a>) -> Option<&'a str> {
    match *value {
        Extracted::Str(s) => Some(s),
        Extracted::Json(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn scalar_value(value: Extracted<'_>, scalar: Scalar) -> Result<Option<String>, Found<'_>> {
    match value {
        Extracted::Missing => return Ok(None),
        Extracted::Json(Value::Null) if !matches!(scalar, Scalar::Json | Scalar::Jsonb) => return Ok(None),
        _ => {}
    }
    if text(&value).is_some_and(|s| s.contains('\0')) {
        return Err(Found::Nul);
    }
    let refused = Found::Value(value);
    let converted = match scalar {
        Scalar::Text => match value {
            Extracted::Uuid(id) => Some(id.to_string()),
            Extracted::Timestamp(t) => Some(rfc3339(t)),
            other => text(&other).map(str::to_owned),
        },
        Scalar::Uuid => match value {
            Extracted::Uuid(id) => Some(id.to_string()),
            other => text(&other).and_then(canonical_uuid),
        },
        Scalar::Int2 | Scalar::Int4 | Scalar::Int8 => match value {
            Extracted::Json(Value::Number(n)) => json_integer(n, scalar),
            other => text(&other).and_then(|s| string_integer(s, scalar)),
        },
        Scalar::Numeric => match value {
            Extracted::Json(Value::Number(n)) => Some(n.to_string()),
            other => text(&other).filter(|s| is_decimal(s) && numeric_fits(s)).map(str::to_owned),
        },
        Scalar::Float4 | Scalar::Float8 => match value {
            Extracted::Json(Value::Number(n)) => n.as_f64().and_then(|f| float(f, f != 0.0, scalar)),
            other => text(&other).and_then(|s| string_float(s, scalar)),
        },
        Scalar::Bool => match value {
            Extracted::Json(Value::Bool(b)) => Some(b.to_string()),
            _ => None,
        },
        Scalar::Timestamptz => match value {
            Extracted::Timestamp(t) => Some(rfc3339(t)),
            other => text(&other).and_then(parse_rfc3339).map(rfc3339),
        },
        Scalar::Timestamp => match value {
            Extracted::Timestamp(t) => Some(naive(t)),
            other => text(&other).and_then(|s| parse_rfc3339(s).or_else(|| parse_naive(s))).map(naive),
        },
        Scalar::Date => match value {
            Extracted::Timestamp(t) => Some(t.date_naive().format("%Y-%m-%d").to_string()),
            other => text(&other).and_then(parse_date),
        },
        Scalar::Json | Scalar::Jsonb => return json(value).map(Some),
    };
    converted.map(Some).ok_or(refused)
}

fn array(value: Extracted<'_>, element: Scalar) -> Result<Option<String>, ConvertError> {
    let error = |found: Found<'_>| ConvertError {
        found: found.describe(),
        expected: format!("{}[] (a JSON array whose items are each {})", element.sql_name(), expected(element)),
    };
    let items = match value {
        Extracted::Missing | Extracted::Json(Value::Null) => return Ok(None),
        Extracted::Json(Value::Array(items)) => items,
        other => return Err(error(Found::Value(other))),
    };
    let json_items = matches!(element, Scalar::Json | Scalar::Jsonb);
    let mut literal = String::with_capacity(2 + items.len() * 8);
    literal.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            literal.push(',');
        }
        if item.is_array() && !json_items {
            return Err(ConvertError {
                found: format!("a nested array at index {i}"),
                expected: format!("{}[] (one dimension only: nested arrays are not supported)", element.sql_name()),
            });
        }
        match scalar_value(Extracted::Json(item), element) {
            Ok(Some(text)) => push_array_element(&mut literal, &text),
            Ok(None) => literal.push_str("NULL"),
            Err(found) => return Err(error(Found::Item(Box::new(found), i))),
        }
    }
    literal.push('}');
    Ok(Some(literal))
}

/// An array element, always double-quoted, with `"` and `\` escaped.
fn push_array_element(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

fn json(value: Extracted<'_>) -> Result<String, Found<'_>> {
    let text = match value {
        Extracted::Missing => return Ok("null".to_owned()),
        Extracted::Uuid(id) => Value::String(id.to_string()).to_string(),
        Extracted::Timestamp(t) => Value::String(rfc3339(t)).to_string(),
        Extracted::Str(s) => Value::String(s.to_owned()).to_string(),
        Extracted::Object(map) => {
            if map_has_nul(map) {
                return Err(Found::Nul);
            }
            serde_json::to_string(map).unwrap_or_default()
        }
        Extracted::Json(v) => {
            if has_nul(v) {
                return Err(Found::Nul);
            }
            v.to_string()
        }
    };
    Ok(text)
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map_has_nul(map),
        _ => false,
    }
}

fn map_has_nul(map: &Map<String, Value>) -> bool {
    map.iter().any(|(k, v)| k.contains('\0') || has_nul(v))
}

fn canonical_uuid(s: &str) -> Option<String> {
    // Only the hyphenated form: uuid's parser also takes braces, URNs and 32 bare digits.
    if s.len() != 36 || s.bytes().enumerate().any(|(i, b)| (b == b'-') != matches!(i, 8 | 13 | 18 | 23)) {
        return None;
    }
    uuid::Uuid::parse_str(s).ok().map(|id| id.to_string())
}

/// The range of an integer type.
pub fn int_range(scalar: Scalar) -> (i64, i64) {
    match scalar {
        Scalar::Int2 => (i16::MIN.into(), i16::MAX.into()),
        Scalar::Int4 => (i32::MIN.into(), i32::MAX.into()),
        _ => (i64::MIN, i64::MAX),
    }
}

fn in_range(n: i128, scalar: Scalar) -> Option<String> {
    let (min, max) = int_range(scalar);
    (i128::from(min)..=i128::from(max)).contains(&n).then(|| n.to_string())
}

fn json_integer(n: &Number, scalar: Scalar) -> Option<String> {
    if let Some(i) = n.as_i64() {
        in_range(i.into(), scalar)
    } else if n.as_f64().is_some_and(|f| f == 0.0) {
        // JSON `-0`: the parser reads it as the float -0.0 (and cannot tell `-0.0` from it).
        Some("0".to_owned())
    } else {
        // A u64 above i64::MAX is out of every range; a float is not an integer.
        None
    }
}

fn string_integer(s: &str, scalar: Scalar) -> Option<String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More digits than an i128 holds is out of range anyway.
    s.parse::<i128>().ok().and_then(|n| in_range(n, scalar))
}

/// `[+-] (digits [. digits?] | . digits) [(e|E) [+-] digits]`, the exponent within 32 bits: what
/// PostgreSQL's numeric and float input take, less NaN and Infinity.
pub fn is_decimal(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (mantissa, ""),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let unsigned = e.strip_prefix(['+', '-']).unwrap_or(e);
        !unsigned.is_empty() && digits(unsigned) && e.parse::<i32>().is_ok()
    });
    mantissa_ok && exponent_ok
}

/// Whether PostgreSQL's numeric input takes a decimal string (see [`is_decimal`]): at most
/// 131072 digits before the point and 16383 after it (its display scale), once the exponent
/// moves the point; an exponent under 2^30 in magnitude, even for zero. Larger values are
/// `value overflows numeric format` (22003).
pub fn numeric_fits(s: &str) -> bool {
    const MAX_DIGITS_BEFORE_POINT: i64 = 131_072;
    const MAX_SCALE: i64 = 16_383;
    const MAX_EXPONENT: i64 = i32::MAX as i64 / 2;
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => match unsigned[i + 1..].parse::<i64>() {
            Ok(e) => (&unsigned[..i], e),
            Err(_) => return false,
        },
        None => (unsigned, 0),
    };
    if exponent.abs() >= MAX_EXPONENT {
        return false;
    }
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // Digits shown after the point: the fraction's, less the exponent.
    let scale = (frac.len() as i64 - exponent).max(0);
    // Digits before the point, from the first significant one (none for zero or below 1).
    let significant_int = int.trim_start_matches('0').len() as i64;
    let before_point = if significant_int > 0 {
        significant_int + exponent
    } else {
        let leading = frac.bytes().take_while(|&b| b == b'0').count() as i64;
        if leading == frac.len() as i64 {
            0
        } else {
            exponent - leading
        }
    };
    scale <= MAX_SCALE && before_point <= MAX_DIGITS_BEFORE_POINT
}

/// A finite float in the type's range, written so it reads back exactly. `nonzero` tells
/// whether the written value was not zero (a value that underflowed to zero is refused, as
/// PostgreSQL refuses it).
fn float(f: f64, nonzero: bool, scalar: Scalar) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    if scalar == Scalar::Float4 {
        let narrow = f as f32;
        if !narrow.is_finite() || (narrow == 0.0 && (nonzero || f != 0.0)) {
            return None;
        }
        return Some(format!("{narrow:?}"));
    }
    if f == 0.0 && nonzero {
        return None;
    }
    Some(format!("{f:?}"))
}

fn string_float(s: &str, scalar: Scalar) -> Option<String> {
    if !is_decimal(s) {
        return None;
    }
    let mantissa = s.split(['e', 'E']).next().unwrap_or(s);
    let nonzero = mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b));
    float(s.parse::<f64>().ok()?, nonzero, scalar)
}

fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().and_then(|t| storable(t.with_timezone(&Utc)))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]`, no offset.
fn parse_naive(s: &str) -> Option<DateTime<Utc>> {
    let bytes = s.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if bytes.len() < shape.len()
        || !shape.iter().zip(bytes).all(|(want, got)| if *want == b'd' { got.is_ascii_digit() } else { want == got })
    {
        return None;
    }
    let fraction = &s[shape.len()..];
    if !(fraction.is_empty()
        || fraction
            .strip_prefix('.')
            .is_some_and(|d| (1..=9).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit())))
    {
        return None;
    }
    let parsed = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    storable(parsed.and_utc())
}

fn naive(t: DateTime<Utc>) -> String {
    t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

fn parse_date(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() });
    if !shape_ok || s.starts_with("0000") {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().map(|d| d.format("%Y-%m-%d").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::at;
    use serde_json::json;
    use uuid::Uuid;

    fn ty(name: &str) -> ColumnType {
        ColumnType::parse_declared(name).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Converts a JSON value found in `data`.
    fn conv(value: &Value, name: &str) -> Result<Option<String>, ConvertError> {
        convert(Extracted::Json(value), ty(name))
    }

    fn ok(value: &Value, name: &str) -> String {
        match conv(value, name) {
            Ok(Some(s)) => s,
            other => panic!("{value} into {name}: {other:?}"),
        }
    }

    fn refused(value: &Value, name: &str) -> String {
        match conv(value, name) {
            Err(e) => e.to_string(),
            Ok(v) => panic!("{value} into {name} was accepted as {v:?}"),
        }
    }

    #[test]
    fn null_is_sql_null_except_in_json() {
        for name in ["text", "uuid", "smallint", "integer", "bigint", "numeric", "real", "double precision"] {
            assert_eq!(conv(&Value::Null, name), Ok(None), "{name}");
        }
        for name in ["boolean", "timestamptz", "timestamp", "date", "integer[]", "jsonb[]"] {
            assert_eq!(conv(&Value::Null, name), Ok(None), "{name}");
        }
        assert_eq!(ok(&Value::Null, "json"), "null");
        assert_eq!(ok(&Value::Null, "jsonb"), "null");
        assert_eq!(convert(Extracted::Missing, ty("integer")), Ok(None));
    }

    #[test]
    fn text_takes_strings_and_typed_fields_only() {
        assert_eq!(ok(&json!("héllo \"x\""), "text"), "héllo \"x\"");
        assert_eq!(ok(&json!(""), "varchar"), "");
        let id = Uuid::parse_str("0190B7A4-6B1E-7C4E-9F3A-2D1C5E8F9A0B").expect("uuid");
        assert_eq!(convert(Extracted::Uuid(id), ty("text")), Ok(Some("0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b".into())));
        assert_eq!(convert(Extracted::Str("order.created"), ty("text")), Ok(Some("order.created".into())));
        assert_eq!(
            convert(Extracted::Timestamp(at("2026-01-31T12:00:00.5+01:00")), ty("text")),
            Ok(Some("2026-01-31T11:00:00.500000Z".into()))
        );
        assert_eq!(refused(&json!(1), "text"), "expected text (a string), found a number (1)");
        assert_eq!(refused(&json!(true), "text"), "expected text (a string), found a boolean (true)");
        assert_eq!(refused(&json!({"a": 1}), "text"), "expected text (a string), found an object");
        assert_eq!(refused(&json!([1, 2]), "text"), "expected text (a string), found an array of 2 items");
        let map = Map::new();
        assert!(convert(Extracted::Object(&map), ty("text")).is_err());
    }

    #[test]
    fn nul_characters_are_refused_everywhere() {
        let message = "a string holding a NUL character (\\u0000), which PostgreSQL cannot store";
        for name in ["text", "uuid", "integer", "json", "jsonb"] {
            let err = conv(&json!("a\u{0}b"), name).expect_err(name);
            assert_eq!(err.found, message, "{name}");
        }
        assert_eq!(conv(&json!({"k": ["a\u{0}"]}), "jsonb").expect_err("nested").found, message);
        assert_eq!(conv(&json!({"k\u{0}": 1}), "json").expect_err("key").found, message);
        assert_eq!(conv(&json!(["a", "b\u{0}"]), "text[]").expect_err("item").found, format!("{message} at index 1"));
        assert!(convert(Extracted::Str("a\u{0}"), ty("text")).is_err());
    }

    #[test]
    fn uuid_takes_the_hyphenated_form_in_any_case() {
        assert_eq!(ok(&json!("0190B7A4-6B1E-7C4E-9F3A-2D1C5E8F9A0B"), "uuid"), "0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b");
        let id = Uuid::parse_str(crate::testutil::ID).expect("uuid");
        assert_eq!(convert(Extracted::Uuid(id), ty("uuid")), Ok(Some(crate::testutil::ID.into())));
        for bad in [
            "0190b7a46b1e7c4e9f3a2d1c5e8f9a0b",
            "{0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b}",
            "urn:uuid:0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b",
            "0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0g",
            "0190b7a4-6b1e7-c4e-9f3a-2d1c5e8f9a0b",
            "",
        ] {
            assert!(conv(&json!(bad), "uuid").is_err(), "{bad}");
        }
        assert_eq!(
            refused(&json!("nope"), "uuid"),
            "expected uuid (a string in the hyphenated form 0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b), found a string (\"nope\")"
        );
        assert!(conv(&json!(1), "uuid").is_err());
    }

    #[test]
    fn integers_take_json_integers_and_strings_of_them_in_range() {
        assert_eq!(ok(&json!(42), "integer"), "42");
        assert_eq!(ok(&json!(-2147483648), "integer"), "-2147483648");
        assert_eq!(ok(&json!(2147483647), "integer"), "2147483647");
        assert_eq!(ok(&json!(32767), "smallint"), "32767");
        assert_eq!(ok(&json!(-32768), "smallint"), "-32768");
        assert_eq!(ok(&json!(i64::MIN), "bigint"), i64::MIN.to_string());
        assert_eq!(ok(&json!(i64::MAX), "bigint"), i64::MAX.to_string());
        assert_eq!(ok(&json!("42"), "integer"), "42");
        assert_eq!(ok(&json!("+42"), "integer"), "42");
        assert_eq!(ok(&json!("-0042"), "integer"), "-42");
        assert_eq!(ok(&json!("9223372036854775807"), "bigint"), "9223372036854775807");
        assert_eq!(convert(Extracted::Str("17"), ty("bigint")), Ok(Some("17".into())));
        assert_eq!(
            refused(&json!(1.5), "integer"),
            "expected integer (a JSON integer in -2147483648..2147483647 or a string holding one), found a number (1.5)"
        );
        assert_eq!(
            refused(&json!(2147483648_i64), "integer"),
            "expected integer (a JSON integer in -2147483648..2147483647 or a string holding one), found a number \
             (2147483648)"
        );
        assert_eq!(
            refused(&json!("32768"), "smallint"),
            "expected smallint (a JSON integer in -32768..32767 or a string holding one), found a string (\"32768\")"
        );
        for bad in [json!(1.0), json!(1e3), json!(u64::MAX), json!(true), json!([1]), json!({})] {
            assert!(conv(&bad, "bigint").is_err(), "{bad}");
        }
        for bad in [
            "",
            "+",
            "1.0",
            "1e3",
            " 1",
            "1 ",
            "0x10",
            "1_000",
            "9223372036854775808",
            "99999999999999999999999999999999999999999999",
        ] {
            assert!(conv(&json!(bad), "bigint").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numeric_keeps_the_number_and_checks_strings() {
        assert_eq!(ok(&json!(12.5), "numeric"), "12.5");
        assert_eq!(ok(&json!(-3), "numeric"), "-3");
        assert_eq!(ok(&json!(1.0), "numeric"), "1.0");
        assert_eq!(ok(&json!(u64::MAX), "numeric"), u64::MAX.to_string());
        for good in ["-12.50", "+1", "1e-3", "1E+3", ".5", "5.", "007", "0"] {
            assert_eq!(ok(&json!(good), "numeric"), good);
        }
        for bad in [
            "NaN",
            "Infinity",
            "-Infinity",
            "",
            ".",
            "1e",
            "e3",
            "1e99999999999",
            "1.2.3",
            " 1",
            "1,5",
            "0x1",
            "--1",
            "abc",
        ] {
            assert!(conv(&json!(bad), "numeric").is_err(), "{bad:?}");
        }
        assert_eq!(
            refused(&json!("abc"), "numeric"),
            "expected numeric (a JSON number or a string holding a decimal number), found a string (\"abc\")"
        );
        assert!(conv(&json!(true), "decimal").is_err());
    }

    #[test]
    fn numeric_strings_stay_within_postgresqls_numeric_range() {
        let digits = |n: usize| "9".repeat(n);
        for good in [
            "1e131071".to_owned(),
            "9.99e131071".to_owned(),
            "00001e131071".to_owned(),
            "0.0001e131075".to_owned(),
            "12345.5e131067".to_owned(),
            digits(131_072),
            "1e-16383".to_owned(),
            "1.5e-16382".to_owned(),
            "1.000e-16380".to_owned(),
            format!("0.{}", digits(16_383)),
            "0e1073741822".to_owned(),
            "-0e-16383".to_owned(),
        ] {
            assert!(conv(&json!(good), "numeric").is_ok(), "{good}");
        }
        for bad in [
            "1e131072".to_owned(),
            "0.0001e131076".to_owned(),
            "12345.5e131068".to_owned(),
            digits(131_073),
            "1e999999".to_owned(),
            "1e-16384".to_owned(),
            "1e-20000".to_owned(),
            "1.5e-16383".to_owned(),
            "1.0000e-16380".to_owned(),
            "0e-16384".to_owned(),
            format!("0.{}", digits(16_384)),
            "0e1073741823".to_owned(),
            "1e2147483647".to_owned(),
        ] {
            assert!(conv(&json!(bad), "numeric").is_err(), "{bad}");
        }
    }

    #[test]
    fn json_minus_zero_is_integer_zero() {
        let minus_zero: Value = serde_json::from_str("-0").expect("json");
        assert_eq!(ok(&minus_zero, "integer"), "0");
        assert_eq!(ok(&minus_zero, "smallint"), "0");
        assert_eq!(ok(&json!("-0"), "bigint"), "0");
        assert!(conv(&json!(0.5), "integer").is_err());
    }

    #[test]
    fn floats_are_finite_and_in_range() {
        assert_eq!(ok(&json!(0.1), "double precision"), "0.1");
        assert_eq!(ok(&json!(1e300), "float8"), "1e300");
        assert_eq!(ok(&json!(3), "double precision"), "3.0");
        assert_eq!(ok(&json!("-2.5e-3"), "double precision"), "-0.0025");
        assert_eq!(ok(&json!("0"), "double precision"), "0.0");
        assert_eq!(ok(&json!("0e10"), "real"), "0.0");
        assert_eq!(ok(&json!(0.1), "real"), "0.1");
        assert_eq!(ok(&json!(3.4e38), "real"), "3.4e38");
        for (bad, name) in [
            (json!(1e39), "real"),
            (json!("1e39"), "real"),
            (json!(1e-50), "real"),
            (json!("1e400"), "double precision"),
            (json!("1e-400"), "double precision"),
            (json!("NaN"), "double precision"),
            (json!("inf"), "double precision"),
            (json!("Infinity"), "real"),
            (json!(true), "real"),
        ] {
            assert!(conv(&bad, name).is_err(), "{bad} into {name}");
        }
        assert_eq!(
            refused(&json!(1e39), "real"),
            "expected real (a JSON number or a string holding a decimal number, within real's range), found a number \
             (1e+39)"
        );
    }

    #[test]
    fn booleans_are_json_booleans_only() {
        assert_eq!(ok(&json!(true), "boolean"), "true");
        assert_eq!(ok(&json!(false), "bool"), "false");
        for bad in [json!("true"), json!(1), json!(0), json!("t")] {
            assert!(conv(&bad, "boolean").is_err(), "{bad}");
        }
        assert_eq!(refused(&json!("true"), "boolean"), "expected boolean (true or false), found a string (\"true\")");
    }

    #[test]
    fn timestamptz_takes_rfc3339_written_in_utc_micros() {
        assert_eq!(ok(&json!("2026-01-31T12:00:00+01:00"), "timestamptz"), "2026-01-31T11:00:00.000000Z");
        assert_eq!(ok(&json!("2026-01-31T12:00:00.1234567Z"), "timestamptz"), "2026-01-31T12:00:00.123456Z");
        assert_eq!(ok(&json!("2016-12-31T23:59:60.5Z"), "timestamptz"), "2017-01-01T00:00:00.500000Z");
        assert_eq!(
            convert(Extracted::Timestamp(at("2026-01-31T12:00:00.123456Z")), ty("timestamptz")),
            Ok(Some("2026-01-31T12:00:00.123456Z".into()))
        );
        for bad in
            ["2026-01-31", "2026-01-31T12:00:00", "yesterday", "0000-12-31T23:59:59Z", "9999-12-31T23:59:59-01:00"]
        {
            assert!(conv(&json!(bad), "timestamptz").is_err(), "{bad}");
        }
        assert!(conv(&json!(1700000000), "timestamptz").is_err());
        assert_eq!(
            refused(&json!("2026-01-31"), "timestamptz"),
            "expected timestamp with time zone (an RFC 3339 string such as 2026-01-31T12:00:00Z, between \
             0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z in UTC), found a string (\"2026-01-31\")"
        );
    }

    #[test]
    fn timestamp_takes_rfc3339_in_utc_or_a_naive_string() {
        assert_eq!(ok(&json!("2026-01-31T12:00:00+01:00"), "timestamp"), "2026-01-31T11:00:00.000000");
        assert_eq!(ok(&json!("2026-01-31T12:00:00"), "timestamp"), "2026-01-31T12:00:00.000000");
        assert_eq!(ok(&json!("2026-01-31T12:00:00.1234567"), "timestamp"), "2026-01-31T12:00:00.123456");
        assert_eq!(ok(&json!("0001-01-01T00:00:00"), "timestamp"), "0001-01-01T00:00:00.000000");
        assert_eq!(
            convert(Extracted::Timestamp(at("2026-01-31T12:00:00.5Z")), ty("timestamp")),
            Ok(Some("2026-01-31T12:00:00.500000".into()))
        );
        for bad in [
            "2026-01-31 12:00:00",
            "2026-01-31T12:00",
            "2026-01-31T12:00:00.",
            "2026-01-31T12:00:00.1234567890",
            "2026-02-30T12:00:00",
            "0000-01-01T00:00:00",
            "2026-01-31",
            "+2026-01-31T12:00:00",
        ] {
            assert!(conv(&json!(bad), "timestamp").is_err(), "{bad}");
        }
    }

    #[test]
    fn date_takes_a_calendar_date_or_a_timestamp_field() {
        assert_eq!(ok(&json!("2024-02-29"), "date"), "2024-02-29");
        assert_eq!(
            convert(Extracted::Timestamp(at("2026-01-31T23:30:00-01:00")), ty("date")),
            Ok(Some("2026-02-01".into()))
        );
        for bad in ["2023-02-29", "2026-1-31", "2026-01-31T00:00:00Z", "0000-01-01", "20260131", "2026/01/31"] {
            assert!(conv(&json!(bad), "date").is_err(), "{bad}");
        }
        assert_eq!(refused(&json!(20260131), "date"), "expected date (a YYYY-MM-DD string), found a number (20260131)");
    }

    #[test]
    fn json_takes_any_value() {
        assert_eq!(ok(&json!({"a": [1, "x", null]}), "jsonb"), r#"{"a":[1,"x",null]}"#);
        assert_eq!(ok(&json!(1.5), "json"), "1.5");
        assert_eq!(ok(&json!("s"), "json"), r#""s""#);
        let mut map = Map::new();
        map.insert("k".into(), json!(1));
        assert_eq!(convert(Extracted::Object(&map), ty("jsonb")), Ok(Some(r#"{"k":1}"#.into())));
        assert_eq!(convert(Extracted::Str("a\"b"), ty("json")), Ok(Some(r#""a\"b""#.into())));
        assert_eq!(
            convert(Extracted::Timestamp(at("2026-01-31T12:00:00Z")), ty("jsonb")),
            Ok(Some(r#""2026-01-31T12:00:00.000000Z""#.into()))
        );
    }

    #[test]
    fn arrays_quote_and_escape_their_elements() {
        assert_eq!(ok(&json!([1, 2, null]), "integer[]"), r#"{"1","2",NULL}"#);
        assert_eq!(ok(&json!([]), "text[]"), "{}");
        assert_eq!(ok(&json!(["a\"b", "c\\d", "NULL", "", "{x,y}"]), "text[]"), r#"{"a\"b","c\\d","NULL","","{x,y}"}"#);
        assert_eq!(ok(&json!(["2026-01-31T12:00:00+01:00"]), "timestamptz[]"), r#"{"2026-01-31T11:00:00.000000Z"}"#);
        assert_eq!(ok(&json!([{"a": "q\""}, null, [1]]), "jsonb[]"), r#"{"{\"a\":\"q\\\"\"}","null","[1]"}"#);
        assert_eq!(
            refused(&json!([1, 2.5]), "integer[]"),
            "expected integer[] (a JSON array whose items are each integer (a JSON integer in \
             -2147483648..2147483647 or a string holding one)), found a number (2.5) at index 1"
        );
        assert_eq!(
            refused(&json!([[1], [2]]), "integer[]"),
            "expected integer[] (one dimension only: nested arrays are not supported), found a nested array at index 0"
        );
        assert!(conv(&json!("{1,2}"), "integer[]").is_err());
        assert!(conv(&json!({"a": 1}), "text[]").is_err());
    }
}
