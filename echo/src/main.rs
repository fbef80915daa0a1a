//! The echo upstream as a program: `echo-upstream [--listen ADDR] [--name NAME]`.
//!
//! Defaults: `--listen 0.0.0.0:8000`, `--name echo` (also from `ECHO_LISTEN` / `ECHO_NAME`).
//! Prints `listening on ADDR` on stdout once bound (with port 0, the port it got) and stops on
//! SIGINT or SIGTERM.

fn main() -> std::process::ExitCode {
    edge_echo::cli()
}
