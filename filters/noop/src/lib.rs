//! `noop.wasm`: an HTTP filter that lets every request and response through untouched.
//!
//! It exists to measure what Proxy-Wasm itself costs in Envoy (VM entry per callback, context
//! creation) so the benchmark can tell our filters' own cost apart, and to smoke-test the harness.
//! Its configuration is an empty JSON object (or nothing); anything else is rejected at load like
//! every filter of ours rejects a bad configuration, which the harness's tests rely on.

use edge_common::host::{Decision, Decisions, Feature, Host, Request, StartError};
use edge_common::{parse_config, ConfigError};
use serde::Deserialize;

/// The no-op filter's configuration: no fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// Parses and checks the configuration the way `on_configure` does.
pub fn configure(bytes: &[u8]) -> Result<Config, ConfigError> {
    parse_config(bytes)
}

/// The no-op feature: configured like every feature, and never runs on a request.
pub struct Noop;

impl Feature for Noop {
    type Request = ();
    const RUNS_ON_REQUESTS: bool = false;

    fn configure(json: &[u8], _: &impl Host) -> Result<Self, StartError> {
        configure(json)?;
        Ok(Noop)
    }

    fn describe(&self) -> String {
        "noop".into()
    }

    fn on_request_headers(
        &self,
        _: &impl Host,
        _: &Request<'_>,
        _: &mut Decisions,
        _: &mut (),
    ) -> Decision {
        Decision::Continue
    }
}

#[cfg(target_os = "wasi")]
proxy_wasm::main! {{
    edge_common::host::wasm::start::<Noop>();
}}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_empty_and_rejects_fields() {
        assert!(configure(b"").is_ok());
        assert!(configure(b"{}").is_ok());
        let err = configure(br#"{"mode":"enforce"}"#).unwrap_err();
        assert_eq!(err.field, "mode");
        assert!(err
            .to_string()
            .starts_with("invalid configuration: mode: unknown field `mode`"));
    }
}
