//! Black-box tests: the real server over HTTP against real PostgreSQL clusters.

mod cli;
mod concurrency;
mod fanout;
mod grants;
mod lifecycle;
mod notify;
mod profiles;
mod quoting;
mod security;
mod store;
mod support;
mod timeouts;
mod tls;
mod users;
