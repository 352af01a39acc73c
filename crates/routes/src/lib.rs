//! Routes (doc to come).

pub mod convert;
pub mod path;
pub mod types;

pub mod file;
pub mod matcher;
#[cfg(test)]
mod testutil;
