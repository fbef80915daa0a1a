//! Global rules: a fleet-wide limit kept by a rate limit service (RLS) speaking Envoy's
//! `envoy.service.ratelimit.v3` protocol (edge-ratelimit, envoyproxy/ratelimit, Limitador).
//!
//! Per request that meets a global rule, in order:
//! 1. the breaker: while it is open (after `failures` consecutive failures), the fallback
//!    decides, for `open_ms`; then one request tries the service again;
//! 2. this Envoy's cache for the key (one shared-data entry, all workers): hits left from a
//!    batch (spend one, no call), or a recent `OVER_LIMIT` (limited, no call) until a token can
//!    be available again;
//! 3. otherwise a `ShouldRateLimit` call (`hits_addend` = `batch`), the request paused until it
//!    answers or its timeout passes.
//!
//! A failure (timeout, unreachable, an error status, an answer that does not fit the request)
//! hands the decision to the fallback bucket, or to `failure_mode` without one.

use edge_common::host::{Host, HostError, LogLevel};
use edge_common::rls::{
    Code, Entry, RateLimitDescriptor, RateLimitRequest, RateLimitResponse, Unit,
};
use prost::Message;

use crate::config::{FailureMode, Global, KeyPart, Rule};
use crate::limiter::{Outcome, RequestLine, RequestView, RuleVerdict};

const NS_PER_S: u64 = 1_000_000_000;
/// The longest an `OVER_LIMIT` answer is remembered.
const MAX_HOLD_NS: u64 = NS_PER_S;

/// A call in flight for a paused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub token: u32,
    pub rule: usize,
    pub fp: u64,
    pub hits: u32,
}

/// Why a call failed (each has its metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer within `timeout_ms` (gRPC status 4).
    Timeout,
    /// The service could not be reached: no healthy endpoint, connection refused or reset
    /// (gRPC status 14), or the call could not be dispatched at all.
    Unavailable,
    /// Another gRPC status.
    Status(u32),
    /// An answer that does not decode, has another number of statuses than descriptors sent,
    /// or says `UNKNOWN`.
    BadAnswer,
}

impl Failure {
    pub fn name(&self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Unavailable => "unavailable",
            Failure::Status(_) => "status",
            Failure::BadAnswer => "bad_answer",
        }
    }

    pub fn from_grpc_status(status: u32) -> Failure {
        match status {
            4 => Failure::Timeout,
            14 => Failure::Unavailable,
            s => Failure::Status(s),
        }
    }
}

/// The descriptor for a request: one entry per key part, values as the limiter keys them.
/// `None` when a part is missing (the rule then does not apply, as for local rules) or a header
/// value is not UTF-8 (a descriptor value is a protobuf string).
pub fn descriptor(
    rule: &Rule,
    g: &Global,
    line: &RequestLine,
    req: &dyn RequestView,
) -> Option<Vec<Entry>> {
    let mut out = Vec::with_capacity(rule.key.len());
    for (part, key) in rule.key.iter().zip(&g.descriptor_keys) {
        let value = match part {
            KeyPart::ClientIp => req.client_ip()?.to_string(),
            KeyPart::Header(name) => std::str::from_utf8(req.header(name)?).ok()?.to_string(),
            KeyPart::Path => line.path.to_string(),
            KeyPart::Method => line.method.to_string(),
            KeyPart::Constant(c) => c.clone(),
            KeyPart::BotCategory => req.bot_category()?.to_string(),
            KeyPart::Stage => req.stage()?.to_string(),
        };
        out.push(Entry {
            key: key.clone(),
            value,
        });
    }
    Some(out)
}

/// The encoded `ShouldRateLimit` request.
pub fn request(g: &Global, entries: Vec<Entry>, hits: u32) -> Vec<u8> {
    RateLimitRequest {
        domain: g.domain.clone(),
        descriptors: vec![RateLimitDescriptor { entries }],
        hits_addend: hits,
    }
    .encode_to_vec()
}

/// What the service answered, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub over_limit: bool,
    pub remaining: u64,
    /// Until the service's bucket is full again (its `duration_until_reset`).
    pub reset_ns: u64,
    /// Nanoseconds per token of the service's limit, when it says its limit.
    pub interval_ns: Option<u64>,
}

