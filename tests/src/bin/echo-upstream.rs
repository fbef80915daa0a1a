//! The echo upstream as a program: `echo-upstream [--listen ADDR] [--name NAME]`.
//!
//! Defaults: `--listen 0.0.0.0:8000`, `--name echo` (also from `ECHO_LISTEN` / `ECHO_NAME`).
//! Prints `listening on ADDR` on stdout once bound (with port 0, the port it got) and stops on
//! SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut listen = std::env::var("ECHO_LISTEN").unwrap_or_else(|_| "0.0.0.0:8000".into());
    let mut name = std::env::var("ECHO_NAME").unwrap_or_else(|_| "echo".into());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            ("--name", Some(v)) => name = v,
            _ => {
                eprintln!("usage: echo-upstream [--listen ADDR] [--name NAME]");
                return ExitCode::from(2);
            }
        }
    }
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo-upstream: bad --listen {listen:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("echo-upstream: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let (local, _task) = match edge_tests::echo::spawn(addr, &name).await {
            Ok(v) => v,
            Err(e) => {
                eprintln!("echo-upstream: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("listening on {local}");
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("echo-upstream: {e}");
                return ExitCode::FAILURE;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        ExitCode::SUCCESS
    })
}
