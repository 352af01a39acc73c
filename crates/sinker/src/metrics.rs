//! The sinker's Prometheus metrics. Base units, `_total` on counters; the only unbounded-looking
//! labels are topic and partition of partitions this process owns (removed on revoke).

use prometheus::{
    exponential_buckets, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use sluice_core::RejectReason;
use sluice_routes::ResolvedRoutes;

use crate::{
    routed::RoutedWritten,
    store::{CopyPath, ErrorKind},
};

/// `sinker_rows_written_total{op}` values.
pub const WRITE_OPS: [&str; 4] = ["inserted", "updated", "deleted", "skipped"];

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub consumer_lag: IntGaugeVec,
    pub consumer_lag_seconds: GaugeVec,
    pub rows_inserted: IntCounter,
    pub duplicates_skipped: IntCounter,
    pub dlq_messages: IntCounterVec,
    pub batch_rows: Histogram,
    pub batch_commit_seconds: Histogram,
    pub db_errors: IntCounterVec,
    pub rebalances: IntCounter,
    pub offset_conflicts: IntCounter,
    pub offset_resets: IntCounterVec,
    pub records_redelivered: IntCounter,
    pub records_decoded_ahead: IntCounter,
    pub records_read_ahead: IntGauge,
    pub batches_encoded_ahead: IntCounter,
    pub kafka_ahead_of_database: IntCounter,
    pub partitions_stuck: IntGauge,
    pub dlq_failures: IntCounterVec,
    pub kafka_commit_failures: IntCounter,
    pub partitions_assigned: IntGauge,
    pub partitions_paused: IntGauge,
    pub batch_target_rows: IntGauge,
    pub buffered_bytes: IntGauge,
    pub assign_failures: IntCounter,
    pub rows_written: IntCounterVec,
    pub rows_combined: IntCounterVec,
    pub copy_batches: IntCounterVec,
}

