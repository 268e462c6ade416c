//! pg-user-api: safe, idempotent, audited PostgreSQL user provisioning over HTTP.
//!
//! The parts, in the order a request meets them: [`http`] → [`service`] → [`plan`] (pure
//! SQL generation) → [`target`] (pooled admin connections), with [`store`] holding the
//! registry and the audit log, and [`notify`] telling chat rooms and mailboxes
//! about changes; background work runs as [`service::jobs`]. [`auth`] and [`tls`] are
//! leaves every layer may use. [`cli`] is the command line; [`cluster`] starts throw-away
//! PostgreSQL clusters for the demo, the tests and the benchmark.

pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod error;
pub mod http;
pub mod logging;
pub mod notify;
pub mod plan;
pub mod service;
pub mod startup;
pub mod store;
pub mod target;
pub mod tls;
