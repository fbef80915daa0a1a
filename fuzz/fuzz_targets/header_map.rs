//! Any bytes as a serialized header map: parsing and every lookup must never panic.
#![no_main]
use edge_common::headermap::HeaderMapView;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(m) = HeaderMapView::parse(data) {
        assert_eq!(m.iter().count(), m.len());
        let _ = m.get(":path");
        let _ = m.get_str("user-agent");
    }
});
