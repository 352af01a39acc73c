//! End-to-end tests: the real gateway and sinker binaries against the real local stack
//! (`make up`). All compile into this one binary (zero-to-production's layout).

mod chromium;
mod helpers;
mod page_server;
mod raw_http;

mod backpressure;
mod chaos;
mod deploy_files;
mod flow;
mod gateway;
mod gateway_backpressure;
mod gateway_browser;
mod gateway_cors;
mod gateway_limits;
mod gateway_routes;
mod gateway_slow_clients;
mod guarantees;
mod lookahead;
mod raw_json;
mod routes;
mod routes_agreement;
mod routes_groups;
mod routes_versions;
mod security;
mod segment;
mod segment_review;
mod segment_sdks;
mod sinker;
mod sinker_groups;
mod sinker_positions;
mod sinker_supervision;
mod skeleton;
mod unknown_commit;
