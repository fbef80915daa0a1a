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
            unsafe { std::env::set_var("EDGE_ECHO_BIN", env!("CARGO_BIN_EXE_echo-upstream")) };
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

/// Envoy must refuse `filter` (a built `.wasm` of that name) with each configuration, and the
/// error it reports must contain the message (the field path and the problem).
pub async fn assert_configs_rejected(filter: &str, cases: &[(serde_json::Value, &str)]) {
    for (config, message) in cases {
        let err = edge_tests::Gateway::new()
            .runtime(runtime())
            .wasm(edge_tests::WasmFilter::new(
                filter,
                wasm(filter),
                config.clone(),
            ))
            .start()
            .await
            .err()
            .unwrap_or_else(|| panic!("Envoy accepted a bad configuration: {config}"));
        let text = format!("{err:#}");
        assert!(text.contains(message), "expected {message:?} in:\n{text}");
    }
}
