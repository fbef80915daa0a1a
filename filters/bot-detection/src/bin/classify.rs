//! `classify`: bot detection's verdict for user agents or whole requests, as the filter decides it.
//!
//! ```text
//! cargo run -q -p bot-detection --bin classify -- [--config FILE] [--ip ADDR] [--json] < uas.txt
//! cargo run -q -p bot-detection --bin classify -- --headers requests.txt [--json]
//! ```

use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use bot_detection::config::Config;
use bot_detection::detect::{decide, Signals, Verdict};
use clap::Parser;
use edge_common::headermap::{serialize, HeaderMapView};

/// Classifies user agents (one per line on stdin) or whole requests (`--headers`) with bot
/// detection's logic and prints one verdict per input: tab-separated
/// `category score verified action name user-agent`, or JSON lines with `--json`.
#[derive(Parser, Debug)]
#[command(name = "classify", version)]
struct Args {
    /// The filter configuration (JSON, as in Envoy); the defaults without it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The client address, for verified-bot ranges (per request in --headers files: an
    /// `x-client-ip` line).
    #[arg(long, value_name = "ADDR")]
    ip: Option<IpAddr>,
    /// Requests instead of user agents: header blocks (`name: value` lines) separated by blank
    /// lines; lines starting with `#` are comments. Only what the request sends counts (a block
    /// without `accept` is a request without it). Stdin reads user agents, taken as a browser
    /// sends them (with accept and accept-language).
    #[arg(long, value_name = "FILE")]
    headers: Option<PathBuf>,
    /// JSON lines: {"user_agent", "category", "score", "verified", "action", "name"}.
    #[arg(long)]
    json: bool,
}

fn print(out: &mut impl Write, json: bool, ua: &[u8], v: &Verdict<'_>) -> std::io::Result<()> {
    let ua = String::from_utf8_lossy(ua);
    if json {
        let line = serde_json::json!({
            "user_agent": ua,
            "category": v.category.as_str(),
            "score": v.score,
            "verified": v.verified,
            "action": v.action.as_str(),
            "name": v.name,
        });
        writeln!(out, "{line}")
    } else {
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            v.category.as_str(),
            v.score,
            if v.verified { "verified" } else { "-" },
            v.action.as_str(),
            v.name.unwrap_or("-"),
            ua
        )
    }
}

/// `name: value` header blocks separated by blank lines.
fn requests(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out = vec![];
    let mut cur: Vec<(String, String)> = vec![];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if let Some((n, v)) = line.split_once(':') {
            cur.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn run(args: Args) -> Result<(), String> {
    let config = match &args.config {
        Some(p) => std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => b"{}".to_vec(),
    };
    let cfg = Config::from_json(&config).map_err(|e| e.to_string())?;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let io = |e: std::io::Error| e.to_string();
    if let Some(path) = &args.headers {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for req in requests(&text) {
            let ip = req
                .iter()
                .find(|(n, _)| n == "x-client-ip")
                .and_then(|(_, v)| v.parse().ok())
                .or(args.ip);
            let pairs: Vec<(&[u8], &[u8])> = req
                .iter()
                .filter(|(n, _)| n != "x-client-ip")
                .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
                .collect();
            let bytes = serialize(&pairs);
            let view = HeaderMapView::parse(&bytes).ok_or("malformed request")?;
            let s = bot_detection::feature::signals(&view);
            let v = decide(&cfg, &s, &|| ip);
            print(&mut out, args.json, s.user_agent.unwrap_or(b""), &v).map_err(io)?;
        }
        return out.flush().map_err(io);
    }
    let stdin = std::io::stdin();
    for line in stdin.lock().split(b'\n') {
        let line = line.map_err(io)?;
        let ua = line.strip_suffix(b"\r").unwrap_or(&line);
        let s = Signals {
            user_agent: Some(ua),
            accept: true,
            accept_language: true,
            ..Default::default()
        };
        let v = decide(&cfg, &s, &|| args.ip);
        print(&mut out, args.json, ua, &v).map_err(io)?;
    }
    out.flush().map_err(io)
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("classify: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blocks_split_on_blank_lines() {
        let r =
            requests("# a browser\nUser-Agent: Mozilla/5.0\naccept: */*\n\n\nuser-agent: curl/8\n");
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            [
                ("user-agent".to_string(), "Mozilla/5.0".to_string()),
                ("accept".into(), "*/*".into())
            ]
        );
        assert_eq!(r[1], [("user-agent".to_string(), "curl/8".to_string())]);
    }
}
