//! Global rate limiting across a fleet, in containers on one Docker network: Redis (`FROM
//! scratch`, Debian's redis-server), `edge-ratelimit`, and three Envoys (2 workers each) running
//! rate_limit.wasm with global rules. Load is spread over the three Envoys on one hot key.
//!
//! One fleet serves every scenario in turn (each on its own key): exactness, batching, Redis
//! stopped and started mid-load, the RLS stopped and started mid-load.

mod common;

use std::time::{Duration, Instant};

use edge_tests::client::RequestSpec;
use edge_tests::harness::{ensure_local_image, split_image, CONTAINER_LABEL};
use edge_tests::{Gateway, Load, LoadReport, RunningGateway, Runtime};
use serde_json::json;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

const RATE: f64 = 100.0;
const BURST: f64 = 100.0;
const TIMEOUT_MS: u64 = 250;
const FALLBACK_PER_S: f64 = 30.0;

const LIMITS: &str = r#"
domains:
  - domain: fleet
    descriptors:
      - key: key
        rate_limit: {requests_per_unit: 100, unit: second, burst: 100}
"#;

fn filter_config() -> serde_json::Value {
    let global = |batch: u32| {
        json!({"cluster": "rls", "domain": "fleet", "timeout_ms": TIMEOUT_MS, "batch": batch,
               "fallback": {"requests_per_unit": FALLBACK_PER_S as u64, "unit": "second"},
               "circuit_breaker": {"failures": 3, "open_ms": 500},
               "descriptor_keys": ["key"]})
    };
    json!({"rules": [
        {"name": "batched", "match": {"headers": [{"name": "x-mode", "equals": "batch"}]},
         "key": [{"type": "header", "name": "x-key"}], "global": global(10)},
        {"name": "fleet", "key": [{"type": "header", "name": "x-key"}], "global": global(1)}
    ]})
}

struct Fleet {
    envoys: Vec<RunningGateway>,
    rls: ContainerAsync<GenericImage>,
    redis: ContainerAsync<GenericImage>,
}

async fn start_fleet() -> Fleet {
    assert_eq!(
        common::runtime(),
        Runtime::Container,
        "the fleet test runs in containers (a Docker engine is required)"
    );
    let rls_image = std::env::var("RLS_IMAGE").unwrap_or_else(|_| "edge-ratelimit:latest".into());
    let redis_image = std::env::var("REDIS_IMAGE").unwrap_or_else(|_| "edge-redis:latest".into());
    for i in [&rls_image, &redis_image] {
        ensure_local_image(i).unwrap_or_else(|e| panic!("{e:#}"));
    }
    // Named like the harness's networks, so `make sweep` removes a leftover one.
    let prefix = format!("edge-{}-{}", std::process::id(), 9_000 + rand_suffix());
    let net = format!("{prefix}-net");
    let (repo, tag) = split_image(&redis_image);
    let redis = GenericImage::new(repo, tag)
        .with_exposed_port(6379.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
        .with_cmd([
            "--port",
            "6379",
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/tmp",
        ])
        .with_container_name(format!("{prefix}-redis"))
        .with_network(&net)
        .with_label(CONTAINER_LABEL, &prefix)
        .start()
        .await
        .expect("starting redis");
    let (repo, tag) = split_image(&rls_image);
    let rls = GenericImage::new(repo, tag)
        .with_exposed_port(9102.tcp())
        .with_wait_for(WaitFor::message_on_stdout("edge-ratelimit starting"))
        .with_cmd([
            "--config",
            "/tmp/limits.yaml",
            "--redis",
            &format!("redis://{prefix}-redis:6379"),
            "--redis-timeout-ms",
            "50",
        ])
        .with_copy_to("/tmp/limits.yaml", LIMITS.as_bytes().to_vec())
        .with_container_name(format!("{prefix}-rls"))
        .with_network(&net)
        .with_label(CONTAINER_LABEL, &prefix)
        .start()
        .await
        .expect("starting edge-ratelimit");
    let mut envoys = Vec::new();
    for _ in 0..3 {
        envoys.push(
            Gateway::new()
                .runtime(Runtime::Container)
                .network(&net)
                .grpc_cluster("rls", &format!("{prefix}-rls"), 8081)
                .wasm(common::filter("rate_limit", filter_config()))
                .workers(2)
                .start()
                .await
                .unwrap_or_else(|e| panic!("{e:#}")),
        );
    }
    Fleet { envoys, rls, redis }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_micros()) % 900)
}

/// Load on one key over the three Envoys for `secs`.
async fn load(f: &Fleet, key: &str, mode: &str, secs: u64) -> Vec<LoadReport> {
    let runs = f.envoys.iter().map(|gw| {
        let (key, mode) = (key.to_string(), mode.to_string());
        let l = Load::new(&gw.url)
            .connections(8)
            .max_requests(u64::MAX)
            .max_duration(Duration::from_secs(secs))
            .request(move |_| {
                RequestSpec::get("/")
                    .header("x-key", &key)
                    .header("x-mode", &mode)
            });
        async move { l.run().await.unwrap_or_else(|e| panic!("{e:#}")) }
    });
    futures::future::join_all(runs).await
}

