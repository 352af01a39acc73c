//! sluice sinker: Kafka in, PostgreSQL out, exactly one row per event id. See ARCHITECTURE.md.
//!
//! - [`config`]: flags and environment; [`run`]: wiring;
//! - [`consumer`]: the poll thread and rebalance callbacks;
//! - [`sink`]: the dispatcher loop; [`partition`]: one worker per partition; [`prepared`]: a batch
//!   decoded and encoded once; [`lookahead`]: the next batch made ready while one is written;
//! - [`batch`]: the batching policy; [`adaptive`]: the batch size that follows the database; [`store`]: SQL and error classification;
//!   [`binary`]: PostgreSQL's binary COPY format; [`batch_tx`]: a batch's transaction opened with its fence in one round trip;
//! - [`catalog`]: routes resolved against the database's catalog; [`routed`]: the write path
//!   with routes; [`routed_copy`]: binary COPY for insert routes; [`check`]: `sinker routes check`;
//! - [`adopt`]: stored offsets from before groups were recorded go to the first group that starts;
//! - [`flow`]: the byte budget and pause state; [`commits`]: monotonic Kafka commits;
//! - [`dlq`]: dead letters; [`metrics`], [`http`]; [`backoff`]; [`failpoint`] (tests).

pub mod adaptive;
pub mod adopt;
pub mod backoff;
pub mod batch;
pub mod batch_tx;
pub mod binary;
pub mod catalog;
pub mod check;
pub mod commits;
pub mod config;
pub mod consumer;
pub mod dlq;
pub mod failpoint;
pub mod flow;
pub mod http;
pub mod lookahead;
pub mod metrics;
pub mod partition;
pub mod prepared;
pub mod received;
pub mod routed;
pub mod routed_copy;
pub mod run;
pub mod sink;
pub mod store;
pub mod stuck;
