//! Any bytes as the stage router's configuration, and as stage data from a control plane against
//! a fixed configuration: accepted or rejected, never a panic; accepted data always has a full
//! bucket table whose stage shares equal the weights.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stage_routing::config::{Config, BUCKETS};

const CONFIG: &str = r#"{"stages":[{"name":"prod","weight":80},{"name":"canary","weight":10},{"name":"next","weight":10}],
 "allowlists":[{"stage":"next","cidrs":["10.0.0.0/8"]}],
 "control_plane":{"cluster":"cp","path":"/stages"}}"#;

fn cfg() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| Config::from_json(CONFIG.as_bytes()).expect("fuzz config is valid"))
}

fuzz_target!(|data: &[u8]| {
    if let Err(e) = Config::from_json(data) {
        assert!(!e.to_string().is_empty());
    }
    match cfg().parse_stage_data(data) {
        Ok(d) => {
            assert_eq!(d.table.len(), BUCKETS as usize);
            for (i, w) in d.weights.iter().enumerate() {
                let n = d.table.iter().filter(|&&s| usize::from(s) == i).count();
                assert_eq!(n as u32, *w);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
