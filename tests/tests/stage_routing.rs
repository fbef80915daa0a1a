//! stage_routing.wasm in real Envoy (`--concurrency 4`), one echo upstream per stage and a route
//! per stage on the `x-stage` header: weighted sticky split of 10,000 ids, stickiness across a
//! restart, ramping, overrides, allowlists, the pin cookie and the kill switch, a client-sent
//! `x-stage`; and live stage data from a scripted control plane.

mod common;

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_tests::client::{self, RequestSpec};
use edge_tests::echo::{Hits, Script};
use edge_tests::{Gateway, Load, RunningGateway};
use serde_json::{json, Value};
use stage_routing::config::Config;

const STAGES: [&str; 3] = ["prod", "canary", "next"];

async fn gateway(config: Value, stages: &[&str], extra_cluster: Option<&str>) -> RunningGateway {
    let mut g = Gateway::new()
        .runtime(common::runtime())
        .wasm(common::filter("stage_routing", config))
        .workers(4)
        .xff_num_trusted_hops(1);
    for s in stages {
        g = g.echo_cluster(s);
    }
    for s in stages.iter().skip(1) {
        g = g.route_header("x-stage", s, s);
    }
    if let Some(c) = extra_cluster {
        g = g.echo_cluster(c);
    }
    g.start().await.unwrap_or_else(|e| panic!("{e:#}"))
}

fn split(canary: f64) -> Value {
    json!({
        "stages": [{"name": "prod", "weight": 100.0 - canary}, {"name": "canary", "weight": canary}],
        "salt": "rollout-2026-11",
        "sticky_key": [{"type": "header", "name": "x-user-id"}, {"type": "client_ip"}]
    })
}

/// The stage the filter's own logic gives `id` under `config` (index into `STAGES`).
fn expected(config: &Value, id: &str) -> usize {
    let cfg = Config::from_json(config.to_string().as_bytes()).unwrap();
    stage_routing::assign::stage_for_header(&cfg, "x-user-id", id)
}

