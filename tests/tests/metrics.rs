//! Labelled metrics: with the `stats_tags` of the demo bootstrap (`envoy/edge.yaml`, the same
//! recipe as the top-level README), `/stats/prometheus` shows one metric per counter with the
//! rule, stage, reason, category, action and route as labels, for every feature of edge.wasm.

mod common;

use std::time::{Duration, Instant};

use edge_tests::{Gateway, WasmFilter};
use serde_json::{json, Value};

/// The demo bootstrap's `stats_config`, as the README tells users to copy it.
fn demo_stats_config() -> Value {
    let path = edge_tests::harness::workspace_root().join("envoy/edge.yaml");
    let text = std::fs::read_to_string(&path).expect("envoy/edge.yaml");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("demo YAML");
    let json = serde_json::to_value(yaml).expect("YAML as JSON");
    json.get("stats_config")
        .cloned()
        .expect("stats_config in envoy/edge.yaml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_shows_rules_stages_categories_and_routes_as_labels() {
    let config = json!({
        "cdn_signing": {"routes": [{"name": "videos", "path_prefix": "/videos/",
            "verify": {"scheme": "akamai_edgeauth", "keys": [{"hex": "52a152a152a152a152a152a152a1"}]}}]},
        "bot_detection": {"default_action": "tag"},
        "rate_limit": {"rules": [{"name": "api", "match": {"path_prefix": "/api/"},
            "key": [{"type": "client_ip"}], "requests_per_unit": 100, "unit": "second"}]},
        "stage_routing": {"stages": [{"name": "prod", "weight": 100}],
            "sticky_key": [{"type": "header", "name": "x-user-id"}]}
    });
    let gw = Gateway::new()
        .runtime(common::runtime())
        .wasm(WasmFilter::new("edge", common::wasm("edge"), config))
        .echo_cluster("prod")
        .workers(2)
        .stats_config(demo_stats_config())
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        gw.get(
            "/api/items",
            &[("user-agent", "curl/8.5.0"), ("x-user-id", "u1")]
        )
        .await
        .unwrap()
        .status,
        200
    );
    assert_eq!(gw.get("/videos/a.mp4", &[]).await.unwrap().status, 403);
    let want = [
        "rate_limit_allowed{rule=\"api\"} 1",
        "stage_routing_stage_requests{stage=\"prod\"} 1",
        "stage_routing_assigned{reason=\"hash\"} 1",
        "bot_detection_category{category=\"http_library\"} 1",
        "bot_detection_action{action=\"tag\"} 1",
        "cdn_signing_missing{route=\"videos\"} 1",
    ];
    // Counters are flushed from each worker every 100 ms.
    let start = Instant::now();
    loop {
        let prom = gw.admin("/stats/prometheus").await.unwrap();
        let missing: Vec<&str> = want
            .iter()
            .copied()
            .filter(|w| !prom.lines().any(|l| l == *w))
            .collect();
        if missing.is_empty() {
            // And the per-rule names are gone: one metric name, many labels.
            assert!(!prom.contains("rate_limit_api_allowed"), "{prom}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "missing {missing:?} in:\n{}",
            prom.lines()
                .filter(|l| !l.starts_with("envoy_") && !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
