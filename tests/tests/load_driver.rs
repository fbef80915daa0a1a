//! The load driver's own tests against an in-process echo upstream (no Envoy): its counts,
//! bounds and checks must be exact, since the filters' acceptance numbers come from it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edge_tests::client::RequestSpec;
use edge_tests::echo::{self, EchoReply};
use edge_tests::Load;

async fn echo_url() -> (String, tokio::task::JoinHandle<()>) {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (local, task) = echo::spawn(addr, "direct").await.unwrap();
    (format!("http://{local}"), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_by_count_with_per_request_headers_and_statuses() {
    let (url, _srv) = echo_url().await;
    let report = Load::new(&url)
        .connections(8)
        .max_requests(1_000)
        .request(|i| {
            let path = if i % 4 == 0 {
                "/status/503".to_string()
            } else {
                format!("/ok/{i}")
            };
            RequestSpec::get(path).header("x-index", &i.to_string())
        })
        .check(|i, spec, reply| {
            let seen: EchoReply = reply.json().map_err(|e| e.to_string())?;
            let want = i.to_string();
            if seen.header("x-index") != Some(want.as_str()) || seen.uri != spec.path {
                return Err(format!(
                    "request {i} arrived as {} {:?}",
                    seen.uri,
                    seen.header("x-index")
                ));
            }
            Ok(())
        })
        .run()
        .await
        .unwrap();
    assert_eq!(report.completed, 1_000, "{report}");
    assert_eq!(report.count(503), 250, "{report}");
    assert_eq!(report.count(200), 750, "{report}");
    assert_eq!(report.non_2xx(), 250);
    assert_eq!(report.transport_errors, 0);
    assert_eq!(report.check_failures, 0, "{report}");
    assert!(report.latency(0.5) <= report.latency(0.99));
    assert!(report.latency(0.99) > Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_by_duration() {
    let (url, _srv) = echo_url().await;
    let t0 = Instant::now();
    let report = Load::new(&url)
        .connections(4)
        .max_requests(u64::MAX)
        .max_duration(Duration::from_millis(500))
        .run()
        .await
        .unwrap();
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(3), "stopped late: {took:?}");
    assert!(report.completed > 100, "{report}");
    let span = report.send_span();
    assert!(
        span > Duration::from_millis(400) && span <= took,
        "send span {span:?}"
    );
    assert_eq!(report.completed, report.count(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_failures_are_counted_and_reported() {
    let (url, _srv) = echo_url().await;
    let report = Load::new(&url)
        .connections(3)
        .max_requests(100)
        .check(|i, _, _| {
            if i % 2 == 1 {
                Err("odd".into())
            } else {
                Ok(())
            }
        })
        .run()
        .await
        .unwrap();
    assert_eq!(report.check_failures, 50);
    assert_eq!(report.failures.len(), 20, "keeps the first 20");
    assert!(
        report.failures.iter().all(|f| f.ends_with(": odd")),
        "{:?}",
        report.failures
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_is_an_error_not_a_hang() {
    // Bind then drop, so the port is closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t0 = Instant::now();
    let err = Load::new(format!("http://127.0.0.1:{port}"))
        .connections(2)
        .max_requests(10)
        .run()
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("no request completed"),
        "{err:#}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
}
