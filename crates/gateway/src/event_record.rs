//! One event posted to `/v1/events` to its Kafka record, or the reason it is refused.
//!
//! Two paths, one outcome:
//! - the scan ([`sluice_core::scan`]): the event's text is validated without a tree and the
//!   record assembled from its slices (`data` as sent, less whitespace). Nearly every valid
//!   event takes it;
//! - the tree path: the text parsed into values, `Event::from_api`, the record serialized from
//!   the tree. It runs only for what the scan does not accept: every refusal (so each error
//!   message is the tree path's, unchanged), the rare valid spellings the scan leaves to it
//!   (a field given twice, an escaped NUL in `data`, a number PostgreSQL would not store as
//!   written), and an event whose text, whitespace aside, is over `--max-event-bytes` or whose
//!   record as sent is (the tree's re-encoding, with escapes decoded, may fit; else it gives
//!   the 413 and its size). Those few are written as the tree prints them (numbers through a
//!   double).
//!
//! Invariant: an event is accepted exactly when the tree path accepts it, or its record as
//! sent fits `--max-event-bytes`; both records decode to the same row (`scan`'s tests).
//! With `--routes`, the routes check needs paths into `data`: a scanned event's `data` is
//! parsed into a tree for it, and only then.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sluice_core::{scan::ApiEvent, Event};
use sluice_routes::RoutesFile;

use crate::{
    body,
    error::{ApiError, Position},
    producer::Outgoing,
    route_check,
};

/// The record of the event at `at`, received at `received_at`, at most `max_event_bytes`
/// (`--max-event-bytes`) as written.
pub fn record(
    max_event_bytes: usize,
    routes: Option<&RoutesFile>,
    raw: &RawValue,
    at: Position,
    received_at: DateTime<Utc>,
) -> Result<Outgoing, ApiError> {
    match scanned(max_event_bytes, routes, raw, at, received_at)? {
        Some(record) => Ok(record),
        None => tree(max_event_bytes, routes, raw, at, received_at),
    }
}

/// The scan's record; None when the tree path must decide.
fn scanned(
    max_event_bytes: usize,
    routes: Option<&RoutesFile>,
    raw: &RawValue,
    at: Position,
    received_at: DateTime<Utc>,
) -> Result<Option<Outgoing>, ApiError> {
    let text = raw.get();
    // Whitespace aside, as the tree path measures (so an answer never depends on whitespace):
    // an event over the limit gets the tree path's 413 without being scanned.
    if text.len() > max_event_bytes && body::compact_len(text.as_bytes()) > max_event_bytes {
        return Ok(None);
    }
    let Some(event) = ApiEvent::scan(text, received_at) else {
        return Ok(None);
    };
    if let Some(routes) = routes {
        routes.check_event(&event.to_event()).map_err(|refusal| route_check::refused(refusal, at))?;
    }
    let record = Outgoing::scanned(&event);
    if record.size() > max_event_bytes {
        return Ok(None);
    }
    Ok(Some(record))
}

