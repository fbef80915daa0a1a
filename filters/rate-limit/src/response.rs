//! Response headers for a decision.
//!
//! - IETF httpapi draft (draft-ietf-httpapi-ratelimit-headers-08 and later):
//!   `RateLimit-Policy: "<rule>";q=<burst>;w=<seconds to refill the burst>` and
//!   `RateLimit: "<rule>";r=<tokens remaining>;t=<seconds until full>`.
//! - Envoy native style: `X-RateLimit-Limit: <burst>`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`
//!   (seconds until the bucket is full again).
//! - Limited responses always carry `Retry-After: <seconds until one token>` (at least 1).

use crate::config::Config;
use crate::limiter::{Outcome, RuleVerdict};

/// Passes each header for `v` (the decision's report), limited or allowed, to `emit`: no list
/// is built, and the static `RateLimit-Policy` value is borrowed from the configuration.
pub fn each_header(cfg: &Config, v: &RuleVerdict, limited: bool, emit: &mut dyn FnMut(&str, &str)) {
    if limited {
        emit("retry-after", &v.retry_after_s.max(1).to_string());
    }
    // On a store failure the numbers are unknown: say nothing rather than something wrong.
    if matches!(v.outcome, Outcome::Error { .. }) {
        return;
    }
    let Some(rule) = cfg.rules.get(v.rule) else {
        return;
    };
    // A global rule's quota is the rate limit service's: only what its answer said.
    let global = rule.global.is_some();
    if cfg.ietf_draft {
        if !global {
            emit("ratelimit-policy", &rule.policy_header);
        }
        emit(
            "ratelimit",
            &format!("\"{}\";r={};t={}", rule.name, v.remaining, v.reset_s),
        );
    }
    if cfg.x_ratelimit {
        if !global {
            emit("x-ratelimit-limit", &rule.bucket.burst.to_string());
        }
        emit("x-ratelimit-remaining", &v.remaining.to_string());
        emit("x-ratelimit-reset", &v.reset_s.to_string());
    }
}

/// The headers of [`each_header`] as a list (for the local reply, and tests).
pub fn headers(cfg: &Config, v: &RuleVerdict, limited: bool) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(6);
    each_header(cfg, v, limited, &mut |k, val| {
        let k: &'static str = match k {
            "retry-after" => "retry-after",
            "ratelimit-policy" => "ratelimit-policy",
            "ratelimit" => "ratelimit",
            "x-ratelimit-limit" => "x-ratelimit-limit",
            "x-ratelimit-remaining" => "x-ratelimit-remaining",
            _ => "x-ratelimit-reset",
        };
        out.push((k, val.to_string()));
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn formats_both_header_families() {
        let cfg = Config::from_json(
            br#"{"rate_limit_headers":{"ietf_draft":true,"x_ratelimit":true},"rules":[{"name":"api","key":[{"type":"path"}],"requests_per_unit":100,"unit":"second","burst":100}]}"#,
        )
        .unwrap();
        let v = RuleVerdict {
            rule: 0,
            outcome: Outcome::Limited,
            remaining: 0,
            reset_s: 1,
            retry_after_s: 1,
        };
        assert_eq!(
            headers(&cfg, &v, true),
            vec![
                ("retry-after", "1".to_string()),
                ("ratelimit-policy", "\"api\";q=100;w=1".to_string()),
                ("ratelimit", "\"api\";r=0;t=1".to_string()),
                ("x-ratelimit-limit", "100".to_string()),
                ("x-ratelimit-remaining", "0".to_string()),
                ("x-ratelimit-reset", "1".to_string()),
            ]
        );
        let ok = RuleVerdict {
            outcome: Outcome::Allowed,
            remaining: 42,
            retry_after_s: 0,
            ..v
        };
        assert_eq!(
            headers(&cfg, &ok, false)[1],
            ("ratelimit", "\"api\";r=42;t=1".to_string())
        );
        let err = RuleVerdict {
            outcome: Outcome::Error { denied: true },
            ..v
        };
        assert_eq!(
            headers(&cfg, &err, true),
            vec![("retry-after", "1".to_string())]
        );
    }
}