async fn stat_sum(f: &Fleet, name: &str) -> u64 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut n = 0;
    for gw in &f.envoys {
        n += gw
            .stat(&format!("wasmcustom.rate_limit.{name}"))
            .await
            .ok()
            .flatten()
            .unwrap_or(0);
    }
    n
}

fn totals(reports: &[LoadReport]) -> (u64, u64, u64, f64, Duration) {
    let ok: u64 = reports.iter().map(|r| r.count(200)).sum();
    let all: u64 = reports.iter().map(|r| r.completed).sum();
    let server_errors: u64 = reports
        .iter()
        .flat_map(|r| r.statuses.iter())
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| n)
        .sum();
    let span = reports
        .iter()
        .map(|r| r.send_span().as_secs_f64())
        .fold(0.0, f64::max);
    let worst = reports
        .iter()
        .map(|r| r.latency(1.0))
        .max()
        .unwrap_or_default();
    (ok, all, server_errors, span, worst)
}

/// Admitted within 3% of `burst + rate × span`, and prints the `fleet:` line. `ahead`: hits a
/// batching rule may hold unspent when the load stops (batch × Envoys), which the lower bound
/// allows for (the documented bound: never more than the service's bucket, at most that many
/// fewer).
async fn check_exact(f: &Fleet, rule: &str, reports: &[LoadReport], ahead: f64) -> f64 {
    let (ok, all, server_errors, span, worst) = totals(reports);
    let allowed = BURST + RATE * span;
    let ratio = ok as f64 / allowed;
    let calls = stat_sum(f, &format!("{rule}.rls.ok")).await
        + stat_sum(f, &format!("{rule}.rls.over_limit")).await;
    let failures = stat_sum(f, &format!("{rule}.rls.fallback")).await;
    let per_request = calls as f64 / all.max(1) as f64;
    println!(
        "fleet: admitted {ok} of allowed {allowed:.0} (ratio {ratio:.3}), rls calls per request {per_request:.3}"
    );
    eprintln!(
        "  [{rule}] {all} requests in {span:.1} s, worst latency {worst:?}, fallback decisions {failures}"
    );
    assert_eq!(server_errors, 0, "no 5xx");
    assert!(
        all as f64 > 2.0 * allowed,
        "load must be well above the limit: {all} requests"
    );
    let low = (allowed - ahead) * 0.97;
    assert!(
        ratio <= 1.03 && ok as f64 >= low,
        "[{rule}] admitted {ok}, allowed {allowed:.0}: ratio {ratio:.3} is not within 3% (lowest accepted {low:.0})"
    );
    per_request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleet_limits_hold_across_envoys_and_survive_outages() {
    let f = start_fleet().await;

    // 1. Exactness: one RLS call per request at most, a fleet-wide bucket.
    let reports = load(&f, "hot-exact", "single", 10).await;
    check_exact(&f, "fleet", &reports, 0.0).await;

    // 2. Batching: hits taken 10 at a time, far fewer calls, still within the bound.
    let reports = load(&f, "hot-batch", "batch", 10).await;
    let per_request = check_exact(&f, "batched", &reports, 10.0 * 3.0).await;
    assert!(
        per_request <= 0.1,
        "with batching, rls calls per request {per_request:.3} > 0.1"
    );

    // 3. Redis stopped mid-load, then started again.
    outage(&f, "hot-redis", &f.redis, "redis").await;

    // 4. The RLS stopped mid-load, then started again.
    outage(&f, "hot-rls", &f.rls, "rls").await;
}

/// Stops `c` 3 s into an 9 s load and starts it again at 6 s: no 5xx, no request waits past the
/// timeout (plus slack), the fallback bucket decided meanwhile within its own bound, and
/// global answers resume afterwards without restarting Envoy.
async fn outage(f: &Fleet, key: &str, c: &ContainerAsync<GenericImage>, what: &str) {
    let fallback_before = stat_sum(f, "fleet.rls.fallback").await;
    let ok_before = stat_sum(f, "fleet.rls.ok").await;
    let started = Instant::now();
    let chaos = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        c.stop().await.expect("stopping");
        let stopped = started.elapsed();
        tokio::time::sleep(Duration::from_secs(3)).await;
        c.start().await.expect("starting again");
        (stopped, started.elapsed())
    };
    let (reports, (stopped_at, restarted_at)) = tokio::join!(load(f, key, "single", 9), chaos);
    let (ok, all, server_errors, span, worst) = totals(&reports);
    let fallback = stat_sum(f, "fleet.rls.fallback").await - fallback_before;
    let outage = (restarted_at - stopped_at).as_secs_f64();
    // Global bucket outside the outage, each Envoy's fallback bucket (burst + rate × t) inside
    // it, plus the time the breaker needs to notice (a few timeouts).
    let bound = BURST + RATE * span + 3.0 * (FALLBACK_PER_S + FALLBACK_PER_S * (outage + 1.0));
    eprintln!(
        "{what} outage: {all} requests, {ok} admitted (bound {bound:.0}), {fallback} fallback decisions, worst latency {worst:?}, 5xx {server_errors}"
    );
    assert_eq!(server_errors, 0, "{what} outage: no 5xx");
    assert!(fallback > 0, "{what} outage: the fallback bucket decided");
    assert!(
        (ok as f64) <= bound,
        "{what} outage: admitted {ok} > bound {bound:.0}"
    );
    let slack = Duration::from_millis(TIMEOUT_MS + 1_000);
    assert!(worst <= slack, "{what} outage: a request waited {worst:?}");
    // Global answers resume (Envoy re-resolves the RLS, Redis reconnects) without a restart.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0u64;
    loop {
        let _ = load_once(f, &format!("{key}-after-{n}")).await;
        n += 1;
        if stat_sum(f, "fleet.rls.ok").await > ok_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what} outage: no global answer 20 s after the restart"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn load_once(f: &Fleet, key: &str) -> Vec<LoadReport> {
    let runs = f.envoys.iter().map(|gw| {
        let key = key.to_string();
        let l = Load::new(&gw.url)
            .connections(1)
            .max_requests(3)
            .max_duration(Duration::from_secs(5))
            .request(move |_| RequestSpec::get("/").header("x-key", &key));
        async move { l.run().await.unwrap_or_else(|e| panic!("{e:#}")) }
    });
    futures::future::join_all(runs).await
}

