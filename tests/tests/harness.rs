//! The harness's own tests, in both runtimes: a request goes through Envoy with the no-op filter
//! to the echo upstream; 10,000 requests over 64 connections all succeed; a rejected
//! configuration or a missing `.wasm` is reported with Envoy's own message, fast; nothing is
//! left behind when a test panics.

mod common;

use std::time::{Duration, Instant};

use edge_tests::client::RequestSpec;
use edge_tests::config::{native_local_ratelimit_unlimited, native_lua_noop};
use edge_tests::{Gateway, Load, Runtime, WasmFilter};
use serde_json::json;

fn noop() -> WasmFilter {
    WasmFilter::new("noop", common::wasm("noop"), json!({}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_filter_forwards_the_request_to_the_echo_upstream() {
    for rt in common::all_runtimes() {
        let gw = Gateway::new()
            .runtime(rt)
            .wasm(noop())
            .echo_cluster("prod")
            .workers(2)
            .start()
            .await
            .unwrap_or_else(|e| panic!("{rt:?}: {e:#}"));
        let seen = gw
            .echo(
                "/hello/world?x=1&y=%2F",
                &[("x-test", "abc"), ("user-agent", "edge-tests")],
            )
            .await
            .unwrap();
        assert_eq!(seen.name, "prod", "{rt:?}");
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.path, "/hello/world");
        assert_eq!(seen.query.as_deref(), Some("x=1&y=%2F"));
        assert_eq!(seen.uri, "/hello/world?x=1&y=%2F");
        assert_eq!(seen.header("x-test"), Some("abc"));
        assert_eq!(seen.header("user-agent"), Some("edge-tests"));
        assert_eq!(seen.body_length, 0);
        // Envoy adds its own request id and forwarded-proto on the way.
        assert!(seen.header("x-request-id").is_some(), "{seen:?}");

        let reply = gw
            .send(
                &RequestSpec::get("/upload")
                    .method(http::Method::POST)
                    .body(vec![b'x'; 12345]),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        let seen: edge_tests::echo::EchoReply = reply.json().unwrap();
        assert_eq!((seen.method.as_str(), seen.body_length), ("POST", 12345));

        // /status/NNN passes the upstream's status through.
        assert_eq!(gw.get("/status/503", &[]).await.unwrap().status, 503);
        assert!(
            gw.logs().contains("starting main dispatch loop"),
            "{rt:?}: {}",
            gw.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_over_64_connections_all_succeed() {
    for rt in common::all_runtimes() {
        let gw = Gateway::new()
            .runtime(rt)
            .wasm(noop())
            .echo_cluster("prod")
            .workers(2)
            .start()
            .await
            .unwrap_or_else(|e| panic!("{rt:?}: {e:#}"));
        let report = Load::new(&gw.url)
            .connections(64)
            .max_requests(10_000)
            .max_duration(Duration::from_secs(120))
            .request(|i| {
                RequestSpec::get(format!("/load/{i}")).header("x-key", &format!("k{}", i % 100))
            })
            .check(|i, _, reply| {
                let seen: edge_tests::echo::EchoReply = reply.json().map_err(|e| e.to_string())?;
                if seen.path != format!("/load/{i}")
                    || seen.header("x-key") != Some(&format!("k{}", i % 100))
                {
                    return Err(format!(
                        "upstream saw {} {:?}",
                        seen.path,
                        seen.header("x-key")
                    ));
                }
                Ok(())
            })
            .run()
            .await
            .unwrap();
        eprintln!("{rt:?}: {report}");
        assert_eq!(report.completed, 10_000, "{rt:?}: {report}");
        assert_eq!(report.count(200), 10_000, "{rt:?}: {report}");
        assert_eq!(report.non_2xx(), 0, "{rt:?}: {report}");
        assert_eq!(report.transport_errors, 0, "{rt:?}: {report}");
        assert_eq!(report.check_failures, 0, "{rt:?}: {report}");
        // Envoy agrees it answered them all.
        let rq_2xx = gw.stat("http.edge.downstream_rq_2xx").await.unwrap();
        assert_eq!(rq_2xx, Some(10_000), "{rt:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_configuration_is_reported_with_envoys_message() {
    for rt in common::all_runtimes() {
        let t0 = Instant::now();
        let err = Gateway::new()
            .runtime(rt)
            .wasm(WasmFilter::new(
                "noop",
                common::wasm("noop"),
                json!({"bogus": 1}),
            ))
            .echo_cluster("prod")
            .start()
            .await
            .err()
            .unwrap_or_else(|| panic!("{rt:?}: Envoy accepted a rejected configuration"));
        let msg = format!("{err:#}");
        let took = t0.elapsed();
        // Our filter's own line, and Envoy's verdict on the plugin.
        assert!(
            msg.contains("invalid configuration: bogus: unknown field `bogus`"),
            "{rt:?}: {msg}"
        );
        assert!(
            msg.contains("Unable to create Wasm plugin noop"),
            "{rt:?}: {msg}"
        );
        assert!(took < Duration::from_secs(15), "{rt:?}: took {took:?}");
        eprintln!("{rt:?}: rejected configuration reported in {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wasm_file_is_reported_with_envoys_message() {
    for rt in common::all_runtimes() {
        let t0 = Instant::now();
        let err = Gateway::new()
            .runtime(rt)
            .wasm(WasmFilter::new(
                "ghost",
                "/nonexistent/dir/ghost.wasm",
                json!({}),
            ))
            .start()
            .await
            .err()
            .unwrap_or_else(|| panic!("{rt:?}: Envoy started without its .wasm"));
        let msg = format!("{err:#}");
        let took = t0.elapsed();
        assert!(
            msg.contains("Invalid path:") && msg.contains("ghost.wasm"),
            "{rt:?}: {msg}"
        );
        assert!(took < Duration::from_secs(15), "{rt:?}: took {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_routes_select_clusters() {
    for rt in common::all_runtimes() {
        let gw = Gateway::new()
            .runtime(rt)
            .wasm(noop())
            .echo_cluster("prod")
            .echo_cluster("canary")
            .echo_cluster("next")
            .route_header("x-stage", "canary", "canary")
            .route_header("x-stage", "next", "next")
            .start()
            .await
            .unwrap_or_else(|e| panic!("{rt:?}: {e:#}"));
        assert_eq!(gw.echo("/", &[]).await.unwrap().name, "prod");
        assert_eq!(
            gw.echo("/", &[("x-stage", "canary")]).await.unwrap().name,
            "canary"
        );
        assert_eq!(
            gw.echo("/", &[("x-stage", "next")]).await.unwrap().name,
            "next"
        );
        assert_eq!(
            gw.echo("/", &[("x-stage", "other")]).await.unwrap().name,
            "prod"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_filters_run_before_the_wasm_ones() {
    for rt in common::all_runtimes() {
        let gw = Gateway::new()
            .runtime(rt)
            .native_filter(native_local_ratelimit_unlimited())
            .native_filter(native_lua_noop())
            .wasm(noop())
            .echo_cluster("prod")
            .start()
            .await
            .unwrap_or_else(|e| panic!("{rt:?}: {e:#}"));
        for _ in 0..20 {
            assert_eq!(gw.echo("/", &[]).await.unwrap().name, "prod");
        }
        let dump = gw.admin("/config_dump").await.unwrap();
        let (rl, lua, wasm) = (
            dump.find("envoy.filters.http.local_ratelimit").unwrap(),
            dump.find("envoy.filters.http.lua").unwrap(),
            dump.find("envoy.filters.http.wasm").unwrap(),
        );
        assert!(rl < lua && lua < wasm, "{rt:?}: filter order");
        assert_eq!(
            gw.stat("http_local_rate_limiter.http_local_rate_limit.rate_limited")
                .await
                .unwrap()
                .unwrap_or(0),
            0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_left_behind_when_a_test_panics() {
    for rt in common::all_runtimes() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let gw = Gateway::new()
                .runtime(rt)
                .wasm(noop())
                .echo_cluster("prod")
                .start()
                .await
                .unwrap();
            let _ = tx.send(gw.run_id.clone());
            panic!("deliberate panic while holding a gateway");
        });
        assert!(task.await.unwrap_err().is_panic());
        let run_id = rx.await.unwrap();
        match rt {
            Runtime::Container => {
                let out = std::process::Command::new("docker")
                    .args([
                        "ps",
                        "-aq",
                        "--filter",
                        &format!("label={}={run_id}", edge_tests::harness::CONTAINER_LABEL),
                    ])
                    .output()
                    .unwrap();
                assert!(out.status.success());
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout).trim(),
                    "",
                    "containers of {run_id} left behind"
                );
                let nets = std::process::Command::new("docker")
                    .args([
                        "network",
                        "ls",
                        "-q",
                        "--filter",
                        &format!("name={run_id}-net"),
                    ])
                    .output()
                    .unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&nets.stdout).trim(),
                    "",
                    "network of {run_id} left behind"
                );
            }
            Runtime::Process => {
                let pid = run_id.strip_prefix("pid-").unwrap();
                assert!(
                    !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                    "Envoy process {pid} left behind"
                );
            }
        }
    }
}
