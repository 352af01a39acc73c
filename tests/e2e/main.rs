//! End-to-end tests: the real gateway and sinker binaries against the real local stack
//! (`make up`). All compile into this one binary (zero-to-production's layout).

mod helpers;

mod backpressure;
mod chaos;
mod deploy_files;
mod gateway;
mod guarantees;
mod security;
mod sinker;
mod skeleton;
mod unknown_commit;
