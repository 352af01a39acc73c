//! Request bodies: events with client-chosen UUIDv7 ids, keys drawn from a distribution,
//! padding of a chosen size, and a share of duplicates of recently sent events.

use std::fmt::Write as _;

use rand::{distr::Alphanumeric, rngs::StdRng, Rng, SeedableRng};
use uuid::Uuid;

use crate::config::{Config, KeyDist};

/// How many recently sent events a duplicate is picked from.
pub const RECENT_EVENTS: usize = 10_000;

/// What every request looks like.
#[derive(Debug, Clone)]
pub struct PayloadSpec {
    pub batch: usize,
    pub payload_bytes: usize,
    pub keys: KeyDist,
    pub key_space: u32,
    pub hot_ratio: f64,
    pub duplicate_ratio: f64,
    pub event_type: String,
}

impl PayloadSpec {
    pub fn from_config(config: &Config) -> Self {
        Self {
            batch: config.batch,
            payload_bytes: config.payload_bytes,
            keys: config.keys,
            key_space: config.key_space,
            hot_ratio: config.hot_ratio,
            duplicate_ratio: config.duplicate_ratio,
            event_type: config.event_type.clone(),
        }
    }

    /// The hot keys are key-0 .. key-<hot_keys - 1>: 1% of the key space, at least one.
    pub fn hot_keys(&self) -> u32 {
        self.key_space.div_ceil(100).max(1)
    }
}

/// One request, ready to send.
#[derive(Debug)]
pub struct Request {
    pub body: Vec<u8>,
    /// The ids of its events, in order.
    pub ids: Vec<Uuid>,
    /// How many of its events reuse an earlier id.
    pub duplicates: usize,
}

/// Everything needed to send an event again, byte for byte.
#[derive(Debug, Clone, Copy)]
struct EventSeed {
    id: Uuid,
    key: Option<u32>,
    seq: u64,
    pad_offset: usize,
}

pub struct Generator {
    spec: PayloadSpec,
    rng: StdRng,
    /// Random letters and digits; each event's padding is a slice of it.
    pad_pool: String,
    /// The `type` as a JSON string literal, escaped once.
    type_json: String,
    /// Ring of the last RECENT_EVENTS events of earlier requests.
    recent: Vec<EventSeed>,
    recent_next: usize,
    next_seq: u64,
}

impl Generator {
    pub fn new(spec: PayloadSpec, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let pool_len = spec.payload_bytes + 64 * 1024;
        let pad_pool: String = (&mut rng).sample_iter(Alphanumeric).take(pool_len).map(char::from).collect();
        let type_json = serde_json::Value::String(spec.event_type.clone()).to_string();
        Self { spec, rng, pad_pool, type_json, recent: Vec::with_capacity(RECENT_EVENTS), recent_next: 0, next_seq: 0 }
    }

    /// The next request body: one object when the batch is 1, an array otherwise.
    pub fn next_request(&mut self) -> Request {
        let batch = self.spec.batch;
        let mut body = String::with_capacity(batch * (self.spec.payload_bytes + 128) + 2);
        let mut ids = Vec::with_capacity(batch);
        let mut fresh = Vec::with_capacity(batch);
        let mut duplicates = 0;
        if batch > 1 {
            body.push('[');
        }
        for n in 0..batch {
            if n > 0 {
                body.push(',');
            }
            let (seed, duplicate) = self.next_event();
            duplicates += usize::from(duplicate);
            self.write_event(&mut body, &seed);
            ids.push(seed.id);
            if !duplicate {
                fresh.push(seed);
            }
        }
        if batch > 1 {
            body.push(']');
        }
        // Fresh events become duplicate candidates only once their request is built: a duplicate
        // always repeats an earlier request.
        for seed in fresh {
            self.remember(seed);
        }
        Request { body: body.into_bytes(), ids, duplicates }
    }

    fn next_event(&mut self) -> (EventSeed, bool) {
        if !self.recent.is_empty() && self.spec.duplicate_ratio > 0.0 && self.rng.random_bool(self.spec.duplicate_ratio)
        {
            let pick = self.rng.random_range(0..self.recent.len());
            return (self.recent[pick], true);
        }
        let key = self.pick_key();
        let seq = self.next_seq;
        self.next_seq += 1;
        let pad_len = self.pad_len(seq);
        let pad_offset = self.rng.random_range(0..=self.pad_pool.len() - pad_len);
        (EventSeed { id: Uuid::now_v7(), key, seq, pad_offset }, false)
    }

