//! `make bench`: what each filter adds to a request in real Envoy.
//!
//! Method (DESIGN.md section 7): one Envoy process per configuration, each with one worker
//! (`--concurrency 1`) pinned to CPU 0, answering from a `direct_response` route so no upstream
//! competes for the CPUs; `wrk` pinned to CPU 1 drives them over keep-alive connections. After a
//! warm-up, configurations are measured in interleaved rounds (A B C D, A B C D, ...) so that drift
//! (thermal, other load) hits every row alike. With the worker saturated, 1/throughput is the CPU
//! time Envoy spends per request, so `1e6/rps(row) - 1e6/rps(floor)` is the microseconds a row adds
//! per request; it is computed within each round and the median over rounds is reported.
//!
//! Environment: `BENCH_ROUNDS` (5), `BENCH_DURATION` seconds per measurement (4),
//! `BENCH_CONNECTIONS` (32), `BENCH_WARMUP` seconds (2), `BENCH_OUT` (bench/results),
//! `BENCH_ROWS` (comma-separated name fragments: only those rows, plus the two reference rows).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use edge_tests::config::{native_local_ratelimit_unlimited, native_lua_noop};
use edge_tests::{Gateway, RunningGateway, Runtime, WasmFilter};
use serde_json::json;

mod chart;

/// One configuration measured by the benchmark.
struct Row {
    name: &'static str,
    gateway: Gateway,
    /// Path and headers wrk sends (the "common path" of the row's filter).
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    /// The row its added cost is measured against (`FLOOR` when `None`).
    reference: Option<&'static str>,
}

/// The row every other is compared with (no HTTP filter but the router).
const FLOOR: &str = "no filter";
/// The Proxy-Wasm floor, a second reference column.
const WASM_FLOOR: &str = "no-op Wasm filter";

/// Envoy as every row runs it: a process with one worker pinned to CPU 0.
fn bench_gateway() -> Gateway {
    Gateway::new()
        .runtime(Runtime::Process)
        .workers(1)
        .cpu_list("0")
        .log_level("warning")
}

