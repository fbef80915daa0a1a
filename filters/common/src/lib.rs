//! Host-independent helpers shared by the edge filters.
//!
//! Only `host::wasm` (wasm32-wasip1 builds) imports `proxy_wasm`; everything else works on plain values so it can be unit-tested
//! natively and, compiled to `wasm32-unknown-unknown`, under Node's V8 with `wasm-bindgen-test`.
//! Only what two or more filters share lives here.

pub mod cidr;
pub mod config;
pub mod crypto;
pub mod hash;
pub mod headermap;
pub mod host;
pub mod http;
pub mod ip;
pub mod metrics;
pub mod path;
pub mod poll;
pub mod rls;

pub use cidr::CidrSet;
pub use config::{
    cookie_name, header_name, output_header_name, parse_config, valid_header_value, ConfigError,
    Mode,
};
pub use path::{PathPolicy, PathVerdict, RequestPath};
