//! Events for unit tests.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice_core::Event;
use uuid::Uuid;

pub const ID: &str = "0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b";

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).expect("a test timestamp")
}

/// An `order.created` event with this data and key.
pub fn event(data: Value, key: Option<&str>) -> Event {
    typed_event("order.created", data, key)
}

pub fn typed_event(event_type: &str, data: Value, key: Option<&str>) -> Event {
    let Value::Object(data) = data else { panic!("data must be an object") };
    Event {
        id: Uuid::parse_str(ID).expect("a test uuid"),
        event_type: event_type.to_owned(),
        key: key.map(str::to_owned),
        ts: at("2026-01-31T12:00:00.123456Z"),
        received_at: at("2026-01-31T12:00:01Z"),
        data,
    }
}
