//! bot_detection.wasm in real Envoy (`--concurrency 2`): thousands of real browser and bot user
//! agents under load each get exactly the action the library decides; tags reach the upstream and
//! client-sent copies never do; Googlebot is verified from inside its ranges (client address from
//! `x-forwarded-for` with one trusted hop) and blocked as an impersonator from outside; ranges
//! polled from a published file follow its changes and survive a bad file; bad configurations are
//! rejected naming the field.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bot_detection::config::{Action, Config};
use bot_detection::detect::{decide, Signals};
use edge_tests::client::{self, RequestSpec};
use edge_tests::echo::{EchoReply, Script};
use edge_tests::{Gateway, Load, RunningGateway};
use serde_json::{json, Value};

const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

fn verified_config() -> Value {
    json!({
        "verified_bots": [{
            "name": "Googlebot",
            "user_agent_contains": ["googlebot"],
            "ranges": {"creationTime": "2026-11-01T00:00:00", "prefixes": [
                {"ipv4Prefix": "66.249.64.0/19"}, {"ipv6Prefix": "2001:4860:4801::/48"}
            ]}
        }]
    })
}

async fn gateway(config: &Value) -> RunningGateway {
    gateway_with(config, None).await
}

async fn gateway_with(config: &Value, extra_cluster: Option<&str>) -> RunningGateway {
    let mut g = Gateway::new()
        .runtime(common::runtime())
        .wasm(common::filter("bot_detection", config.clone()))
        .echo_cluster("prod")
        .workers(2)
        .xff_num_trusted_hops(1);
    if let Some(c) = extra_cluster {
        g = g.echo_cluster(c);
    }
    g.start().await.unwrap_or_else(|e| panic!("{e:#}"))
}

