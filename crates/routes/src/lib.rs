//! Routes (doc to come).

pub mod convert;
pub mod path;
pub mod types;

#[cfg(test)]
mod testutil;