/// The tree path: parse, validate, check the routes, serialize.
fn tree(
    max_event_bytes: usize,
    routes: Option<&RoutesFile>,
    raw: &RawValue,
    at: Position,
    received_at: DateTime<Utc>,
) -> Result<Outgoing, ApiError> {
    if sluice_core::raw_value_key::holds_raw_value_key(raw.get()) {
        // serde_json reads such an object as embedded JSON text: it cannot be stored as sent.
        return Err(ApiError::InvalidEvent {
            message: at.prefix(&format!(
                "the object key `{}` cannot be stored as sent (it is read as embedded JSON); rename it",
                sluice_core::raw_value_key::KEY
            )),
            at,
            column: None,
        });
    }
    let value = body::value(raw, at, max_event_bytes)?;
    let event = Event::from_api(value, received_at).map_err(|e| ApiError::InvalidEvent {
        message: at.prefix(&e.message),
        at,
        column: None,
    })?;
    if let Some(routes) = routes {
        routes.check_event(&event).map_err(|refusal| route_check::refused(refusal, at))?;
    }
    let record = Outgoing::new(&event);
    if record.size() > max_event_bytes {
        return Err(ApiError::EventTooLarge { size: record.size(), limit: max_event_bytes, at });
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sluice_core::wire;

    use super::*;

    const ROUTES: &str = r#"
[[route]]
name = "typed"
types = ["t.*"]
table = "typed"
[route.columns]
n = { path = "data.n", type = "integer" }
who = { path = "data.who", type = "text", required = true }
"#;

    fn routes() -> RoutesFile {
        RoutesFile::parse(ROUTES).unwrap_or_else(|e| panic!("{e}"))
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// A value for `data.n` or `data.who`, as text.
    fn field_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i32>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            Just("1.5".to_owned()),
            Just("1e400".to_owned()),
            Just("123456789012345678901234567890".to_owned()),
            Just("null".to_owned()),
            "[a-z ]{0,6}".prop_map(|s| format!("\"{s}\"")),
            Just(r#""caf\u00e9 \/ \u0000""#.to_owned()),
            Just(r#""\ud800""#.to_owned()),
            Just("[1, {\"a\" : [true]}]".to_owned()),
            // Shorter as sent than as the tree writes it (`1000000000.0` each).
            Just("[1e9,1e9,1e9,1e9,1e9,1e9,1e9,1e9,1e9,1e9]".to_owned()),
        ]
    }

    fn event_text() -> impl Strategy<Value = String> {
        let ty = prop_oneof![Just("\"t.a\""), Just("\"other\""), Just("\"\""), Just("5")];
        let data = prop::collection::vec((prop_oneof![Just("n"), Just("who"), Just("x")], field_value()), 0..4)
            .prop_map(|fields| {
                let body: Vec<String> = fields.into_iter().map(|(k, v)| format!("\"{k}\" : {v}")).collect();
                format!("{{ {} }}", body.join(" , "))
            });
        let extra = prop_oneof![
            Just(""),
            Just(r#","key":"u1""#),
            Just(r#","id":"0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b""#),
            Just(r#","ts":"2026-01-01T00:00:00Z""#),
            Just(r#","ts":"nope""#),
            Just(r#","other":1"#),
        ];
        (ty, data, extra).prop_map(|(ty, data, extra)| format!("{{\"type\":{ty},\n \"data\": {data}{extra}}}"))
    }

    /// The row a record decodes to, its id aside (a missing id is a fresh one each time).
    fn row(record: &Outgoing) -> Result<Event, wire::Rejection> {
        wire::decode(Some(&record.value), None, Utc::now(), usize::MAX).map(|e| Event { id: uuid::Uuid::nil(), ..e })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Both paths refuse alike (same answer, same body); where both accept, the records
        /// decode to the same row; the scan accepts more only when the tree's record is too large.
        #[test]
        fn the_scan_answers_as_the_tree_path(text in event_text(), limit in prop_oneof![Just(1usize << 20), 100usize..400], with_routes in any::<bool>()) {
            let routes = routes();
            let routes = with_routes.then_some(&routes);
            let raw = raw(&text);
            let received_at = Utc::now();
            let at = Position::Index(1);
            let got = record(limit, routes, &raw, at, received_at);
            let reference = tree(limit, routes, &raw, at, received_at);
            match (got, reference) {
                (Err(got), Err(reference)) => {
                    prop_assert_eq!(got.body(), reference.body());
                    prop_assert_eq!(got.status(), reference.status());
                }
                (Ok(got), Ok(reference)) => {
                    prop_assert_eq!(row(&got), row(&reference));
                }
                (Ok(got), Err(reference)) => {
                    prop_assert_eq!(reference.code(), "event_too_large");
                    prop_assert!(got.size() <= limit);
                }
                (Err(got), Ok(_)) => prop_assert!(false, "refused {}: {}", text, got),
            }
        }

        /// Whitespace between tokens changes no answer (size limits count the text without it)
        /// and no record's row.
        #[test]
        fn whitespace_changes_no_answer(text in event_text(), pad in 0usize..700, limit in prop_oneof![Just(1usize << 20), 100usize..400], with_routes in any::<bool>()) {
            let routes = routes();
            let routes = with_routes.then_some(&routes);
            let padded = format!("{{{}{}", " ".repeat(pad), &text[1..]);
            let received_at = Utc::now();
            let at = Position::Index(1);
            let answer = |text: &str| record(limit, routes, &raw(text), at, received_at);
            match (answer(&text), answer(&padded)) {
                (Err(plain), Err(padded)) => {
                    prop_assert_eq!(plain.status(), padded.status());
                    prop_assert_eq!(plain.body(), padded.body());
                }
                (Ok(plain), Ok(padded)) => {
                    prop_assert_eq!(row(&plain), row(&padded));
                }
                (plain, padded) => prop_assert!(false, "{} answered {:?}, padded by {} {:?}", text, plain.map(|r| r.size()), pad, padded.map(|r| r.size())),
            }
        }
    }

    /// The review's case: ten `1e9` fit as sent (the tree would write each as `1000000000.0`).
    #[test]
    fn an_event_that_fits_as_sent_fits_with_whitespace_too() {
        let text = r#"{"type":"t","data":{"a":[1e9,1e9,1e9,1e9,1e9,1e9,1e9,1e9,1e9,1e9]}}"#;
        let padded = text.replacen(r#""t","#, &format!(r#""t",{}"#, " ".repeat(240)), 1);
        for text in [text, padded.as_str()] {
            let record = record(300, None, &raw(text), Position::Index(0), Utc::now()).expect("accepted");
            assert!(String::from_utf8_lossy(&record.value).contains("[1e9,1e9,"), "data as sent");
        }
    }

    /// A hostile review's case: serde_json reads an object whose first key is its raw-value
    /// token as embedded JSON, so such an event could not be stored as sent: refused, wherever
    /// the key is and however it is written.
    #[test]
    fn the_raw_value_key_is_refused_anywhere_in_the_event() {
        for text in [
            r#"{"type":"t","data":{"a":{"x":1,"$serde_json::private::RawValue":"[1]"}}}"#,
            r#"{"type":"t","data":{"a":{"$serde_json::private::RawValue":"1e400"}}}"#,
            r#"{"type":"t","data":{"b":[{"\u0024serde_json::private::RawValue":2}]}}"#,
        ] {
            match record(1 << 20, None, &raw(text), Position::Index(3), Utc::now()) {
                Err(ApiError::InvalidEvent { message, .. }) => assert_eq!(
                    message,
                    "event 3: the object key `$serde_json::private::RawValue` cannot be stored as sent (it is read \
                     as embedded JSON); rename it",
                    "{text}"
                ),
                Err(other) => panic!("{text}: {other:?}"),
                Ok(_) => panic!("{text}: accepted"),
            }
        }
    }
}
