//! JSON numbers that PostgreSQL's `numeric` (and so `jsonb`) stores as written.
//!
//! serde_json reads any number whose magnitude underflows a double, and any zero whatever its
//! exponent, as `0.0`: `1e-16384`, `0e1073741823` and a `1.` followed by 16384 zeros are valid
//! JSON to it. PostgreSQL refuses them (`value overflows numeric format`: an exponent at or
//! beyond 2^30, or more than 16383 digits after the point once the exponent is applied). Text
//! that carries numbers as written (`data` on the scan path and on the sinker's raw decoder)
//! must therefore hold only numbers `numeric` takes, or go through the tree, which writes a
//! double's shortest text instead (what it always did).
//!
//! The rule here is narrower than PostgreSQL's, so that no version of it refuses what passes:
//! an exponent within ±[`MAX_EXPONENT`], and at most [`MAX_SCALE`] digits after the point once the
//! exponent is applied. Integers are not checked: serde_json refuses one beyond a double's range
//! (about 309 digits), far inside `numeric`'s 131072.

/// The largest exponent, either sign, taken as written (PostgreSQL's own older bound, 1000).
pub const MAX_EXPONENT: i64 = 1000;

/// The most digits after the point `numeric` keeps (`NUMERIC_DSCALE_MAX`).
pub const MAX_SCALE: i64 = 16383;

/// Whether every number in this valid JSON text fits the rule above. Strings are skipped (a
/// number's digits inside a string are text).
pub fn numbers_fit_numeric(json: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = json.get(i) {
        match b {
            b'"' => i = string_end(json, i + 1),
            b'-' | b'0'..=b'9' => {
                let (fits, end) = number(json, i);
                if !fits {
                    return false;
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    true
}

/// The index just past the string whose content starts at `i` (past its closing quote).
fn string_end(json: &[u8], mut i: usize) -> usize {
    while let Some(at) = memchr::memchr2(b'"', b'\\', json.get(i..).unwrap_or_default()) {
        i += at;
        if json[i] == b'"' {
            return i + 1;
        }
        i += 2;
    }
    json.len()
}

/// Whether the number starting at `i` fits, and the index just past it.
fn number(json: &[u8], mut i: usize) -> (bool, usize) {
    let digits = |json: &[u8], mut i: usize| {
        let start = i;
        while json.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i - start, i)
    };
    if json.get(i) == Some(&b'-') {
        i += 1;
    }
    let (_, after_int) = digits(json, i);
    i = after_int;
    let mut fraction = 0;
    if json.get(i) == Some(&b'.') {
        let (n, end) = digits(json, i + 1);
        fraction = n as i64;
        i = end;
    }
    let mut exponent: i64 = 0;
    if matches!(json.get(i), Some(b'e' | b'E')) {
        i += 1;
        let negative = match json.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while let Some(d) = json.get(i).filter(|d| d.is_ascii_digit()) {
            // Saturates: anything past the bound is refused whatever its remaining digits.
            exponent = exponent.saturating_mul(10).saturating_add(i64::from(d - b'0'));
            i += 1;
        }
        if i == start {
            return (false, i);
        }
        if negative {
            exponent = -exponent;
        }
    }
    let fits = exponent.abs() <= MAX_EXPONENT && fraction.saturating_sub(exponent) <= MAX_SCALE;
    (fits, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fits(text: &str) -> bool {
        numbers_fit_numeric(text.as_bytes())
    }

    #[test]
    fn ordinary_numbers_fit() {
        for text in [
            "{}",
            r#"{"a":0,"b":-0,"c":1.5,"d":-12.25e3,"e":1E2,"f":1e-400,"g":123456789012345678901234567890}"#,
            r#"[1e1000, 1e-1000, 0.5e-1000]"#,
            r#"{"a":"1e999999 in a string \" 0e1073741823","b":[true,null,2]}"#,
        ] {
            assert!(fits(text), "{text}");
        }
        let at_the_scale = format!("[0.{}1]", "0".repeat(16381));
        assert!(fits(&at_the_scale), "16383 digits after the point");
    }

    /// What PostgreSQL 15 answered `value overflows numeric format` for (each of these got a
    /// 202 and then a dead letter when the scan kept them as written).
    #[test]
    fn numbers_numeric_refuses_do_not_fit() {
        let long_zeros = format!("{{\"a\":1.{}}}", "0".repeat(16384));
        let long_fraction = format!("{{\"a\":0.{}1}}", "0".repeat(16383));
        for text in [
            r#"{"a":1e-16384}"#,
            r#"{"a":0e-16384}"#,
            r#"{"a":0e1073741823}"#,
            r#"{"a":0E+1001}"#,
            r#"{"a":[1,{"b":2e-1001}]}"#,
            r#"{"a":1e99999999999999999999999}"#,
            &long_zeros,
            &long_fraction,
        ] {
            assert!(!fits(text), "{}", &text[..text.len().min(40)]);
        }
    }
}
