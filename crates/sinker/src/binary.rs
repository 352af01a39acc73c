//! PostgreSQL's binary COPY format, written by sluice (`COPY ... FROM STDIN (FORMAT binary)`).
//!
//! A stream is the 19-byte header, then per row a 16-bit field count and per field a 32-bit
//! length (-1: NULL) and the value in its type's binary send format, then the trailer (-1 as
//! a 16-bit count). All integers are big-endian.
//!
//! Invariants:
//! - a [`CopyBuffer`] always holds a header and whole rows: a row is written field by field
//!   with exactly the count given to [`CopyBuffer::row`] (the caller's schema), and
//!   [`CopyBuffer::finish`] adds the trailer;
//! - each value is encoded as its type's `*_send` function would: timestamps in microseconds
//!   from 2000-01-01 UTC, dates in days from it, `jsonb` as version byte 1 and the JSON text,
//!   `json` and text types as UTF-8 text, numeric in base-10000 digits with its display scale.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use uuid::Uuid;

/// PostgreSQL's epoch (2000-01-01T00:00:00Z) in Unix seconds.
pub const PG_EPOCH_UNIX_SECONDS: i64 = 946_684_800;

const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// A binary COPY stream being written.
#[derive(Debug, Clone)]
pub struct CopyBuffer {
    buf: Vec<u8>,
    rows: usize,
}

impl Default for CopyBuffer {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl CopyBuffer {
    /// An empty stream (its header written), with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(HEADER.len() + 2));
        buf.extend_from_slice(HEADER);
        Self { buf, rows: 0 }
    }

    /// Starts a row of `fields` fields; write exactly that many next.
    pub fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self.rows += 1;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    /// A field of these bytes as they are.
    pub fn bytes(&mut self, value: &[u8]) {
        self.len(value.len());
        self.buf.extend_from_slice(value);
    }

    fn len(&mut self, n: usize) {
        // A field is at most 1 GB in PostgreSQL; records are far below (--max-event-bytes).
        self.buf.extend_from_slice(&(i32::try_from(n).unwrap_or(i32::MAX)).to_be_bytes());
    }

