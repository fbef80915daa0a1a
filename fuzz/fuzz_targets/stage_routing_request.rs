//! Arbitrary requests (a serialized header map, a client address) against a configuration with
//! every feature, and arbitrary control-plane responses through the poller: never a panic, the
//! stage is always a configured one, and an override only ever selects an allowed stage.
#![no_main]
use std::net::IpAddr;
use std::sync::OnceLock;

use edge_common::headermap::HeaderMapView;
use libfuzzer_sys::fuzz_target;
use stage_routing::assign::{assign, Reason, Request};
use stage_routing::config::Config;
use stage_routing::poll::{Poller, Response};

const CONFIG: &str = r#"{"stages":[{"name":"prod","weight":85.5},{"name":"canary","weight":12.25},{"name":"next","weight":2.25}],
 "salt":"f","sticky_key":[{"type":"cookie","name":"uid"},{"type":"header","name":"x-user-id"},{"type":"client_ip"}],
 "overrides":{"header":"x-o","cookie":"o","query":"stage","stages":["canary"]},
 "allowlists":[{"stage":"next","cidrs":["10.0.0.0/8","2001:db8::/32"],"hosts":["*.corp.example","n.example"]}],
 "pin_cookie":{"name":"stage","secret":"fuzz-pin-secret-0123456789"},
 "control_plane":{"cluster":"cp","path":"/s","poll_interval_ms":100,"max_backoff_ms":1000}}"#;

fn cfg() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| Config::from_json(CONFIG.as_bytes()).expect("fuzz config is valid"))
}

fuzz_target!(|data: &[u8]| {
    let cfg = cfg();
    let (head, rest) = data.split_at(data.len().min(3));
    let ip: Option<IpAddr> = match head {
        [a, b, c] if a % 3 == 1 => Some(IpAddr::from([10, *b, *c, 1])),
        [a, b, c] if a % 3 == 2 => Some(IpAddr::from([*b, *c, 0, 1])),
        _ => None,
    };
    if let Some(view) = HeaderMapView::parse(rest) {
        let h = |n: &str| view.get_str(n);
        let a = assign(
            cfg,
            &cfg.data,
            &Request {
                authority: view.get_str(":authority").unwrap_or(""),
                path: view.get_str(":path").unwrap_or(""),
                header: &h,
                cookie: view.get_str("cookie"),
                client_ip: &|| ip,
                now: 1_800_000_000,
            },
        );
        assert!(a.stage < cfg.stages.len());
        if a.reason == Reason::Override {
            assert_eq!(a.stage, 1);
        }
    }
    // The same bytes as a control-plane response (status from the first two bytes).
    let Some(cp) = &cfg.control_plane else { return };
    let mut p = Poller::new(cp, 0, 7);
    let status = head
        .get(..2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]) % 600);
    let _ = p.on_response(
        cfg,
        1_000,
        u64::from(head.first().copied().unwrap_or(0)),
        &Response {
            status,
            etag: None,
            body: rest,
        },
    );
    assert!(p.next_at_ms() >= 1_000 && p.next_at_ms() <= 1_000 + 1_000 + 10);
});