fn rows() -> Vec<Row> {
    let base = bench_gateway;
    let wasm = |name: &str| edge_tests::wasm_path(name);
    vec![
        Row {
            name: FLOOR,
            gateway: base(),
            path: "/",
            headers: vec![],
            reference: None,
        },
        Row {
            name: WASM_FLOOR,
            gateway: base().wasm(WasmFilter::new("noop", wasm("noop"), json!({}))),
            path: "/",
            headers: vec![],
            reference: None,
        },
        Row {
            name: "native local_ratelimit (never limits)",
            gateway: base().native_filter(native_local_ratelimit_unlimited()),
            path: "/",
            headers: vec![],
            reference: None,
        },
        Row {
            name: "Lua no-op",
            gateway: base().native_filter(native_lua_noop()),
            path: "/",
            headers: vec![],
            reference: None,
        },
        Row {
            name: "rate_limit.wasm allow path (header key)",
            gateway: base().wasm(WasmFilter::new(
                "rate_limit",
                wasm("rate_limit"),
                rate_limit_allow_path("header", true),
            )),
            path: "/api/items",
            headers: vec![("x-api-key", "bench-client-1")],
            reference: None,
        },
        Row {
            name: "rate_limit.wasm allow path (header key, no RateLimit headers)",
            gateway: base().wasm(WasmFilter::new(
                "rate_limit",
                wasm("rate_limit"),
                rate_limit_allow_path("header", false),
            )),
            path: "/api/items",
            headers: vec![("x-api-key", "bench-client-1")],
            reference: None,
        },
        global_row(
            "rate_limit.wasm global rule, RLS on loopback (header key)",
            1,
        ),
        global_row(
            "rate_limit.wasm global rule, RLS on loopback, batch 100 (header key)",
            100,
        ),
        Row {
            name: "rate_limit.wasm, no rule applies (one header-map read)",
            gateway: base().wasm(WasmFilter::new(
                "rate_limit",
                wasm("rate_limit"),
                rate_limit_allow_path("header", true),
            )),
            path: "/static/app.js",
            headers: vec![],
            reference: None,
        },
        Row {
            name: "rate_limit.wasm allow path (client IP key)",
            gateway: base().wasm(WasmFilter::new(
                "rate_limit",
                wasm("rate_limit"),
                rate_limit_allow_path("client_ip", true),
            )),
            path: "/api/items",
            headers: vec![],
            reference: None,
        },
        Row {
            name: "bot_detection.wasm, browser request (allowed)",
            gateway: base().wasm(WasmFilter::new(
                "bot_detection",
                wasm("bot_detection"),
                json!({}),
            )),
            path: "/",
            headers: BROWSER_HEADERS.to_vec(),
            reference: None,
        },
        Row {
            name: "bot_detection.wasm, known bot (tagged)",
            gateway: base().wasm(WasmFilter::new(
                "bot_detection",
                wasm("bot_detection"),
                json!({}),
            )),
            path: "/",
            headers: vec![
                (
                    "user-agent",
                    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
                ),
                ("accept", "*/*"),
            ],
            reference: None,
        },
        Row {
            name: "cdn_signing.wasm, valid Akamai EdgeAuth token",
            gateway: base().wasm(WasmFilter::new(
                "cdn_signing",
                wasm("cdn_signing"),
                cdn_config(),
            )),
            path: leak(format!("/videos/seg-1.ts?__token__={}", akamai_token())),
            headers: vec![],
            reference: None,
        },
        Row {
            name: "cdn_signing.wasm, valid Google Cloud CDN signed URL",
            gateway: base().wasm(WasmFilter::new(
                "cdn_signing",
                wasm("cdn_signing"),
                cdn_config(),
            )),
            path: leak(google_signed_path()),
            // wrk replaces its own Host header only when given `Host` with this case.
            headers: vec![("Host", "cdn.example")],
            reference: None,
        },
        Row {
            name: "stage_routing.wasm, sticky hash of x-user-id (sets x-stage)",
            gateway: base().wasm(WasmFilter::new(
                "stage_routing",
                wasm("stage_routing"),
                stage_config(false),
            )),
            path: "/",
            headers: vec![("x-user-id", base_user())],
            reference: None,
        },
        Row {
            name: "stage_routing.wasm, same, base stage without the header (no header write)",
            gateway: base().wasm(WasmFilter::new("stage_routing", wasm("stage_routing"), {
                let mut c = stage_config(false);
                c["header_on_base_stage"] = json!(false);
                c
            })),
            path: "/",
            headers: vec![("x-user-id", base_user())],
            reference: None,
        },
        Row {
            name: "stage_routing.wasm, same with the pin cookie (Set-Cookie on the response)",
            gateway: base().wasm(WasmFilter::new(
                "stage_routing",
                wasm("stage_routing"),
                stage_config(true),
            )),
            path: "/",
            headers: vec![("x-user-id", base_user())],
            reference: None,
        },
        Row {
            name: SAME_REQUEST,
            gateway: base(),
            path: combined_path(),
            headers: combined_headers(),
            reference: None,
        },
        Row {
            name: CHAIN,
            gateway: base()
                .wasm(WasmFilter::new(
                    "bot_detection",
                    wasm("bot_detection"),
                    json!({}),
                ))
                .wasm(WasmFilter::new(
                    "cdn_signing",
                    wasm("cdn_signing"),
                    cdn_config(),
                ))
                .wasm(WasmFilter::new(
                    "rate_limit",
                    wasm("rate_limit"),
                    combined_rate_limit(),
                ))
                .wasm(WasmFilter::new(
                    "stage_routing",
                    wasm("stage_routing"),
                    stage_config(false),
                )),
            path: combined_path(),
            headers: combined_headers(),
            reference: Some(SAME_REQUEST),
        },
        Row {
            name: EDGE,
            gateway: base().wasm(WasmFilter::new(
                "edge",
                wasm("edge"),
                json!({
                    "bot_detection": {},
                    "cdn_signing": cdn_config(),
                    "rate_limit": combined_rate_limit(),
                    "stage_routing": stage_config(false),
                }),
            )),
            path: combined_path(),
            headers: combined_headers(),
            reference: Some(SAME_REQUEST),
        },
        edge_only("edge.wasm, cdn_signing only", "cdn_signing", cdn_config()),
        edge_only("edge.wasm, bot_detection only", "bot_detection", json!({})),
        edge_only(
            "edge.wasm, rate_limit only",
            "rate_limit",
            combined_rate_limit(),
        ),
        edge_only(
            "edge.wasm, stage_routing only",
            "stage_routing",
            stage_config(false),
        ),
        // What the two request-header writes cost (each makes Envoy match the route again):
        // the same four features with token stripping off and no stage header on the base stage.
        {
            let mut cdn = cdn_config();
            cdn["routes"][0]["strip"] = json!(false);
            let mut stage = stage_config(false);
            stage["header_on_base_stage"] = json!(false);
            Row {
                name: "edge.wasm, all four, no request-header writes",
                gateway: base().wasm(WasmFilter::new(
                    "edge",
                    wasm("edge"),
                    json!({
                        "bot_detection": {},
                        "cdn_signing": cdn,
                        "rate_limit": combined_rate_limit(),
                        "stage_routing": stage,
                    }),
                )),
                path: combined_path(),
                headers: combined_headers(),
                reference: Some(SAME_REQUEST),
            }
        },
    ]
}

