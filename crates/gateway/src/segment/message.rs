//! One Segment message becomes one sluice event (pure but for a message without `messageId`,
//! whose id is a fresh UUIDv7: no I/O, no clock otherwise).
//!
//! - `id`: the `messageId` when it is a UUID, else the UUIDv5 of it in [`NAMESPACE`], so an SDK
//!   that resends a message (a retry, or the same call made twice) writes the same row; without
//!   `messageId` (Segment's HTTP API examples have none) a fresh UUIDv7, so a retry of such a
//!   message is a second row;
//! - `type`: a track's `event`, else the message type (`identify`, `page`, `screen`, `group`,
//!   `alias`);
//! - `key`: `userId`, else `anonymousId` (one user's events share a partition and keep their
//!   order);
//! - `ts`: `timestamp` (else `originalTimestamp`, what RudderStack's SDKs stamp) corrected for
//!   the client's clock skew (see [`super::skew`]);
//! - `data`: the message as sent, less its `writeKey` (a key never reaches the topic or the
//!   table), with the batch's `context` keys it lacks, and its `type` when the endpoint gave it.
//!
//! The event is then validated by `Event::from_api` like any event posted to `/v1/events`, so
//! the record is the same wire format. The message, once merged, may nest at most
//! `sluice_core::wire::MAX_DATA_DEPTH` deep: the record that carries it is one level deeper, and
//! the sinker could not read a deeper one.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use sha1::{Digest, Sha1};
use sluice_core::{
    event::{json_kind, storable, MAX_KEY_CHARS, MAX_TYPE_CHARS},
    wire, Event,
};
use uuid::Uuid;

use super::skew;

/// The namespace of the UUIDv5 ids made from `messageId`s that are not UUIDs.
pub const NAMESPACE: Uuid = uuid::uuid!("167b82ba-c7dd-46be-a6d1-43e7838f763c");

/// The six Segment calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl MessageType {
    pub const ALL: [MessageType; 6] = [Self::Track, Self::Identify, Self::Page, Self::Screen, Self::Group, Self::Alias];

    /// The name, as in a message's `type` and in the endpoint's path.
    pub fn name(self) -> &'static str {
        match self {
            Self::Track => "track",
            Self::Identify => "identify",
            Self::Page => "page",
            Self::Screen => "screen",
            Self::Group => "group",
            Self::Alias => "alias",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// What a message may take from its request rather than from itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct Envelope<'a> {
    /// The endpoint's type (`/v1/track`, ...); `None` for `/v1/batch`, where each message says.
    pub endpoint: Option<MessageType>,
    /// The batch's `sentAt`, which is used rather than a message's own.
    pub sent_at: Option<DateTime<Utc>>,
    /// The batch's `context`: its keys are added to each message's `context` that lacks them.
    pub context: Option<&'a Map<String, Value>>,
}

/// Why a message cannot become an event; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MessageError(pub String);

fn error(message: impl Into<String>) -> MessageError {
    MessageError(message.into())
}

/// The event id of a `messageId`: itself when it is a UUID (any spelling `Uuid::parse_str`
/// takes), else `UUIDv5(NAMESPACE, messageId)` (RFC 9562: SHA-1 of the namespace's 16 bytes
/// and the id's UTF-8 bytes).
pub fn event_id(message_id: &str) -> Uuid {
    Uuid::parse_str(message_id).unwrap_or_else(|_| uuid_v5(&NAMESPACE, message_id))
}

