//! Any bytes as the rate limiter's configuration: accepted or rejected, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = rate_limit::config::Config::from_json(data) {
        assert!(!e.to_string().is_empty());
    }
});
