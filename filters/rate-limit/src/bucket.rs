//! Token bucket math as GCRA (the generic cell rate algorithm).
//!
//! A bucket of `burst` tokens refilled at one token every `interval_ns` is fully described by one
//! number, the *theoretical arrival time* (TAT): the instant at which the bucket will be full
//! again. A request at `now` is allowed when `max(TAT, now) + interval - now <= burst * interval`,
//! and then TAT becomes `max(TAT, now) + interval`. A limited request changes nothing. One `u64`
//! of state is what makes a compare-and-swap update in Envoy's shared data possible.
//!
//! Guarantee (property-tested): over any interval of length `d`, at most `burst + d / interval`
//! requests are allowed. The interval is rounded *up* to whole nanoseconds, so rounding can only
//! make the limit stricter, by less than one part in 10^7 for any rate up to 100/ms.

/// How far another worker's clock read may be ahead of ours before a TAT is taken for a clock
/// that stepped back.
pub const CLOCK_STEP_NS: u64 = 1_000_000_000;

/// A bucket's parameters (the state, TAT, is stored elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Nanoseconds per token.
    pub interval_ns: u64,
    /// Bucket size.
    pub burst: u64,
    /// `burst * interval_ns`: how far TAT may run ahead of now.
    pub tolerance_ns: u64,
}

/// What `take` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Allowed; store `tat`. `remaining` tokens are left; the bucket is full again in `full_in_ns`.
    Allowed {
        tat: u64,
        remaining: u64,
        full_in_ns: u64,
    },
    /// Limited; state unchanged. One token is available in `retry_in_ns`.
    Limited { retry_in_ns: u64, full_in_ns: u64 },
}

impl Bucket {
    /// `tokens` per `per_ns`, holding at most `burst`. `None` if any is zero or the product
    /// overflows (config validation reports which).
    pub fn new(tokens: u64, per_ns: u64, burst: u64) -> Option<Self> {
        if tokens == 0 || per_ns == 0 || burst == 0 {
            return None;
        }
        let interval_ns = per_ns.div_ceil(tokens);
        let tolerance_ns = interval_ns.checked_mul(burst)?;
        Some(Self {
            interval_ns,
            burst,
            tolerance_ns,
        })
    }

    /// Takes one token at `now` from a bucket whose stored TAT is `tat` (0 for a new bucket).
    pub fn take(&self, tat: u64, now: u64) -> Take {
        match self.take_up_to(tat, now, 1) {
            TakeN::Granted {
                tat,
                remaining,
                full_in_ns,
                ..
            } => Take::Allowed {
                tat,
                remaining,
                full_in_ns,
            },
            TakeN::Limited {
                retry_in_ns,
                full_in_ns,
            } => Take::Limited {
                retry_in_ns,
                full_in_ns,
            },
        }
    }

    /// Takes between 1 and `n` tokens at `now`: as many as are available, up to `n`. Taking `k`
    /// tokens at once is the same, for the bound, as `k` requests at `now`.
    pub fn take_up_to(&self, tat: u64, now: u64, n: u64) -> TakeN {
        // A TAT further ahead than the tolerance comes from another worker whose clock read was a
        // little later (normal: treat as empty), or from the wall clock stepping back (Envoy's
        // Wasm clock is wall time). Past CLOCK_STEP_NS of slack it is the latter: start the bucket
        // afresh rather than locking the key for the size of the step (one extra burst, once).
        let tat = if tat
            > now
                .saturating_add(self.tolerance_ns)
                .saturating_add(CLOCK_STEP_NS)
        {
            0
        } else {
            tat
        };
        let base = tat.max(now);
        let used = base - now; // <= tolerance + CLOCK_STEP_NS
        let available = self.tolerance_ns.saturating_sub(used) / self.interval_ns;
        if available == 0 {
            let next = base.saturating_add(self.interval_ns) - now;
            return TakeN::Limited {
                retry_in_ns: next.saturating_sub(self.tolerance_ns).max(1),
                full_in_ns: used,
            };
        }
        let granted = available.min(n.max(1));
        let new_tat = base.saturating_add(granted.saturating_mul(self.interval_ns));
        TakeN::Granted {
            tat: new_tat,
            granted,
            remaining: available - granted,
            full_in_ns: new_tat - now,
        }
    }

