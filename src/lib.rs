//! End-to-end tests for sluice live in `tests/`; this crate has no code of its own.
