//! `cdn_signing.wasm`: verify signed URLs and tokens on incoming requests and sign requests on
//! the way out, byte-compatible with each scheme's reference implementation (Akamai EdgeAuth 2.0,
//! Google Cloud CDN, CloudFront, nginx `secure_link`). See `README.md`.
//!
//! `schemes`, `config`, `verify` and `sign` are pure logic; `feature` applies them through the
//! host layer (`edge_common::host`), and is tested natively against the fake host. The module
//! itself is only the `main!` wiring below.

pub mod config;
pub mod feature;
pub mod schemes;
pub mod sign;
pub mod verify;

pub use feature::CdnSigning;

#[cfg(all(target_os = "wasi", feature = "module"))]
proxy_wasm::main! {{
    edge_common::host::wasm::start::<CdnSigning>();
}}
