//! The features' own logic on the bench's combined request, with a host whose calls cost
//! nothing: what edge.wasm spends in Rust per request, apart from Envoy's host calls and VM
//! entries (which `make bench` measures in Envoy).
//!
//! Native: `cargo run --release -p edge --example logic [cdn|bot|rl|stage|all]`.
//! In V8 (the engine Envoy runs modules in), through Node's WASI:
//! `cargo build --release -p edge --example logic --target wasm32-wasip1` then
//! `node bench/wasi-run.mjs target/wasm32-wasip1/release/examples/logic.wasm`.

use edge::*;
use edge_common::headermap::HeaderMapView;
use edge_common::host::fake::configure;
use edge_common::host::{Decisions, Feature, Host, Request};
use edge_common::host::{HostError, LogLevel, MetricKind, SharedData};
use std::cell::RefCell;
use std::collections::HashMap;

/// A host whose calls cost nothing: what is left is the features' own logic.
#[derive(Default)]
struct Null {
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
}
impl SharedData for Null {
    fn shared_get(&self, k: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        Ok(match self.shared.borrow().get(k) {
            Some((v, c)) => (Some(v.clone()), Some(*c)),
            None => (None, None),
        })
    }
    fn shared_set(&self, k: &str, v: &[u8], _: Option<u32>) -> Result<(), HostError> {
        let mut s = self.shared.borrow_mut();
        let c = s.get(k).map_or(1, |e| e.1 + 1);
        s.insert(k.into(), (v.to_vec(), c));
        Ok(())
    }
}
impl Host for Null {
    fn request_header_map(&self) -> Option<Vec<u8>> {
        None
    }
    fn set_request_header(&self, _: &str, _: Option<&str>) {}
    fn add_request_header(&self, _: &str, _: &str) {}
    fn set_response_header(&self, _: &str, _: Option<&str>) {}
    fn add_response_header(&self, _: &str, _: &str) {}
    fn property(&self, _: &[&str]) -> Option<Vec<u8>> {
        Some(b"198.51.100.1:1".to_vec())
    }
    fn set_filter_state(&self, _: &str, _: &[u8]) -> Result<(), HostError> {
        Ok(())
    }
    fn now_ns(&self) -> u64 {
        1_700_000_000_000_000_000
    }
    fn define_metric(&self, _: MetricKind, _: &str) -> Result<u32, HostError> {
        Ok(1)
    }
    fn count(&self, _: u32, _: u64) {}
    fn record(&self, _: u32, _: u64) {}
    fn send_reply(&self, _: u32, _: &str, _: &[(&str, &str)], _: &[u8]) {}
    fn http_call(
        &self,
        _: &str,
        _: &[(&str, &str)],
        _: Option<&[u8]>,
        _: std::time::Duration,
    ) -> Result<u32, HostError> {
        Err(HostError::Failed)
    }
    fn grpc_call(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &[u8],
        _: std::time::Duration,
    ) -> Result<u32, HostError> {
        Err(HostError::Failed)
    }
    fn call_response_header_map(&self) -> Option<Vec<u8>> {
        None
    }
    fn call_response_body(&self, _: usize) -> Option<Vec<u8>> {
        None
    }
    fn grpc_response_body(&self, _: usize) -> Option<Vec<u8>> {
        None
    }
    fn log(&self, _: LogLevel, _: &str) {}
}

pub fn logic_only() {
    let token = {
        use cdn_signing::schemes::akamai;
        akamai::generate(
            &akamai::decode_hex_key("52a152a152a152a152a152a152a1").unwrap(),
            akamai::Algorithm::Sha256,
            &akamai::TokenSpec {
                exp: 4_102_444_800,
                acl: Some("/videos/*"),
                ..Default::default()
            },
        )
    };
    let path = format!("/videos/seg-1.ts?__token__={token}");
    let hs: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"GET"), (b":path", path.as_bytes()), (b":authority", b"h"), (b":scheme", b"http"),
            (b"user-agent", b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
            (b"accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
            (b"accept-language", b"en-US,en;q=0.9"), (b"accept-encoding", b"gzip, deflate"),
            (b"upgrade-insecure-requests", b"1"), (b"cookie", b"session=4f2a9c0e1b7d4e3f8a6b5c4d3e2f1a0b; prefs=dark"),
            (b"x-api-key", b"bench-client-1"), (b"x-user-id", b"user-1"),
            (b"x-forwarded-proto", b"http"), (b"x-request-id", b"0b8e2c0e-5d1a-4c3e-9f5e-0a1b2c3d4e5f"),
        ];
    let bytes = edge_common::headermap::serialize(&hs);
    let sections = [
        (
            "cdn",
            r#""cdn_signing":{"routes":[{"name":"videos","path_prefix":"/videos/","verify":{"scheme":"akamai_edgeauth","keys":[{"hex":"52a152a152a152a152a152a152a1"}]}}]}"#,
        ),
        ("bot", r#""bot_detection":{}"#),
        (
            "rl",
            r#""rate_limit":{"rules":[{"name":"api","key":[{"type":"header","name":"x-api-key"}],"requests_per_unit":1000000000,"unit":"second"}]}"#,
        ),
        (
            "stage",
            r#""stage_routing":{"stages":[{"name":"prod","weight":90},{"name":"canary","weight":10}],"salt":"bench","sticky_key":[{"type":"header","name":"x-user-id"},{"type":"client_ip"}]}"#,
        ),
    ];
    let all = sections.iter().map(|s| s.1).collect::<Vec<_>>().join(",");
    let mut rows: Vec<(&str, String)> = sections.iter().map(|(n, s)| (*n, s.to_string())).collect();
    rows.push(("all", all));
    let only = std::env::args().nth(1);
    for (name, sec) in rows {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let (f, _) = configure::<Edge>(&format!("{{{sec}}}"));
        let h = Null::default();
        let n = 400_000;
        let mut t = std::time::Duration::MAX;
        for _ in 0..3 {
            let s = std::time::Instant::now();
            for _ in 0..n {
                let view = HeaderMapView::parse(&bytes).unwrap();
                let req = Request::new(view);
                let mut d = Decisions::default();
                let mut st = EdgeRequest::default();
                std::hint::black_box(f.on_request_headers(&h, &req, &mut d, &mut st));
                f.on_response_headers(&h, &mut st);
            }
            t = t.min(s.elapsed());
        }
        eprintln!("{name}: {:.3} us/request", t.as_secs_f64() * 1e6 / n as f64);
    }
    let s = std::time::Instant::now();
    for _ in 0..400_000 {
        std::hint::black_box(HeaderMapView::parse(std::hint::black_box(&bytes)));
    }
    eprintln!(
        "parse: {:.3} us",
        s.elapsed().as_secs_f64() * 1e6 / 400_000.0
    );
}

fn main() {
    logic_only();
}
