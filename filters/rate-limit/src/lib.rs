//! `rate_limit.wasm`: local rate limiting with token buckets kept in Envoy's shared data, so a
//! limit holds exactly across all worker threads. See `README.md` for the configuration.
//!
//! The logic (`config`, `bucket`, `limiter`, `response`) is host-independent and tested natively
//! and in V8; `feature` applies [`limiter::decide`] through the host layer (`edge_common::host`),
//! tested against the fake host. The module itself is only the `main!` wiring below.

pub mod bucket;
pub mod config;
pub mod limiter;
pub mod response;

pub mod feature;
pub mod global;

pub use feature::RateLimit;

#[cfg(all(target_os = "wasi", feature = "module"))]
proxy_wasm::main! {{
    edge_common::host::wasm::start::<RateLimit>();
}}
