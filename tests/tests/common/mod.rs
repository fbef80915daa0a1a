//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use edge_tests::Runtime;

/// Points the harness at the `echo-upstream` binary cargo built for these tests.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("EDGE_ECHO_BIN").is_none() {
            // SAFETY: set once, before any test thread reads the environment through the harness.
            unsafe { std::env::set_var("EDGE_ECHO_BIN", env!("CARGO_BIN_EXE_test-echo-upstream")) };
        }
    });
}

/// The runtime `EDGE_ENVOY_RUNTIME` selects (the filter tests run in it).
pub fn runtime() -> Runtime {
    init();
    Runtime::from_env().unwrap_or_else(|e| panic!("{e}"))
}

/// The harness's own tests run in every runtime this machine offers: processes always, and
/// containers when a Docker engine answers (required with `EDGE_ENVOY_RUNTIME=container`).
pub fn all_runtimes() -> Vec<Runtime> {
    init();
    match runtime() {
        Runtime::Container => vec![Runtime::Container, Runtime::Process],
        Runtime::Process => vec![Runtime::Process],
    }
}

/// A built filter, which must exist (`make build` builds them).
pub fn wasm(name: &str) -> PathBuf {
    let p = edge_tests::wasm_path(name);
    assert!(
        p.is_file(),
        "{} is missing: run `make build` first",
        p.display()
    );
    p
}

/// Which module the behaviour tests load: the feature's own (`EDGE_SHAPE` unset) or edge.wasm
/// with only that feature's section (`EDGE_SHAPE=edge`). `make test` runs them in both shapes,
/// with the same assertions.
pub fn edge_shape() -> bool {
    std::env::var("EDGE_SHAPE").is_ok_and(|v| v == "edge")
}

/// The filter for `feature` (`rate_limit`, ...) with its configuration, in the current shape.
pub fn filter(feature: &str, config: serde_json::Value) -> edge_tests::WasmFilter {
    if edge_shape() {
        let mut c = serde_json::json!({});
        c[feature] = config;
        edge_tests::WasmFilter::new(feature, wasm("edge"), c)
    } else {
        edge_tests::WasmFilter::new(feature, wasm(feature), config)
    }
}

/// A configuration error line as the current shape reports it: edge.wasm names the section.
pub fn config_error(feature: &str, message: &str) -> String {
    match message.strip_prefix("invalid configuration: ") {
        Some(rest) if edge_shape() => {
            let rest = rest.strip_prefix("(root): ").map_or_else(
                || format!("{feature}.{rest}"),
                |r| format!("{feature}: {r}"),
            );
            format!("invalid configuration: {rest}")
        }
        _ => message.to_string(),
    }
}

/// Envoy must refuse `filter` (a built `.wasm` of that name) with each configuration, and the
/// error it reports must contain the message (the field path and the problem).
pub async fn assert_configs_rejected(filter: &str, cases: &[(serde_json::Value, &str)]) {
    for (config, message) in cases {
        if edge_shape() && !config.is_object() {
            // edge.wasm refuses a non-object section with its own message (tested natively).
            continue;
        }
        let message = &config_error(filter, message);
        let err = edge_tests::Gateway::new()
            .runtime(runtime())
            .wasm(self::filter(filter, config.clone()))
            .start()
            .await
            .err()
            .unwrap_or_else(|| panic!("Envoy accepted a bad configuration: {config}"));
        let text = format!("{err:#}");
        assert!(text.contains(message), "expected {message:?} in:\n{text}");
    }
}
