//! How the database compares the literals [`convert`](mod@crate::convert) writes: the order of
//! versions ([`Version`]) and the equality of keys ([`canonical_key`]), so that write-combining
//! decides as PostgreSQL would.
//!
//! - integers compare as integers, numeric as exact decimals (`1.50` = `1.5`, `1e3` = `1000`),
//!   real and double precision as floats (`-0` = `0`);
//! - timestamps, dates, booleans and uuids are written in fixed-width canonical forms, so
//!   their text order is their value order (timestamp versions compare as microseconds);
//! - a column's type modifier changes the stored value ([`Modifier`]), and so what compares
//!   equal: numeric(p, s) rounds to s digits (`1.234` = `1.231` in numeric(10,2)), timestamp(p)
//!   and timestamptz(p) round to p fractional digits, char(n) ignores trailing blanks (`"a"` =
//!   `"a  "`), varchar(n) cuts excess trailing blanks. Keys and versions are compared after
//!   the same rounding;
//! - text compares by bytes: PostgreSQL's "C" collation. The upsert's version check compares
//!   text versions `COLLATE "C"` too (see `sql.rs`), whatever the column's collation. Key
//!   columns must have deterministic collations (the sinker checks at start), whose equality
//!   is byte equality.

use std::{borrow::Cow, cmp::Ordering};

use chrono::{NaiveDate, NaiveDateTime};

use crate::types::{Modifier, Scalar};

/// A version value, ordered as PostgreSQL orders its column type. A null version is `None` in
/// an `Option<Version>`, which orders it below every value, as the upsert's
/// `t.v IS NULL OR EXCLUDED.v >= t.v` treats it.
#[derive(Debug, Clone, PartialEq)]
pub enum Version {
    Int(i64),
    Decimal(Decimal),
    Float(f64),
    /// Text, and the fixed-width canonical forms of timestamps, dates, booleans and uuids.
    Text(String),
}

