//! Receiving a request body within its limits, and telling the ways it can fail apart:
//! over `--max-body-bytes` is a 413 `body_too_large`, slower than `--body-read-timeout` a 408
//! `request_timeout`, and a broken upload (the client went away, bad chunked framing) a 400
//! `body_read_failed`.
//!
//! A body over the limit is answered at once, without reading it when its `Content-Length`
//! already says so. What the client still sends is then read and thrown away in the background,
//! until the body read timeout at the latest, so that the client gets to read its 413: closing
//! a socket with unread data makes the kernel reset the connection, and the client often sees
//! the reset (a broken pipe) instead of the answer. A client that sent `Expect: 100-continue`
//! is not asked for its body at all.

use std::time::Duration;

use axum::{
    body::{Body, BodyDataStream, Bytes},
    http::{header, HeaderMap},
};
use futures::StreamExt;
use tokio::time::Instant;

use crate::error::ApiError;

/// Reads the whole body: at most `max_bytes`, within `timeout` from now.
pub async fn read(body: Body, headers: &HeaderMap, max_bytes: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    let deadline = Instant::now() + timeout;
    let mut stream = body.into_data_stream();
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > max_bytes) {
        if !expects_continue(headers) {
            discard_rest(stream, deadline);
        }
        return Err(ApiError::BodyTooLarge { limit: max_bytes });
    }
    // A declared length is within the limit here: one allocation, no regrowth.
    let mut buf = Vec::with_capacity(declared.unwrap_or(0));
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_elapsed) => return Err(ApiError::RequestTimeout { timeout }),
            Ok(None) => return Ok(Bytes::from(buf)),
            Ok(Some(Err(error))) => return Err(ApiError::BodyReadFailed { reason: error.to_string() }),
            Ok(Some(Ok(chunk))) => {
                if buf.len() + chunk.len() > max_bytes {
                    discard_rest(stream, deadline);
                    return Err(ApiError::BodyTooLarge { limit: max_bytes });
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
}

/// A request refused before its body was read (401, 415, 429): the body is drained in the
/// background, as for a 413, so the client reads the answer rather than a reset.
pub fn refuse_unread(body: Body, headers: &HeaderMap, timeout: Duration) {
    if !expects_continue(headers) {
        discard_rest(body.into_data_stream(), Instant::now() + timeout);
    }
}

fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get(header::EXPECT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// Reads and drops the rest of a refused body, until it ends, fails, or `deadline` passes.
/// Costs one chunk of memory at a time; the time is bounded by the body read timeout.
fn discard_rest(mut stream: BodyDataStream, deadline: Instant) {
    tokio::spawn(async move {
        let drain = async {
            let mut discarded = 0usize;
            while let Some(Ok(chunk)) = stream.next().await {
                discarded = discarded.saturating_add(chunk.len());
            }
            discarded
        };
        match tokio::time::timeout_at(deadline, drain).await {
            Ok(discarded) => tracing::debug!(discarded, "discarded the rest of a refused body"),
            Err(_) => tracing::debug!("stopped discarding a refused body at the body read timeout"),
        }
    });
}
