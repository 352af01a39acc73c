//! The one object key serde_json's `Value` does not read as a key: [`RAW_VALUE_KEY`].
//!
//! With serde_json's `raw_value` feature (sluice's decoders need it), an object whose first key
//! is `$serde_json::private::RawValue` is read as the JSON text in its value, not as an object.
//! An event holding that key anywhere therefore cannot be stored as sent and read back the same:
//! the gateway refuses it ([`holds_raw_value_key`]) rather than accept what the sinker would
//! read as something else, or dead-letter.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::{raw::FieldName, wire::RAW_VALUE_KEY};

/// The key, for messages.
pub const KEY: &str = RAW_VALUE_KEY;

/// Whether an object key anywhere in this JSON text is [`RAW_VALUE_KEY`] (escapes decoded).
/// Text that is not JSON: false (the parser says what is wrong with it).
pub fn holds_raw_value_key(text: &str) -> bool {
    let mut de = serde_json::Deserializer::from_str(text);
    match Walk.deserialize(&mut de) {
        Ok(()) => false,
        Err(e) => e.to_string().starts_with(FOUND),
    }
}

const FOUND: &str = "raw value key found";

/// Walks a value, failing with [`FOUND`] at the first such key. Nesting is bounded by
/// serde_json's recursion limit.
struct Walk;

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Walk)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(FieldName(key)) = map.next_key::<FieldName<'de>>()? {
            if key == RAW_VALUE_KEY {
                return Err(de::Error::custom(FOUND));
            }
            map.next_value_seed(Walk)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::holds_raw_value_key;

    #[test]
    fn finds_the_key_at_any_depth_and_position_escaped_or_not() {
        for text in [
            r#"{"$serde_json::private::RawValue":"1"}"#,
            r#"{"type":"t","data":{"a":{"x":1,"$serde_json::private::RawValue":"[1]"}}}"#,
            r#"{"data":[1,{"b":[{"\u0024serde_json::private::RawValue":2}]}]}"#,
        ] {
            assert!(holds_raw_value_key(text), "{text}");
        }
        for text in [
            r#"{"type":"t","data":{"a":"$serde_json::private::RawValue"}}"#,
            r#"{"$serde_json::private::RawValu":1,"x":[]}"#,
            "not json",
            "[1, 2",
        ] {
            assert!(!holds_raw_value_key(text), "{text}");
        }
    }

    #[test]
    fn serde_json_numbers_are_plain_numbers() {
        // The decoders copy serde_json's `Value` reading of numbers; with `arbitrary_precision`
        // turned on (by any crate in the build, through feature unification) numbers would
        // arrive as maps and they would build `{"$serde_json::private::Number": ...}` objects.
        let value: serde_json::Value = serde_json::from_str("12345678901234567890123").expect("a number");
        assert!(value.is_f64(), "arbitrary_precision is off: a number beyond u64 is read as a double");
        assert!(serde_json::from_str::<serde_json::Value>("1e400").is_err(), "beyond a double's range is refused");
    }
}
