//! End-to-end tests: the real gateway and sinker binaries against the real local stack
//! (`make up`). All compile into this one binary (zero-to-production's layout).

mod helpers;

mod backpressure;
mod chaos;
mod deploy_files;
mod flow;
mod gateway;
mod security;
mod sinker;
mod skeleton;
