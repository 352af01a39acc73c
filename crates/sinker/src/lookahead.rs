//! A partition's next inputs, read and decoded while its current batch is being written
//! (`--read-ahead`, off by default: BENCHMARKS.md, "Overlap").
//!
//! A worker writes one batch at a time; while that batch's transaction waits on the database,
//! the worker keeps reading its inbox into a [`Lookahead`] and decodes the records there (the
//! CPU half of the next batch), so the next batch is ready when the database answers. Once a
//! whole batch is ahead, its binary COPY stream into `events` is encoded too ([`Encoded`]),
//! for the batch those records will form if nothing changes meanwhile.
//!
//! Invariants:
//! - inputs leave in the order they came in (records, seek markers and the stop request alike):
//!   everything a worker decides about a record (a delivery again, a log that started over,
//!   the position) is decided after the write, from its inputs in order, as without lookahead;
//! - what is read ahead is bounded by one batch (the batch's row target and `--batch-bytes`);
//!   the records stay counted in the byte budget and `buffered` as they were in the inbox;
//! - decoding is a pure function of the record, so a record decoded ahead and dropped later
//!   (a seek, a revoke) loses nothing but the work;
//! - a stream encoded ahead is used only by a batch of exactly the records it was encoded from
//!   (their read-ahead sequence numbers, consecutive and complete: see [`Encoded::fits`]);
//!   anything else (a smaller batch target after a slow commit, a record dropped) encodes
//!   its own.

use std::{collections::VecDeque, ops::Range};

use chrono::Utc;
use prometheus::IntGauge;
use rdkafka::Message;
use tokio::sync::mpsc;

use crate::{
    batch,
    partition::{Shared, WorkerInput},
    prepared::{self, Decoded, Incoming},
    store::{self, EventRow, InsertMethod},
};

pub struct Lookahead {
    /// Inputs read from the inbox, oldest first; `None` is the inbox's end.
    inputs: VecDeque<Option<WorkerInput>>,
    records: usize,
    bytes: usize,
    closed: bool,
    /// `sinker_records_read_ahead`: holds `records` of this lookahead while it lives.
    gauge: IntGauge,
    /// The sequence number of the next record read ahead (from 1; 0 is "not read ahead").
    next_seq: u64,
    encoded: Option<Encoded>,
}

/// The `events` COPY stream of the records read ahead with these sequence numbers.
pub struct Encoded {
    seqs: Range<u64>,
    pub stream: Vec<u8>,
}

impl Encoded {
    /// Whether `records` (a batch, in order) are exactly the records this stream encodes.
    pub fn fits(&self, records: &[Incoming]) -> bool {
        records.len() as u64 == self.seqs.end - self.seqs.start
            && records.iter().zip(self.seqs.clone()).all(|(record, seq)| record.seq == seq)
    }
}

impl Lookahead {
    pub fn new(gauge: IntGauge) -> Self {
        Self { inputs: VecDeque::new(), records: 0, bytes: 0, closed: false, gauge, next_seq: 1, encoded: None }
    }

    /// Whether another input may be read ahead: below one batch of `rows` and `bytes`.
    pub fn has_room(&self, rows: usize, bytes: usize) -> bool {
        !self.closed && self.records < rows.max(1) && self.bytes < bytes
    }

    /// Takes in an input read from the inbox, decoding it if it is a record.
    fn take_in(&mut self, mut input: Option<WorkerInput>, shared: &Shared) {
        match &mut input {
            Some(WorkerInput::Record(record)) => {
                self.records += 1;
                self.gauge.inc();
                self.bytes += batch::record_bytes(record);
                record.decoded = Some(Box::new(prepared::decode(shared, record, Utc::now())));
                record.seq = self.next_seq;
                self.next_seq += 1;
            }
            Some(_) => {}
            None => self.closed = true,
        }
        self.inputs.push_back(input);
    }

