//! Arbitrary user-agents and headers against a configuration using every signal: never a panic;
//! the cached classification always equals the uncached one; the score stays within 0..=100.
#![no_main]
use std::sync::OnceLock;

use bot_detection::config::Config;
use bot_detection::detect::{decide, decide_with, Signals};
use bot_detection::ua::UaCache;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"{"patterns":[{"category":"seo","name":"R","regex":"^acme-[0-9]+"}],"allow_patterns":["InternalApp/"],
 "verified_bots":[{"name":"G","user_agent_contains":["googlebot"],"cidrs":["66.249.64.0/19","2001:4860:4801::/48"]}],
 "tls_fingerprint":{"header":"x-ja4","allow":["good"],"deny":["bad"]},
 "policy":[{"score_below":20,"action":"block"},{"verified":true,"action":"tag"}],"default_action":"tag"}"#;

fn cfg() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| Config::from_json(CONFIG.as_bytes()).expect("fuzz config is valid"))
}

fuzz_target!(|data: &[u8]| {
    let cfg = cfg();
    let mut parts = data.split(|b| *b == 0);
    let ua = parts.next();
    let ch = parts.next();
    let platform = parts.next();
    let fp = parts.next();
    let flags = data.last().copied().unwrap_or(0);
    let s = Signals {
        user_agent: ua,
        accept: flags & 1 != 0,
        accept_language: flags & 2 != 0,
        sec_ch_ua: ch,
        sec_ch_ua_platform: platform,
        fingerprint: fp,
    };
    let ip = move || Some(std::net::IpAddr::from([66, 249, 64 + (flags >> 3), 1]));
    let v = decide(cfg, &s, &ip);
    assert!(v.score <= 100);
    let mut cache = UaCache::default();
    for _ in 0..2 {
        let class = cfg.matcher.classify_cached(ua.unwrap_or(b""), &mut cache);
        assert_eq!(class, cfg.matcher.classify(ua.unwrap_or(b"")));
        assert_eq!(decide_with(cfg, &s, class, &ip), v);
    }
});
