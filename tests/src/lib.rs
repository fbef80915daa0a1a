//! The integration test crate's library: the echo upstream, the real-Envoy harness and the load
//! driver. The integration tests under `tests/` and the benchmark driver (`bench/`) use it.

pub mod client;
pub mod config;
pub mod harness;
pub mod load;

/// The echo upstream (its own crate, `edge-echo`, so the demo builds it without the harness).
pub use edge_echo as echo;
pub use harness::{wasm_path, Gateway, RunningGateway, Runtime, WasmFilter};
pub use load::{Load, LoadReport};
