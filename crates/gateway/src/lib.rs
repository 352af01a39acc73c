//! sluice gateway: HTTP in, Kafka out. See ARCHITECTURE.md for where it sits.
//!
//! - [`config`]: flags and environment;
//! - [`app`]: the router and shared state;
//! - [`ingest`]: `POST /v1/events`, with [`body`] (decoding) and [`auth`];
//! - [`producer`]: produce and wait for acknowledgements;
//! - [`health`]: readiness and the broker watcher; [`metrics`]; [`error`]: every error answer.

pub mod app;
pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod health;
pub mod ingest;
pub mod metrics;
pub mod producer;
