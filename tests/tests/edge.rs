//! edge.wasm in real Envoy (`--concurrency 4`), under load: the four features in one pass, with
//! decisions shared in process. An HTTP library is limited at its own rate by its bot category,
//! canary users share their stage's quota and land on the canary upstream, an impersonating
//! "Googlebot" is blocked by bot detection and never reaches the limiter, and prod users pass.
//! Decisions are explained in the access log through filter state. (Every single feature's own
//! behaviour tests also run against edge.wasm: `EDGE_SHAPE=edge`.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use edge_tests::client::RequestSpec;
use edge_tests::{Gateway, Load, RunningGateway, WasmFilter};
use serde_json::json;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

fn config() -> serde_json::Value {
    json!({
        "bot_detection": {
            "verified_bots": [{"name": "Googlebot", "user_agent_contains": ["googlebot"], "cidrs": ["66.249.64.0/19"]}],
            "policy": [{"categories": ["scanner", "impersonator"], "action": "block"}],
            "default_action": "allow"
        },
        "rate_limit": {"rules": [
            {"name": "crawlers", "match": {"bot_categories": ["search_engine"], "verified_bot": true}, "unlimited": true},
            {"name": "bots", "match": {"bot_categories": ["http_library", "unknown_bot"]},
             "key": [{"type": "client_ip"}], "requests_per_unit": 20, "unit": "hour", "burst": 20},
            {"name": "canary", "match": {"stages": ["canary"]}, "key": [{"type": "stage"}],
             "requests_per_unit": 30, "unit": "hour", "burst": 30},
            {"name": "users", "key": [{"type": "header", "name": "x-user-id"}],
             "requests_per_unit": 1000, "unit": "second"}
        ]},
        "stage_routing": {
            "stages": [{"name": "prod", "weight": 50}, {"name": "canary", "weight": 50}],
            "sticky_key": [{"type": "header", "name": "x-user-id"}]
        }
    })
}