    /// text, varchar, char, and json (whose binary format is its text).
    pub fn text(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    pub fn opt_text(&mut self, value: Option<&str>) {
        match value {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    /// jsonb: the format version (1), then the JSON text.
    pub fn jsonb(&mut self, json: &str) {
        self.len(json.len() + 1);
        self.buf.push(1);
        self.buf.extend_from_slice(json.as_bytes());
    }

    pub fn uuid(&mut self, value: &Uuid) {
        self.bytes(value.as_bytes());
    }

    pub fn bool(&mut self, value: bool) {
        self.bytes(&[u8::from(value)]);
    }

    pub fn int2(&mut self, value: i16) {
        self.bytes(&value.to_be_bytes());
    }

    pub fn int4(&mut self, value: i32) {
        self.bytes(&value.to_be_bytes());
    }

    pub fn int8(&mut self, value: i64) {
        self.bytes(&value.to_be_bytes());
    }

    pub fn float4(&mut self, value: f32) {
        self.bytes(&value.to_bits().to_be_bytes());
    }

    pub fn float8(&mut self, value: f64) {
        self.bytes(&value.to_bits().to_be_bytes());
    }

    /// timestamptz: microseconds since 2000-01-01 UTC (sub-microsecond digits truncated).
    pub fn timestamptz(&mut self, value: DateTime<Utc>) {
        self.int8(pg_micros(value.naive_utc()));
    }

    /// timestamp without time zone: the same count, of the wall-clock value.
    pub fn timestamp(&mut self, value: NaiveDateTime) {
        self.int8(pg_micros(value));
    }

    /// date: days since 2000-01-01.
    pub fn date(&mut self, value: NaiveDate) {
        let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default();
        let days = value.signed_duration_since(epoch).num_days();
        self.int4(i32::try_from(days).unwrap_or(i32::MAX));
    }

    /// A one-dimensional array of `elem_oid` elements, each already encoded (None: NULL), as
    /// `array_send` writes it: dimensions, null flag, element type, then (length, lower bound 1)
    /// and the elements. An empty array has no dimensions.
    pub fn array(&mut self, elem_oid: u32, elements: &[Option<Vec<u8>>]) {
        let mut body =
            Vec::with_capacity(20 + elements.iter().map(|e| 4 + e.as_ref().map_or(0, Vec::len)).sum::<usize>());
        let ndim: i32 = if elements.is_empty() { 0 } else { 1 };
        body.extend_from_slice(&ndim.to_be_bytes());
        body.extend_from_slice(&i32::from(elements.iter().any(Option::is_none)).to_be_bytes());
        body.extend_from_slice(&elem_oid.to_be_bytes());
        if ndim == 1 {
            body.extend_from_slice(&(i32::try_from(elements.len()).unwrap_or(i32::MAX)).to_be_bytes());
            body.extend_from_slice(&1i32.to_be_bytes());
            for e in elements {
                match e {
                    Some(bytes) => {
                        body.extend_from_slice(&(i32::try_from(bytes.len()).unwrap_or(i32::MAX)).to_be_bytes());
                        body.extend_from_slice(bytes);
                    }
                    None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
        }
        self.bytes(&body);
    }

    /// The whole stream, trailer included.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

fn pg_micros(t: NaiveDateTime) -> i64 {
    let utc = t.and_utc();
    (utc.timestamp() - PG_EPOCH_UNIX_SECONDS) * 1_000_000 + i64::from(utc.timestamp_subsec_micros())
}

/// A decimal string (`-12.340`, `7`, `.5`, `1.5e-3`) as numeric's binary send format:
/// ndigits, weight, sign, dscale (16-bit each), then base-10000 digits. The display scale is
/// what `numeric_in` gives the same text (the fraction's digits less the exponent, at least 0).
/// None when it is not a decimal number (`NaN` and infinities included: routes refuse them
/// before this) or is beyond what the encoding holds.
pub fn numeric(text: &str) -> Option<Vec<u8>> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], unsigned[i + 1..].parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    if exponent.unsigned_abs() > 200_000 {
        return None;
    }
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // Move the point by the exponent: the digits stay, the split between int and frac moves.
    let digits = format!("{int_part}{frac_part}");
    let point = i64::try_from(int_part.len()).ok()? + i64::from(exponent);
    let (int_digits, frac_digits) = if point <= 0 {
        let zeros = usize::try_from(-point).ok()?;
        (String::new(), format!("{}{digits}", "0".repeat(zeros)))
    } else if usize::try_from(point).ok()? >= digits.len() {
        let zeros = usize::try_from(point).ok()? - digits.len();
        (format!("{digits}{}", "0".repeat(zeros)), String::new())
    } else {
        let at = usize::try_from(point).ok()?;
        (digits[..at].to_owned(), digits[at..].to_owned())
    };
    numeric_parts(negative, &int_digits, &frac_digits)
}

/// [`numeric`] of a number already split at its point (digits only).
fn numeric_parts(negative: bool, int_part: &str, frac_part: &str) -> Option<Vec<u8>> {
    let dscale = u16::try_from(frac_part.len()).ok()?;
    let int_part = int_part.trim_start_matches('0');
    // Group digits by 4 around the decimal point: pad the integer part on the left and the
    // fraction on the right.
    let int_pad = (4 - int_part.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let mut digits_text = String::with_capacity(int_pad + int_part.len() + frac_part.len() + frac_pad);
    digits_text.extend(std::iter::repeat_n('0', int_pad));
    digits_text.push_str(int_part);
    digits_text.push_str(frac_part);
    digits_text.extend(std::iter::repeat_n('0', frac_pad));
    let int_groups = (int_pad + int_part.len()) / 4;
    let mut groups: Vec<i16> = digits_text
        .as_bytes()
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0')))
        .collect();
    let mut weight = i16::try_from(int_groups).ok()? - 1;
    // Strip leading zero groups (moving the weight) and trailing zero groups.
    let leading = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading);
    weight -= i16::try_from(leading).ok()?;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let sign: u16 = if negative && !groups.is_empty() { 0x4000 } else { 0 };
    if groups.is_empty() {
        weight = 0;
    }
    let mut out = Vec::with_capacity(8 + 2 * groups.len());
    out.extend_from_slice(&(u16::try_from(groups.len()).ok()?).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_digits_weight_and_scale() {
        // 12345.678 -> digits [1, 2345, 6780], weight 1, dscale 3.
        assert_eq!(numeric("12345.678"), Some(vec![0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]));
        // 0.0001 -> [1], weight -1, dscale 4.
        assert_eq!(numeric("0.0001"), Some(vec![0, 1, 0xff, 0xff, 0, 0, 0, 4, 0, 1]));
        // -0.00 -> no digits, positive, dscale 2 (PostgreSQL has no negative zero).
        assert_eq!(numeric("-0.00"), Some(vec![0, 0, 0, 0, 0, 0, 0, 2]));
        // 10000 -> [1], weight 1.
        assert_eq!(numeric("10000"), Some(vec![0, 1, 0, 1, 0, 0, 0, 0, 0, 1]));
        // Exponents move the point; the scale is the fraction's digits less the exponent.
        assert_eq!(numeric("1.5e-3"), numeric("0.0015"));
        assert_eq!(numeric("1.50e2"), numeric("150"));
        assert_eq!(numeric("12e2"), numeric("1200"));
        assert_eq!(numeric(".5"), numeric("0.5"));
        for bad in ["", "-", ".", "NaN", "e5", "1.2.3", "Infinity", "１", "1e"] {
            assert_eq!(numeric(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_stream_has_header_rows_and_trailer() {
        let mut c = CopyBuffer::default();
        c.row(2);
        c.int4(7);
        c.null();
        let bytes = c.finish();
        assert_eq!(&bytes[..19], HEADER);
        assert_eq!(&bytes[19..], &[0, 2, 0, 0, 0, 4, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    }
}