pub fn parse_answer(body: &[u8]) -> Result<Answer, Failure> {
    let r = RateLimitResponse::decode(body).map_err(|_| Failure::BadAnswer)?;
    let [s] = r.statuses.as_slice() else {
        return Err(Failure::BadAnswer);
    };
    let over_limit = match (Code::try_from(r.overall_code), Code::try_from(s.code)) {
        (Ok(Code::Ok), Ok(Code::Ok)) => false,
        (Ok(Code::OverLimit), Ok(Code::OverLimit)) => true,
        _ => return Err(Failure::BadAnswer),
    };
    let interval_ns = s.current_limit.as_ref().and_then(|l| {
        let unit_s = Unit::try_from(l.unit).ok()?.seconds()?;
        let per = u64::from(l.requests_per_unit);
        (per > 0).then(|| (unit_s.saturating_mul(NS_PER_S) / per).max(1))
    });
    Ok(Answer {
        over_limit,
        remaining: u64::from(s.limit_remaining),
        reset_ns: s
            .duration_until_reset
            .map_or(0, |d| d.as_millis_ceil().saturating_mul(1_000_000)),
        interval_ns,
    })
}

/// How long an `OVER_LIMIT` is remembered: until the hits asked for can be available again
/// (by the service's limit), no longer than its reset, and at most a second.
pub fn hold_ns(a: &Answer, hits: u32) -> u64 {
    let by_rate = a
        .interval_ns
        .map(|i| i.saturating_mul(u64::from(hits.max(1))));
    let hold = match (by_rate, a.reset_ns) {
        (Some(r), 0) => r,
        (Some(r), reset) => r.min(reset),
        (None, 0) => 100_000_000,
        (None, reset) => reset,
    };
    hold.clamp(1_000_000, MAX_HOLD_NS)
}

/// This Envoy's cache entry for a key: hits left from a batch, or a remembered `OVER_LIMIT`,
/// and until when.
pub fn cache_key(ns: &str, fp: u64) -> String {
    format!("{ns}:g:{fp:016x}")
}

/// `left` batched hits, or `None` for a remembered `OVER_LIMIT`; then the expiry.
fn encode(left: Option<u64>, until_ns: u64) -> [u8; 17] {
    let mut out = [0u8; 17];
    out[..8].copy_from_slice(&left.unwrap_or(0).to_le_bytes());
    out[8..16].copy_from_slice(&until_ns.to_le_bytes());
    out[16] = u8::from(left.is_none());
    out
}

fn decode(v: &[u8]) -> Option<(Option<u64>, u64)> {
    let left = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    let until = u64::from_le_bytes(v.get(8..16)?.try_into().ok()?);
    let denied = *v.get(16)? == 1;
    Some(((!denied).then_some(left), until))
}

/// What the cache says for a key now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// A batched hit was spent: allowed.
    Hit,
    /// Limited for this long yet.
    Denied { for_ns: u64 },
    /// Ask the service.
    Miss,
}

/// Spends a batched hit, or reports a remembered `OVER_LIMIT` (CAS-checked: a lost race reads
/// again, a few times, then asks the service).
pub fn from_cache(host: &impl Host, key: &str, now: u64) -> Cached {
    for _ in 0..4 {
        let Ok((Some(v), cas)) = host.shared_get(key) else {
            return Cached::Miss;
        };
        let Some((left, until)) = decode(&v) else {
            return Cached::Miss;
        };
        if now >= until {
            return Cached::Miss;
        }
        let left = match left {
            None => {
                return Cached::Denied {
                    for_ns: until - now,
                }
            }
            Some(0) => return Cached::Miss,
            Some(n) => n,
        };
        match host.shared_set(key, &encode(Some(left - 1), until), cas) {
            Ok(()) => return Cached::Hit,
            Err(HostError::CasMismatch) => continue,
            Err(HostError::Failed) => return Cached::Miss,
        }
    }
    Cached::Miss
}