    /// Tokens left in a bucket with this TAT at `now`, without taking one.
    pub fn available(&self, tat: u64, now: u64) -> u64 {
        let ahead = tat.saturating_sub(now).min(self.tolerance_ns);
        (self.tolerance_ns - ahead) / self.interval_ns
    }
}

/// What `take_up_to` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeN {
    /// `granted` tokens (1..=n) taken; store `tat`.
    Granted {
        tat: u64,
        granted: u64,
        remaining: u64,
        full_in_ns: u64,
    },
    Limited {
        retry_in_ns: u64,
        full_in_ns: u64,
    },
}

/// Whole seconds, rounded up (headers never promise a token earlier than true).
pub fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    const S: u64 = 1_000_000_000;

    fn allowed(t: Take) -> bool {
        matches!(t, Take::Allowed { .. })
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn fresh_bucket_allows_burst_then_limits() {
        let b = Bucket::new(100, S, 100).unwrap();
        assert_eq!(b.interval_ns, 10_000_000);
        let now = 50 * S;
        let mut tat = 0;
        for i in 0..100 {
            match b.take(tat, now) {
                Take::Allowed {
                    tat: t, remaining, ..
                } => {
                    assert_eq!(remaining, 99 - i);
                    tat = t;
                }
                other => panic!("request {i} limited: {other:?}"),
            }
        }
        assert_eq!(
            b.take(tat, now),
            Take::Limited {
                retry_in_ns: 10_000_000,
                full_in_ns: S
            }
        );
        // One interval later exactly one more token.
        assert!(allowed(b.take(tat, now + 10_000_000)));
        assert_eq!(b.available(tat, now + 10_000_000), 1);
        assert_eq!(b.available(tat, now + 2 * S), 100);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn fill_interval_form_and_rounding() {
        // 3 tokens per second: 333,333,334 ns per token (rounded up: never more than 3/s).
        let b = Bucket::new(3, S, 1).unwrap();
        assert_eq!(b.interval_ns, 333_333_334);
        let b = Bucket::new(10, 100_000_000, 20).unwrap(); // tokens_per_fill 10, fill 100 ms
        assert_eq!((b.interval_ns, b.tolerance_ns), (10_000_000, 200_000_000));
        assert_eq!(Bucket::new(0, S, 1), None);
        assert_eq!(Bucket::new(1, S, 0), None);
        assert_eq!(
            Bucket::new(1, u64::MAX, u64::MAX),
            None,
            "overflow is refused"
        );
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(S), 1);
        assert_eq!(ceil_secs(S + 1), 2);
        assert_eq!(ceil_secs(0), 0);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn clock_stepping_back_does_not_lock_the_key() {
        let b = Bucket::new(1, S, 5).unwrap();
        let now = 10_000 * S;
        let mut tat = 0;
        for _ in 0..3 {
            if let Take::Allowed { tat: t, .. } = b.take(tat, now) {
                tat = t;
            }
        }
        // A step back that keeps TAT within the window: the bucket is kept as it is (2 left,
        // minus the second the clock lost).
        match b.take(tat, now - S) {
            Take::Allowed { remaining, .. } => assert_eq!(remaining, 0),
            other => panic!("{other:?}"),
        }
        // A worker whose clock read lags another's (TAT ahead by more than the window, by less
        // than the slack) sees an empty bucket, never a fresh one.
        let mut drained = 0;
        for _ in 0..5 {
            if let Take::Allowed { tat: t, .. } = b.take(drained, now) {
                drained = t;
            }
        }
        assert!(!allowed(b.take(drained, now - 5_000)));
        assert!(!allowed(b.take(drained, now - CLOCK_STEP_NS / 2)));
        // A step back of an hour: the bucket starts afresh instead of locking the key an hour.
        match b.take(tat, now - 3600 * S) {
            Take::Allowed { remaining, .. } => assert_eq!(remaining, 4),
            other => panic!("{other:?}"),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]

            /// Over any interval [a, b] of the request times, the number allowed never exceeds
            /// burst + rate x (b - a).
            #[test]
            fn never_exceeds_burst_plus_rate_times_interval(
                tokens in 1u64..1_000,
                per_ms in 1u64..5_000,
                burst in 1u64..200,
                gaps in proptest::collection::vec(0u64..50_000_000, 1..600),
                start in 0u64..1_000_000_000_000,
            ) {
                let per_ns = per_ms * 1_000_000;
                let b = Bucket::new(tokens, per_ns, burst).unwrap();
                let mut tat = 0;
                let mut now = start;
                let mut allowed_at = Vec::new();
                for g in gaps {
                    now += g;
                    if let Take::Allowed { tat: t, .. } = b.take(tat, now) {
                        tat = t;
                        allowed_at.push(now);
                    }
                }
                let rate_per_ns = tokens as f64 / per_ns as f64;
                for i in 0..allowed_at.len() {
                    for j in i..allowed_at.len() {
                        let n = (j - i + 1) as f64;
                        let bound = burst as f64 + rate_per_ns * (allowed_at[j] - allowed_at[i]) as f64;
                        prop_assert!(n <= bound + 1e-9, "{n} allowed in {} ns, bound {bound}", allowed_at[j] - allowed_at[i]);
                    }
                }
            }

            /// Taking tokens in leases of up to `n` keeps the same bound, counting each granted
            /// token at the time it was taken.
            #[test]
            fn leases_keep_the_bound(
                tokens in 1u64..1_000,
                per_ms in 1u64..2_000,
                burst in 1u64..200,
                n in 1u64..64,
                gaps in proptest::collection::vec(0u64..20_000_000, 1..300),
            ) {
                let per_ns = per_ms * 1_000_000;
                let b = Bucket::new(tokens, per_ns, burst).unwrap();
                let mut tat = 0;
                let mut now = 1_000_000_000_000u64;
                let mut taken: Vec<(u64, u64)> = Vec::new();
                for g in gaps {
                    now += g;
                    if let TakeN::Granted { tat: t, granted, remaining, .. } = b.take_up_to(tat, now, n) {
                        prop_assert!(granted >= 1 && granted <= n);
                        prop_assert_eq!(b.available(t, now), remaining);
                        tat = t;
                        taken.push((now, granted));
                    }
                }
                let rate_per_ns = tokens as f64 / per_ns as f64;
                for i in 0..taken.len() {
                    let mut count = 0;
                    for j in i..taken.len() {
                        count += taken[j].1;
                        let bound = burst as f64 + rate_per_ns * (taken[j].0 - taken[i].0) as f64;
                        prop_assert!(count as f64 <= bound + 1e-9);
                    }
                }
            }

            /// Requests spaced at least one interval apart are never limited, and an idle bucket
            /// refills to exactly `burst`.
            #[test]
            fn paced_requests_always_pass(
                tokens in 1u64..1_000,
                per_ms in 1u64..5_000,
                burst in 1u64..100,
                n in 1usize..300,
            ) {
                let b = Bucket::new(tokens, per_ms * 1_000_000, burst).unwrap();
                let mut tat = 0;
                let mut now = 1_000_000_000_000u64;
                for _ in 0..n {
                    match b.take(tat, now) {
                        Take::Allowed { tat: t, .. } => tat = t,
                        other => prop_assert!(false, "paced request limited: {other:?}"),
                    }
                    now += b.interval_ns;
                }
                prop_assert_eq!(b.available(tat, now + b.tolerance_ns), burst);
            }
        }
    }
}
