//! Arbitrary requests (serialized header maps, a clock, a client address) through the rate-limit
//! feature on the fake host (shared data with CAS), with every kind of rule and key: never a panic,
//! and the table never grows past `max_buckets` (plus its size marker).
#![no_main]
use std::time::Duration;

use edge_common::headermap::HeaderMapView;
use edge_common::host::fake::{run, FakeHost};
use edge_common::host::Feature;
use libfuzzer_sys::fuzz_target;
use rate_limit::RateLimit;

const CONFIG: &str = r#"{"max_buckets":64,"failure_mode":"deny","rules":[
 {"name":"a","match":{"path_regex":"/api/v[0-9]+/.*","methods":["POST"],"headers":[{"name":"x-t","equals":"1"}]},
  "key":[{"type":"client_ip"},{"type":"header","name":"x-key"}],"requests_per_unit":3,"unit":"second","continue":true},
 {"name":"b","match":{"path_prefix":"/","hosts":["example.com"]},"key":[{"type":"path"},{"type":"method"}],
  "tokens_per_fill":5000,"fill_interval_ms":1,"burst":400,"missing_key":"shared_bucket"},
 {"name":"c","key":[{"type":"header","name":"user-agent"},{"type":"constant","value":"x"}],"requests_per_unit":1,"unit":"hour"}]}"#;

fuzz_target!(|data: &[u8]| {
    let host = FakeHost::new();
    let Ok(f) = RateLimit::configure(CONFIG.as_bytes(), &host) else {
        return;
    };
    // First 9 bytes: a clock and an IP selector; the rest, several header maps in a row.
    let (head, mut rest) = data.split_at(data.len().min(9));
    let now = head
        .iter()
        .take(8)
        .fold(0u64, |a, b| a << 8 | u64::from(*b));
    host.set_now_ns(now);
    match head.get(8) {
        Some(b) if b % 3 == 0 => {}
        Some(b) => {
            host.client(&format!("192.0.2.{b}:1"));
        }
        None => {}
    }
    for _ in 0..8 {
        let Some(view) = HeaderMapView::parse(rest) else {
            break;
        };
        host.request(&[]);
        for (k, v) in view.iter() {
            host.request_header_bytes(&String::from_utf8_lossy(k), v);
        }
        let _ = run(&f, &host);
        host.advance(Duration::from_millis(1));
        rest = rest.get(rest.len() / 2..).unwrap_or(&[]);
    }
    assert!(host.shared_keys() <= 65);
});
