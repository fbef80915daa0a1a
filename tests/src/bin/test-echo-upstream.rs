//! The echo upstream under another name, so `cargo test -p edge-tests` builds it for the tests
//! (`CARGO_BIN_EXE_test-echo-upstream`); the demo and the images use `edge-echo`'s `echo-upstream`.
fn main() -> std::process::ExitCode {
    edge_tests::echo::cli()
}
