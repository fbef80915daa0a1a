//! `bot_detection.wasm`: classifies each request (known crawlers and tools by user-agent, verified
//! bots by published IP ranges, header anomalies, TLS fingerprints), scores it, and allows, tags or
//! blocks it per policy. See `README.md` for the configuration.
//!
//! `category`, `ua`, `config` and `detect` are pure logic (tested natively and under V8);
//! `feature` applies the verdict through the host layer (`edge_common::host`), tested against the
//! fake host. The module itself is only the `main!` wiring below.

pub mod category;
pub mod config;
pub mod detect;
pub mod ua;

pub mod feature;

pub use feature::BotDetection;

#[cfg(all(target_os = "wasi", feature = "module"))]
proxy_wasm::main! {{
    edge_common::host::wasm::start::<BotDetection>();
}}
