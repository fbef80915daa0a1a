//! Deployment path "plain Envoy, remote code": Envoy fetches the module over HTTP from a cluster
//! and checks it against its sha256 before loading it. A local file server plays the artifact
//! store. With the right digest the module runs (a scanner is blocked); with a wrong one Envoy
//! refuses the module as a failed fetch, and with `fail_open: false` every request gets 503
//! (never an unchecked request). Envoy runs as a local process here whatever the runtime: the file
//! server is in the test process.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edge_tests::client::{self, RequestSpec};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Serves `body` to every request on 127.0.0.1 (HTTP/1.1, one response per connection), in a
/// thread that lives as long as the test process. Returns the port and a request counter.
fn serve(body: Vec<u8>) -> (u16, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut s = stream;
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/wasm\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    (port, hits)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Envoy {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Envoy {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Envoy with `bot_detection.wasm` fetched from `http://127.0.0.1:<files>/bot_detection.wasm`
/// and checked against `sha256`, listening on `listen`.
fn start(files: u16, listen: u16, sha256: &str) -> Envoy {
    let dir = tempfile::tempdir().expect("tempdir");
    let bootstrap = json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "edge",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "edge",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                            {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}
                        ]}]},
                        "http_filters": [
                            {
                                "name": "envoy.filters.http.wasm",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                    "config": {
                                        "name": "bot_detection",
                                        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "{}"},
                                        "vm_config": {
                                            "runtime": "envoy.wasm.runtime.v8",
                                            "code": {"remote": {
                                                "http_uri": {
                                                    "uri": format!("http://127.0.0.1:{files}/bot_detection.wasm"),
                                                    "cluster": "artifacts",
                                                    "timeout": "10s"
                                                },
                                                "sha256": sha256,
                                                "retry_policy": {"num_retries": 1}
                                            }}
                                        }
                                    }
                                }
                            },
                            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                        ]
                    }
                }]}]
            }],
            "clusters": [{
                "name": "artifacts",
                "type": "STATIC",
                "connect_timeout": "2s",
                "load_assignment": {"cluster_name": "artifacts", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": files}}}}
                ]}]}
            }]
        }
    });
    let config = dir.path().join("envoy.json");
    std::fs::write(&config, bootstrap.to_string()).expect("write bootstrap");
    let log = dir.path().join("envoy.log");
    let child = Command::new(edge_tests::harness::envoy_binary().expect("envoy"))
        .arg("-c")
        .arg(&config)
        .args(["--concurrency", "1", "--disable-hot-restart", "-l", "info"])
        .arg("--log-path")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start envoy");
    Envoy {
        child,
        log,
        _dir: dir,
    }
}

/// The status of `GET /` with a scanner's user agent, once the listener answers (bounded).
async fn scanner_status(listen: u16, envoy: &Envoy, limit: Duration) -> Option<u16> {
    let url = format!("http://127.0.0.1:{listen}");
    let spec = RequestSpec::get("/").header("user-agent", "sqlmap/1.8");
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(r) = client::send(&url, &spec, Duration::from_secs(2)).await {
            return Some(r.status);
        }
        if envoy.log().contains("critical") {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn wasm() -> Vec<u8> {
    let path = edge_tests::harness::wasm_path("bot_detection");
    std::fs::read(Path::new(&path))
        .unwrap_or_else(|e| panic!("{}: {e}; run `make build`", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_loads_a_remote_module_checked_by_its_sha256() {
    let body = wasm();
    let digest: String = Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (files, hits) = serve(body);
    let listen = free_port();
    let envoy = start(files, listen, &digest);
    let status = scanner_status(listen, &envoy, Duration::from_secs(60)).await;
    assert_eq!(status, Some(403), "{}", envoy.log());
    assert!(hits.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    let ok = client::send(
        &format!("http://127.0.0.1:{listen}"),
        &RequestSpec::get("/")
            .header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            )
            .header("accept", "text/html")
            .header("accept-language", "en"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_sha256_never_runs_the_module_and_says_why() {
    let (files, hits) = serve(wasm());
    let listen = free_port();
    let envoy = start(files, listen, &"0".repeat(64));
    let status = scanner_status(listen, &envoy, Duration::from_secs(20)).await;
    // Envoy fetched the file, refused it for its digest, and never let a request through the
    // missing filter: either the listener never came up, or it answers 503 to everything (the
    // filter chain has no usable VM and `fail_open` is false).
    assert!(hits.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert_ne!(status, Some(200), "a request passed without the filter");
    assert_ne!(status, Some(403), "the module ran despite the wrong digest");
    // Envoy treats a digest mismatch as a failed fetch: it retries, then gives up on the module.
    // At the default log level that reads (no mention of the digest):
    //   Retry limit exceeded for fetching data from remote data source.
    //   Plugin bot_detection failed to load
    //   Plugin configured to fail closed failed to load
    let log = envoy.log();
    for line in [
        "Retry limit exceeded for fetching data from remote data source",
        "Plugin bot_detection failed to load",
        "Plugin configured to fail closed failed to load",
    ] {
        assert!(
            log.contains(line),
            "`{line}` missing from Envoy's log:\n{log}"
        );
    }
    assert_eq!(status, Some(503), "every request is refused with 503");
}