    /// Takes in what the inbox holds already, while there is room (see [`Self::has_room`]);
    /// once a whole batch is ahead, encodes it too.
    pub fn read(&mut self, inbox: &mut mpsc::UnboundedReceiver<WorkerInput>, shared: &Shared, rows: usize) {
        while self.has_room(rows, shared.policy.max_bytes) {
            match inbox.try_recv() {
                Ok(input) => self.take_in(Some(input), shared),
                Err(mpsc::error::TryRecvError::Empty) => return,
                Err(mpsc::error::TryRecvError::Disconnected) => self.take_in(None, shared),
            }
        }
        self.encode(shared);
    }

    /// The oldest input read ahead, if any (`Some(None)`: the inbox ended).
    pub fn pop(&mut self) -> Option<Option<WorkerInput>> {
        let input = self.inputs.pop_front()?;
        if let Some(WorkerInput::Record(record)) = &input {
            self.records -= 1;
            self.gauge.dec();
            self.bytes -= batch::record_bytes(record);
        }
        Some(input)
    }

    /// Encodes the `events` COPY stream of every record read ahead (binary COPY without routes),
    /// unless an input other than a record is among them, or a stream is encoded already.
    fn encode(&mut self, shared: &Shared) {
        if self.encoded.is_some() || shared.routes.is_some() || shared.insert_method != InsertMethod::BinaryCopy {
            return;
        }
        let mut rows = Vec::with_capacity(self.records);
        let mut seqs = None::<Range<u64>>;
        for input in &self.inputs {
            let Some(WorkerInput::Record(record)) = input else { return };
            match record.decoded.as_deref() {
                Some(Decoded::Event(Ok(event))) => {
                    rows.push(EventRow::raw(event, record.payload().unwrap_or_default()))
                }
                Some(Decoded::Event(Err(_))) => {}
                _ => return,
            }
            seqs = Some(seqs.map_or(record.seq..record.seq + 1, |s| s.start..record.seq + 1));
        }
        if let Some(seqs) = seqs.filter(|_| !rows.is_empty()) {
            self.encoded = Some(Encoded { seqs, stream: store::encode_events(&rows) });
        }
    }

    /// The stream encoded ahead, if any (for the batch about to be written: see [`Encoded::fits`]).
    pub fn take_encoded(&mut self) -> Option<Encoded> {
        self.encoded.take()
    }

    /// The next input: read ahead before, or else the inbox's next.
    pub async fn next(&mut self, inbox: &mut mpsc::UnboundedReceiver<WorkerInput>) -> Option<WorkerInput> {
        match self.pop() {
            Some(input) => input,
            None => inbox.recv().await,
        }
    }
}

impl Drop for Lookahead {
    fn drop(&mut self) {
        self.gauge.sub(self.records as i64);
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::{message::OwnedHeaders, message::OwnedMessage, Timestamp};

    use super::Encoded;
    use crate::{flow::Buffered, prepared::Incoming};

    fn record(offset: i64, seq: u64) -> Incoming {
        let msg = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, offset, None::<OwnedHeaders>);
        Incoming { seq, ..Incoming::new(Buffered::untracked(msg)) }
    }

    #[test]
    fn a_stream_encoded_ahead_fits_only_the_records_it_was_encoded_from() {
        let encoded = Encoded { seqs: 5..8, stream: Vec::new() };
        assert!(encoded.fits(&[record(10, 5), record(11, 6), record(12, 7)]));
        // A smaller batch (the target shrank after a slow commit), or a larger one.
        assert!(!encoded.fits(&[record(10, 5), record(11, 6)]));
        assert!(!encoded.fits(&[record(10, 5), record(11, 6), record(12, 7), record(13, 8)]));
        // A record dropped between (delivered again, below the position) and another in its place.
        assert!(!encoded.fits(&[record(10, 5), record(12, 7), record(13, 8)]));
        // The same offsets read again after a seek back are other records.
        assert!(!encoded.fits(&[record(10, 0), record(11, 0), record(12, 0)]));
        assert!(!encoded.fits(&[record(10, 9), record(11, 10), record(12, 11)]));
    }
}