impl Version {
    /// The version a column literal (as [`convert`](mod@crate::convert) writes it) stands for,
    /// as stored in a column with `modifier`. None for types without an order (json, jsonb) and
    /// for text that is not a literal of the type.
    pub fn from_literal(scalar: Scalar, modifier: Modifier, literal: &str) -> Option<Self> {
        match scalar {
            Scalar::Int2 | Scalar::Int4 | Scalar::Int8 => literal.parse().ok().map(Self::Int),
            Scalar::Numeric => Decimal::parse(literal).map(|d| Self::Decimal(d.stored(modifier))),
            Scalar::Float4 | Scalar::Float8 => literal.parse::<f64>().ok().filter(|f| f.is_finite()).map(Self::Float),
            Scalar::Timestamptz | Scalar::Timestamp => timestamp_micros(literal, modifier).map(Self::Int),
            Scalar::Text => Some(Self::Text(stored_text(literal, modifier).into_owned())),
            Scalar::Uuid | Scalar::Bool | Scalar::Date => Some(Self::Text(literal.to_owned())),
            Scalar::Json | Scalar::Jsonb => None,
        }
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => a.cmp(b),
            (Self::Decimal(a), Self::Decimal(b)) => a.cmp(b),
            // Zero's two signs are equal, as in PostgreSQL.
            (Self::Float(a), Self::Float(b)) => (a + 0.0).total_cmp(&(b + 0.0)),
            (Self::Text(a), Self::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            // One column has one type; versions of different kinds never meet.
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl Version {
    fn rank(&self) -> u8 {
        match self {
            Self::Int(_) => 0,
            Self::Decimal(_) => 1,
            Self::Float(_) => 2,
            Self::Text(_) => 3,
        }
    }
}

/// An exact decimal: `0.digits × 10^exponent`, digits without leading or trailing zeros (none
/// for zero, which is never negative).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

impl Decimal {
    /// Parses `[+-] digits [. digits] [e [+-] digits]` (see `convert::is_decimal`).
    pub fn parse(text: &str) -> Option<Self> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(i) => (&unsigned[..i], unsigned[i + 1..].parse::<i64>().ok()?),
            None => (unsigned, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if !(int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())) || (int.is_empty() && frac.is_empty()) {
            return None;
        }
        let all = format!("{int}{frac}");
        let leading = all.bytes().take_while(|&b| b == b'0').count();
        let digits = all[leading..].trim_end_matches('0').to_owned();
        if digits.is_empty() {
            return Some(Self { negative: false, digits, exponent: 0 });
        }
        let int_len = i64::try_from(int.len()).ok()?;
        let leading = i64::try_from(leading).ok()?;
        let exponent = int_len.checked_add(exponent)?.checked_sub(leading)?;
        Some(Self { negative, digits, exponent })
    }

    fn sign(&self) -> i8 {
        match (self.digits.is_empty(), self.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        }
    }

    /// The value as a column with `modifier` stores it: numeric(p, s) rounds to s digits after
    /// the point, half away from zero, as PostgreSQL does.
    pub fn stored(self, modifier: Modifier) -> Self {
        match modifier {
            Modifier::Scale(scale) => self.round(scale.into()),
            _ => self,
        }
    }

    /// Rounded to `scale` digits after the point (negative: before it), half away from zero.
    pub fn round(self, scale: i64) -> Self {
        // digits[i] is worth 10^(exponent - 1 - i): keep those worth at least 10^-scale.
        let Some(keep) = self.exponent.checked_add(scale) else {
            return self;
        };
        let len = self.digits.len() as i64;
        if keep >= len {
            return self;
        }
        if keep < 0 {
            return Self { negative: false, digits: String::new(), exponent: 0 };
        }
        let keep = keep as usize;
        let mut kept: Vec<u8> = self.digits.as_bytes()[..keep].to_vec();
        let mut exponent = self.exponent;
        if self.digits.as_bytes()[keep] >= b'5' {
            // Add one unit in the last kept place, carrying.
            let mut i = kept.len();
            loop {
                if i == 0 {
                    kept.insert(0, b'1');
                    exponent += 1;
                    break;
                }
                i -= 1;
                if kept[i] == b'9' {
                    kept[i] = b'0';
                } else {
                    kept[i] += 1;
                    break;
                }
            }
        }
        let digits = String::from_utf8(kept).unwrap_or_default().trim_end_matches('0').to_owned();
        if digits.is_empty() {
            return Self { negative: false, digits, exponent: 0 };
        }
        Self { negative: self.negative, digits, exponent }
    }

    /// One text per value: `0`, or `[-]0.<digits>e<exponent>`.
    pub fn canonical(&self) -> String {
        if self.digits.is_empty() {
            return "0".to_owned();
        }
        format!("{}0.{}e{}", if self.negative { "-" } else { "" }, self.digits, self.exponent)
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let by_sign = self.sign().cmp(&other.sign());
        if by_sign != Ordering::Equal || self.sign() == 0 {
            return by_sign;
        }
        // Without trailing zeros, comparing digit strings compares the fractions.
        let magnitude = self.exponent.cmp(&other.exponent).then_with(|| self.digits.cmp(&other.digits));
        if self.negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

/// The text that is the same for two literals exactly when the stored values of a column of
/// this type and modifier are equal by the type's `=`: numeric in canonical decimal form after
/// rounding to the scale, zero floats unsigned, timestamps rounded to their precision, char(n)
/// without trailing blanks, other types as written (their literals are canonical already).
pub fn canonical_key(scalar: Scalar, modifier: Modifier, literal: &str) -> Cow<'_, str> {
    match scalar {
        Scalar::Numeric => {
            Decimal::parse(literal).map_or(Cow::Borrowed(literal), |d| Cow::Owned(d.stored(modifier).canonical()))
        }
        Scalar::Float4 | Scalar::Float8 if literal.parse::<f64>().is_ok_and(|f| f == 0.0) => Cow::Borrowed("0"),
        Scalar::Timestamptz | Scalar::Timestamp if matches!(modifier, Modifier::FractionalDigits(_)) => {
            timestamp_micros(literal, modifier).map_or(Cow::Borrowed(literal), |micros| Cow::Owned(micros.to_string()))
        }
        Scalar::Text => stored_text(literal, modifier),
        _ => Cow::Borrowed(literal),
    }
}

/// A text value as a column with `modifier` stores and compares it: char(n) without trailing
/// blanks (they are insignificant), varchar(n) with excess trailing blanks cut.
fn stored_text(literal: &str, modifier: Modifier) -> Cow<'_, str> {
    match modifier {
        Modifier::BlankPadded => Cow::Borrowed(literal.trim_end_matches(' ')),
        Modifier::MaxLength(n) => match literal.char_indices().nth(n as usize) {
            // Longer than n: PostgreSQL cuts it when the excess is all blanks (and refuses it
            // otherwise, which is not combining's business).
            Some((cut, _)) if literal[cut..].bytes().all(|b| b == b' ') => Cow::Borrowed(&literal[..cut]),
            _ => Cow::Borrowed(literal),
        },
        _ => Cow::Borrowed(literal),
    }
}

/// Microseconds since 2000-01-01 (PostgreSQL's epoch) of a timestamp literal as `convert`
/// writes it (`YYYY-MM-DDTHH:MM:SS.ffffff`, `Z` for timestamptz), rounded as a column of
/// precision p stores it: to 10^(6-p) microseconds, half away from the epoch (PostgreSQL's
/// `AdjustTimestampForTypmod`).
fn timestamp_micros(literal: &str, modifier: Modifier) -> Option<i64> {
    let naive = NaiveDateTime::parse_from_str(literal.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1)?.and_hms_opt(0, 0, 0)?;
    let micros = (naive - epoch).num_microseconds()?;
    let Modifier::FractionalDigits(p) = modifier else {
        return Some(micros);
    };
    let unit = 10i64.checked_pow(6u32.checked_sub(p)?)?;
    let half = unit / 2;
    Some(if micros >= 0 { (micros + half) / unit * unit } else { -((-micros + half) / unit * unit) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(s: &str) -> Decimal {
        Decimal::parse(s).unwrap_or_else(|| panic!("{s}"))
    }

    #[test]
    fn decimals_compare_by_value() {
        let ascending =
            ["-1e3", "-999.5", "-1", "-0.5", "-0.05", "0", "1e-9", "0.1", "0.5", "1", "1.5", "2", "10", "1e3"];
        for pair in ascending.windows(2) {
            assert!(dec(pair[0]) < dec(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        for (a, b) in
            [("1.50", "1.5"), ("1e3", "1000"), ("-0", "0"), ("0.000", "0"), ("007", "7"), (".5", "0.50"), ("5.", "5")]
        {
            assert_eq!(dec(a), dec(b), "{a} = {b}");
            assert_eq!(dec(a).canonical(), dec(b).canonical());
        }
        assert_eq!(dec("-12.50").canonical(), "-0.125e2");
        assert_eq!(dec("0.00120").canonical(), "0.12e-2");
        assert!(Decimal::parse("1e99999999999999999999").is_none());
        assert!(Decimal::parse("abc").is_none());
    }

    #[test]
    fn decimal_order_agrees_with_float_order_on_small_numbers() {
        proptest!(|(a in -1_000_000i64..1_000_000, b in -1_000_000i64..1_000_000, sa in 0u32..6, sb in 0u32..6)| {
            let fa = a as f64 / 10f64.powi(sa as i32);
            let fb = b as f64 / 10f64.powi(sb as i32);
            let ta = format!("{}e-{sa}", a);
            let tb = format!("{}e-{sb}", b);
            // Scaled integers: exact in decimal, and exact enough in f64 to order.
            prop_assert_eq!(dec(&ta).cmp(&dec(&tb)), fa.partial_cmp(&fb).unwrap_or(Ordering::Equal), "{} vs {}", ta, tb);
        });
    }

    #[test]
    fn versions_order_by_type() {
        let v = |s: Scalar, t: &str| Version::from_literal(s, Modifier::None, t).unwrap_or_else(|| panic!("{t}"));
        assert!(v(Scalar::Int8, "9") < v(Scalar::Int8, "10"));
        assert!(v(Scalar::Numeric, "9.5") < v(Scalar::Numeric, "10"));
        assert_eq!(v(Scalar::Numeric, "1.0"), v(Scalar::Numeric, "1"));
        assert!(v(Scalar::Float8, "9.5") < v(Scalar::Float8, "10.0"));
        assert_eq!(v(Scalar::Float8, "-0.0").cmp(&v(Scalar::Float8, "0.0")), Ordering::Equal);
        assert!(
            v(Scalar::Timestamptz, "0999-01-01T00:00:00.000000Z")
                < v(Scalar::Timestamptz, "2026-01-01T00:00:00.000000Z")
        );
        assert!(v(Scalar::Date, "2026-01-09") < v(Scalar::Date, "2026-01-10"));
        assert!(v(Scalar::Bool, "false") < v(Scalar::Bool, "true"));
        assert!(v(Scalar::Text, "B") < v(Scalar::Text, "a"), "bytes, as the C collation");
        assert!(Version::from_literal(Scalar::Jsonb, Modifier::None, "1").is_none());
        // A null version is below every value.
        assert!(None < Some(v(Scalar::Int4, "-5")));
    }

    #[test]
    fn canonical_keys_equal_exactly_when_values_are() {
        let key = |s: Scalar, t: &'static str| canonical_key(s, Modifier::None, t);
        assert_eq!(key(Scalar::Numeric, "1.50"), key(Scalar::Numeric, "1.5"));
        assert_ne!(key(Scalar::Numeric, "1.51"), key(Scalar::Numeric, "1.5"));
        assert_eq!(key(Scalar::Float8, "-0.0"), key(Scalar::Float8, "0.0"));
        assert_eq!(key(Scalar::Float4, "0.1"), "0.1");
        assert_eq!(key(Scalar::Text, "A"), "A");
        assert_ne!(key(Scalar::Text, "A"), key(Scalar::Text, "a"));
        assert_ne!(key(Scalar::Text, "a "), key(Scalar::Text, "a"), "text keeps trailing blanks");
    }

    #[test]
    fn type_modifiers_make_stored_values_equal() {
        let key = |s: Scalar, m: Modifier, t: &'static str| canonical_key(s, m, t).into_owned();
        // char(4): trailing blanks are insignificant.
        let char4 = Modifier::BlankPadded;
        assert_eq!(key(Scalar::Text, char4, "a"), key(Scalar::Text, char4, "a   "));
        assert_ne!(key(Scalar::Text, char4, "a"), key(Scalar::Text, char4, " a"));
        // varchar(2): excess blanks are cut, other excess is the database's refusal.
        let varchar2 = Modifier::MaxLength(2);
        assert_eq!(key(Scalar::Text, varchar2, "ab   "), "ab");
        assert_eq!(key(Scalar::Text, varchar2, "a "), "a ");
        assert_eq!(key(Scalar::Text, varchar2, "é  "), "é ");
        assert_eq!(key(Scalar::Text, varchar2, "abc"), "abc");
        // numeric(10,2): rounded half away from zero.
        let scale2 = Modifier::Scale(2);
        assert_eq!(key(Scalar::Numeric, scale2, "1.234"), key(Scalar::Numeric, scale2, "1.231"));
        assert_eq!(key(Scalar::Numeric, scale2, "1.234"), key(Scalar::Numeric, Modifier::None, "1.23"));
        assert_eq!(key(Scalar::Numeric, scale2, "1.235"), key(Scalar::Numeric, Modifier::None, "1.24"));
        assert_eq!(key(Scalar::Numeric, scale2, "-1.235"), key(Scalar::Numeric, Modifier::None, "-1.24"));
        assert_eq!(key(Scalar::Numeric, scale2, "9.995"), key(Scalar::Numeric, Modifier::None, "10"));
        assert_eq!(key(Scalar::Numeric, scale2, "0.004"), "0");
        assert_eq!(key(Scalar::Numeric, scale2, "-0.004"), "0");
        assert_eq!(key(Scalar::Numeric, scale2, "0.005"), key(Scalar::Numeric, Modifier::None, "0.01"));
        assert_ne!(key(Scalar::Numeric, scale2, "1.23"), key(Scalar::Numeric, scale2, "1.24"));
        assert_eq!(key(Scalar::Numeric, Modifier::Scale(-2), "149"), key(Scalar::Numeric, Modifier::None, "100"));
        assert_eq!(key(Scalar::Numeric, Modifier::Scale(-2), "150"), key(Scalar::Numeric, Modifier::None, "200"));
        // timestamptz(3): rounded to milliseconds, half away from 2000-01-01.
        let ms = Modifier::FractionalDigits(3);
        let ts = |t| key(Scalar::Timestamptz, ms, t);
        assert_eq!(ts("2026-01-01T00:00:00.000100Z"), ts("2026-01-01T00:00:00.000200Z"));
        assert_eq!(ts("2026-01-01T00:00:00.000500Z"), ts("2026-01-01T00:00:00.001000Z"));
        assert_ne!(ts("2026-01-01T00:00:00.000499Z"), ts("2026-01-01T00:00:00.001000Z"));
        assert_eq!(ts("1999-01-01T00:00:00.000500Z"), ts("1999-01-01T00:00:00.000000Z"));
        assert_eq!(ts("1999-01-01T00:00:00.000501Z"), ts("1999-01-01T00:00:00.001000Z"));
        let seconds = Modifier::FractionalDigits(0);
        assert_eq!(
            key(Scalar::Timestamp, seconds, "2026-12-31T23:59:59.500000"),
            key(Scalar::Timestamp, seconds, "2027-01-01T00:00:00.000000")
        );
        // Without a modifier, literals stand as written.
        assert_eq!(
            key(Scalar::Timestamptz, Modifier::None, "2026-01-01T00:00:00.000100Z"),
            "2026-01-01T00:00:00.000100Z"
        );
    }

    #[test]
    fn versions_compare_as_stored() {
        let v = |s: Scalar, m: Modifier, t: &str| Version::from_literal(s, m, t).unwrap_or_else(|| panic!("{t}"));
        let ms = Modifier::FractionalDigits(3);
        assert_eq!(
            v(Scalar::Timestamptz, ms, "2026-01-01T00:00:00.000100Z"),
            v(Scalar::Timestamptz, ms, "2026-01-01T00:00:00.000200Z"),
            "a tie in the database is a tie in combining: the later offset wins"
        );
        assert!(
            v(Scalar::Timestamptz, ms, "2026-01-01T00:00:00.000400Z")
                < v(Scalar::Timestamptz, ms, "2026-01-01T00:00:00.000600Z")
        );
        assert_eq!(v(Scalar::Numeric, Modifier::Scale(1), "1.04"), v(Scalar::Numeric, Modifier::None, "1"));
        assert_eq!(v(Scalar::Text, Modifier::BlankPadded, "b  "), v(Scalar::Text, Modifier::None, "b"));
        assert!(v(Scalar::Text, Modifier::BlankPadded, "a ") < v(Scalar::Text, Modifier::BlankPadded, "a!"));
    }

    proptest! {
        #[test]
        fn rounding_agrees_with_integer_arithmetic(n in -10_000_000i64..10_000_000, scale in 0i64..4) {
            // n / 10^4 rounded to `scale` digits, half away from zero.
            let unit = 10i64.pow((4 - scale) as u32);
            let rounded = (n.abs() + unit / 2) / unit * unit * n.signum();
            let expected = dec(&format!("{rounded}e-4"));
            prop_assert_eq!(dec(&format!("{n}e-4")).round(scale), expected);
        }
    }
}
