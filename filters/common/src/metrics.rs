//! Metric names and batched counters.
//!
//! Every request incrementing an Envoy counter costs a host call; a filter that counts several
//! things per request pays for each. `host::BatchedCounters` sums increments in the worker's VM
//! and adds them to Envoy's counters on the root context's tick (one call per counter per tick).

/// A metric name segment from user text (a rule or category name): ASCII alphanumerics and `_`,
/// everything else becomes `_`, so that Envoy's stats and Prometheus names stay well formed.
pub fn segment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(target_os = "wasi")]
pub mod host {
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    }

    /// Counter increments not yet given to Envoy, by metric id.
    #[derive(Debug, Default)]
    pub struct BatchedCounters {
        counts: Vec<(u32, u64)>,
    }

    impl BatchedCounters {
        pub fn add(&mut self, id: u32, n: u64) {
            match self.counts.iter_mut().find(|(m, _)| *m == id) {
                Some((_, c)) => *c += n,
                None => self.counts.push((id, n)),
            }
        }

        /// Adds the pending counts to Envoy's counters (call on the tick).
        pub fn flush(&mut self) {
            for (id, n) in &mut self.counts {
                if *n > 0 {
                    // SAFETY: a plain ABI call with integer arguments.
                    unsafe {
                        proxy_increment_metric(*id, i64::try_from(*n).unwrap_or(i64::MAX));
                    }
                    *n = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn segments_are_safe() {
        assert_eq!(segment("search_engine"), "search_engine");
        assert_eq!(segment("a-b.c d"), "a_b_c_d");
    }
}