/// Remembers an answer: `left` batched hits, or an `OVER_LIMIT` (`None`), until `until_ns`.
/// Answers to concurrent calls merge rather than overwrite: granted hits add to those not yet
/// spent, and an `OVER_LIMIT` never discards them (every hit the service granted is used).
pub fn remember(host: &impl Host, key: &str, left: Option<u64>, until_ns: u64, now: u64) {
    for _ in 0..4 {
        let Ok((cur, cas)) = host.shared_get(key) else {
            return;
        };
        let live = cur
            .as_deref()
            .and_then(decode)
            .filter(|(_, until)| now < *until);
        let merged = match (left, live) {
            (Some(n), Some((Some(have), until))) => {
                (Some(have.saturating_add(n)), until.max(until_ns))
            }
            (None, Some((Some(have), _))) if have > 0 => return,
            (new, _) => (new, until_ns),
        };
        match host.shared_set(key, &encode(merged.0, merged.1), cas) {
            Err(HostError::CasMismatch) => continue,
            _ => return,
        }
    }
}

/// A rule's breaker (per worker): consecutive failures, and until when it is open.
#[derive(Debug, Clone, Copy, Default)]
pub struct Breaker {
    failures: u32,
    open_until_ns: u64,
    open: bool,
}

impl Breaker {
    pub fn is_open(&self, now: u64) -> bool {
        self.open && now < self.open_until_ns
    }

    /// Records a failure; logs once when the breaker opens.
    pub fn failed(&mut self, host: &impl Host, rule: &str, g: &Global, why: Failure, now: u64) {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= g.breaker_failures && !self.is_open(now) {
            if !self.open {
                let status = match why {
                    Failure::Status(s) => format!(" {s}"),
                    _ => String::new(),
                };
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "rate_limit: rule {rule}: rate limit service on cluster {} failing ({}{status}, {} in a row); {} decides for {} ms at a time",
                        g.cluster,
                        why.name(),
                        self.failures,
                        if g.fallback { "the fallback bucket" } else { "failure_mode" },
                        g.breaker_open_ns / 1_000_000
                    ),
                );
            }
            self.open = true;
            self.open_until_ns = now.saturating_add(g.breaker_open_ns);
        }
    }

    /// Records an answer; logs once when the breaker closes.
    pub fn answered(&mut self, host: &impl Host, rule: &str, g: &Global) {
        if self.open {
            host.log(
                LogLevel::Info,
                &format!(
                    "rate_limit: rule {rule}: rate limit service on cluster {} answers again",
                    g.cluster
                ),
            );
        }
        *self = Breaker::default();
    }
}

/// The verdict of a failure without a fallback bucket.
pub fn failure_verdict(g: &Global, rule: usize) -> RuleVerdict {
    RuleVerdict {
        rule,
        outcome: Outcome::Error {
            denied: g.failure_mode == FailureMode::Deny,
        },
        remaining: 0,
        reset_s: 0,
        retry_after_s: 1,
    }
}