/// Browser and bot user agents from the evaluation corpora (`make bot-corpora`): every bot, and
/// every 12th non-bot (old and odd browsers, phones, TVs, apps and current browsers alike), so
/// the load stays a few thousand distinct user agents.
fn user_agents() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bot-corpora");
    let mut all = Vec::new();
    for (set, every) in [
        ("browsers_tune", 12),
        ("browsers_holdout", 12),
        ("bots_tune", 1),
        ("bots_holdout", 1),
    ] {
        let p = dir.join(format!("{set}.tsv"));
        let text = std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}; run `make bot-corpora`", p.display()));
        // Only values a client can send as a header (the corpora hold a few odd bytes).
        all.extend(
            text.lines()
                .filter_map(|l| l.split_once('\t').map(|(_, ua)| ua))
                .step_by(every)
                .filter(|ua| {
                    !ua.is_empty() && ua.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
                })
                .map(str::to_string),
        );
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_of_a_mixed_load_gets_the_expected_action() {
    let config = verified_config();
    let gw = gateway(&config).await;
    let cfg = Arc::new(Config::from_json(config.to_string().as_bytes()).unwrap());
    let uas = Arc::new(user_agents());
    assert!(uas.len() > 3000, "{} user agents", uas.len());
    let n = uas.len() as u64;
    let (req_uas, check_uas) = (uas.clone(), uas.clone());
    let report = Load::new(&gw.url)
        .connections(64)
        .max_requests(2 * n)
        .max_duration(Duration::from_secs(240))
        .request(move |i| {
            RequestSpec::get(format!("/page/{i}"))
                .header("user-agent", &req_uas[(i % n) as usize])
                .header("accept", "text/html")
                .header("accept-language", "en")
                // A client trying to pass as human: must never reach the upstream.
                .header("x-bot-category", "human")
                .header("x-bot-score", "100")
        })
        .check(move |i, _, reply| {
            let ua = &check_uas[(i % n) as usize];
            let s = Signals {
                user_agent: Some(ua.as_bytes()),
                accept: true,
                accept_language: true,
                ..Default::default()
            };
            // The client address (127.0.0.1 or the Docker gateway) is in no bot's ranges.
            let v = decide(&cfg, &s, &|| "192.0.2.1".parse().ok());
            match v.action {
                Action::Block => {
                    if reply.status != 403 || reply.body.as_ref() != b"forbidden\n" {
                        return Err(format!("{ua}: expected 403, got {}", reply.status));
                    }
                }
                Action::Tag | Action::Allow => {
                    if reply.status != 200 {
                        return Err(format!("{ua}: expected 200, got {} {}", reply.status, reply.text()));
                    }
                    let seen: EchoReply = reply.json().map_err(|e| e.to_string())?;
                    let (cat, score) = (seen.header("x-bot-category"), seen.header("x-bot-score"));
                    let want = if v.action == Action::Tag {
                        (Some(v.category.as_str()), Some(v.score.to_string()))
                    } else {
                        (None, None)
                    };
                    if (cat, score.map(str::to_string)) != want {
                        return Err(format!("{ua}: upstream saw category {cat:?} score {score:?}, expected {want:?}"));
                    }
                    if v.action == Action::Tag && seen.header("x-bot-name") != v.name {
                        return Err(format!("{ua}: upstream saw name {:?}", seen.header("x-bot-name")));
                    }
                }
            }
            Ok(())
        })
        .run()
        .await
        .unwrap();
    eprintln!("{report}");
    assert_eq!(report.completed, 2 * n, "{report}");
    assert_eq!(report.check_failures, 0, "{report}");
    assert!(report.count(403) > 0 && report.count(200) > 0, "{report}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let human = gw
        .stat("wasmcustom.bot_detection.category.human")
        .await
        .unwrap()
        .unwrap_or(0);
    let blocked = gw
        .stat("wasmcustom.bot_detection.action.block")
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(blocked, report.count(403));
    assert!(human > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn googlebot_is_verified_inside_its_ranges_and_blocked_outside() {
    let gw = gateway(&verified_config()).await;
    let inside = gw
        .echo(
            "/",
            &[
                ("user-agent", GOOGLEBOT),
                ("x-forwarded-for", "66.249.66.1"),
                ("x-bot-verified", "true"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(inside.header("x-bot-verified"), Some("true"));
    assert_eq!(inside.header("x-bot-category"), Some("search_engine"));
    assert_eq!(inside.header("x-bot-name"), Some("Googlebot"));
    assert_eq!(inside.header("x-bot-score"), Some("10"));
    let outside = gw
        .get(
            "/",
            &[
                ("user-agent", GOOGLEBOT),
                ("x-forwarded-for", "203.0.113.7"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        (outside.status, outside.text().as_str()),
        (403, "forbidden\n")
    );
    // A browser passes untouched, and a client-sent verdict is removed.
    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    let seen = gw
        .echo(
            "/",
            &[
                ("user-agent", chrome),
                ("accept", "*/*"),
                ("accept-language", "en"),
                ("x-bot-verified", "true"),
                ("x-bot-name", "Googlebot"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        (seen.header("x-bot-verified"), seen.header("x-bot-name")),
        (None, None),
        "{seen:?}"
    );
    // Without accept / accept-language the same browser UA is suspicious and tagged.
    let bare = gw.echo("/", &[("user-agent", chrome)]).await.unwrap();
    assert_eq!(bare.header("x-bot-category"), Some("suspicious"));
    assert_eq!(bare.header("x-bot-score"), Some("30"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gw.stat("wasmcustom.bot_detection.verified").await.unwrap(),
        Some(1)
    );
    assert_eq!(
        gw.stat("wasmcustom.bot_detection.category.impersonator")
            .await
            .unwrap(),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_changes_nothing_but_counts() {
    let gw = gateway(&json!({"mode": "shadow"})).await;
    let r = gw.get("/", &[("user-agent", "sqlmap/1.8")]).await.unwrap();
    assert_eq!(r.status, 200);
    let seen: EchoReply = r.json().unwrap();
    assert_eq!(seen.header("x-bot-category"), None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gw.stat("wasmcustom.bot_detection.shadow_action.block")
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        gw.stat("wasmcustom.bot_detection.action.block")
            .await
            .unwrap(),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_are_rejected_naming_the_field() {
    let cases = [
        (json!({"verified_bots": [{"name": "G", "user_agent_contains": ["g"], "cidrs": ["66.249.64.0/40"]}]}),
         "invalid configuration: verified_bots[0].cidrs[0]: `66.249.64.0/40` is not a CIDR range"),
        (json!({"patterns": [{"category": "seo", "name": "x", "regex": "(unclosed"}]}),
         "invalid configuration: patterns[0].regex: invalid regex"),
        (json!({"headers": {"score": "authorization"}}),
         "invalid configuration: headers.score: `authorization` is a credential"),
        (json!({"headers": {"category": "transfer-encoding"}}),
         "invalid configuration: headers.category: `transfer-encoding` is a credential, framing"),
        (json!({"headers": {"name": ":path"}}),
         "invalid configuration: headers.name: `:path` is not a header name"),
        (json!({"policy": [{"categories": ["robots"], "action": "block"}]}),
         "invalid configuration: policy[0].categories[0]: unknown variant `robots`"),
    ];
    common::assert_configs_rejected("bot_detection", &cases).await;
}

/// Scripts what the `ranges` upstream answers for `/googlebot.json`.
async fn serve_ranges(gw: &RunningGateway, status: u16, body: &str) {
    let url = gw.upstream_url("ranges").expect("ranges upstream");
    let spec = RequestSpec::get("/__script/googlebot.json")
        .method(http::Method::PUT)
        .body(
            serde_json::to_vec(&Script {
                status,
                body: body.into(),
                etag: None,
                delay_ms: 0,
            })
            .unwrap(),
        );
    let r = client::send(url, &spec, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
}

/// The status of a Googlebot request from `ip`: 200 when verified (tagged and forwarded), 403 as
/// an impersonator.
async fn googlebot_from(gw: &RunningGateway, ip: &str) -> u16 {
    gw.get("/", &[("user-agent", GOOGLEBOT), ("x-forwarded-for", ip)])
        .await
        .unwrap()
        .status
}

/// Waits (bounded: 10 s) until every one of 8 requests from `ip` gets `status` (both workers
/// apply a published file on their own tick).
async fn settles(gw: &RunningGateway, ip: &str, status: u16) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let mut all = true;
        for _ in 0..8 {
            all &= googlebot_from(gw, ip).await == status;
        }
        if all {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_ranges_follow_the_published_file_and_keep_the_last_good_one() {
    let config = json!({
        "verified_bots": [{
            "name": "Googlebot",
            "user_agent_contains": ["googlebot"],
            "ranges_from": [{"cluster": "ranges", "path": "/googlebot.json",
                "poll_interval_ms": 500, "timeout_ms": 300, "jitter_percent": 0, "max_backoff_ms": 1000}]
        }]
    });
    let gw = gateway_with(&config, Some("ranges")).await;
    serve_ranges(
        &gw,
        200,
        r#"{"creationTime":"2026-11-27T00:00:00","prefixes":[{"ipv4Prefix":"192.0.2.0/24"}]}"#,
    )
    .await;
    assert!(
        settles(&gw, "192.0.2.7", 200).await,
        "first file not applied"
    );
    assert_eq!(googlebot_from(&gw, "198.51.100.7").await, 403);
    // The file changes: verification follows.
    serve_ranges(
        &gw,
        200,
        r#"{"prefixes":[{"ipv4Prefix":"198.51.100.0/24"}]}"#,
    )
    .await;
    assert!(
        settles(&gw, "198.51.100.7", 200).await,
        "new file not applied"
    );
    assert!(settles(&gw, "192.0.2.7", 403).await);
    // A bad file and an error keep the last good ranges.
    for (status, body) in [
        (200, r#"{"prefixes":[{"ipv4Prefix":"nope"}]}"#),
        (503, "down"),
    ] {
        serve_ranges(&gw, status, body).await;
        let before = gw
            .stat("wasmcustom.bot_detection.ranges.failures")
            .await
            .unwrap()
            .unwrap_or(0);
        let start = std::time::Instant::now();
        while gw
            .stat("wasmcustom.bot_detection.ranges.failures")
            .await
            .unwrap()
            .unwrap_or(0)
            <= before
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no failed poll seen"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for _ in 0..8 {
            assert_eq!(
                googlebot_from(&gw, "198.51.100.7").await,
                200,
                "{status} {body}"
            );
        }
    }
    assert!(gw
        .logs()
        .contains("invalid range file: prefixes[0].ipv4Prefix"));
}
