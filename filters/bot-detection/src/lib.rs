//! `bot_detection.wasm`: classifies each request (known crawlers and tools by user-agent, verified
//! bots by published IP ranges, header anomalies, TLS fingerprints), scores it, and allows, tags or
//! blocks it per policy. See `README.md` for the configuration.
//!
//! `category`, `ua`, `config` and `detect` are host-independent (tested natively and under V8);
//! `adapter` (wasm32-wasip1 only) reads the request headers in one host call and applies the verdict.

pub mod category;
pub mod config;
pub mod detect;
pub mod ua;

#[cfg(target_os = "wasi")]
mod adapter;
