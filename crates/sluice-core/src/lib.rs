//! What the gateway and the sinker share: the event and its validation ([`event`]), the Kafka
//! wire format ([`wire`]) and the fast path that validates and encodes an event without a tree
//! ([`scan`]; [`raw_value_key`]: the one key it cannot store), the routes' decoder that builds only the parts of `data` routes read ([`pruned`],
//! [`data_paths`]), Kafka client settings ([`kafka`]), and process plumbing (logging,
//! shutdown, metrics rendering, secret redaction, how a task ended).

pub mod data_paths;
pub mod event;
pub mod kafka;
pub mod metrics;
pub mod numbers;
pub mod pruned;
pub mod raw;
pub mod raw_value_key;
pub mod scan;
pub mod secret;
pub mod shutdown;
pub mod task;
pub mod telemetry;
pub mod wire;

pub use event::{Event, EventError};
pub use raw::{decode_raw, RawData, RawEvent};
pub use wire::{RejectReason, Rejection};