    fn pick_key(&mut self) -> Option<u32> {
        let space = self.spec.key_space;
        match self.spec.keys {
            KeyDist::None => None,
            KeyDist::Uniform => Some(self.rng.random_range(0..space)),
            KeyDist::Hot => {
                let hot = self.spec.hot_keys();
                if self.rng.random_bool(self.spec.hot_ratio) {
                    Some(self.rng.random_range(0..hot))
                } else if space > hot {
                    Some(self.rng.random_range(hot..space))
                } else {
                    Some(self.rng.random_range(0..space))
                }
            }
        }
    }

    /// Padding length so that `{"seq":<seq>,"pad":"<pad>"}` is payload_bytes long (or as
    /// short as it gets when payload_bytes is below the fixed part).
    fn pad_len(&self, seq: u64) -> usize {
        let fixed = r#"{"seq":,"pad":""}"#.len() + decimal_digits(seq);
        self.spec.payload_bytes.saturating_sub(fixed)
    }

    fn write_event(&self, out: &mut String, seed: &EventSeed) {
        let pad_len = self.pad_len(seed.seq);
        let pad = &self.pad_pool[seed.pad_offset..seed.pad_offset + pad_len];
        // Writing to a String cannot fail.
        let _ = write!(out, r#"{{"id":"{}","type":{}"#, seed.id, self.type_json);
        if let Some(key) = seed.key {
            let _ = write!(out, r#","key":"key-{key}""#);
        }
        let _ = write!(out, r#","data":{{"seq":{},"pad":"{pad}"}}}}"#, seed.seq);
    }

    fn remember(&mut self, seed: EventSeed) {
        if self.recent.len() < RECENT_EVENTS {
            self.recent.push(seed);
        } else {
            self.recent[self.recent_next] = seed;
            self.recent_next = (self.recent_next + 1) % RECENT_EVENTS;
        }
    }
}

fn decimal_digits(mut n: u64) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::Value;

    use super::*;

    fn spec() -> PayloadSpec {
        PayloadSpec {
            batch: 1,
            payload_bytes: 256,
            keys: KeyDist::Uniform,
            key_space: 1000,
            hot_ratio: 0.8,
            duplicate_ratio: 0.0,
            event_type: "bench".to_owned(),
        }
    }

    fn events(request: &Request) -> Vec<Value> {
        let value: Value = match serde_json::from_slice(&request.body) {
            Ok(value) => value,
            Err(error) => panic!("body is not json: {error}"),
        };
        match value {
            Value::Array(events) => events,
            event @ Value::Object(_) => vec![event],
            other => panic!("unexpected body {other}"),
        }
    }

    fn key_number(event: &Value) -> u32 {
        let key = event["key"].as_str().unwrap_or_default();
        key.strip_prefix("key-").and_then(|n| n.parse().ok()).unwrap_or(u32::MAX)
    }

    #[test]
    fn a_batch_of_one_is_an_object_and_larger_batches_are_arrays() {
        let mut single = Generator::new(spec(), 1);
        let request = single.next_request();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        assert!(body.is_object(), "{body}");
        assert_eq!(body["type"], "bench");
        assert_eq!(request.ids.len(), 1);
        assert_eq!(body["id"].as_str(), Some(request.ids[0].to_string().as_str()));
        assert_eq!(request.ids[0].get_version_num(), 7);

        let mut batched = Generator::new(PayloadSpec { batch: 25, ..spec() }, 1);
        let request = batched.next_request();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let array = body.as_array().cloned().unwrap_or_default();
        assert_eq!(array.len(), 25);
        assert_eq!(request.ids.len(), 25);
        for (event, id) in array.iter().zip(&request.ids) {
            assert_eq!(event["id"].as_str(), Some(id.to_string().as_str()));
            let fields: HashSet<&str> =
                event.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
            assert_eq!(fields, HashSet::from(["id", "type", "key", "data"]));
        }
    }

    #[test]
    fn data_size_is_within_ten_percent_of_payload_bytes() {
        for payload_bytes in [64, 100, 256, 1000, 4096, 100_000] {
            let mut generator = Generator::new(PayloadSpec { payload_bytes, batch: 10, ..spec() }, 7);
            for _ in 0..(2_000_000 / payload_bytes).clamp(2, 200) {
                for event in events(&generator.next_request()) {
                    let size = event["data"].to_string().len();
                    let error = size.abs_diff(payload_bytes) as f64 / payload_bytes as f64;
                    assert!(error <= 0.10, "data of {size} bytes for --payload-bytes {payload_bytes}");
                }
            }
        }
    }

    #[test]
    fn the_type_is_escaped_and_keys_can_be_left_out() {
        let mut generator = Generator::new(
            PayloadSpec { keys: KeyDist::None, event_type: "a \"quoted\" type".to_owned(), ..spec() },
            3,
        );
        let event = &events(&generator.next_request())[0];
        assert_eq!(event["type"], "a \"quoted\" type");
        assert!(event.get("key").is_none());
    }

    #[test]
    fn duplicates_follow_the_ratio_and_repeat_earlier_requests_exactly() {
        let mut generator = Generator::new(PayloadSpec { duplicate_ratio: 0.1, batch: 10, ..spec() }, 42);
        // id -> (first request it appeared in, the event)
        let mut seen: std::collections::HashMap<String, (usize, Value)> = std::collections::HashMap::new();
        let (mut total, mut duplicates, mut counted) = (0, 0, 0);
        for n in 0..1000 {
            let request = generator.next_request();
            for event in events(&request) {
                total += 1;
                let id = event["id"].as_str().unwrap_or_default().to_owned();
                match seen.get(&id) {
                    Some((first, earlier)) => {
                        duplicates += 1;
                        assert_eq!(earlier, &event, "a duplicate is the same event again");
                        assert!(*first < n, "a duplicate repeats an earlier request");
                    }
                    None => {
                        seen.insert(id, (n, event));
                    }
                }
            }
            counted += request.duplicates;
        }
        assert_eq!(total, 10_000);
        assert_eq!(counted, duplicates);
        let ratio = duplicates as f64 / total as f64;
        assert!((ratio - 0.1).abs() < 0.015, "duplicate ratio {ratio}");
        // The same seed, the same choices (ids aside: they are fresh UUIDv7s).
        let mut again = Generator::new(PayloadSpec { duplicate_ratio: 0.1, batch: 10, ..spec() }, 42);
        let mut replay = 0;
        for _ in 0..1000 {
            replay += again.next_request().duplicates;
        }
        assert_eq!(replay, duplicates);
    }

    #[test]
    fn no_duplicates_without_a_ratio() {
        let mut generator = Generator::new(spec(), 5);
        let mut ids = HashSet::new();
        for _ in 0..10_000 {
            for id in generator.next_request().ids {
                assert!(ids.insert(id));
            }
        }
    }

    #[test]
    fn hot_keys_take_their_share_of_the_events() {
        let spec = PayloadSpec { keys: KeyDist::Hot, key_space: 1000, hot_ratio: 0.8, ..spec() };
        assert_eq!(spec.hot_keys(), 10);
        let mut generator = Generator::new(spec, 11);
        let mut hot = 0;
        let mut distinct = HashSet::new();
        for _ in 0..10_000 {
            let key = key_number(&events(&generator.next_request())[0]);
            assert!(key < 1000);
            distinct.insert(key);
            hot += usize::from(key < 10);
        }
        let share = hot as f64 / 10_000.0;
        assert!((share - 0.8).abs() < 0.02, "hot share {share}");
        assert!(distinct.len() > 800, "cold keys are spread too: {}", distinct.len());
    }

    #[test]
    fn uniform_keys_cover_the_key_space_evenly() {
        let mut generator = Generator::new(PayloadSpec { key_space: 10, ..spec() }, 13);
        let mut counts = [0u32; 10];
        for _ in 0..10_000 {
            counts[key_number(&events(&generator.next_request())[0]) as usize] += 1;
        }
        for count in counts {
            assert!((850..=1150).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn a_key_space_of_one_hot_key_still_works() {
        let mut generator = Generator::new(PayloadSpec { keys: KeyDist::Hot, key_space: 1, ..spec() }, 17);
        for _ in 0..100 {
            assert_eq!(key_number(&events(&generator.next_request())[0]), 0);
        }
    }
}
