//! `noop.wasm`: an HTTP filter that lets every request and response through untouched.
//!
//! It exists to measure what Proxy-Wasm itself costs in Envoy (VM entry per callback, context
//! creation) so the benchmark can tell our filters' own cost apart, and to smoke-test the harness.
//! Its configuration is an empty JSON object (or nothing); anything else is rejected at load like
//! every filter of ours rejects a bad configuration, which the harness's tests rely on.

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

#[cfg(target_os = "wasi")]
mod adapter {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{ContextType, LogLevel};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot) });
    }}

    struct NoopRoot;

    impl Context for NoopRoot {}

    impl RootContext for NoopRoot {
        fn on_configure(&mut self, _size: usize) -> bool {
            let bytes = self.get_plugin_configuration().unwrap_or_default();
            match super::configure(&bytes) {
                Ok(_) => true,
                Err(e) => {
                    proxy_wasm::hostcalls::log(LogLevel::Error, &e.to_string()).ok();
                    false
                }
            }
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Noop))
        }
    }

    struct Noop;

    impl Context for Noop {}

    impl HttpContext for Noop {}
}

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
