//! sluice gateway: HTTP in, Kafka out. See ARCHITECTURE.md for where it sits.
//!
//! - [`config`]: flags and environment;
//! - [`app`]: the router and shared state;
//! - [`serve`]: the HTTP server, its timeouts and its connection cap;
//! - [`ingest`]: `POST /v1/events`, with [`body_read`] (receiving), [`body`] (decoding),
//!   [`event_record`] (each event validated and encoded, by a scan), [`auth`]
//!   and [`keys`] (who may write, from where, how fast) and [`route_check`] (`--routes`: what
//!   the sinker would dead-letter is refused);
//! - [`segment`]: the Segment-compatible API (`/v1/batch`, `/v1/track`, ...), each message
//!   mapped to an event and produced like `/v1/events`' events;
//! - [`cors`]: the layer around the ingest endpoints (preflights, origin checks), with
//!   [`origin`] (configured origins and matching);
//! - [`producer`]: produce and wait for acknowledgements;
//! - [`health`]: readiness and the broker watcher; [`metrics`]; [`error`]: every error answer;
//! - [`openapi`]: the OpenAPI document, generated from the handlers, types and errors;
//! - [`lag`]: the sinker group's lag from the broker; [`backpressure`]: 429s from it;
//!   [`rate_limit`]: per-key rate limits; [`inflight`]: the in-flight cap's guard;
//! - [`tasks`]: background tasks that take the process down if they stop; [`log_limit`].

pub mod app;
pub mod auth;
pub mod backpressure;
pub mod body;
pub mod body_read;
pub mod config;
pub mod cors;
pub mod error;
pub mod event_record;
pub mod health;
pub mod inflight;
pub mod ingest;
pub mod keys;
pub mod lag;
pub mod log_limit;
pub mod metrics;
pub mod openapi;
pub mod origin;
pub mod producer;
pub mod rate_limit;
pub mod route_check;
pub mod segment;
pub mod serve;
pub mod tasks;
