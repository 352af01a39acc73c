//! Prometheus text exposition.

use prometheus::{Encoder, Registry, TextEncoder};

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric in `registry` in the text format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::error!(%error, "could not encode metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}