/// Where the bench's rate limit service listens (started with Redis when a global row runs).
const RLS_PORT: u16 = 18_091;
const RLS_REDIS_PORT: u16 = 16_391;

/// A global rule every request meets and none exceeds, asked of `edge-ratelimit` on loopback
/// (Redis behind it); `batch` hits per call.
fn global_row(name: &'static str, batch: u32) -> Row {
    let config = json!({
        "rules": [{"name": "api", "match": {"path_prefix": "/api/"},
                   "key": [{"type": "header", "name": "x-api-key"}],
                   "global": {"cluster": "rls", "domain": "bench", "timeout_ms": 200,
                              "batch": batch, "descriptor_keys": ["key"]}}]
    });
    Row {
        name,
        gateway: bench_gateway()
            .grpc_cluster("rls", "127.0.0.1", RLS_PORT)
            .wasm(WasmFilter::new(
                "rate_limit",
                edge_tests::wasm_path("rate_limit"),
                config,
            )),
        path: "/api/items",
        headers: vec![("x-api-key", "bench-client-1")],
        reference: None,
    }
}

/// Redis and `edge-ratelimit` as local processes, for the global rows; killed on drop.
struct Services(Vec<std::process::Child>);

impl Drop for Services {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn start_services(out: &std::path::Path) -> Result<Services> {
    let root = edge_tests::harness::workspace_root();
    let rls = root.join("target/release/edge-ratelimit");
    if !rls.is_file() {
        bail!("{} not found: run `make rls`", rls.display());
    }
    which("redis-server")?;
    std::fs::create_dir_all(out)?;
    let limits = out.join("bench-limits.yaml");
    std::fs::write(
        &limits,
        "domains:\n  - domain: bench\n    descriptors:\n      - key: key\n        rate_limit: {requests_per_unit: 1000000000, unit: second}\n",
    )?;
    let mut s = Services(Vec::new());
    s.0.push(
        Command::new("taskset")
            .args(["-c", "1", "redis-server", "--port"])
            .arg(RLS_REDIS_PORT.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting redis-server")?,
    );
    s.0.push(
        Command::new("taskset")
            .args(["-c", "1"])
            .arg(&rls)
            .arg("--config")
            .arg(&limits)
            .args(["--redis", &format!("redis://127.0.0.1:{RLS_REDIS_PORT}")])
            .args(["--listen", &format!("127.0.0.1:{RLS_PORT}")])
            .args(["--metrics", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting edge-ratelimit")?,
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    Ok(s)
}

/// edge.wasm with one section, on the combined request: what each feature costs inside it.
fn edge_only(name: &'static str, section: &str, config: serde_json::Value) -> Row {
    let mut c = json!({});
    c[section] = config;
    Row {
        name,
        gateway: bench_gateway().wasm(WasmFilter::new("edge", edge_tests::wasm_path("edge"), c)),
        path: combined_path(),
        headers: combined_headers(),
        reference: Some(SAME_REQUEST),
    }
}

/// The combined rows: the four features on one request, chained as four filters or in edge.wasm.
const SAME_REQUEST: &str = "no filter, same request";
const CHAIN: &str = "four filters chained (bot, cdn, rate_limit, stage)";
const EDGE: &str = "edge.wasm, all four (bot, cdn, rate_limit, stage)";

/// A browser fetching a video segment with a valid Akamai token, an API key and a user id that
/// the stage config puts on the base stage.
fn combined_path() -> &'static str {
    leak(format!("/videos/seg-1.ts?__token__={}", akamai_token()))
}

fn combined_headers() -> Vec<(&'static str, &'static str)> {
    let mut h = BROWSER_HEADERS.to_vec();
    h.push(("x-api-key", "bench-client-1"));
    h.push(("x-user-id", base_user()));
    h
}

/// A rule every request matches and none exceeds, keyed by the API key.
fn combined_rate_limit() -> serde_json::Value {
    json!({
        "rules": [{"name": "api", "key": [{"type": "header", "name": "x-api-key"}],
                   "requests_per_unit": 1_000_000_000u64, "unit": "second"}]
    })
}

const BENCH_AKAMAI_KEY: &str = "52a152a152a152a152a152a152a1";
const BENCH_GOOGLE_KEY: &str = "nZtRohdNF9m3cKM24IcK4w==";
/// 2100-01-01: the bench tokens never expire.
const BENCH_EXPIRES: u64 = 4_102_444_800;

fn cdn_config() -> serde_json::Value {
    json!({"routes": [
        {"name": "videos", "path_prefix": "/videos/", "verify": {"scheme": "akamai_edgeauth",
            "keys": [{"hex": BENCH_AKAMAI_KEY}]}},
        {"name": "g", "path_prefix": "/g/", "verify": {"scheme": "google_cdn",
            "keys": {"my-key": BENCH_GOOGLE_KEY}}}
    ]})
}

fn akamai_token() -> String {
    use cdn_signing::schemes::akamai;
    let key = akamai::decode_hex_key(BENCH_AKAMAI_KEY).unwrap_or_default();
    akamai::generate(
        &key,
        akamai::Algorithm::Sha256,
        &akamai::TokenSpec {
            exp: BENCH_EXPIRES,
            acl: Some("/videos/*"),
            ..Default::default()
        },
    )
}

fn google_signed_path() -> String {
    use cdn_signing::schemes::google;
    let key = google::decode_key(BENCH_GOOGLE_KEY).unwrap_or_default();
    let url = google::sign_url(
        "http://cdn.example/g/seg-1.ts",
        "my-key",
        &key,
        BENCH_EXPIRES,
    );
    url.trim_start_matches("http://cdn.example").to_string()
}

/// A typical rollout: 90/10 by a user-id header (client IP as fallback), QA overrides by header
/// and query parameter, a host allowlist; optionally the pin cookie.
fn stage_config(pin: bool) -> serde_json::Value {
    let mut c = json!({
        "stages": [{"name": "prod", "weight": 90}, {"name": "canary", "weight": 10}],
        "salt": "bench",
        "sticky_key": [{"type": "header", "name": "x-user-id"}, {"type": "client_ip"}],
        "overrides": {"header": "x-stage-override", "query": "stage"},
        "allowlists": [{"stage": "canary", "hosts": ["canary.example"]}]
    });
    if pin {
        c["pin_cookie"] = json!({"name": "stage", "secret": "bench-pin-secret-0123456789"});
    }
    c
}

/// A user id that `stage_config` puts on the base stage (`prod`) by hash: the common case.
fn base_user() -> &'static str {
    let cfg =
        stage_routing::config::Config::from_json(stage_config(false).to_string().as_bytes()).ok();
    let on_base = |id: &str| {
        cfg.as_ref()
            .is_some_and(|c| stage_routing::assign::stage_for_header(c, "x-user-id", id) == c.base)
    };
    let id = (0..100)
        .map(|i| format!("user-{i}"))
        .find(|id| on_base(id))
        .unwrap_or_else(|| "user-0".into());
    leak(id)
}

/// Rows hold `&'static str` paths; the few built at start-up live for the whole run anyway.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// What a desktop Chrome sends on a page load over plain HTTP.
const BROWSER_HEADERS: &[(&str, &str)] = &[
    ("user-agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
    ("accept-language", "en-US,en;q=0.9"),
    ("accept-encoding", "gzip, deflate"),
    ("upgrade-insecure-requests", "1"),
    ("cookie", "session=4f2a9c0e1b7d4e3f8a6b5c4d3e2f1a0b; prefs=dark"),
];

/// A rule every request matches and none exceeds: the cost of the common, allowed path (bucket
/// in shared data, leased per worker at this rate; `RateLimit` headers on the response).
fn rate_limit_allow_path(key: &str, headers: bool) -> serde_json::Value {
    let key = match key {
        "header" => json!({"type": "header", "name": "x-api-key"}),
        _ => json!({"type": "client_ip"}),
    };
    json!({
        "rate_limit_headers": {"ietf_draft": headers, "on_allowed": headers},
        "rules": [{"name": "api", "match": {"path_prefix": "/api/"}, "key": [key],
                   "requests_per_unit": 1_000_000_000u64, "unit": "second"}]
    })
}

struct Settings {
    rounds: usize,
    duration: u64,
    connections: u64,
    warmup: u64,
    out: PathBuf,
}

fn env_num(key: &str, default: u64) -> Result<u64> {
    match std::env::var(key) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .with_context(|| format!("{key}={v:?} is not a number")),
        _ => Ok(default),
    }
}

/// One wrk measurement.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    non_2xx: u64,
    /// Requests wrk completed.
    requests: u64,
    /// Envoy's CPU time (all threads) per request, in µs (NaN if unknown).
    cpu_us: f64,
}

/// Nanoseconds all of a process's threads have run on a CPU (`/proc/<pid>/task/*/schedstat`).
fn cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = t.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn pid_of(gw: &RunningGateway) -> Option<u32> {
    gw.run_id.strip_prefix("pid-")?.parse().ok()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let s = Settings {
        rounds: env_num("BENCH_ROUNDS", 5)?.max(1) as usize,
        duration: env_num("BENCH_DURATION", 4)?.max(1),
        connections: env_num("BENCH_CONNECTIONS", 32)?.max(1),
        warmup: env_num("BENCH_WARMUP", 2)?,
        out: std::env::var_os("BENCH_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| edge_tests::harness::workspace_root().join("bench/results")),
    };
    which("wrk")?;
    which("taskset")?;
    // BENCH_ROWS=a,b keeps the reference rows and those whose name contains a or b.
    let only = std::env::var("BENCH_ROWS").unwrap_or_default();
    let rows: Vec<Row> = rows()
        .into_iter()
        .filter(|r| {
            only.is_empty()
                || r.name == FLOOR
                || r.name == WASM_FLOOR
                || only.split(',').any(|w| !w.is_empty() && r.name.contains(w))
        })
        .collect();
    eprintln!(
        "bench: {} configurations x {} rounds x {} s, wrk -c{} pinned to CPU 1, Envoy --concurrency 1 pinned to CPU 0",
        rows.len(),
        s.rounds,
        s.duration,
        s.connections
    );

    let _services = if rows.iter().any(|r| r.name.contains("global rule")) {
        Some(start_services(&std::env::temp_dir().join("edge-bench")).await?)
    } else {
        None
    };
    let mut gateways: Vec<RunningGateway> = Vec::new();
    for r in &rows {
        let gw = r
            .gateway
            .clone()
            .start()
            .await
            .with_context(|| format!("starting Envoy for row {:?}", r.name))?;
        gateways.push(gw);
    }
    for (r, gw) in rows.iter().zip(&gateways) {
        let probe = gw.get(r.path, &r.headers).await?;
        if probe.status != 200 {
            bail!(
                "row {:?}: probe answered {} {}",
                r.name,
                probe.status,
                probe.text()
            );
        }
        if s.warmup > 0 {
            wrk(&gw.url, r, s.warmup, s.connections)?;
        }
    }

    // samples[round][row]
    // Each round starts one row later than the previous (A B C D, B C D A, ...), so no row
    // always runs first or right after the same neighbour.
    let mut samples: Vec<Vec<Sample>> = Vec::new();
    for round in 0..s.rounds {
        let mut this: Vec<Option<Sample>> = vec![None; rows.len()];
        for k in 0..rows.len() {
            let i = (round + k) % rows.len();
            let (r, gw) = (&rows[i], &gateways[i]);
            let pid = pid_of(gw);
            let before = pid.and_then(cpu_ns);
            let mut sample = wrk(&gw.url, r, s.duration, s.connections)?;
            let after = pid.and_then(cpu_ns);
            sample.cpu_us = match (before, after) {
                (Some(b), Some(a)) if sample.requests > 0 => {
                    a.saturating_sub(b) as f64 / 1e3 / sample.requests as f64
                }
                _ => f64::NAN,
            };
            eprintln!(
                "round {}/{} {:<40} {:>10.0} req/s  p50 {:>7.1} us  p99 {:>7.1} us  cpu {:>6.2} us/req",
                round + 1,
                s.rounds,
                r.name,
                sample.rps,
                sample.p50_us,
                sample.p99_us,
                sample.cpu_us
            );
            this[i] = Some(sample);
        }
        samples.push(this.into_iter().flatten().collect());
    }
    drop(gateways);

    let table = summarize(&rows, &samples)?;
    let md = render_markdown(&s, &rows, &samples, &table);
    std::fs::create_dir_all(&s.out)?;
    let md_path = s.out.join("latest.md");
    std::fs::write(&md_path, &md)?;
    let png_path = s.out.join("latest.png");
    chart::render(&png_path, &table, s.rounds)?;
    println!("{md}");
    eprintln!("wrote {} and {}", md_path.display(), png_path.display());
    Ok(())
}

/// The reported figures of one row (medians over rounds).
pub struct Summary {
    pub name: String,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Microseconds added per request against the no-filter row.
    pub added_us: f64,
    /// Microseconds added per request against the no-op Wasm row.
    pub vs_wasm_us: f64,
    /// Envoy's CPU time per request (all threads), and what the row adds to its reference's.
    pub cpu_us: f64,
    pub added_cpu_us: f64,
    pub non_2xx: u64,
}

fn summarize(rows: &[Row], samples: &[Vec<Sample>]) -> Result<Vec<Summary>> {
    let idx = |name: &str| {
        rows.iter()
            .position(|r| r.name == name)
            .with_context(|| format!("no row {name:?}"))
    };
    let (floor, wasm_floor) = (idx(FLOOR)?, idx(WASM_FLOOR)?);
    let per_req = |s: &Sample| 1e6 / s.rps.max(1e-9);
    let refs: Vec<usize> = rows
        .iter()
        .map(|r| r.reference.map_or(Ok(floor), idx))
        .collect::<Result<_>>()?;
    Ok(rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let floor = refs[i];
            let col = |f: &dyn Fn(&Vec<Sample>) -> f64| median(samples.iter().map(f).collect());
            Summary {
                name: r.name.to_string(),
                rps: col(&|s| s[i].rps),
                p50_us: col(&|s| s[i].p50_us),
                p99_us: col(&|s| s[i].p99_us),
                added_us: col(&|s| per_req(&s[i]) - per_req(&s[floor])),
                vs_wasm_us: col(&|s| per_req(&s[i]) - per_req(&s[wasm_floor])),
                cpu_us: col(&|s| s[i].cpu_us),
                added_cpu_us: col(&|s| s[i].cpu_us - s[floor].cpu_us),
                non_2xx: samples.iter().map(|s| s[i].non_2xx).sum(),
            }
        })
        .collect())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn render_markdown(s: &Settings, rows: &[Row], samples: &[Vec<Sample>], t: &[Summary]) -> String {
    use std::fmt::Write;
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmark: added cost per request in Envoy\n");
    let _ = writeln!(
        md,
        "Envoy {} with one worker (`--concurrency 1`) pinned to CPU 0, answering from a `direct_response` \
         route; `wrk -t1 -c{} -d{}s` pinned to CPU 1; {} interleaved rounds (row order rotated each round) \
         after a {} s warm-up per row; \
         medians over rounds. *Added µs/request* = `1e6/rps(row) − 1e6/rps(reference)` within a round: \
         the worker is saturated, so 1/throughput is its CPU time per request. Machine: {} CPUs. \
         Compare rows of one run only (ratios), never across machines.\n",
        envoy_version(),
        s.connections,
        s.duration,
        s.rounds,
        s.warmup,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let _ = writeln!(
        md,
        "| configuration | requests/s | p50 (µs) | p99 (µs) | added µs/request vs no filter | vs no-op Wasm | Envoy CPU µs/request | added CPU µs/request | non-2xx |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in t {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.0} | {:+.2} | {:+.2} | {:.2} | {:+.2} | {} |",
            r.name,
            r.rps,
            r.p50_us,
            r.p99_us,
            r.added_us,
            r.vs_wasm_us,
            r.cpu_us,
            r.added_cpu_us,
            r.non_2xx
        );
    }
    let _ = writeln!(
        md,
        "\n*Envoy CPU µs/request*: the Envoy process's CPU time over the run (all threads, from \
         `/proc/<pid>/task/*/schedstat`) divided by the requests wrk completed: unlike throughput, \
         it does not move when the machine steals time from the worker. *Added CPU* subtracts the \
         reference row's, within each round."
    );
    let _ = writeln!(
        md,
        "\nThe two combined rows are measured against `{SAME_REQUEST}` (the same request through \
         Envoy without filters), every other row against `{FLOOR}`."
    );
    let find = |n: &str| t.iter().find(|r| r.name == n);
    if let (Some(chain), Some(edge), Some(noop)) = (find(CHAIN), find(EDGE), find(WASM_FLOOR)) {
        for (what, e, c, n) in [
            ("throughput", edge.added_us, chain.added_us, noop.added_us),
            (
                "CPU time",
                edge.added_cpu_us,
                chain.added_cpu_us,
                noop.added_cpu_us,
            ),
        ] {
            let _ = writeln!(
                md,
                "\n**edge.wasm ({what}):** {e:.2} µs added vs the chain's {c:.2} µs, a ratio of {:.2}; \
                 vs the no-op Wasm filter's {n:.2} µs, a ratio of {:.2}.",
                e / c,
                e / n
            );
        }
    }
    let _ = writeln!(md, "\nRequests/s per round (spread check):\n");
    let _ = write!(md, "| configuration |");
    for i in 0..samples.len() {
        let _ = write!(md, " round {} |", i + 1);
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "|---|{}", "---:|".repeat(samples.len()));
    for (i, r) in rows.iter().enumerate() {
        let _ = write!(md, "| {} |", r.name);
        for round in samples {
            let _ = write!(md, " {:.0} |", round[i].rps);
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "\nChart: `latest.png`. Regenerate with `make bench`.");
    md
}

fn wrk(url: &str, row: &Row, seconds: u64, connections: u64) -> Result<Sample> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1", "wrk", "-t1", "--latency"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--timeout")
        .arg("5s");
    for (k, v) in &row.headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    cmd.arg(format!("{url}{}", row.path));
    let out = cmd.output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed for {:?}: {}{}",
            row.name,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("parsing wrk output for {:?}:\n{text}", row.name))
}

