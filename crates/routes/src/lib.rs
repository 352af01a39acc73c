//! Routes (doc to come).

pub mod combine;
pub mod compare;
pub mod convert;
pub mod declared;
pub mod file;
pub mod mapping;
pub mod matcher;
pub mod ops;
pub mod path;
pub mod sql;
pub mod types;

#[cfg(test)]
mod testutil;