/// Sends one request per id (`ids` of them) under load; returns the stage index each landed on.
async fn stages_of(gw: &RunningGateway, ids: u32) -> Vec<u8> {
    let seen: Arc<Vec<AtomicU8>> = Arc::new((0..ids).map(|_| AtomicU8::new(u8::MAX)).collect());
    let record = seen.clone();
    let report = Load::new(&gw.url)
        .connections(32)
        .max_requests(u64::from(ids))
        .max_duration(Duration::from_secs(120))
        .request(|i| {
            RequestSpec::get(format!("/item/{i}"))
                .header("x-user-id", &format!("user-{i}"))
                // A client never picks its stage.
                .header("x-stage", "canary")
        })
        .check(move |i, _, reply| {
            let name = reply.header("x-echo-name").ok_or("no echo upstream")?;
            let idx = STAGES
                .iter()
                .position(|s| *s == name)
                .ok_or("unknown upstream")?;
            let body: edge_tests::echo::EchoReply = reply.json().map_err(|e| e.to_string())?;
            if body.header("x-stage") != Some(name) {
                return Err(format!(
                    "upstream {name} saw x-stage {:?}",
                    body.header("x-stage")
                ));
            }
            if let Some(slot) = record.get(i as usize) {
                slot.store(idx as u8, Ordering::Relaxed);
            }
            Ok(())
        })
        .run()
        .await
        .unwrap();
    assert_eq!(
        (report.completed, report.check_failures),
        (u64::from(ids), 0),
        "{report}"
    );
    seen.iter().map(|s| s.load(Ordering::Relaxed)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_sticky_split_survives_restart_and_ramps_one_way() {
    const IDS: u32 = 10_000;
    let ten = split(10.0);
    let gw = gateway(ten.clone(), &STAGES[..2], None).await;
    let first = stages_of(&gw, IDS).await;
    let canary = first.iter().filter(|&&s| s == 1).count() as f64 / f64::from(IDS) * 100.0;
    assert!(
        (8.5..=11.5).contains(&canary),
        "canary share {canary:.2}% (want 10 ± 1.5)"
    );
    for (i, &s) in first.iter().enumerate() {
        assert_eq!(
            usize::from(s),
            expected(&ten, &format!("user-{i}")),
            "user-{i}"
        );
    }
    // Same ids again on the same Envoy, then on a fresh Envoy: the same stage every time.
    assert_eq!(
        stages_of(&gw, IDS).await,
        first,
        "assignments changed between requests"
    );
    drop(gw);
    let gw = gateway(ten, &STAGES[..2], None).await;
    assert_eq!(
        stages_of(&gw, IDS).await,
        first,
        "assignments changed across a restart"
    );
    drop(gw);

    // Ramp canary 10% -> 20%: only prod users move, and only into canary.
    let gw = gateway(split(20.0), &STAGES[..2], None).await;
    let after = stages_of(&gw, IDS).await;
    let mut moved = 0;
    for (i, (a, b)) in first.iter().zip(after.iter()).enumerate() {
        assert!(
            a == b || (*a == 0 && *b == 1),
            "user-{i} moved from {} to {}",
            STAGES[*a as usize],
            STAGES[*b as usize]
        );
        moved += usize::from(a != b);
    }
    let moved = moved as f64 / f64::from(IDS) * 100.0;
    assert!(
        (8.5..=11.5).contains(&moved),
        "{moved:.2}% moved (want 10 ± 1.5)"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gw.stat("wasmcustom.stage_routing.assigned.hash")
            .await
            .unwrap(),
        Some(u64::from(IDS))
    );
}

fn qa_config(overrides_enabled: bool) -> Value {
    json!({
        "stages": [{"name": "prod", "weight": 90}, {"name": "canary", "weight": 5}, {"name": "next", "weight": 5}],
        "sticky_key": [{"type": "header", "name": "x-user-id"}],
        "overrides": {"enabled": overrides_enabled, "header": "x-stage-override", "cookie": "stage_override",
                      "query": "stage", "stages": ["canary", "next"]},
        "allowlists": [{"stage": "next", "cidrs": ["198.51.100.0/24"], "hosts": ["next.example", "*.corp.example"]}],
        "pin_cookie": {"name": "stage", "max_age_seconds": 3600, "secret": PIN_SECRET}
    })
}

const PIN_SECRET: &str = "integration-test-pin-secret";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A pin cookie for `stage` that the filter signed (as it would) for user `id`.
fn signed_pin(stage: &str, id: &str) -> String {
    format!(
        "stage={}",
        stage_routing::pin::mint(PIN_SECRET.as_bytes(), stage, id.as_bytes(), unix_now())
    )
}

async fn landed(
    gw: &RunningGateway,
    path: &str,
    headers: &[(&str, &str)],
) -> (String, Option<String>) {
    let r = gw.get(path, headers).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    (
        r.header("x-echo-name").unwrap_or("").to_string(),
        r.header("set-cookie").map(str::to_string),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_allowlists_pin_cookie_and_kill_switch() {
    let cfg = qa_config(true);
    let gw = gateway(cfg.clone(), &STAGES, None).await;
    // A prod user (by hash) for the checks below.
    let user = (0..)
        .map(|i| format!("u{i}"))
        .find(|id| expected(&cfg, id) == 0)
        .unwrap();
    let id = ("x-user-id", user.as_str());
    let (stage, cookie) = landed(&gw, "/", &[id]).await;
    assert_eq!(stage, "prod");
    // The hash assignment is pinned, signed for this user.
    let cookie = cookie.expect("a pin cookie");
    let (pin, attributes) = cookie.split_once(';').unwrap();
    assert_eq!(attributes, " Max-Age=3600; Path=/; HttpOnly; SameSite=Lax");
    let value = pin.strip_prefix("stage=").unwrap();
    assert_eq!(
        stage_routing::pin::verify(
            value,
            &[PIN_SECRET.as_bytes().to_vec()],
            user.as_bytes(),
            unix_now(),
            3600
        ),
        Some("prod"),
        "{cookie}"
    );
    // Overrides: header, query, cookie; a stage they may not select is ignored.
    assert_eq!(
        landed(&gw, "/", &[id, ("x-stage-override", "canary")]).await,
        ("canary".into(), None)
    );
    assert_eq!(
        landed(&gw, "/a?x=1&stage=next", &[id]).await,
        ("next".into(), None)
    );
    assert_eq!(
        landed(&gw, "/", &[id, ("cookie", "stage_override=canary")]).await,
        ("canary".into(), None)
    );
    assert_eq!(
        landed(&gw, "/", &[id, ("x-stage-override", "nope")])
            .await
            .0,
        "prod"
    );
    // Allowlists: host (exact and wildcard) and client CIDR (through x-forwarded-for).
    assert_eq!(
        landed(&gw, "/", &[id, ("host", "next.example")]).await.0,
        "next"
    );
    assert_eq!(
        landed(&gw, "/", &[id, ("host", "qa.corp.example:8443")])
            .await
            .0,
        "next"
    );
    assert_eq!(
        landed(&gw, "/", &[id, ("x-forwarded-for", "198.51.100.77")])
            .await
            .0,
        "next"
    );
    assert_eq!(
        landed(&gw, "/", &[id, ("x-forwarded-for", "203.0.113.7")])
            .await
            .0,
        "prod"
    );
    // A signed pin wins over the hash, and is not set again.
    let pin = format!("a=1; {}", signed_pin("canary", &user));
    assert_eq!(
        landed(&gw, "/", &[id, ("cookie", &pin)]).await,
        ("canary".into(), None)
    );
    // Forged pins (unsigned, or signed for someone else) are ignored: the hash decides, and a
    // correct pin is set.
    for forged in [
        "a=1; stage=canary".to_string(),
        signed_pin("next", "someone-else"),
    ] {
        let (stage, cookie) = landed(&gw, "/", &[id, ("cookie", &forged)]).await;
        assert_eq!(stage, "prod", "{forged}");
        assert!(cookie.is_some_and(|c| c.starts_with("stage=prod.")));
    }
    // A client-sent x-stage decides nothing and does not reach the upstream.
    let seen = gw.echo("/", &[id, ("x-stage", "next")]).await.unwrap();
    assert_eq!(
        (seen.name.as_str(), seen.header("x-stage")),
        ("prod", Some("prod"))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (reason, n) in [
        ("override", 3),
        ("allowlist", 3),
        ("cookie", 1),
        ("hash", 6),
    ] {
        assert_eq!(
            gw.stat(&format!("wasmcustom.stage_routing.assigned.{reason}"))
                .await
                .unwrap(),
            Some(n),
            "{reason}"
        );
    }
    assert_eq!(
        gw.stat("wasmcustom.stage_routing.override_rejected")
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        gw.stat("wasmcustom.stage_routing.pin_rejected")
            .await
            .unwrap(),
        Some(2)
    );
    drop(gw);

    // The kill switch: overrides off, everything else as before. (Also without the header on
    // the base stage: the route table's default route is the base stage's.)
    let mut cfg = qa_config(false);
    cfg["header_on_base_stage"] = json!(false);
    let gw = gateway(cfg, &STAGES, None).await;
    let seen = gw.echo("/", &[id]).await.unwrap();
    assert_eq!((seen.name.as_str(), seen.header("x-stage")), ("prod", None));
    let seen = gw.echo("/", &[id, ("x-stage", "next")]).await.unwrap();
    assert_eq!(
        (seen.name.as_str(), seen.header("x-stage")),
        ("prod", Some("prod"))
    );
    let seen = gw.echo("/", &[id, ("host", "next.example")]).await.unwrap();
    assert_eq!(
        (seen.name.as_str(), seen.header("x-stage")),
        ("next", Some("next"))
    );
    assert_eq!(
        landed(&gw, "/", &[id, ("x-stage-override", "canary")])
            .await
            .0,
        "prod"
    );
    assert_eq!(landed(&gw, "/?stage=next", &[id]).await.0, "prod");
    // With overrides off, a client's own pin cookie does not choose its stage either.
    for forged in [
        "stage=next".to_string(),
        "stage=canary".to_string(),
        signed_pin("next", "u-other"),
    ] {
        assert_eq!(
            landed(&gw, "/", &[id, ("cookie", &forged)]).await.0,
            "prod",
            "{forged}"
        );
    }
    assert_eq!(
        landed(&gw, "/", &[id, ("host", "next.example")]).await.0,
        "next"
    );
}

/// Scripts the control plane's reply for `/stages`.
async fn script(gw: &RunningGateway, s: Script) {
    let url = gw.upstream_url("cp").expect("cp upstream");
    let spec = RequestSpec::get("/__script/stages")
        .method(http::Method::PUT)
        .body(serde_json::to_vec(&s).unwrap());
    let r = client::send(url, &spec, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
}

async fn hits(gw: &RunningGateway) -> Hits {
    let url = gw.upstream_url("cp").expect("cp upstream");
    let (_, body) = client::get_text(url, "/__hits/stages").await.unwrap();
    serde_json::from_str(&body).unwrap()
}

fn data(version: u64, canary: u32) -> String {
    json!({"version": version, "stages": [{"name": "prod", "weight": 100 - canary}, {"name": "canary", "weight": canary}]})
        .to_string()
}

/// The share of 200 fixed ids on canary.
async fn canary_share(gw: &RunningGateway) -> f64 {
    let on = AtomicU32::new(0);
    for i in 0..200 {
        let r = gw
            .get("/", &[("x-user-id", &format!("cp-user-{i}"))])
            .await
            .unwrap();
        if r.header("x-echo-name") == Some("canary") {
            on.fetch_add(1, Ordering::Relaxed);
        }
    }
    f64::from(on.load(Ordering::Relaxed)) / 2.0
}

async fn counter(gw: &RunningGateway, name: &str) -> u64 {
    gw.stat(&format!("wasmcustom.stage_routing.{name}"))
        .await
        .unwrap()
        .unwrap_or(0)
}

async fn data_version(gw: &RunningGateway) -> Option<u64> {
    gw.stat("wasmcustom.stage_routing.data_version")
        .await
        .unwrap()
}

/// Waits (bounded) until the `data_version` gauge shows `version`.
async fn applied(gw: &RunningGateway, version: u64) -> Option<Duration> {
    until(Duration::from_secs(10), || async {
        data_version(gw).await == Some(version)
    })
    .await
}

/// The canary share once every worker has applied the data the gauge shows: each worker's VM
/// picks published data up on its own 100 ms tick, so the share may lag the first one by a tick.
/// Returns the last share seen within one second.
async fn settled_share(gw: &RunningGateway, want: f64) -> f64 {
    let start = Instant::now();
    loop {
        let share = canary_share(gw).await;
        if share == want || start.elapsed() > Duration::from_secs(1) {
            return share;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) until `f` holds, returning how long it took.
async fn until<F, Fut>(limit: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_updates_live_and_keeps_the_last_good_data() {
    const INTERVAL_MS: u64 = 1_000;
    let mut config = split(0.0);
    config["control_plane"] = json!({"cluster": "cp", "path": "/stages", "poll_interval_ms": INTERVAL_MS,
        "timeout_ms": 300, "jitter_percent": 10, "max_backoff_ms": 2_000});
    let gw = gateway(config, &STAGES[..2], Some("cp")).await;
    script(
        &gw,
        Script {
            status: 200,
            body: data(1, 0),
            etag: Some("\"v1\"".into()),
            delay_ms: 0,
        },
    )
    .await;
    applied(&gw, 1).await.expect("version 1 applied");
    assert_eq!(settled_share(&gw, 0.0).await, 0.0);

    // A change moves traffic within two poll intervals, without a restart.
    script(
        &gw,
        Script {
            status: 200,
            body: data(2, 100),
            etag: Some("\"v2\"".into()),
            delay_ms: 0,
        },
    )
    .await;
    let took = until(Duration::from_secs(10), || async {
        gw.get("/", &[("x-user-id", "probe")])
            .await
            .unwrap()
            .header("x-echo-name")
            == Some("canary")
    })
    .await
    .expect("traffic never moved");
    assert!(
        took <= Duration::from_millis(2 * INTERVAL_MS + 400),
        "moved after {took:?}"
    );
    assert_eq!(settled_share(&gw, 100.0).await, 100.0);

    // 304: unchanged data, counted; the poller sent the etag.
    let nm = counter(&gw, "control_plane.not_modified").await;
    until(Duration::from_secs(5), || async {
        counter(&gw, "control_plane.not_modified").await > nm
    })
    .await
    .expect("no 304 seen");
    assert_eq!(hits(&gw).await.if_none_match.as_deref(), Some("\"v2\""));
    // One poller for all workers: about one poll per interval, not one per worker.
    let before = hits(&gw).await.hits;
    tokio::time::sleep(Duration::from_millis(4 * INTERVAL_MS)).await;
    let polls = hits(&gw).await.hits - before;
    assert!((2..=5).contains(&polls), "{polls} polls in 4 intervals");

    // Failures: 500s, timeouts, bad JSON, invalid data. Each raises the failure counter and
    // leaves routing on version 2.
    for (what, s) in [
        (
            "500",
            Script {
                status: 500,
                body: "oops".into(),
                etag: None,
                delay_ms: 0,
            },
        ),
        (
            "timeout",
            Script {
                status: 200,
                body: data(3, 0),
                etag: None,
                delay_ms: 1_500,
            },
        ),
        (
            "bad json",
            Script {
                status: 200,
                body: "{\"version\": 3, \"stages\": [".into(),
                etag: None,
                delay_ms: 0,
            },
        ),
        (
            "bad weights",
            Script {
                status: 200,
                body: json!({"version": 3, "stages": [{"name": "prod", "weight": 50}]}).to_string(),
                etag: None,
                delay_ms: 0,
            },
        ),
    ] {
        let f = counter(&gw, "control_plane.failures").await;
        script(&gw, s).await;
        until(Duration::from_secs(10), || async {
            counter(&gw, "control_plane.failures").await > f
        })
        .await
        .unwrap_or_else(|| panic!("{what}: no failure counted"));
        assert_eq!(canary_share(&gw).await, 100.0, "{what}: routing changed");
        assert_eq!(data_version(&gw).await, Some(2), "{what}");
    }
    assert!(
        gw.logs().contains("control plane poll failed"),
        "no log line for failures"
    );
    // The timeout is named as such, not as a bare status.
    assert!(
        gw.logs().contains("control plane poll failed: timeout"),
        "the timeout is not named: {}",
        gw.logs()
            .lines()
            .filter(|l| l.contains("poll failed"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Recovery, including the override kill switch from the control plane.
    script(
        &gw,
        Script {
            status: 200,
            body: data(4, 0),
            etag: None,
            delay_ms: 0,
        },
    )
    .await;
    applied(&gw, 4)
        .await
        .expect("version 4 applied after failures");
    assert_eq!(settled_share(&gw, 0.0).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_are_rejected_naming_the_field() {
    let cases = [
        (
            json!({"stages": [{"name": "prod", "weight": 90}, {"name": "canary", "weight": 5}]}),
            "invalid configuration: stages: weights sum to 95, not 100",
        ),
        (
            json!({"stages": [{"name": "prod", "weight": 100}], "allowlists": [{"stage": "beta", "hosts": ["b.example"]}]}),
            "invalid configuration: allowlists[0].stage: unknown stage `beta`",
        ),
        (
            json!({"stages": [{"name": "prod", "weight": 100}], "allowlists": [{"stage": "prod", "cidrs": ["10.0.0.0/33"]}]}),
            "invalid configuration: allowlists[0].cidrs[0]",
        ),
        (
            json!({"stages": [{"name": "prod", "weight": 100}], "pin_cookie": {"name": "stage"}}),
            "invalid configuration: pin_cookie.secret: required",
        ),
        (
            json!({"stages": [{"name": "prod", "weight": 100}], "pin_cookie": {"secret": "too-short"}}),
            "invalid configuration: pin_cookie.secret: 9 bytes is too short",
        ),
        (
            json!({"stages": [{"name": "prod", "weight": 100}], "stage_header": "cookie"}),
            "invalid configuration: stage_header: `cookie` is a credential, framing, hop-by-hop or routing header",
        ),
        (
            json!({"stages": [{"name": "prod", "weight": 100}], "stage_header": "Host"}),
            "invalid configuration: stage_header: `Host` is a credential",
        ),
    ];
    common::assert_configs_rejected("stage_routing", &cases).await;
}
