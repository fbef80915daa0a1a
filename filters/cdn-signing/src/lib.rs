//! `cdn_signing.wasm` (in progress): verify signed URLs and tokens on incoming requests and sign
//! requests on the way out, byte-compatible with each scheme's reference implementation.
//!
//! Done: the host-independent schemes (`schemes`): Akamai EdgeAuth 2.0, Google Cloud CDN signed
//! URLs / URL prefixes / cookies, nginx `secure_link_md5`-style links and an HMAC-SHA256 variant,
//! with known-answer and reference-implementation tests. Still to do: CloudFront (RSA), the
//! configuration, the Proxy-Wasm adapter, the `sign` command, Envoy tests (see the issue).

pub mod config;
pub mod schemes;
pub mod sign;
pub mod verify;

#[cfg(target_os = "wasi")]
mod adapter;