async fn gateway() -> RunningGateway {
    Gateway::new()
        .runtime(common::runtime())
        .wasm(WasmFilter::new("edge", common::wasm("edge"), config()))
        .echo_cluster("prod")
        .echo_cluster("canary")
        .route_header("x-stage", "canary", "canary")
        .workers(4)
        .xff_num_trusted_hops(1)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The stage the filter gives `id` (its own assignment logic, as the test expects it).
fn stage_of(id: &str) -> usize {
    let cfg =
        stage_routing::config::Config::from_json(config()["stage_routing"].to_string().as_bytes())
            .unwrap();
    stage_routing::assign::stage_for_header(&cfg, "x-user-id", id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_stages_and_limits_in_one_pass_under_load() {
    let gw = gateway().await;
    let canary: Arc<Vec<String>> = Arc::new(
        (0..)
            .map(|i| format!("c{i}"))
            .filter(|id| stage_of(id) == 1)
            .take(8)
            .collect(),
    );
    let prod: Arc<Vec<String>> = Arc::new(
        (0..)
            .map(|i| format!("p{i}"))
            .filter(|id| stage_of(id) == 0)
            .take(8)
            .collect(),
    );
    let (c2, p2) = (canary.clone(), prod.clone());
    const N: u64 = 800;
    let report = Load::new(&gw.url)
        .connections(32)
        .max_requests(N)
        .max_duration(Duration::from_secs(60))
        .request(move |i| {
            let r = RequestSpec::get("/x")
                .header("accept", "*/*")
                .header("accept-language", "en");
            let pick = |v: &Vec<String>| v[(i / 4) as usize % v.len()].clone();
            match i % 4 {
                0 => r
                    .header("user-agent", "python-requests/2.31")
                    .header("x-forwarded-for", "203.0.113.5"),
                1 => r
                    .header("user-agent", GOOGLEBOT)
                    .header("x-forwarded-for", "203.0.113.9"),
                2 => r
                    .header("user-agent", CHROME)
                    .header("x-user-id", &pick(&c2))
                    .header("x-forwarded-for", "198.51.100.2"),
                _ => r
                    .header("user-agent", CHROME)
                    .header("x-user-id", &pick(&p2))
                    .header("x-forwarded-for", "198.51.100.3"),
            }
        })
        .check(|i, _, reply| {
            let echo = reply.header("x-echo-name");
            let ok = match (i % 4, reply.status) {
                (0, 200) | (3, 200) => echo == Some("prod"),
                (0, 429) | (2, 429) => echo.is_none(),
                (1, 403) => echo.is_none(),
                (2, 200) => echo == Some("canary"),
                _ => false,
            };
            if ok {
                Ok(())
            } else {
                Err(format!("request {i}: {} from {echo:?}", reply.status))
            }
        })
        .run()
        .await
        .unwrap();
    eprintln!("{report}");
    assert_eq!(
        (report.completed, report.check_failures),
        (N, 0),
        "{report}"
    );
    // Exact across 4 workers: 20 for the HTTP library's client address, 30 for the canary stage.
    assert_eq!(report.count(200), 20 + 30 + N / 4, "{report}");
    assert_eq!(report.count(403), N / 4, "{report}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stat = |n: &str| {
        let gw = &gw;
        let n = n.to_string();
        async move {
            gw.stat(&format!("wasmcustom.{n}"))
                .await
                .unwrap()
                .unwrap_or(0)
        }
    };
    assert_eq!(stat("rate_limit.bots.allowed").await, 20);
    assert_eq!(stat("rate_limit.bots.limited").await, N / 4 - 20);
    assert_eq!(stat("rate_limit.canary.allowed").await, 30);
    assert_eq!(stat("rate_limit.canary.limited").await, N / 4 - 30);
    assert_eq!(stat("rate_limit.users.allowed").await, N / 4);
    // The blocked impersonators never reached the limiter.
    assert_eq!(stat("bot_detection.action.block").await, N / 4);
    assert_eq!(stat("bot_detection.category.impersonator").await, N / 4);
    assert_eq!(stat("stage_routing.stage.canary.requests").await, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_crawlers_are_unlimited_and_bad_sections_are_refused() {
    let gw = gateway().await;
    for _ in 0..40 {
        let r = gw
            .get(
                "/",
                &[
                    ("user-agent", GOOGLEBOT),
                    ("x-forwarded-for", "66.249.66.1"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    drop(gw);
    let cases = [
        (
            json!({"rate_limit": {"rules": [{"name": "b", "match": {"stages": ["canary"]}, "key": [{"type": "client_ip"}],
                                             "requests_per_unit": 1, "unit": "second"}]}}),
            "invalid configuration: rate_limit.rules[0].match.stages: needs edge.wasm with a `stage_routing` section",
        ),
        (
            json!({"bot_detecton": {}}),
            "invalid configuration: bot_detecton: unknown field `bot_detecton`",
        ),
        (
            json!({"cdn_signing": {"leeway_seconds": 7200, "routes": []}}),
            "invalid configuration: cdn_signing.leeway_seconds: 7200 is more than 3600",
        ),
    ];
    for (config, message) in cases {
        let err = Gateway::new()
            .runtime(common::runtime())
            .wasm(WasmFilter::new(
                "edge",
                common::wasm("edge"),
                config.clone(),
            ))
            .start()
            .await
            .err()
            .unwrap_or_else(|| panic!("Envoy accepted {config}"));
        let text = format!("{err:#}");
        assert!(text.contains(message), "expected {message:?} in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_explains_every_decision_from_filter_state() {
    let mut cfg = config();
    cfg["bot_detection"]["decision_filter_state"] = json!(true);
    let gw = Gateway::new()
        .runtime(common::runtime())
        .wasm(WasmFilter::new("edge", common::wasm("edge"), cfg))
        .echo_cluster("prod")
        .echo_cluster("canary")
        .route_header("x-stage", "canary", "canary")
        .workers(2)
        .xff_num_trusted_hops(1)
        .access_log("ACCESS %RESPONSE_CODE% %RESPONSE_CODE_DETAILS% [%FILTER_STATE(wasm.edge.decision:PLAIN)%]\n")
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let prod = (0..)
        .map(|i| format!("log-user-{i}"))
        .find(|u| stage_of(u) == 0)
        .unwrap();
    let browser = [
        ("user-agent", CHROME),
        ("accept", "text/html"),
        ("accept-language", "en"),
        ("x-user-id", prod.as_str()),
    ];
    assert_eq!(gw.get("/", &browser).await.unwrap().status, 200);
    let impostor = [
        ("user-agent", GOOGLEBOT),
        ("x-forwarded-for", "203.0.113.9"),
    ];
    assert_eq!(gw.get("/", &impostor).await.unwrap().status, 403);
    let want = [
        "ACCESS 200 via_upstream [bot=human/100 bot_action=allow stage=prod/hash rate_limit=users:allowed]".to_string(),
        "ACCESS 403 bot_detection.block.impersonator [bot=impersonator/0 bot_name=Googlebot bot_action=block]".to_string(),
    ];
    let start = std::time::Instant::now();
    loop {
        let logs = gw.logs();
        if want.iter().all(|w| logs.contains(w.as_str())) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "access log lines missing: {want:?}\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
