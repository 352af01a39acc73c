//! A batch made ready for its transaction: every record decoded once (into an event, or into
//! its routes' operations), or set aside with the reason it cannot become a row.
//!
//! Decoding is a pure function of the record (and of the routes, fixed for the process's
//! life), so it can happen ahead of time: a record's [`Incoming::decoded`] may be filled while
//! the partition's previous batch is still being written (`lookahead.rs`), and
//! [`Prepared::new`] then only collects it. Invariant: a decoded form travels with the record
//! it was decoded from (never matched by offset, which a seek back or a recreated topic
//! reuses), so a record decoded ahead and later dropped takes its decoding with it.

use std::ops::Deref;

use chrono::{DateTime, Utc};
use rdkafka::{message::OwnedMessage, Message, Timestamp};
use sluice_core::{decode_raw, RawEvent, Rejection};
use sluice_routes::Op;

use crate::{
    flow::Buffered,
    lookahead::Encoded,
    partition::Shared,
    routed::{self, RoutedWritten},
    store,
};

/// What a record becomes: an event for `events` (no routes), or its routes' operations.
pub enum Decoded {
    Event(Result<RawEvent, Rejection>),
    Ops(Result<Vec<Op>, Rejection>),
}

/// Decodes one record the way its batch writes it. `now` is the last-resort timestamp of a
/// record that carries none.
pub fn decode(shared: &Shared, msg: &OwnedMessage, now: DateTime<Utc>) -> Decoded {
    let time = record_time(msg);
    match &shared.routes {
        None => Decoded::Event(decode_raw(msg.payload(), time, now, shared.max_event_bytes)),
        Some(routes) => Decoded::Ops(routed::record_ops(routes, msg, time, now, shared.max_event_bytes)),
    }
}

/// A record held by its partition's worker, with its decoded form once known.
pub struct Incoming {
    pub msg: Buffered,
    /// Boxed: records travel through the worker's inbox, which is kept small.
    pub decoded: Option<Box<Decoded>>,
    /// Its sequence number among the records read ahead (0: not read ahead).
    pub seq: u64,
}

impl Incoming {
    pub fn new(msg: Buffered) -> Self {
        Self { msg, decoded: None, seq: 0 }
    }
}

impl Deref for Incoming {
    type Target = OwnedMessage;

    fn deref(&self) -> &OwnedMessage {
        &self.msg
    }
}

/// What a committed batch wrote.
#[derive(Default)]
pub struct Outcome {
    /// Rows inserted (into `events`; with routes, over every route).
    pub inserted: u64,
    /// With routes: what each route did.
    pub routed: Option<RoutedWritten>,
    /// Without routes, with `--insert-method binary-copy`: the path the batch took.
    pub copy: Option<store::CopyPath>,
}

/// A batch decoded once and retried as often as needed.
pub struct Prepared {
    pub records: Vec<Buffered>,
    /// Without routes: decoded events (`data` left as text) with the index of their record.
    pub events: Vec<(usize, RawEvent)>,
    /// With routes: each record's operations, with the index of the record (records without
    /// operations are in `rejections`).
    pub units: Vec<(usize, Vec<Op>)>,
    /// Records that are not valid events, with the reason.
    pub rejections: Vec<(usize, Rejection)>,
    pub decode_rejections_sent: bool,
    pub db_rejections: usize,
    pub from: i64,
    pub to: i64,
    pub outcome: Outcome,
    pub commit_seconds: f64,
    /// Records whose decoding was done ahead, while an earlier batch was being written.
    pub decoded_ahead: usize,
    /// Without routes, with binary COPY: the batch's `events` COPY stream when it was encoded
    /// ahead (kept for the batch's retries).
    pub copy_stream: Option<Vec<u8>>,
    /// Whether `copy_stream` was encoded ahead, while an earlier batch was being written.
    pub encoded_ahead: bool,
}

impl Prepared {
    /// The batch of these records (in offset order), decoding those not decoded yet, with the
    /// COPY stream encoded ahead when `ahead` is the stream of exactly these records.
    pub fn new(incoming: Vec<Incoming>, shared: &Shared, position: Option<i64>, ahead: Option<Encoded>) -> Self {
        let ahead = ahead.filter(|encoded| encoded.fits(&incoming)).map(|encoded| encoded.stream);
        let now = Utc::now();
        let mut events = Vec::new();
        let mut units = Vec::new();
        let mut rejections = Vec::new();
        let mut records = Vec::with_capacity(incoming.len());
        let mut decoded_ahead = 0;
        for (i, Incoming { msg, decoded, .. }) in incoming.into_iter().enumerate() {
            let decoded = match decoded {
                Some(decoded) => {
                    decoded_ahead += 1;
                    *decoded
                }
                None => decode(shared, &msg, now),
            };
            match decoded {
                Decoded::Event(Ok(event)) => events.push((i, event)),
                Decoded::Ops(Ok(ops)) => units.push((i, ops)),
                Decoded::Event(Err(rejection)) | Decoded::Ops(Err(rejection)) => rejections.push((i, rejection)),
            }
            records.push(msg);
        }
        let first = records.first().map_or(0, |m| m.offset());
        let to = records.last().map_or(first, |m| m.offset() + 1);
        Self {
            from: position.unwrap_or(first).min(first),
            to,
            records,
            events,
            units,
            rejections,
            decode_rejections_sent: false,
            db_rejections: 0,
            outcome: Outcome::default(),
            commit_seconds: 0.0,
            decoded_ahead,
            encoded_ahead: ahead.is_some(),
            // Without a stream encoded ahead, the batch is encoded inside its transaction, at
            // each attempt: a batch waiting for a connection holds no stream (up to
            // `--batch-bytes` each, per partition).
            copy_stream: ahead,
        }
    }

    /// The units written: events, or records with operations.
    pub fn len(&self) -> usize {
        self.events.len() + self.units.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the batch's rows go in by COPY (the transaction then opens with its savepoint).
    pub fn copies(&self, shared: &Shared) -> bool {
        shared.insert_method == store::InsertMethod::BinaryCopy
            && match &shared.routes {
                None => !self.events.is_empty(),
                Some(routes) => !self.units.is_empty() && routed::copies(routes),
            }
    }

    /// The `events` rows of the batch, borrowed from its records.
    pub fn event_rows(&self) -> Vec<store::EventRow<'_>> {
        self.events
            .iter()
            .map(|(i, e)| store::EventRow::raw(e, self.records[*i].payload().unwrap_or_default()))
            .collect()
    }
}

fn record_time(msg: &OwnedMessage) -> Option<DateTime<Utc>> {
    match msg.timestamp() {
        Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => DateTime::from_timestamp_millis(ms),
        Timestamp::NotAvailable => None,
    }
}
