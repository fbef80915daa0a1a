//! `stage_routing.wasm`: assigns each request to a deploy stage (prod, canary, next, ...) by a
//! sticky hash, a pin cookie, QA overrides or allowlists, writes it into a request header that
//! Envoy's route table matches, and takes live stage weights from a control plane. See `README.md`.
//!
//! `config`, `assign`, `pin` and `poll` are pure logic (tested natively and under V8); `feature`
//! applies the decision and runs the control-plane poll through the host layer
//! (`edge_common::host`), tested against the fake host. The module is only the `main!` wiring.

pub mod assign;
pub mod config;
pub mod pin;
pub mod poll;

pub mod feature;

pub use feature::StageRouting;

#[cfg(all(target_os = "wasi", feature = "module"))]
proxy_wasm::main! {{
    edge_common::host::wasm::start::<StageRouting>();
}}