/// A rate limit service that answers wrongly: two statuses for one descriptor (value `two`), an
/// `UNKNOWN` code (`unknown`), no status at all (`none`).
struct BadService;

impl edge_ratelimit::service::Handler for BadService {
    fn answer(
        self: std::sync::Arc<Self>,
        req: edge_common::rls::RateLimitRequest,
    ) -> tonic::codegen::BoxFuture<edge_common::rls::RateLimitResponse, tonic::Status> {
        use edge_common::rls::{Code, DescriptorStatus, RateLimitResponse};
        let value = req
            .descriptors
            .first()
            .and_then(|d| d.entries.first())
            .map(|e| e.value.clone())
            .unwrap_or_default();
        let ok = DescriptorStatus {
            code: Code::Ok as i32,
            ..Default::default()
        };
        let r = match value.as_str() {
            "two" => RateLimitResponse {
                overall_code: Code::Ok as i32,
                statuses: vec![ok.clone(), ok],
            },
            "unknown" => RateLimitResponse {
                overall_code: Code::Unknown as i32,
                statuses: vec![DescriptorStatus::default()],
            },
            "none" => RateLimitResponse {
                overall_code: Code::Ok as i32,
                statuses: vec![],
            },
            _ => RateLimitResponse {
                overall_code: Code::Ok as i32,
                statuses: vec![ok],
            },
        };
        Box::pin(async move { Ok(r) })
    }
}

/// Bad answers from the service: each counted as `failure.bad_answer`, and the failure mode
/// (`deny` here, no fallback) applies. The service is a local process, so Envoy runs as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_answers_are_counted_and_the_failure_mode_applies() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(edge_ratelimit::service::RlsServer(std::sync::Arc::new(
                BadService,
            )))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let config = json!({"rules": [{"name": "fleet", "key": [{"type": "header", "name": "x-key"}],
        "global": {"cluster": "rls", "domain": "fleet", "timeout_ms": 500, "failure_mode": "deny",
                   "circuit_breaker": {"failures": 100}}}]});
    let gw = Gateway::new()
        .runtime(Runtime::Process)
        .grpc_cluster("rls", "127.0.0.1", port)
        .wasm(common::filter("rate_limit", config))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let get = |key: &'static str| {
        let url = gw.url.clone();
        async move {
            edge_tests::client::send(
                &url,
                &RequestSpec::get("/").header("x-key", key),
                Duration::from_secs(5),
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(get("good").await.status, 200, "a good answer lets through");
    for key in ["two", "unknown", "none"] {
        let r = get(key).await;
        assert_eq!(r.status, 429, "{key}: failure_mode deny");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stat = |name: &str| {
        let gw = &gw;
        let name = format!("wasmcustom.rate_limit.fleet.{name}");
        async move { gw.stat(&name).await.ok().flatten() }
    };
    assert_eq!(stat("rls.failure.bad_answer").await, Some(3));
    assert_eq!(stat("rls.ok").await, Some(1));
    assert_eq!(stat("limited").await, Some(3));
    server.abort();
}
