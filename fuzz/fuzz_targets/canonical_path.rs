//! Any string as `:path`: the canonical form never panics, is idempotent, and keeps its shape.
#![no_main]
use edge_common::path::{canonical_path, RequestPath};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = RequestPath::new(s);
    if let Ok(c) = canonical_path(s) {
        assert_eq!(canonical_path(&c).as_deref(), Ok(c.as_ref()));
        if c != "*" {
            assert!(c.starts_with('/') && !c.contains("//") && !c.contains(';'));
        }
    }
});
