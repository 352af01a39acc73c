//! A Segment-compatible API, so that Segment's (and RudderStack's) SDKs, unmodified, can send
//! to the gateway: `POST /v1/batch` and the single-message `/v1/track`, `/v1/identify`,
//! `/v1/page`, `/v1/screen`, `/v1/group` and `/v1/alias`.
//!
//! Each message becomes one sluice event ([`message`]), validated and produced exactly as an
//! event posted to `/v1/events` is (same wire format, same all-or-nothing rule, 2xx only after
//! the broker acknowledged every one). [`envelope`] reads the body, [`skew`] corrects the
//! client's clock, [`handler`] is the endpoints.

pub mod envelope;
pub mod handler;
pub mod message;
pub mod skew;

/// Segment's limit on one message: its JSON text without insignificant whitespace.
pub const MESSAGE_LIMIT_BYTES: usize = 32 * 1024;

/// Segment's limit on one request body (500 KB, taken as KiB: what the SDKs stay under),
/// before and after gzip; `--max-body-bytes` when that is lower.
pub const BATCH_LIMIT_BYTES: usize = 500 * 1024;