fn parse_wrk(text: &str) -> Result<Sample> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut non_2xx = 0;
    let mut requests = 0;
    for line in text.lines().map(str::trim) {
        let mut it = line.split_whitespace();
        match (it.next(), it.next()) {
            (Some("Requests/sec:"), Some(v)) => rps = v.parse::<f64>().ok(),
            (Some("50%"), Some(v)) => p50 = parse_duration_us(v),
            (Some("99%"), Some(v)) => p99 = parse_duration_us(v),
            _ => {}
        }
        if let (Some(n), Some("requests")) = (
            line.split_whitespace().next(),
            line.split_whitespace().nth(1),
        ) {
            requests = n.parse().unwrap_or(0);
        }
        if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = n.trim().parse().unwrap_or(0);
        }
    }
    match (rps, p50, p99) {
        (Some(rps), Some(p50_us), Some(p99_us)) => Ok(Sample {
            rps,
            p50_us,
            p99_us,
            non_2xx,
            requests,
            cpu_us: f64::NAN,
        }),
        _ => bail!("missing Requests/sec or latency percentiles"),
    }
}

/// wrk prints `812.00us`, `1.23ms`, `2.00s`.
fn parse_duration_us(v: &str) -> Option<f64> {
    let (num, mult) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|x| x * mult)
}