macro_rules! register {
    ($registry:expr, $($metric:expr),+ $(,)?) => {
        $( $registry.register(Box::new($metric.clone())).expect("metric names are unique"); )+
    };
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let partition_labels = &["topic", "partition"];
        let m = Self {
            consumer_lag: IntGaugeVec::new(
                Opts::new("sinker_consumer_lag", "Records behind the high watermark (not yet written) per owned partition."),
                partition_labels,
            )
            .expect("valid metric"),
            consumer_lag_seconds: GaugeVec::new(
                Opts::new(
                    "sinker_consumer_lag_seconds",
                    "Age of the oldest record not yet written, per owned partition (record timestamps); 0 when caught up.",
                ),
                partition_labels,
            )
            .expect("valid metric"),
            rows_inserted: IntCounter::new(
                "sinker_rows_inserted_total",
                "Rows inserted into the events table; with --routes, rows inserted over every route (the sum of \
                 sinker_rows_written_total{op=\"inserted\"}).",
            )
            .expect("valid metric"),
            duplicates_skipped: IntCounter::new(
                "sinker_duplicates_skipped_total",
                "Valid records whose id was already in the table (replays, client retries); with --routes, rows the \
                 routes skipped (the sum of sinker_rows_written_total{op=\"skipped\"}).",
            )
            .expect("valid metric"),
            dlq_messages: IntCounterVec::new(
                Opts::new("sinker_dlq_messages_total", "Records sent to the dead-letter topic, by reason."),
                &["reason"],
            )
            .expect("valid metric"),
            batch_rows: Histogram::with_opts(
                HistogramOpts::new("sinker_batch_rows", "Records per written batch.")
                    .buckets(exponential_buckets(1.0, 2.0, 15).expect("valid buckets")),
            )
            .expect("valid metric"),
            batch_commit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "sinker_batch_commit_seconds",
                    "Time to write one batch: begin, fence, insert, commit.",
                )
                .buckets(exponential_buckets(0.001, 2.0, 15).expect("valid buckets")),
            )
            .expect("valid metric"),
            db_errors: IntCounterVec::new(
                Opts::new(
                    "sinker_db_errors_total",
                    "Database errors by kind (connection, contention, timeout, rejected, fatal).",
                ),
                &["kind"],
            )
            .expect("valid metric"),
            rebalances: IntCounter::new("sinker_rebalances_total", "Partition assignments and revocations seen.")
                .expect("valid metric"),
            offset_conflicts: IntCounter::new(
                "sinker_offset_conflicts_total",
                "Batches refused by the offset compare-and-set: another owner had written further.",
            )
            .expect("valid metric"),
            offset_resets: IntCounterVec::new(
                Opts::new(
                    "sinker_offset_resets_total",
                    "Times a partition's position was reset, by reason: out_of_range (auto.offset.reset applied), \
                     beyond_log_end (the stored offset is past the log end: a recreated topic; read again from the log start).",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            records_redelivered: IntCounter::new(
                "sinker_records_redelivered_total",
                "Records the consumer delivered a second time (after a partition was paused and resumed), recognised \
                 by offset and fingerprint and dropped: their first delivery is held or written.",
            )
            .expect("valid metric"),
            records_decoded_ahead: IntCounter::new(
                "sinker_records_decoded_ahead_total",
                "Records written whose decoding was done while their partition's previous batch was being written \
                 (the CPU half of a batch overlapping the database's half).",
            )
            .expect("valid metric"),
            records_read_ahead: IntGauge::new(
                "sinker_records_read_ahead",
                "Records read and decoded while their partition's batch before them is being written, waiting for \
                 their own batch (at most one batch per partition).",
            )
            .expect("valid metric"),
            batches_encoded_ahead: IntCounter::new(
                "sinker_batches_encoded_ahead_total",
                "Batches written whose binary COPY stream was encoded while their partition's previous batch was being \
                 written.",
            )
            .expect("valid metric"),
            kafka_ahead_of_database: IntCounter::new(
                "sinker_kafka_ahead_of_database_total",
                "Times the database's stored offset was found behind Kafka's committed offset (at assignment) or behind \
                 the writer's position (at a write): a restored database or a lagging replica; the rows are written again.",
            )
            .expect("valid metric"),
            partitions_stuck: IntGauge::new(
                "sinker_partitions_stuck",
                "Owned partitions whose current batch fails with a permanent error (database schema, permissions, \
                 trigger exception, internal error; or a dead-letter topic that refuses writes); retried until fixed.",
            )
            .expect("valid metric"),
            dlq_failures: IntCounterVec::new(
                Opts::new(
                    "sinker_dlq_failures_total",
                    "Dead-letter produces that failed, by reason (too_large, unauthorized, unknown_topic, transient).",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            kafka_commit_failures: IntCounter::new(
                "sinker_kafka_commit_failures_total",
                "Kafka offset commits that failed (the database keeps the true position).",
            )
            .expect("valid metric"),
            partitions_assigned: IntGauge::new("sinker_partitions_assigned", "Partitions this process owns.")
                .expect("valid metric"),
            partitions_paused: IntGauge::new(
                "sinker_partitions_paused",
                "Owned partitions paused because their buffer is full or the byte budget is used up (database slow or down).",
            )
            .expect("valid metric"),
            batch_target_rows: IntGauge::new("sinker_batch_target_rows", "Current target rows per batch.")
                .expect("valid metric"),
            buffered_bytes: IntGauge::new(
                "sinker_buffered_bytes",
                "Payload and key bytes of records read from Kafka and not yet written or dropped (bounded by --max-buffered-bytes).",
            )
            .expect("valid metric"),
            assign_failures: IntCounter::new(
                "sinker_assign_failures_total",
                "Failed attempts to assign partitions in the consumer (retried; partitions left unassigned get no worker).",
            )
            .expect("valid metric"),
            rows_written: IntCounterVec::new(
                Opts::new(
                    "sinker_rows_written_total",
                    "With --routes: rows written per route, by op: inserted, updated (upserts), deleted, skipped (an \
                     insert's key already there, an upsert's older version, a delete's key not found).",
                ),
                &["route", "op"],
            )
            .expect("valid metric"),
            rows_combined: IntCounterVec::new(
                Opts::new(
                    "sinker_rows_combined_total",
                    "With --routes: operations folded away by write-combining per route (a later or newer operation \
                     on the same row in the same batch made them moot).",
                ),
                &["route"],
            )
            .expect("valid metric"),
            copy_batches: IntCounterVec::new(
                Opts::new(
                    "sinker_copy_batches_total",
                    "Batches written by binary COPY, per route (`events`: the built-in route) and path: copy (COPY took \
                     the batch) or fallback (COPY met a key already there or a refused value, the batch was rolled \
                     back to its savepoint and written with the conflict-aware statement).",
                ),
                &["route", "path"],
            )
            .expect("valid metric"),
            registry,
        };
        register!(
            m.registry,
            m.consumer_lag,
            m.consumer_lag_seconds,
            m.rows_inserted,
            m.duplicates_skipped,
            m.dlq_messages,
            m.batch_rows,
            m.batch_commit_seconds,
            m.db_errors,
            m.rebalances,
            m.offset_conflicts,
            m.offset_resets,
            m.records_redelivered,
            m.records_decoded_ahead,
            m.records_read_ahead,
            m.batches_encoded_ahead,
            m.kafka_ahead_of_database,
            m.partitions_stuck,
            m.dlq_failures,
            m.kafka_commit_failures,
            m.partitions_assigned,
            m.partitions_paused,
            m.batch_target_rows,
            m.buffered_bytes,
            m.assign_failures,
            m.rows_written,
            m.rows_combined,
            m.copy_batches,
        );
        // Export every label value from the start, so rates work before the first event.
        for reason in RejectReason::ALL {
            m.dlq_messages.with_label_values(&[reason.code()]);
        }
        for reason in ["out_of_range", "beyond_log_end"] {
            m.offset_resets.with_label_values(&[reason]);
        }
        for reason in crate::dlq::FAILURE_REASONS {
            m.dlq_failures.with_label_values(&[reason]);
        }
        for kind in ErrorKind::ALL {
            m.db_errors.with_label_values(&[kind.label()]);
        }
        for path in CopyPath::ALL {
            m.copy_batches.with_label_values(&[crate::store::EVENTS_ROUTE, path.label()]);
        }
        m
    }

    /// Exports every route's series from the start, so rates work before the first write.
    pub fn init_routes(&self, routes: &ResolvedRoutes) {
        for route in &routes.file.routes {
            for op in WRITE_OPS {
                self.rows_written.with_label_values(&[route.name.as_str(), op]);
            }
            self.rows_combined.with_label_values(&[route.name.as_str()]);
            if route.mode == sluice_routes::Mode::Insert {
                for path in CopyPath::ALL {
                    self.copy_batches.with_label_values(&[route.name.as_str(), path.label()]);
                }
            }
        }
    }

    /// Counts a committed batch's writes per route.
    pub fn count_routes(&self, routes: &ResolvedRoutes, written: &RoutedWritten) {
        for (&index, counts) in &written.routes {
            let name = routes.file.routes[index].name.as_str();
            let values = [counts.inserted, counts.updated, counts.deleted, counts.skipped];
            for (op, n) in WRITE_OPS.into_iter().zip(values) {
                if n > 0 {
                    self.rows_written.with_label_values(&[name, op]).inc_by(n);
                }
            }
        }
        for (&index, &n) in &written.folded {
            self.rows_combined.with_label_values(&[routes.file.routes[index].name.as_str()]).inc_by(n);
        }
        for (&(index, path), &n) in &written.copies {
            self.copy_batches.with_label_values(&[routes.file.routes[index].name.as_str(), path.label()]).inc_by(n);
        }
    }

    pub fn forget_partition(&self, topic: &str, partition: i32) {
        let p = partition.to_string();
        let _ = self.consumer_lag.remove_label_values(&[topic, &p]);
        let _ = self.consumer_lag_seconds.remove_label_values(&[topic, &p]);
    }
}