/// RFC 9562's UUIDv5 of `name` in `namespace`.
fn uuid_v5(namespace: &Uuid, name: &str) -> Uuid {
    let mut sha = Sha1::new();
    sha.update(namespace.as_bytes());
    sha.update(name.as_bytes());
    let digest = sha.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

/// Maps one message, received at `received_at`, to its event.
pub fn to_event(value: Value, envelope: &Envelope<'_>, received_at: DateTime<Utc>) -> Result<Event, MessageError> {
    let Value::Object(mut message) = value else {
        return Err(error(format!("a message must be a JSON object, got {}", json_kind(&value))));
    };
    message.remove("writeKey");
    let kind = message_type(&mut message, envelope.endpoint)?;
    let id = match message.get("messageId") {
        None | Some(Value::Null) => None,
        Some(_) => Some(event_id(&required_string(&message, "messageId", "set a unique id, or leave it out")?)),
    };
    let event_type = match kind {
        MessageType::Track => event_name(&message)?,
        other => other.name().to_owned(),
    };
    let key = user_key(&message)?;
    let timestamp = match time(&message, "timestamp")? {
        Some(at) => Some(at),
        None => time(&message, "originalTimestamp")?,
    };
    let sent_at = match envelope.sent_at {
        Some(sent_at) => Some(sent_at),
        None => time(&message, "sentAt")?,
    };
    if let Some(batch_context) = envelope.context {
        // A message whose `context` is not an object keeps it as sent.
        if let Value::Object(context) = message.entry("context").or_insert_with(|| Value::Object(Map::new())) {
            for (name, value) in batch_context {
                context.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
    }
    let depth = wire::map_depth(&message);
    if depth > wire::MAX_DATA_DEPTH {
        return Err(error(format!(
            "the message is nested {depth} levels deep (arrays and objects, the message itself counting 1{}), the \
             limit is {}: the sinker could not read it; flatten it",
            if envelope.context.is_some() { ", the batch `context` merged in" } else { "" },
            wire::MAX_DATA_DEPTH
        )));
    }
    let received_at = sluice_core::event::to_micros(received_at);
    let ts = skew::event_time(timestamp, sent_at, received_at).ok_or_else(|| {
        error(
            "`timestamp` (or `originalTimestamp`) corrected for the client's clock skew (timestamp + received_at - \
             sentAt) falls outside years 1 to 9999; check the client's clock",
        )
    })?;
    // Without an id, `from_api` makes a fresh UUIDv7.
    let fields = json!({"id": id, "type": event_type, "key": key, "data": Value::Object(message)});
    let mut event = Event::from_api(fields, received_at).map_err(|e| error(e.message))?;
    event.ts = ts;
    Ok(event)
}

/// The message's type: its `type`, else the endpoint's (then written into the message). On a
/// single-message endpoint a `type` that disagrees with the path is refused: the client
/// posted to the wrong place, and either reading could be the wrong one.
fn message_type(message: &mut Map<String, Value>, endpoint: Option<MessageType>) -> Result<MessageType, MessageError> {
    let names = "track, identify, page, screen, group or alias";
    let kind = match (message.get("type"), endpoint) {
        (None | Some(Value::Null), Some(endpoint)) => {
            message.insert("type".to_owned(), Value::from(endpoint.name()));
            return Ok(endpoint);
        }
        (None | Some(Value::Null), None) => {
            return Err(error(format!("missing field `type`: every message in a batch needs one ({names})")))
        }
        (Some(Value::String(name)), _) => MessageType::from_name(name)
            .ok_or_else(|| error(format!("unknown message type {name:?} in `type`; use {names}")))?,
        (Some(other), _) => return Err(error(format!("`type` must be a string ({names}), got {}", json_kind(other)))),
    };
    match endpoint {
        Some(endpoint) if endpoint != kind => Err(error(format!(
            "`type` is {:?} but this endpoint takes {:?} messages; post it to /v1/{} or /v1/batch",
            kind.name(),
            endpoint.name(),
            kind.name()
        ))),
        _ => Ok(kind),
    }
}

/// A track's `event`: the event's type, so it obeys the same length limit.
fn event_name(message: &Map<String, Value>) -> Result<String, MessageError> {
    let name = required_string(message, "event", "a track message needs the name of what happened")?;
    let chars = name.chars().count();
    if chars > MAX_TYPE_CHARS {
        return Err(error(format!("`event` must be at most {MAX_TYPE_CHARS} characters, got {chars}")));
    }
    check_no_nul("event", &name)?;
    Ok(name)
}

/// `userId`, else `anonymousId`: a non-empty string, or a number (taken as its text).
fn user_key(message: &Map<String, Value>) -> Result<String, MessageError> {
    for field in ["userId", "anonymousId"] {
        let key = match message.get(field) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if s.is_empty() => continue,
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(error(format!("`{field}` must be a string or a number, got {}", json_kind(other))))
            }
        };
        let chars = key.chars().count();
        if chars > MAX_KEY_CHARS {
            return Err(error(format!("`{field}` must be at most {MAX_KEY_CHARS} characters, got {chars}")));
        }
        check_no_nul(field, &key)?;
        return Ok(key);
    }
    Err(error("a message needs `userId` or `anonymousId` (who did it); neither is set"))
}

fn required_string(message: &Map<String, Value>, field: &str, why: &str) -> Result<String, MessageError> {
    match message.get(field) {
        None | Some(Value::Null) => Err(error(format!("missing field `{field}`: {why}"))),
        Some(Value::String(s)) if s.is_empty() => Err(error(format!("`{field}` is empty: {why}"))),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(error(format!("`{field}` must be a string, got {}", json_kind(other)))),
    }
}

fn check_no_nul(field: &str, s: &str) -> Result<(), MessageError> {
    if s.contains('\0') {
        return Err(error(format!("`{field}` holds a NUL character (\\u0000): PostgreSQL cannot store it; remove it")));
    }
    Ok(())
}

/// A client time (`timestamp`, `sentAt`): RFC 3339, kept as the row stores it.
fn time(message: &Map<String, Value>, field: &str) -> Result<Option<DateTime<Utc>>, MessageError> {
    parse_time(field, message.get(field))
}

/// Parses a client time named `field`: absent or null is `None`; else an RFC 3339 string
/// within years 1 to 9999 in UTC, truncated to microseconds (leap seconds as in PostgreSQL).
pub fn parse_time(field: &str, value: Option<&Value>) -> Result<Option<DateTime<Utc>>, MessageError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let parsed = DateTime::parse_from_rfc3339(s).map_err(|_| {
                error(format!("`{field}` must be an RFC 3339 timestamp (e.g. 2026-01-31T12:00:00.000Z), got {s:?}"))
            })?;
            storable(parsed.with_timezone(&Utc)).map(Some).ok_or_else(|| {
                error(format!("`{field}` must be within years 1 to 9999 once converted to UTC, got {s:?}"))
            })
        }
        Some(other) => Err(error(format!("`{field}` must be an RFC 3339 timestamp string, got {}", json_kind(other)))),
    }
}

