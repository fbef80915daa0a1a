//! `cargo run -p bot-detection --bin classify [-- --config FILE] [--ip ADDR]`: reads user agents,
//! one per line, on stdin and prints the verdict for each, tab-separated:
//! `category  score  verified  action  name  user-agent`. With `--config`, the filter configuration (JSON)
//! is used, else the defaults; `--ip` sets the client address for verified-bot checks. Other
//! headers are taken as a browser sends them (accept and accept-language present).

use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::process::ExitCode;

use bot_detection::config::Config;
use bot_detection::detect::{decide, Signals};

fn main() -> ExitCode {
    let mut config = b"{}".to_vec();
    let mut ip: Option<IpAddr> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--config", Some(path)) => match std::fs::read(&path) {
                Ok(b) => config = b,
                Err(e) => {
                    eprintln!("classify: {path}: {e}");
                    return ExitCode::from(2);
                }
            },
            ("--ip", Some(v)) => match v.parse() {
                Ok(v) => ip = Some(v),
                Err(e) => {
                    eprintln!("classify: --ip {v}: {e}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("usage: classify [--config FILE] [--ip ADDR] < user-agents.txt");
                return ExitCode::from(2);
            }
        }
    }
    let cfg = match Config::from_json(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("classify: {e}");
            return ExitCode::from(2);
        }
    };
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for line in stdin.lock().split(b'\n') {
        let Ok(line) = line else { break };
        let ua = line.strip_suffix(b"\r").unwrap_or(&line);
        let s = Signals {
            user_agent: Some(ua),
            accept: true,
            accept_language: true,
            ..Default::default()
        };
        let v = decide(&cfg, &s, &|| ip);
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            v.category.as_str(),
            v.score,
            if v.verified { "verified" } else { "-" },
            v.action.as_str(),
            v.name.unwrap_or("-"),
            String::from_utf8_lossy(ua)
        );
    }
    ExitCode::SUCCESS
}
