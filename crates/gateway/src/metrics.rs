//! The gateway's Prometheus metrics. Base units, `_total` on counters, bounded labels.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Label values of `gateway_delivery_failures_total`, exported from the start.
pub const DELIVERY_FAILURE_REASONS: [&str; 5] = ["queue_full", "enqueue_error", "delivery_error", "timeout", "canceled"];

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
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let events_accepted = IntCounter::new(
            "gateway_events_accepted_total",
            "Events answered with 202: acknowledged by the broker.",
        )
        .expect("valid metric");
        let requests = IntCounterVec::new(
            Opts::new("gateway_requests_total", "POST /v1/events requests by HTTP status."),
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
        for c in [
            Box::new(events_accepted.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(requests.clone()),
            Box::new(request_duration.clone()),
            Box::new(delivery_failures.clone()),
            Box::new(producer_queue.clone()),
            Box::new(inflight_bytes.clone()),
            Box::new(kafka_ready.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        for reason in DELIVERY_FAILURE_REASONS {
            delivery_failures.with_label_values(&[reason]);
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
        }
    }
}
