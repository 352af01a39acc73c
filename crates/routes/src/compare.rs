//! How the database compares the literals [`convert`](mod@crate::convert) writes: the order of
//! versions ([`Version`]) and the equality of keys ([`canonical_key`]), so that write-combining
//! decides as PostgreSQL would.
//!
//! - integers compare as integers, numeric as exact decimals (`1.50` = `1.5`, `1e3` = `1000`),
//!   real and double precision as floats (`-0` = `0`);
//! - timestamps, dates, booleans and uuids are written in fixed-width canonical forms, so
//!   their text order is their value order;
//! - text compares by bytes: PostgreSQL's "C" collation. A text `version` in a column with
//!   another collation may order differently in the database's own `>=` check than in
//!   write-combining; use a numeric or timestamp version, or `COLLATE "C"`.

use std::{borrow::Cow, cmp::Ordering};

use crate::types::Scalar;

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
    /// The version a column literal (as [`convert`](mod@crate::convert) writes it) stands for. None
    /// for types without an order (json, jsonb) and for text that is not a literal of the type.
    pub fn from_literal(scalar: Scalar, literal: &str) -> Option<Self> {
        match scalar {
            Scalar::Int2 | Scalar::Int4 | Scalar::Int8 => literal.parse().ok().map(Self::Int),
            Scalar::Numeric => Decimal::parse(literal).map(Self::Decimal),
            Scalar::Float4 | Scalar::Float8 => literal.parse::<f64>().ok().filter(|f| f.is_finite()).map(Self::Float),
            Scalar::Text | Scalar::Uuid | Scalar::Bool | Scalar::Timestamptz | Scalar::Timestamp | Scalar::Date => {
                Some(Self::Text(literal.to_owned()))
            }
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

/// The text that is the same for two literals exactly when the column type's `=` says they
/// are equal: numeric in canonical decimal form, zero floats unsigned, other types as written
/// (their literals are canonical already).
pub fn canonical_key(scalar: Scalar, literal: &str) -> Cow<'_, str> {
    match scalar {
        Scalar::Numeric => Decimal::parse(literal).map_or(Cow::Borrowed(literal), |d| Cow::Owned(d.canonical())),
        Scalar::Float4 | Scalar::Float8 if literal.parse::<f64>().is_ok_and(|f| f == 0.0) => Cow::Borrowed("0"),
        _ => Cow::Borrowed(literal),
    }
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
        let v = |s: Scalar, t: &str| Version::from_literal(s, t).unwrap_or_else(|| panic!("{t}"));
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
        assert!(Version::from_literal(Scalar::Jsonb, "1").is_none());
        // A null version is below every value.
        assert!(None < Some(v(Scalar::Int4, "-5")));
    }

    #[test]
    fn canonical_keys_equal_exactly_when_values_are() {
        assert_eq!(canonical_key(Scalar::Numeric, "1.50"), canonical_key(Scalar::Numeric, "1.5"));
        assert_ne!(canonical_key(Scalar::Numeric, "1.51"), canonical_key(Scalar::Numeric, "1.5"));
        assert_eq!(canonical_key(Scalar::Float8, "-0.0"), canonical_key(Scalar::Float8, "0.0"));
        assert_eq!(canonical_key(Scalar::Float4, "0.1"), "0.1");
        assert_eq!(canonical_key(Scalar::Text, "A"), "A");
        assert_ne!(canonical_key(Scalar::Text, "A"), canonical_key(Scalar::Text, "a"));
    }
}
