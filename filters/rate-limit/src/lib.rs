//! `rate_limit.wasm`: local rate limiting with token buckets kept in Envoy's shared data, so a
//! limit holds exactly across all worker threads. See `README.md` for the configuration.
//!
//! The logic (`config`, `bucket`, `limiter`, `response`) is host-independent and tested natively
//! and in V8; the Proxy-Wasm adapter (`adapter`, built for `wasm32-wasip1` only) reads the few
//! request attributes the rules need, calls [`limiter::decide`] and applies the decision.

pub mod bucket;
pub mod config;
pub mod limiter;
pub mod response;

#[cfg(target_os = "wasi")]
mod adapter;