pub fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(NS_PER_S)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::{RateLimit, Report};
    use edge_common::host::fake::{answer, configure, run, FakeHost};
    use edge_common::host::Decision;
    use edge_common::rls::{DescriptorStatus, Duration as PDuration, RateLimit as Limit};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    fn global(extra: &str) -> (RateLimit, FakeHost) {
        configure::<RateLimit>(&format!(
            r#"{{"rules":[
                {{"name":"local","key":[{{"type":"client_ip"}}],"requests_per_unit":2,"unit":"minute","continue":true}},
                {{"name":"fleet","key":[{{"type":"header","name":"x-key"}}],
                  "global":{{"cluster":"rls","domain":"edge"{extra}}}}}]}}"#
        ))
    }

    fn get(h: &FakeHost, key: &str, ip: &str) {
        h.request(&[
            (":method", "GET"),
            (":path", "/"),
            (":authority", "h"),
            ("x-key", key),
        ])
        .client(ip);
    }

    fn reply(code: Code, remaining: u32, reset_ms: u64, per_second: u32) -> Vec<u8> {
        RateLimitResponse {
            overall_code: code as i32,
            statuses: vec![DescriptorStatus {
                code: code as i32,
                current_limit: Some(Limit {
                    name: "fleet".into(),
                    requests_per_unit: per_second,
                    unit: Unit::Second as i32,
                }),
                limit_remaining: remaining,
                duration_until_reset: Some(PDuration::from_micros(reset_ms * 1000)),
            }],
        }
        .encode_to_vec()
    }

    /// Runs a request to the pause, then answers its call with `body` and gRPC `status`.
    fn call(f: &RateLimit, h: &FakeHost, status: u32, body: &[u8]) -> (Decision, Report) {
        let mut out = run(f, h);
        assert_eq!(out.decision, Decision::Pause);
        let token = out.state.pending.map(|p| p.token).unwrap_or_default();
        h.set_call_response(&[], body);
        let d = answer(f, h, &mut out.state, token, status);
        (d, out.state)
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn asks_the_service_and_remembers_over_limit() {
        let (f, h) = global(r#","timeout_ms":30"#);
        get(&h, "k1", "203.0.113.1:1");
        let start = h.trace().len();
        let (d, _) = call(&f, &h, 0, &reply(Code::Ok, 9, 1000, 10));
        assert_eq!(d, Decision::Continue);
        // The local rule and the global rule share one clock read; the answer reads it again.
        let clock_reads = h.trace()[start..]
            .iter()
            .filter(|c| **c == "now_ns")
            .count();
        assert_eq!(clock_reads, 2);
        let calls = h.calls();
        assert_eq!(calls.len(), 1);
        let c = &calls[0];
        assert_eq!(c.cluster, "rls");
        assert_eq!(
            c.headers,
            [
                (
                    ":service".to_string(),
                    edge_common::rls::SERVICE.to_string()
                ),
                (":method".into(), "ShouldRateLimit".into())
            ]
        );
        assert_eq!(c.timeout, std::time::Duration::from_millis(30));
        let sent = RateLimitRequest::decode(&c.body[..]).unwrap();
        assert_eq!(
            (
                sent.domain.as_str(),
                sent.hits_addend,
                sent.descriptors[0].entries.clone()
            ),
            (
                "edge",
                1,
                vec![Entry {
                    key: "x-key".into(),
                    value: "k1".into()
                }]
            )
        );
        // OVER_LIMIT: a 429 with Retry-After from the service's rate (10/s: 100 ms, so 1 s).
        get(&h, "k1", "203.0.113.2:1");
        let (d, _) = call(&f, &h, 0, &reply(Code::OverLimit, 0, 1000, 10));
        assert_eq!(d, Decision::Replied);
        let r = h.reply().unwrap();
        assert_eq!((r.status, r.header("retry-after")), (429, Some("1")));
        assert_eq!(r.header("ratelimit"), Some("\"fleet\";r=0;t=1"));
        assert_eq!(r.header("ratelimit-policy"), None);
        assert_eq!(r.details, "rate_limit.limited.fleet");
        // For the next 100 ms the key is limited without a call.
        get(&h, "k1", "203.0.113.3:1");
        assert_eq!(run(&f, &h).decision, Decision::Replied);
        assert_eq!(h.calls().len(), 2);
        h.advance(std::time::Duration::from_millis(101));
        get(&h, "k1", "203.0.113.4:1");
        assert_eq!(run(&f, &h).decision, Decision::Pause);
        // Local rules run first: a third request from one address never reaches the service.
        for _ in 0..2 {
            get(&h, "k2", "198.51.100.1:1");
            run(&f, &h);
        }
        get(&h, "k2", "198.51.100.1:1");
        assert_eq!(run(&f, &h).decision, Decision::Replied);
        assert_eq!(h.calls().len(), 5);
        assert_eq!(h.metric("rate_limit.fleet.rls.ok"), Some(1));
        assert_eq!(h.metric("rate_limit.fleet.rls.over_limit"), Some(1));
        assert_eq!(h.metric("rate_limit.fleet.rls.cached_over_limit"), Some(1));
        assert_eq!(h.metric("rate_limit.fleet.limited"), Some(2));
        assert_eq!(h.metric("rate_limit.local.limited"), Some(1));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn a_batch_serves_the_next_requests_until_it_expires() {
        let (f, h) = global(r#","batch":5,"batch_ttl_ms":200"#);
        get(&h, "k", "203.0.113.1:1");
        let (d, _) = call(&f, &h, 0, &reply(Code::Ok, 95, 1000, 100));
        assert_eq!(d, Decision::Continue);
        let sent = RateLimitRequest::decode(&h.calls()[0].body[..]).unwrap();
        assert_eq!(sent.hits_addend, 5);
        for i in 0..4 {
            get(&h, "k", &format!("203.0.113.{}:1", 10 + i));
            assert_eq!(run(&f, &h).decision, Decision::Continue);
        }
        assert_eq!(h.calls().len(), 1);
        get(&h, "k", "203.0.113.20:1");
        assert_eq!(run(&f, &h).decision, Decision::Pause);
        // Unused hits expire.
        let (f, h) = global(r#","batch":5,"batch_ttl_ms":200"#);
        get(&h, "k", "203.0.113.1:1");
        call(&f, &h, 0, &reply(Code::Ok, 95, 1000, 100));
        h.advance(std::time::Duration::from_millis(201));
        get(&h, "k", "203.0.113.2:1");
        assert_eq!(run(&f, &h).decision, Decision::Pause);
        assert_eq!(h.metric("rate_limit.fleet.rls.batched"), Some(0));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn concurrent_answers_merge_so_no_granted_hit_is_lost() {
        let (f, h) = global(r#","batch":5"#);
        // Two requests miss the cache at once and both ask.
        get(&h, "k", "203.0.113.1:1");
        let mut a = run(&f, &h);
        get(&h, "k", "203.0.113.2:1");
        let mut b = run(&f, &h);
        get(&h, "k", "203.0.113.3:1");
        let mut c = run(&f, &h);
        let token = |o: &edge_common::host::fake::Outcome<Report>| {
            o.state.pending.map(|p| p.token).unwrap_or_default()
        };
        let (ta, tb, tc) = (token(&a), token(&b), token(&c));
        h.set_call_response(&[], &reply(Code::Ok, 0, 50, 100));
        assert_eq!(answer(&f, &h, &mut a.state, ta, 0), Decision::Continue);
        h.set_call_response(&[], &reply(Code::Ok, 0, 50, 100));
        assert_eq!(answer(&f, &h, &mut c.state, tc, 0), Decision::Continue);
        h.set_call_response(&[], &reply(Code::OverLimit, 0, 50, 100));
        assert_eq!(answer(&f, &h, &mut b.state, tb, 0), Decision::Replied);
        // 4 + 4 batched hits survive the later OVER_LIMIT.
        let served = (0..10)
            .filter(|i| {
                get(&h, "k", &format!("198.51.100.{i}:1"));
                run(&f, &h).decision == Decision::Continue
            })
            .count();
        assert_eq!(served, 8);
        assert_eq!(h.calls().len(), 5, "the ninth and tenth requests ask again");
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn failures_go_to_the_fallback_and_open_the_breaker() {
        let (f, h) = global(
            r#","fallback":{"requests_per_unit":2,"unit":"minute"},"circuit_breaker":{"failures":3,"open_ms":1000}"#,
        );
        let mut admitted = 0;
        // Timeout, unavailable, another status: three failures; the fallback (2/min) decides.
        for (i, status) in [4u32, 14, 13].into_iter().enumerate() {
            get(&h, "k", &format!("203.0.113.{i}:1"));
            if call(&f, &h, status, b"").0 == Decision::Continue {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 2);
        // The breaker is open: no call, the fallback still decides.
        get(&h, "k", "203.0.113.9:1");
        assert_eq!(run(&f, &h).decision, Decision::Replied);
        assert_eq!(h.calls().len(), 3);
        let warns: Vec<String> = h.logs().into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            warns,
            ["rate_limit: rule fleet: rate limit service on cluster rls failing (status 13, 3 in a row); the fallback bucket decides for 1000 ms at a time"]
        );
        // After open_ms one request asks again; an answer closes the breaker (one log line).
        h.advance(std::time::Duration::from_millis(1001));
        get(&h, "k", "203.0.113.10:1");
        assert_eq!(
            call(&f, &h, 0, &reply(Code::Ok, 5, 100, 10)).0,
            Decision::Continue
        );
        assert_eq!(h.logs().len(), 2);
        for (m, n) in [
            ("failure.timeout", 1),
            ("failure.unavailable", 1),
            ("failure.status", 1),
            ("fallback", 4),
            ("breaker_open", 1),
            ("ok", 1),
        ] {
            assert_eq!(
                h.metric(&format!("rate_limit.fleet.rls.{m}")),
                Some(n),
                "{m}"
            );
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn bad_answers_and_failure_modes() {
        let two = RateLimitResponse {
            overall_code: Code::Ok as i32,
            statuses: vec![DescriptorStatus::default(), DescriptorStatus::default()],
        }
        .encode_to_vec();
        let unknown = reply(Code::Unknown, 0, 0, 0);
        // failure_mode allow (the default): let through, counted.
        let (f, h) = global("");
        for (i, body) in [&two[..], &unknown[..], b"\xff\xff"]
            .into_iter()
            .enumerate()
        {
            get(&h, "k", &format!("203.0.113.{i}:1"));
            assert_eq!(call(&f, &h, 0, body).0, Decision::Continue);
        }
        assert_eq!(h.metric("rate_limit.fleet.rls.failure.bad_answer"), Some(3));
        assert_eq!(h.metric("rate_limit.fleet.errors"), Some(3));
        // failure_mode deny: a 429 (details say it was a store failure).
        let (f, h) = global(r#","failure_mode":"deny""#);
        get(&h, "k", "203.0.113.1:1");
        assert_eq!(call(&f, &h, 14, b"").0, Decision::Replied);
        let r = h.reply().unwrap();
        assert_eq!(
            (r.status, r.details.as_str()),
            (429, "rate_limit.store_failure.fleet")
        );
        // A call that cannot be dispatched (unknown cluster) fails at once: no pause.
        h.calls_fail.set(true);
        get(&h, "k", "203.0.113.2:1");
        assert_eq!(run(&f, &h).decision, Decision::Replied);
        assert_eq!(
            h.metric("rate_limit.fleet.rls.failure.unavailable"),
            Some(2)
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn global_config_errors_name_the_field() {
        let err = |rule: &str| {
            crate::config::Config::from_json(format!(r#"{{"rules":[{rule}]}}"#).as_bytes())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            err(r#"{"name":"g","key":[{"type":"client_ip"}],"requests_per_unit":5,"unit":"second","global":{"cluster":"rls","domain":"d"}}"#),
            "invalid configuration: rules[0].requests_per_unit: a global rule's limit is set in the rate limit service; `global.fallback` sets the local bucket used while it fails"
        );
        assert_eq!(
            err(
                r#"{"name":"g","key":[{"type":"client_ip"}],"global":{"cluster":"rls","domain":"d","timeout_ms":0}}"#
            ),
            "invalid configuration: rules[0].global.timeout_ms: 0 is out of range 1..=10000"
        );
        assert_eq!(
            err(r#"{"name":"g","key":[{"type":"client_ip"}],"continue":true,"global":{"cluster":"rls","domain":"d"}}"#),
            "invalid configuration: rules[0].continue: a global rule is the last rule a request meets (put local rules before it, with `continue: true`)"
        );
        assert_eq!(
            err(
                r#"{"name":"g","key":[{"type":"client_ip"}],"global":{"cluster":"rls","domain":"d","descriptor_keys":["a","b"]}}"#
            ),
            "invalid configuration: rules[0].global.descriptor_keys: 2 names for 1 key parts"
        );
        assert!(
            err(r#"{"name":"g","key":[{"type":"client_ip"}],"global":{"cluster":"rls"}}"#)
                .contains("missing field `domain`")
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn hold_follows_the_rate_and_the_reset() {
        let a = |reset_ns, interval_ns| Answer {
            over_limit: true,
            remaining: 0,
            reset_ns,
            interval_ns,
        };
        assert_eq!(hold_ns(&a(0, Some(10_000_000)), 1), 10_000_000);
        assert_eq!(hold_ns(&a(0, Some(10_000_000)), 20), 200_000_000);
        assert_eq!(hold_ns(&a(50_000_000, Some(10_000_000)), 20), 50_000_000);
        assert_eq!(hold_ns(&a(0, None), 1), 100_000_000);
        assert_eq!(hold_ns(&a(0, Some(60 * NS_PER_S)), 1), NS_PER_S);
    }
}
