//! Prometheus metrics, served as text on `/metrics` (with `/healthz`).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use edge_common::rls::Code;

use crate::store::StoreError;

#[derive(Default)]
pub struct Metrics {
    ok: AtomicU64,
    over_limit: AtomicU64,
    unknown: AtomicU64,
    redis_unavailable: AtomicU64,
    redis_timeout: AtomicU64,
    redis_protocol: AtomicU64,
    reload_ok: AtomicU64,
    reload_error: AtomicU64,
}

impl Metrics {
    pub fn answer(&self, code: Code) {
        let c = match code {
            Code::Ok => &self.ok,
            Code::OverLimit => &self.over_limit,
            Code::Unknown => &self.unknown,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn redis_error(&self, e: &StoreError) {
        let c = match e {
            StoreError::Unavailable(_) => &self.redis_unavailable,
            StoreError::Timeout => &self.redis_timeout,
            StoreError::Protocol(_) => &self.redis_protocol,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reload(&self, ok: bool) {
        let c = if ok {
            &self.reload_ok
        } else {
            &self.reload_error
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        let _ = writeln!(s, "# HELP edge_ratelimit_answers_total ShouldRateLimit answers by overall code.\n# TYPE edge_ratelimit_answers_total counter");
        for (code, v) in [
            ("ok", &self.ok),
            ("over_limit", &self.over_limit),
            ("unknown", &self.unknown),
        ] {
            let _ = writeln!(
                s,
                "edge_ratelimit_answers_total{{code=\"{code}\"}} {}",
                g(v)
            );
        }
        let _ = writeln!(s, "# HELP edge_ratelimit_redis_errors_total Redis calls that failed, by cause.\n# TYPE edge_ratelimit_redis_errors_total counter");
        for (kind, v) in [
            ("unavailable", &self.redis_unavailable),
            ("timeout", &self.redis_timeout),
            ("protocol", &self.redis_protocol),
        ] {
            let _ = writeln!(
                s,
                "edge_ratelimit_redis_errors_total{{cause=\"{kind}\"}} {}",
                g(v)
            );
        }
        let _ = writeln!(s, "# HELP edge_ratelimit_config_reloads_total Limits file reloads.\n# TYPE edge_ratelimit_config_reloads_total counter");
        for (r, v) in [("ok", &self.reload_ok), ("error", &self.reload_error)] {
            let _ = writeln!(
                s,
                "edge_ratelimit_config_reloads_total{{result=\"{r}\"}} {}",
                g(v)
            );
        }
        s
    }
}