fn which(tool: &str) -> Result<()> {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        bail!("{tool} is not installed: run `make setup`");
    }
    Ok(())
}

fn envoy_version() -> String {
    edge_tests::harness::envoy_binary()
        .ok()
        .and_then(|b| Command::new(b).arg("--version").output().ok())
        .and_then(|o| {
            // "<path>  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
            let t = String::from_utf8_lossy(&o.stdout).into_owned();
            let v = t
                .split("version:")
                .nth(1)?
                .trim()
                .split('/')
                .nth(1)?
                .to_string();
            Some(v)
        })
        .unwrap_or_else(|| "(unknown version)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 5s test @ http://127.0.0.1:1/\n  1 threads and 32 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   812.00us  100.00us   5.00ms   90.00%\n  Latency Distribution\n     50%  790.00us\n     75%  850.00us\n     90%  900.00us\n     99%    1.23ms\n  200000 requests in 5.00s, 20.00MB read\n  Non-2xx or 3xx responses: 7\nRequests/sec:  39999.50\nTransfer/sec:      4.00MB\n";
        let s = parse_wrk(out).unwrap();
        assert_eq!(s.rps, 39999.5);
        assert_eq!(s.p50_us, 790.0);
        assert_eq!(s.p99_us, 1230.0);
        assert_eq!(s.non_2xx, 7);
        assert!(parse_wrk("garbage").is_err());
        assert_eq!(parse_duration_us("2.00s"), Some(2e6));
        assert_eq!(parse_duration_us("2.0x"), None);
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
