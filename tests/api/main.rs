//! Black-box tests: the real server over HTTP against real PostgreSQL clusters.

mod access;
mod audit;
mod cli;
mod concurrency;
mod doctor;
mod fanout;
mod faults;
mod fuzz;
mod grants;
mod lifecycle;
mod metrics;
mod notify;
mod openapi;
mod packaging;
mod per_version;
mod profiles;
mod quoting;
mod security;
mod sso;
mod store;
mod support;
mod timeouts;
mod tls;
mod ui;
mod users;
mod versions;
