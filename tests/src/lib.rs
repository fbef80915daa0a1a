//! The integration test crate's library: the echo upstream, the real-Envoy harness and the load
//! driver. The integration tests under `tests/` and the benchmark driver (`bench/`) use it.

pub mod client;
pub mod config;
pub mod echo;
pub mod harness;
pub mod load;

pub use harness::{wasm_path, Gateway, RunningGateway, Runtime, WasmFilter};
pub use load::{Load, LoadReport};
