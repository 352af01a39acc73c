//! The gateway's Prometheus metrics. Base units, `_total` on counters, bounded labels.

use prometheus::{
    exponential_buckets, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::error::ApiError;

/// Label values of `gateway_delivery_failures_total`, exported from the start.
pub const DELIVERY_FAILURE_REASONS: [&str; 5] =
    ["queue_full", "enqueue_error", "delivery_error", "timeout", "canceled"];

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub events_accepted: IntCounter,
    pub requests: IntCounterVec,
    pub request_duration: Histogram,
    pub delivery_failures: IntCounterVec,
    pub producer_queue: IntGauge,
    pub inflight_bytes: IntGauge,
    pub kafka_ready: IntGauge,
    pub consumer_lag: IntGauge,
    pub consumer_lag_partition: IntGaugeVec,
    pub committed_offset_sum: IntGauge,
    pub drain_rate: Gauge,
    pub lag_known: IntGauge,
    pub lag_age_seconds: Gauge,
    pub lag_measure_seconds: Histogram,
    pub backpressure_active: IntGauge,
    pub throttled_requests: IntCounterVec,
    pub request_errors: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let events_accepted =
            IntCounter::new("gateway_events_accepted_total", "Events answered with 202: acknowledged by the broker.")
                .expect("valid metric");
        let requests = IntCounterVec::new(
            Opts::new("gateway_requests_total", "Requests to the ingest endpoints (POST /v1/events) by HTTP status; preflights answered 204 are not counted."),
            &["status"],
        )
        .expect("valid metric");
        let request_duration = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_request_duration_seconds",
                "Time to answer POST /v1/events, broker acknowledgement included.",
            )
            .buckets(exponential_buckets(0.0005, 2.0, 16).expect("valid buckets")),
        )
        .expect("valid metric");
        let delivery_failures = IntCounterVec::new(
            Opts::new(
                "gateway_delivery_failures_total",
                "Events the broker did not confirm, by reason (queue_full, enqueue_error, delivery_error, timeout, canceled).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let producer_queue = IntGauge::new(
            "gateway_producer_queue_messages",
            "Events handed to the producer and not yet acknowledged or failed.",
        )
        .expect("valid metric");
        let inflight_bytes = IntGauge::new(
            "gateway_inflight_bytes",
            "Bytes of events being produced by requests in flight (capped by --max-inflight-bytes).",
        )
        .expect("valid metric");
        let kafka_ready = IntGauge::new(
            "gateway_kafka_ready",
            "1 when the broker answered and the topic exists at the last check, else 0.",
        )
        .expect("valid metric");
        let consumer_lag = IntGauge::new(
            "gateway_consumer_lag",
            "Records on the topic not yet committed by the sinker group (all partitions), measured by the gateway.",
        )
        .expect("valid metric");
        let consumer_lag_partition = IntGaugeVec::new(
            Opts::new(
                "gateway_consumer_lag_partition",
                "The sinker group's lag per partition, measured by the gateway.",
            ),
            &["partition"],
        )
        .expect("valid metric");
        let committed_offset_sum = IntGauge::new(
            "gateway_consumer_committed_offset_sum",
            "Sum over partitions of the sinker group's committed offsets (low watermark where none): flat while lag > 0 means stalled.",
        )
        .expect("valid metric");
        let drain_rate = Gauge::new(
            "gateway_drain_rate",
            "Records per second the sinker group commits (smoothed); Retry-After of a 429 derives from it.",
        )
        .expect("valid metric");
        let lag_known = IntGauge::new(
            "gateway_consumer_lag_known",
            "1 while the lag measurement is fresh, 0 when it is unknown or stale.",
        )
        .expect("valid metric");
        let lag_age_seconds =
            Gauge::new("gateway_consumer_lag_age_seconds", "Seconds since the last successful lag measurement.")
                .expect("valid metric");
        let lag_measure_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_lag_measure_seconds",
                "Time one lag measurement takes (metadata, offsets, watermarks).",
            )
            .buckets(exponential_buckets(0.001, 2.0, 14).expect("valid buckets")),
        )
        .expect("valid metric");
        let backpressure_active = IntGauge::new(
            "gateway_backpressure_active",
            "1 while writes are refused with 429 because the sinkers are too far behind.",
        )
        .expect("valid metric");
        let throttled_requests = IntCounterVec::new(
            Opts::new("gateway_throttled_requests_total", "Requests refused with 429, by reason (lag, rate_limit)."),
            &["reason"],
        )
        .expect("valid metric");
        let request_errors = IntCounterVec::new(
            Opts::new(
                "gateway_request_errors_total",
                "Requests to the ingest endpoints answered with an error, by its code (invalid_event, no_route, origin_not_allowed, ...).",
            ),
            &["code"],
        )
        .expect("valid metric");
        for c in [
            Box::new(events_accepted.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(requests.clone()),
            Box::new(request_duration.clone()),
            Box::new(delivery_failures.clone()),
            Box::new(producer_queue.clone()),
            Box::new(inflight_bytes.clone()),
            Box::new(kafka_ready.clone()),
            Box::new(consumer_lag.clone()),
            Box::new(consumer_lag_partition.clone()),
            Box::new(committed_offset_sum.clone()),
            Box::new(drain_rate.clone()),
            Box::new(lag_known.clone()),
            Box::new(lag_age_seconds.clone()),
            Box::new(lag_measure_seconds.clone()),
            Box::new(backpressure_active.clone()),
            Box::new(throttled_requests.clone()),
            Box::new(request_errors.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        for reason in DELIVERY_FAILURE_REASONS {
            delivery_failures.with_label_values(&[reason]);
        }
        for reason in ["lag", "rate_limit"] {
            throttled_requests.with_label_values(&[reason]);
        }
        // Every code `POST /v1/events` answers with, from the start (not_found and
        // method_not_allowed are the router's).
        for error in ApiError::all().filter(|e| !matches!(e, ApiError::NotFound | ApiError::MethodNotAllowed { .. })) {
            request_errors.with_label_values(&[error.code()]);
        }
        Self {
            registry,
            events_accepted,
            requests,
            request_duration,
            delivery_failures,
            producer_queue,
            inflight_bytes,
            kafka_ready,
            consumer_lag,
            consumer_lag_partition,
            committed_offset_sum,
            drain_rate,
            lag_known,
            lag_age_seconds,
            lag_measure_seconds,
            backpressure_active,
            throttled_requests,
            request_errors,
        }
    }
}

impl Metrics {
    /// Counts a request answered with `error` before any handler saw it (the CORS layer's
    /// refusals): in `gateway_requests_total` and `gateway_request_errors_total`.
    pub fn count_error(&self, error: &ApiError) {
        self.request_errors.with_label_values(&[error.code()]).inc();
        self.requests.with_label_values(&[error.status().as_str()]).inc();
    }
}
