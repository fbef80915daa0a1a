//! Stable hashing for sticky decisions and bounded tables.
//!
//! XXH3-64 with a seed: fast, well distributed, and specified, so the same key maps to the same
//! bucket on every worker, every Envoy, and every release of these filters. Never change the
//! algorithm of a function here: users' sticky assignments depend on it.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Stable 64-bit hash of `data` under `seed`.
pub fn hash64(seed: u64, data: &[u8]) -> u64 {
    xxh3_64_with_seed(data, seed)
}

/// Maps `data` to a bucket in `0..buckets` without modulo bias worth measuring: the 64-bit hash
/// is scaled (Lemire's multiply-shift), so every bucket gets `2^64 / buckets` hashes ± 1.
/// `buckets == 0` yields 0.
pub fn bucket(seed: u64, data: &[u8], buckets: u32) -> u32 {
    scale(hash64(seed, data), buckets)
}

/// Scales a uniformly distributed 64-bit value into `0..n`.
pub fn scale(h: u64, n: u32) -> u32 {
    // (h * n) >> 64 < n, so the cast is lossless.
    ((u128::from(h) * u128::from(n)) >> 64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn hash_is_stable_across_builds_and_targets() {
        // Pinned values: if these change, every sticky assignment in the field moves.
        assert_eq!(hash64(0, b""), 0x2d06800538d394c2);
        assert_eq!(hash64(0, b"user-42"), hash64(0, b"user-42"));
        assert_ne!(hash64(0, b"user-42"), hash64(1, b"user-42"));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn bucket_is_in_range_and_uniform() {
        assert_eq!(bucket(7, b"x", 0), 0);
        assert_eq!(scale(u64::MAX, 10_000), 9_999);
        assert_eq!(scale(0, 10_000), 0);
        let mut counts = [0u32; 10];
        for i in 0..100_000u32 {
            let b = bucket(99, &i.to_le_bytes(), 10);
            counts[b as usize] += 1;
        }
        for c in counts {
            // Expect 10,000 each; 5 sigma is about 475.
            assert!((9_500..=10_500).contains(&c), "{counts:?}");
        }
    }
}