#[cfg(test)]
mod tests {
    use chrono::SecondsFormat;
    use proptest::prelude::*;

    use super::*;

    fn received() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T12:00:00.123456789Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn batch() -> Envelope<'static> {
        Envelope::default()
    }

    fn map(value: Value) -> Result<Event, String> {
        to_event(value, &batch(), received()).map_err(|e| e.0)
    }

    fn ts(event: &Event) -> String {
        event.ts.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    #[test]
    fn uuid_v5_is_rfc_9562s() {
        // Python: uuid.uuid5(uuid.NAMESPACE_DNS, "python.org")
        assert_eq!(uuid_v5(&Uuid::NAMESPACE_DNS, "python.org").to_string(), "886313e1-3b8a-5372-9b90-0c9aee199e5d");
        // The README's example; Python: uuid.uuid5(UUID("167b82ba-..."), "node-next-1767225600000-x1")
        assert_eq!(event_id("node-next-1767225600000-x1").to_string(), "d2c8f63d-9916-552d-b0ea-6c0e7e6ab21a");
        assert_eq!(event_id("node-next-1767225600000-x1").get_version_num(), 5);
    }

    #[test]
    fn a_uuid_message_id_is_the_id_in_any_spelling() {
        let id = "0190b7a4-6b1e-7c4e-9f3a-2d1c5e8f9a0b";
        for spelling in [id.to_owned(), id.to_uppercase(), id.replace('-', ""), format!("{{{id}}}")] {
            assert_eq!(event_id(&spelling).to_string(), id, "{spelling}");
        }
    }

    #[test]
    fn each_type_maps_to_type_key_ts_and_data() {
        let cases = [
            (
                json!({"type": "track", "event": "Order Completed", "userId": "u1", "properties": {"total": 9.5}}),
                "Order Completed",
                "u1",
            ),
            (json!({"type": "identify", "userId": 42, "traits": {"plan": "pro"}}), "identify", "42"),
            (json!({"type": "page", "anonymousId": "a1", "name": "Home"}), "page", "a1"),
            (json!({"type": "screen", "userId": "", "anonymousId": "a2", "name": "Settings"}), "screen", "a2"),
            (json!({"type": "group", "userId": "u1", "groupId": "g1"}), "group", "u1"),
            (json!({"type": "alias", "userId": "u2", "previousId": "a1"}), "alias", "u2"),
        ];
        for (mut message, event_type, key) in cases {
            message["messageId"] = json!(format!("m-{event_type}"));
            let event = map(message.clone()).expect("maps");
            assert_eq!(event.id, event_id(&format!("m-{event_type}")));
            assert_eq!((event.event_type.as_str(), event.key.as_deref()), (event_type, Some(key)));
            assert_eq!(ts(&event), "2026-03-01T12:00:00.123456Z", "no timestamp: the receive time");
            assert_eq!(event.received_at, event.ts);
            assert_eq!(Value::Object(event.data), message, "the message as sent");
        }
    }

    #[test]
    fn the_timestamp_is_corrected_by_the_batch_or_the_message_sent_at() {
        let message = json!({"type": "track", "event": "e", "userId": "u", "messageId": "m",
            "timestamp": "2026-03-01T13:00:00.5+01:00", "sentAt": "2026-03-01T11:59:00Z"});
        // The message's own sentAt: the client's clock is 60.123456 s behind.
        assert_eq!(ts(&map(message.clone()).expect("maps")), "2026-03-01T12:01:00.623456Z");
        // The batch's sentAt wins over the message's.
        let sent_at = parse_time("sentAt", Some(&json!("2026-03-01T12:00:00.123456Z"))).expect("time");
        let envelope = Envelope { sent_at, ..batch() };
        assert_eq!(ts(&to_event(message.clone(), &envelope, received()).expect("maps")), "2026-03-01T12:00:00.500000Z");
        // Without sentAt: the timestamp as is.
        let mut unsent = message;
        unsent.as_object_mut().map(|m| m.remove("sentAt"));
        assert_eq!(ts(&map(unsent).expect("maps")), "2026-03-01T12:00:00.500000Z");
    }

    #[test]
    fn original_timestamp_is_the_client_time_when_timestamp_is_absent() {
        let message = json!({"type": "track", "event": "e", "userId": "u", "messageId": "m",
            "originalTimestamp": "2026-03-01T11:00:00Z", "sentAt": "2026-03-01T11:59:00Z"});
        // The same arithmetic as with `timestamp`: the clock is 60.123456 s behind.
        assert_eq!(ts(&map(message.clone()).expect("maps")), "2026-03-01T11:01:00.123456Z");
        // `timestamp` wins when both are there (an unparsable originalTimestamp is then kept as sent).
        let mut both = message;
        both["timestamp"] = json!("2026-03-01T11:30:00Z");
        both["originalTimestamp"] = json!("not a time");
        assert_eq!(ts(&map(both).expect("maps")), "2026-03-01T11:31:00.123456Z");
    }

    #[test]
    fn without_a_message_id_the_id_is_a_fresh_uuid_v7() {
        let message = json!({"type": "page", "userId": "u"});
        let first = map(message.clone()).expect("maps");
        let again = map(json!({"type": "page", "userId": "u", "messageId": null})).expect("maps");
        assert_eq!((first.id.get_version_num(), again.id.get_version_num()), (7, 7));
        assert_ne!(first.id, again.id, "a resent message without messageId is a second event");
        assert_eq!(Value::Object(first.data), message, "nothing is added to the message");
    }

    #[test]
    fn a_message_the_sinker_could_not_read_is_refused() {
        // The message object is one level; `properties` holds the rest.
        let nested = |levels: usize| (1..levels).fold(json!(1), |inner, _| json!([inner]));
        let message = |levels| json!({"type": "page", "userId": "u", "messageId": "m", "properties": nested(levels)});
        let at_limit = map(message(wire::MAX_DATA_DEPTH)).expect("at the limit");
        assert_eq!(wire::map_depth(&at_limit.data), wire::MAX_DATA_DEPTH);
        let (_, record) = wire::encode(&at_limit);
        assert!(wire::decode(Some(&record), None, received(), usize::MAX).is_ok(), "the sinker reads it");
        assert_eq!(
            map(message(wire::MAX_DATA_DEPTH + 1)).expect_err("too deep"),
            "the message is nested 127 levels deep (arrays and objects, the message itself counting 1), the limit \
             is 126: the sinker could not read it; flatten it"
        );
        // A batch context merged into the message deepens it too.
        let context = json!({"deep": nested(wire::MAX_DATA_DEPTH)});
        let envelope = Envelope { context: context.as_object(), ..batch() };
        let err = to_event(message(1), &envelope, received()).expect_err("too deep once merged");
        assert!(err.0.contains("nested 127 levels deep") && err.0.contains("the batch `context` merged in"), "{err}");
    }

    #[test]
    fn an_endpoint_fills_in_the_type_and_refuses_another() {
        let track = Envelope { endpoint: Some(MessageType::Track), ..batch() };
        let event = to_event(json!({"event": "e", "userId": "u", "messageId": "m"}), &track, received()).expect("maps");
        assert_eq!(event.data["type"], "track");
        let err = to_event(json!({"type": "page", "userId": "u", "messageId": "m"}), &track, received())
            .expect_err("mismatch");
        assert_eq!(
            err.0,
            "`type` is \"page\" but this endpoint takes \"track\" messages; post it to /v1/page or /v1/batch"
        );
    }

    #[test]
    fn the_write_key_is_dropped_and_the_batch_context_merged() {
        let context = json!({"library": {"name": "batch"}, "ip": "10.0.0.1"});
        let envelope = Envelope { context: context.as_object(), ..batch() };
        let message = json!({"type": "identify", "userId": "u", "messageId": "m", "writeKey": "secret",
            "context": {"library": {"name": "own"}}});
        let event = to_event(message, &envelope, received()).expect("maps");
        assert!(!event.data.contains_key("writeKey"));
        assert_eq!(event.data["context"], json!({"library": {"name": "own"}, "ip": "10.0.0.1"}));
        let bare =
            to_event(json!({"type": "page", "userId": "u", "messageId": "m"}), &envelope, received()).expect("maps");
        assert_eq!(bare.data["context"], context);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"userId": "u", "messageId": "m"}), "missing field `type`: every message in a batch needs one (track, identify, page, screen, group or alias)"),
            (json!({"type": "Track", "userId": "u", "messageId": "m"}), "unknown message type \"Track\" in `type`; use track, identify, page, screen, group or alias"),
            (json!({"type": 1, "userId": "u", "messageId": "m"}), "`type` must be a string (track, identify, page, screen, group or alias), got a number"),
            (json!({"type": "track", "userId": "u", "messageId": "m"}), "missing field `event`: a track message needs the name of what happened"),
            (json!({"type": "track", "event": "", "userId": "u", "messageId": "m"}), "`event` is empty: a track message needs the name of what happened"),
            (json!({"type": "page", "messageId": "m"}), "a message needs `userId` or `anonymousId` (who did it); neither is set"),
            (json!({"type": "page", "userId": true, "messageId": "m"}), "`userId` must be a string or a number, got a boolean"),
            (json!({"type": "page", "userId": "u", "messageId": ""}), "`messageId` is empty: set a unique id, or leave it out"),
            (json!({"type": "page", "userId": "u", "messageId": 7}), "`messageId` must be a string, got a number"),
            (json!({"type": "page", "userId": "u", "messageId": "m", "timestamp": "yesterday"}), "`timestamp` must be an RFC 3339 timestamp (e.g. 2026-01-31T12:00:00.000Z), got \"yesterday\""),
            (json!({"type": "page", "userId": "u", "messageId": "m", "sentAt": 5}), "`sentAt` must be an RFC 3339 timestamp string, got a number"),
            (json!({"type": "page", "userId": "u\u{0}", "messageId": "m"}), "`userId` holds a NUL character (\\u0000): PostgreSQL cannot store it; remove it"),
            (json!({"type": "page", "userId": "u", "messageId": "m", "properties": {"a": "\u{0}"}}), "`data` holds a NUL character (\\u0000) at $.properties.a: PostgreSQL cannot store it; remove it"),
            (json!({"type": "page", "userId": "u", "messageId": "m", "timestamp": "0001-01-01T00:00:00Z", "sentAt": "2026-03-01T12:00:01Z"}), "`timestamp` (or `originalTimestamp`) corrected for the client's clock skew (timestamp + received_at - sentAt) falls outside years 1 to 9999; check the client's clock"),
            (json!({"type": "page", "userId": "u", "messageId": "m", "originalTimestamp": "later"}), "`originalTimestamp` must be an RFC 3339 timestamp (e.g. 2026-01-31T12:00:00.000Z), got \"later\""),
            (json!(["not", "an", "object"]), "a message must be a JSON object, got an array"),
        ];
        for (message, expected) in cases {
            assert_eq!(map(message.clone()).expect_err("refused"), expected, "{message}");
        }
        let long = "x".repeat(MAX_TYPE_CHARS + 1);
        let err = map(json!({"type": "track", "event": long, "userId": "u", "messageId": "m"})).expect_err("long");
        assert_eq!(err, "`event` must be at most 128 characters, got 129");
        let long = "k".repeat(MAX_KEY_CHARS + 1);
        let err = map(json!({"type": "page", "anonymousId": long, "messageId": "m"})).expect_err("long");
        assert_eq!(err, "`anonymousId` must be at most 256 characters, got 257");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// A resent message is the same event: same id, whatever the messageId looks like; a
        /// messageId that is not a UUID gets a version 5 id.
        #[test]
        fn the_id_depends_on_the_message_id_alone(message_id in "[^\\x00]{1,40}", other in "[^\\x00]{1,40}") {
            let first = map(json!({"type": "page", "userId": "u", "messageId": message_id})).expect("maps");
            let again = map(json!({"type": "page", "userId": "v", "messageId": message_id, "name": "x"})).expect("maps");
            prop_assert_eq!(first.id, again.id);
            if Uuid::parse_str(&message_id).is_err() {
                prop_assert_eq!(first.id.get_version_num(), 5);
            }
            if other != message_id && Uuid::parse_str(&other).is_err() && Uuid::parse_str(&message_id).is_err() {
                prop_assert_ne!(event_id(&other), first.id);
            }
        }

        /// Whatever the mapping accepts, the sinker reads back as the same event: no 200 ends
        /// in the dead letters (nesting around the limit, with and without a batch context).
        #[test]
        fn every_accepted_message_decodes_as_the_sinker_decodes_it(
            message in crate::segment::message::tests::message_like(),
            levels in 100usize..=130,
            in_context in any::<bool>(),
        ) {
            let deep = (1..levels).fold(json!(1), |inner, _| json!([inner]));
            // A message that maps, with whatever else the strategy made (its fields lose).
            let mut message = match message {
                Value::Object(extra) => {
                    let mut base = json!({"type": "page", "userId": "u", "messageId": "m"});
                    if let Some(m) = base.as_object_mut() {
                        for (k, v) in extra { m.entry(k).or_insert(v); }
                    }
                    base
                }
                other => other,
            };
            let context = json!({"deep": deep.clone()});
            if !in_context {
                if let Some(m) = message.as_object_mut() { m.insert("properties".to_owned(), deep); }
            }
            let envelope = Envelope { context: if in_context { context.as_object() } else { None }, ..batch() };
            if let Ok(event) = to_event(message, &envelope, received()) {
                let (_, record) = wire::encode(&event);
                let later = received() + chrono::TimeDelta::days(1);
                prop_assert_eq!(wire::decode(Some(&record), None, later, usize::MAX), Ok(event));
            }
        }

        #[test]
        fn no_message_panics(message in crate::segment::message::tests::message_like()) {
            let _ = map(message);
        }
    }

    /// Objects made of the fields a mapping reads, of any JSON kind.
    pub(super) fn message_like() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            prop_oneof![
                Just("track"),
                Just("page"),
                Just("2026-01-01T00:00:00Z"),
                Just("9999-12-31T23:59:59Z"),
                Just("")
            ]
            .prop_map(|s| json!(s)),
            ".{0,6}".prop_map(Value::String),
        ];
        let fields =
            ["type", "event", "userId", "anonymousId", "messageId", "timestamp", "sentAt", "context", "writeKey"];
        proptest::collection::vec((proptest::sample::select(fields.to_vec()), leaf), 0..9)
            .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
    }
}
