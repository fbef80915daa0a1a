//! Arbitrary requests (a serialized header map, a clock) against a fixed configuration with every
//! kind of rule and key, over an in-memory shared store with CAS: never a panic, and the table
//! never grows past `max_buckets`.
#![no_main]
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use edge_common::headermap::HeaderMapView;
use libfuzzer_sys::fuzz_target;
use rate_limit::config::Config;
use rate_limit::limiter::{
    decide, ensure_slots, Leases, RequestLine, RequestView, SharedStore, StoreError,
};

#[derive(Default)]
struct Mem(RefCell<HashMap<String, (Vec<u8>, u32)>>, RefCell<u32>);

impl SharedStore for Mem {
    fn get(&self, k: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Ok(self
            .0
            .borrow()
            .get(k)
            .map_or((None, None), |(v, c)| (Some(v.clone()), Some(*c))))
    }
    fn set(&self, k: &str, v: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut m = self.0.borrow_mut();
        if let (Some(c), Some((_, cur))) = (cas, m.get(k)) {
            if c != *cur {
                return Err(StoreError::CasMismatch);
            }
        }
        *self.1.borrow_mut() += 1;
        let n = *self.1.borrow();
        m.insert(k.to_string(), (v.to_vec(), n));
        Ok(())
    }
}

struct Req<'a>(HeaderMapView<'a>, Option<IpAddr>);

impl RequestView for Req<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name)
    }
    fn client_ip(&self) -> Option<IpAddr> {
        self.1
    }
}

const CONFIG: &str = r#"{"max_buckets":64,"failure_mode":"deny","rules":[
 {"name":"a","match":{"path_regex":"/api/v[0-9]+/.*","methods":["POST"],"headers":[{"name":"x-t","equals":"1"}]},
  "key":[{"type":"client_ip"},{"type":"header","name":"x-key"}],"requests_per_unit":3,"unit":"second","continue":true},
 {"name":"b","match":{"path_prefix":"/","hosts":["example.com"]},"key":[{"type":"path"},{"type":"method"}],
  "tokens_per_fill":5000,"fill_interval_ms":1,"burst":400,"missing_key":"shared_bucket"},
 {"name":"c","key":[{"type":"header","name":"user-agent"},{"type":"constant","value":"x"}],"requests_per_unit":1,"unit":"hour"}]}"#;

fn cfg() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| Config::from_json(CONFIG.as_bytes()).expect("fuzz config is valid"))
}

fuzz_target!(|data: &[u8]| {
    let cfg = cfg();
    let store = Mem::default();
    if ensure_slots("f", cfg.max_buckets, &store).is_err() {
        return;
    }
    let mut leases = Leases::default();
    // First 9 bytes: a clock and an IP selector; the rest, several header maps in a row.
    let (head, mut rest) = data.split_at(data.len().min(9));
    let mut now = head
        .iter()
        .take(8)
        .fold(0u64, |a, b| a << 8 | u64::from(*b));
    let ip: Option<IpAddr> = match head.get(8) {
        Some(b) if b % 3 == 0 => None,
        Some(b) => Some(IpAddr::from([192, 0, 2, *b])),
        None => None,
    };
    for _ in 0..8 {
        let Some(view) = HeaderMapView::parse(rest) else {
            break;
        };
        let line = RequestLine::new(
            view.get_str(":path"),
            view.get_str(":method"),
            view.get_str(":authority"),
        );
        let _ = decide(
            cfg,
            "f",
            &line,
            &Req(view, ip),
            &store,
            &mut leases,
            &|| now,
            &mut |_| {},
        );
        now = now.wrapping_add(1_000_000);
        rest = rest.get(rest.len() / 2..).unwrap_or(&[]);
    }
    assert!(store.0.borrow().len() <= 64);
});
