//! `stage_routing.wasm`: assigns each request to a deploy stage (prod, canary, next, ...) by a
//! sticky hash, a pin cookie, QA overrides or allowlists, writes it into a request header that
//! Envoy's route table matches, and takes live stage weights from a control plane. See `README.md`.
//!
//! `config`, `assign` and `poll` are host-independent (tested natively and under V8); `adapter`
//! (wasm32-wasip1 only) reads the request, applies the decision, and runs the control-plane poll.

pub mod assign;
pub mod config;
pub mod pin;
pub mod poll;

#[cfg(target_os = "wasi")]
mod adapter;
