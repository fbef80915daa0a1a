//! The rate-limit feature: per request, the canonical path check, the rules' decision against
//! buckets in shared data, and the limited reply or the headers for the upstream's response.

use std::cell::RefCell;
use std::net::IpAddr;

use edge_common::headermap::HeaderMapView;
use edge_common::host::{
    counter, Decision, Decisions, Feature, Host, LogLevel, Request, StartError,
};
use edge_common::path::{self, PathVerdict, RequestPath};

use std::time::Duration;

use edge_common::host::CallResponse;

use crate::config::{Bundle, Config, Global, Mode, Rule};
use crate::global::{self, Breaker, Cached, Failure, Pending};
use crate::limiter::{self, Leases, Outcome, RequestLine, RequestView, RuleVerdict};
use crate::response;

/// Per-rule counters: allowed, limited, shadow_limited, errors.
#[derive(Clone, Copy)]
struct RuleMetrics {
    allowed: u32,
    limited: u32,
    shadow_limited: u32,
    errors: u32,
}

pub struct RateLimit {
    pub cfg: Config,
    /// Shared-data namespace of the bucket table.
    ns: String,
    metrics: Vec<RuleMetrics>,
    /// `rate_limit.bad_path`: paths refused (or, in shadow mode, that would be) with 400.
    bad_path: u32,
    /// This worker's leased tokens (high-rate rules), shared by its requests.
    leases: RefCell<Leases>,
    /// Per rule: the global rule's counters and this worker's breaker.
    global: Vec<Option<GlobalMetrics>>,
    breakers: RefCell<Vec<Breaker>>,
}

/// A request's state: the verdict whose headers go on the upstream's response (allowed, enforce
/// mode), and the rate limit service call it waits for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub verdict: Option<RuleVerdict>,
    pub pending: Option<Pending>,
    /// The deciding rule and its outcome in words, for the request's explanation.
    pub note: Option<(usize, &'static str)>,
}

/// A global rule's counters (`rate_limit.<rule>.rls.<what>`).
#[derive(Clone, Copy)]
struct GlobalMetrics {
    ok: u32,
    over_limit: u32,
    batched: u32,
    cached_deny: u32,
    timeout: u32,
    unavailable: u32,
    status: u32,
    bad_answer: u32,
    fallback: u32,
    breaker_open: u32,
}

/// The request as the limiter sees it: headers as bytes (a value that is not UTF-8 must neither
/// panic nor be altered), the client address on demand, and earlier features' decisions.
struct View<'a, H: Host> {
    headers: &'a HeaderMapView<'a>,
    req: &'a Request<'a>,
    host: &'a H,
    decisions: &'a Decisions,
}

impl<H: Host> RequestView for View<'_, H> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    fn client_ip(&self) -> Option<IpAddr> {
        self.req.client_ip(self.host)
    }

    fn bot_category(&self) -> Option<&str> {
        self.decisions.bot_category
    }

    fn verified_bot(&self) -> Option<&str> {
        self.decisions.verified_bot.as_deref()
    }

    fn stage(&self) -> Option<&str> {
        self.decisions.stage.as_deref()
    }
}

impl RateLimit {
    /// Starts the feature: the bucket table in shared data (created once per Envoy), metrics.
    pub fn with_config(cfg: Config, host: &impl Host) -> Result<Self, StartError> {
        // Shared data is scoped to the VM id; the root id keeps two plugins in one VM apart.
        let root_id = host
            .property(&["plugin_root_id"])
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "rate_limit".into());
        let ns = format!("rl:{root_id}");
        limiter::ensure_slots(&ns, cfg.max_buckets, host).map_err(|e| {
            StartError::Host(format!(
                "rate_limit: cannot create the bucket table in shared data: {e:?}"
            ))
        })?;
        let mut metrics = Vec::with_capacity(cfg.rules.len());
        for r in &cfg.rules {
            let m = |what: &str| counter(host, &format!("rate_limit.{}.{what}", r.name));
            metrics.push(RuleMetrics {
                allowed: m("allowed")?,
                limited: m("limited")?,
                shadow_limited: m("shadow_limited")?,
                errors: m("errors")?,
            });
        }
        let bad_path = counter(host, "rate_limit.bad_path")?;
        let mut global = Vec::with_capacity(cfg.rules.len());
        for r in &cfg.rules {
            global.push(match r.global {
                None => None,
                Some(_) => {
                    let m =
                        |what: &str| counter(host, &format!("rate_limit.{}.rls.{what}", r.name));
                    Some(GlobalMetrics {
                        ok: m("ok")?,
                        over_limit: m("over_limit")?,
                        batched: m("batched")?,
                        cached_deny: m("cached_over_limit")?,
                        timeout: m("failure.timeout")?,
                        unavailable: m("failure.unavailable")?,
                        status: m("failure.status")?,
                        bad_answer: m("failure.bad_answer")?,
                        fallback: m("fallback")?,
                        breaker_open: m("breaker_open")?,
                    })
                }
            });
        }
        let breakers = RefCell::new(vec![Breaker::default(); cfg.rules.len()]);
        Ok(Self {
            cfg,
            ns,
            metrics,
            bad_path,
            leases: RefCell::default(),
            global,
            breakers,
        })
    }

    /// Configures from JSON for a module whose other features decide `bundle`'s verdicts.
    pub fn configure_in(
        json: &[u8],
        bundle: &Bundle,
        host: &impl Host,
    ) -> Result<Self, StartError> {
        Self::with_config(Config::from_json_in(json, bundle)?, host)
    }
}

/// The global rule a request is at: the rule, its service settings and counters, its index, the
/// key's fingerprint.
#[derive(Clone, Copy)]
struct At<'a> {
    rule: &'a Rule,
    g: &'a Global,
    gm: &'a GlobalMetrics,
    i: usize,
    fp: u64,
}

impl RateLimit {
    fn count(&self, host: &impl Host, v: &RuleVerdict) {
        let shadow = self.cfg.mode == Mode::Shadow;
        let Some(m) = self.metrics.get(v.rule) else {
            return;
        };
        let id = match v.outcome {
            Outcome::Allowed => m.allowed,
            Outcome::Limited if shadow => m.shadow_limited,
            Outcome::Limited => m.limited,
            Outcome::Error { .. } => m.errors,
        };
        host.count(id, 1);
        if let (Outcome::Error { denied: true }, false) = (v.outcome, shadow) {
            host.count(m.limited, 1);
        }
    }

    /// A global rule's answer from the rate limit service (or its failure).
    fn call_answered(
        &self,
        host: &impl Host,
        report: &mut Report,
        token: u32,
        response: CallResponse,
    ) -> Decision {
        let Some(p) = report.pending.filter(|p| p.token == token) else {
            return Decision::Continue;
        };
        report.pending = None;
        let (Some(rule), Some(Some(gm))) = (self.cfg.rules.get(p.rule), self.global.get(p.rule))
        else {
            return Decision::Continue;
        };
        let Some(g) = &rule.global else {
            return Decision::Continue;
        };
        let now = host.now_ns();
        let answer = match response {
            CallResponse::Grpc { status: 0, message } => host
                .grpc_response_body(message)
                .ok_or(Failure::BadAnswer)
                .and_then(|b| global::parse_answer(&b)),
            CallResponse::Grpc { status, .. } => Err(Failure::from_grpc_status(status)),
            CallResponse::Http { .. } => Err(Failure::BadAnswer),
        };
        let a = match answer {
            Ok(a) => a,
            Err(why) => {
                let at = At {
                    rule,
                    g,
                    gm,
                    i: p.rule,
                    fp: p.fp,
                };
                return self.failed(host, &at, why, now, report);
            }
        };
        if let Ok(mut b) = self.breakers.try_borrow_mut() {
            if let Some(b) = b.get_mut(p.rule) {
                b.answered(host, &rule.name, g);
            }
        }
        let key = global::cache_key(&self.ns, p.fp);
        let v = if a.over_limit {
            host.count(gm.over_limit, 1);
            let hold = global::hold_ns(&a, p.hits);
            global::remember(host, &key, None, now.saturating_add(hold), now);
            RuleVerdict {
                rule: p.rule,
                outcome: Outcome::Limited,
                remaining: 0,
                reset_s: global::ceil_secs(a.reset_ns),
                retry_after_s: global::ceil_secs(hold).max(1),
            }
        } else {
            host.count(gm.ok, 1);
            if p.hits > 1 {
                global::remember(
                    host,
                    &key,
                    Some(u64::from(p.hits - 1)),
                    now.saturating_add(g.batch_ttl_ns),
                    now,
                );
            }
            RuleVerdict {
                rule: p.rule,
                outcome: Outcome::Allowed,
                remaining: a.remaining,
                reset_s: global::ceil_secs(a.reset_ns),
                retry_after_s: 0,
            }
        };
        self.count(host, &v);
        let limited = v.outcome == Outcome::Limited;
        self.finish(host, Some(v), limited, report)
    }

    /// Adds the verdict to the request's explanation (`rate_limit=<rule>:<outcome>`).
    fn explain(&self, report: &mut Report, decisions: &mut Decisions) {
        if decisions.explain.is_none() {
            return;
        }
        if let Some((rule, outcome)) = report.note.take() {
            let name = self.cfg.rules.get(rule).map_or("", |r| r.name.as_str());
            decisions.note("rate_limit", &format!("{name}:{outcome}"));
        }
    }

    /// Applies the decision: the limited reply, or the verdict kept for the response headers.
    fn finish(
        &self,
        host: &impl Host,
        v: Option<RuleVerdict>,
        limited: bool,
        report: &mut Report,
    ) -> Decision {
        let cfg = &self.cfg;
        let shadow = cfg.mode == Mode::Shadow;
        if let Some(v) = &v {
            report.note = Some((
                v.rule,
                match (v.outcome, limited, shadow) {
                    (Outcome::Error { .. }, true, false) => "error_denied",
                    (Outcome::Error { .. }, _, _) => "error_allowed",
                    (_, true, true) => "shadow_limited",
                    (_, true, false) => "limited",
                    _ => "allowed",
                },
            ));
        }
        if shadow {
            return Decision::Continue;
        }
        let Some(v) = v else {
            return Decision::Continue;
        };
        if limited {
            let mut hs = response::headers(cfg, &v, true);
            hs.push(("content-type", cfg.limited_content_type.clone()));
            let hs: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let rule = cfg.rules.get(v.rule).map_or("", |r| r.name.as_str());
            let details = match v.outcome {
                Outcome::Error { .. } => format!("rate_limit.store_failure.{rule}"),
                _ => format!("rate_limit.limited.{rule}"),
            };
            host.send_reply(
                cfg.limited_status,
                &details,
                &hs,
                cfg.limited_body.as_bytes(),
            );
            return Decision::Replied;
        }
        if cfg.headers_on_allowed && (cfg.ietf_draft || cfg.x_ratelimit) {
            report.verdict = Some(v);
        }
        Decision::Continue
    }

    /// A global rule applies: the cache, the breaker, or a call to the rate limit service.
    #[allow(clippy::too_many_arguments)]
    fn ask(
        &self,
        host: &impl Host,
        line: &RequestLine,
        view: &dyn RequestView,
        i: usize,
        fp: u64,
        now: u64,
        report: &mut Report,
    ) -> Decision {
        let (Some(rule), Some(Some(gm))) = (self.cfg.rules.get(i), self.global.get(i)) else {
            return Decision::Continue;
        };
        let Some(g) = &rule.global else {
            return Decision::Continue;
        };
        let Some(entries) = global::descriptor(rule, g, line, view) else {
            return Decision::Continue;
        };
        let key = global::cache_key(&self.ns, fp);
        match global::from_cache(host, &key, now) {
            Cached::Hit => {
                host.count(gm.batched, 1);
                let v = RuleVerdict {
                    rule: i,
                    outcome: Outcome::Allowed,
                    remaining: 0,
                    reset_s: 0,
                    retry_after_s: 0,
                };
                self.count(host, &v);
                return self.finish(host, Some(v), false, report);
            }
            Cached::Denied { for_ns } => {
                host.count(gm.cached_deny, 1);
                let v = RuleVerdict {
                    rule: i,
                    outcome: Outcome::Limited,
                    remaining: 0,
                    reset_s: global::ceil_secs(for_ns),
                    retry_after_s: global::ceil_secs(for_ns).max(1),
                };
                self.count(host, &v);
                return self.finish(host, Some(v), true, report);
            }
            Cached::Miss => {}
        }
        let open = self
            .breakers
            .try_borrow()
            .ok()
            .and_then(|b| b.get(i).map(|b| b.is_open(now)))
            .unwrap_or(false);
        if open {
            host.count(gm.breaker_open, 1);
            return self.fall_back(host, &At { rule, g, gm, i, fp }, now, report);
        }
        let body = global::request(g, entries, g.batch);
        match host.grpc_call(
            &g.cluster,
            edge_common::rls::SERVICE,
            edge_common::rls::METHOD,
            &body,
            Duration::from_millis(g.timeout_ms),
        ) {
            Ok(token) => {
                report.pending = Some(Pending {
                    token,
                    rule: i,
                    fp,
                    hits: g.batch,
                });
                Decision::Pause
            }
            Err(_) => self.failed(
                host,
                &At { rule, g, gm, i, fp },
                Failure::Unavailable,
                now,
                report,
            ),
        }
    }

    fn failed(
        &self,
        host: &impl Host,
        at: &At<'_>,
        why: Failure,
        now: u64,
        report: &mut Report,
    ) -> Decision {
        let At { rule, g, gm, i, .. } = *at;
        host.count(
            match why {
                Failure::Timeout => gm.timeout,
                Failure::Unavailable => gm.unavailable,
                Failure::Status(_) => gm.status,
                Failure::BadAnswer => gm.bad_answer,
            },
            1,
        );
        if let Ok(mut b) = self.breakers.try_borrow_mut() {
            if let Some(b) = b.get_mut(i) {
                b.failed(host, &rule.name, g, why, now);
            }
        }
        self.fall_back(host, at, now, report)
    }

    /// The service failed (or its breaker is open): the fallback bucket, or `failure_mode`.
    fn fall_back(&self, host: &impl Host, at: &At<'_>, now: u64, report: &mut Report) -> Decision {
        let At { rule, g, gm, i, fp } = *at;
        let v = if g.fallback {
            host.count(gm.fallback, 1);
            let Ok(mut leases) = self.leases.try_borrow_mut() else {
                return Decision::Continue;
            };
            limiter::take(&self.cfg, &self.ns, rule, i, fp, host, &mut leases, now)
        } else {
            global::failure_verdict(g, i)
        };
        self.count(host, &v);
        let limited = match v.outcome {
            Outcome::Allowed => false,
            Outcome::Limited => true,
            Outcome::Error { denied } => denied,
        };
        self.finish(host, Some(v), limited, report)
    }
}

impl Feature for RateLimit {
    type Request = Report;

    fn configure(json: &[u8], host: &impl Host) -> Result<Self, StartError> {
        Self::configure_in(json, &Bundle::default(), host)
    }

    fn describe(&self) -> String {
        format!(
            "rate_limit: {} rule(s), {} buckets, mode {:?}",
            self.cfg.rules.len(),
            self.cfg.max_buckets,
            self.cfg.mode
        )
    }

    fn on_request_headers(
        &self,
        host: &impl Host,
        req: &Request<'_>,
        decisions: &mut Decisions,
        report: &mut Report,
    ) -> Decision {
        let cfg = &self.cfg;
        let headers = &req.headers;
        let raw_path = req.path();
        let shadow = cfg.mode == Mode::Shadow;
        // Rules match the canonical path; a path that is unsafe, or not canonical under a path
        // condition, is refused (or rewritten to what is checked), never passed unchecked.
        let req_path = RequestPath::new(raw_path);
        if cfg.uses_paths {
            match path::verdict(&req_path, raw_path, cfg.paths, |p| cfg.path_covered(p)) {
                PathVerdict::Check => {}
                PathVerdict::Rewrite(p) => {
                    if !shadow {
                        host.set_request_header(":path", Some(&p));
                    }
                }
                PathVerdict::Reject(code) => {
                    host.count(self.bad_path, 1);
                    if !shadow {
                        host.send_reply(
                            400,
                            &format!("rate_limit.{code}"),
                            &[
                                ("content-type", "application/json"),
                                ("x-rate-limit-reason", code),
                            ],
                            path::reject_body(code).as_bytes(),
                        );
                        return Decision::Replied;
                    }
                }
            }
        }
        let line = RequestLine::new(
            Some(req_path.canonical()),
            headers.get_str(":method"),
            headers.get_str(":authority"),
        );
        let clock = || req.now_ns(host);
        let mut count = |v: &RuleVerdict| self.count(host, v);
        let view = View {
            headers,
            req,
            host,
            decisions,
        };
        let d = {
            let Ok(mut leases) = self.leases.try_borrow_mut() else {
                host.log(
                    LogLevel::Error,
                    "rate_limit: lease table busy; request not limited",
                );
                return Decision::Continue;
            };
            limiter::decide(
                cfg,
                &self.ns,
                &line,
                &view,
                host,
                &mut leases,
                &clock,
                &mut count,
            )
        };
        let out = if let Some((i, fp)) = d.global {
            // The request's clock: read once, shared with any local rule before.
            let now = req.now_ns(host);
            self.ask(host, &line, &view, i, fp, now, report)
        } else {
            self.finish(host, d.report, d.limited, report)
        };
        self.explain(report, decisions);
        out
    }

    fn decision_filter_state(&self) -> Option<&'static str> {
        self.cfg
            .decision_filter_state
            .then_some("rate_limit.decision")
    }

    fn on_request_call_response(
        &self,
        host: &impl Host,
        report: &mut Report,
        decisions: &mut Decisions,
        token: u32,
        response: CallResponse,
    ) -> Decision {
        let d = self.call_answered(host, report, token, response);
        self.explain(report, decisions);
        d
    }

    fn on_response_headers(&self, host: &impl Host, report: &mut Report) {
        if let Some(v) = report.verdict.take() {
            response::each_header(&self.cfg, &v, false, &mut |k, val| {
                host.set_response_header(k, Some(val));
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_common::host::fake::{configure, respond, run, FakeHost};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    fn limiter(extra: &str) -> (RateLimit, FakeHost) {
        configure::<RateLimit>(&format!(
            r#"{{{extra}"max_buckets":64,"rate_limit_headers":{{"ietf_draft":true,"x_ratelimit":true,"on_allowed":true}},
               "rules":[{{"name":"api","match":{{"path_prefix":"/api/"}},"key":[{{"type":"header","name":"x-key"}}],
                          "requests_per_unit":1,"unit":"minute","burst":2}}]}}"#
        ))
    }

    fn get(h: &FakeHost, path: &str, key: &str) {
        h.request(&[
            (":method", "GET"),
            (":path", path),
            (":authority", "h"),
            ("x-key", key),
        ]);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn allowed_then_limited_with_exact_headers_and_body() {
        let (f, h) = limiter("");
        get(&h, "/api/x", "a");
        let mut out = run(&f, &h);
        assert_eq!(out.decision, Decision::Continue);
        respond(&f, &h, &mut out.state);
        assert_eq!(
            h.response_headers(),
            [
                (
                    "ratelimit-policy".to_string(),
                    "\"api\";q=2;w=120".to_string()
                ),
                ("ratelimit".into(), "\"api\";r=1;t=60".into()),
                ("x-ratelimit-limit".into(), "2".into()),
                ("x-ratelimit-remaining".into(), "1".into()),
                ("x-ratelimit-reset".into(), "60".into()),
            ]
        );
        get(&h, "/api/y", "a");
        assert_eq!(run(&f, &h).decision, Decision::Continue);
        get(&h, "/api/z", "a");
        assert_eq!(run(&f, &h).decision, Decision::Replied);
        let r = h.reply().unwrap();
        assert_eq!((r.status, r.text().as_str()), (429, "rate limited\n"));
        assert_eq!(r.header("retry-after"), Some("60"));
        assert_eq!(r.header("ratelimit"), Some("\"api\";r=0;t=120"));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.details, "rate_limit.limited.api");
        // Another key has its own bucket; a path outside the rule is not limited.
        get(&h, "/api/z", "b");
        assert_eq!(run(&f, &h).decision, Decision::Continue);
        get(&h, "/static/z", "a");
        assert_eq!(run(&f, &h).decision, Decision::Continue);
        assert_eq!(h.metric("rate_limit.api.allowed"), Some(3));
        assert_eq!(h.metric("rate_limit.api.limited"), Some(1));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn by_default_only_limited_responses_carry_rate_limit_headers() {
        let (f, h) = configure::<RateLimit>(
            r#"{"rules":[{"name":"api","key":[{"type":"header","name":"x-key"}],
                "requests_per_unit":1,"unit":"minute","burst":1}]}"#,
        );
        get(&h, "/api/x", "a");
        let mut out = run(&f, &h);
        // Map, clock, the key's two candidate slots, the bucket write.
        assert_eq!((out.decision, out.host_calls), (Decision::Continue, 5));
        let before = h.host_calls();
        respond(&f, &h, &mut out.state);
        assert_eq!((h.response_headers(), h.host_calls() - before), (vec![], 0));
        get(&h, "/api/x", "a");
        assert_eq!(run(&f, &h).decision, Decision::Replied);
        let r = h.reply().unwrap();
        assert_eq!(r.header("ratelimit"), Some("\"api\";r=0;t=60"));
        assert_eq!(r.header("ratelimit-policy"), Some("\"api\";q=1;w=60"));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn spellings_of_a_limited_path_are_refused_not_admitted() {
        let (f, h) = limiter("");
        for p in [
            "//api/x",
            "/%61pi/x",
            "/api;v=1/x",
            "/x/../api/x",
            "/api%2Fx",
        ] {
            get(&h, p, "a");
            assert_eq!(run(&f, &h).decision, Decision::Replied, "{p}");
            let r = h.reply().unwrap();
            assert_eq!(
                (r.status, r.header("x-rate-limit-reason")),
                (400, Some("non_canonical_path"))
            );
        }
        // Case folds by default: /API/ shares /api/'s bucket.
        for _ in 0..2 {
            get(&h, "/API/x", "a");
            assert_eq!(run(&f, &h).decision, Decision::Continue);
        }
        get(&h, "/api/x", "a");
        assert_eq!(run(&f, &h).decision, Decision::Replied);
        assert_eq!(h.metric("rate_limit.bad_path"), Some(5));
        let (f, h) = limiter(r#""paths":{"non_canonical":"forward_canonical"},"#);
        get(&h, "//api/./x?q=1", "a");
        assert_eq!(run(&f, &h).decision, Decision::Continue);
        assert_eq!(h.forwarded_header(":path").as_deref(), Some("/api/x?q=1"));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn shadow_mode_and_failure_modes() {
        let (f, h) = limiter(r#""mode":"shadow","#);
        for _ in 0..4 {
            get(&h, "/api/x", "a");
            let mut out = run(&f, &h);
            assert_eq!(out.decision, Decision::Continue);
            respond(&f, &h, &mut out.state);
            assert!(h.response_headers().is_empty());
        }
        assert_eq!(h.metric("rate_limit.api.shadow_limited"), Some(2));
        assert_eq!(h.metric("rate_limit.api.limited"), Some(0));
        let (f, h) = limiter(r#""failure_mode":"deny","#);
        h.shared_down.set(true);
        get(&h, "/api/x", "a");
        assert_eq!(run(&f, &h).decision, Decision::Replied);
        let r = h.reply().unwrap();
        assert_eq!(
            (r.status, r.details.as_str()),
            (429, "rate_limit.store_failure.api")
        );
        assert_eq!(h.metric("rate_limit.api.errors"), Some(1));
        let (f, h) = limiter("");
        h.shared_down.set(true);
        get(&h, "/api/x", "a");
        assert_eq!(run(&f, &h).decision, Decision::Continue);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn the_table_marker_makes_a_second_worker_cheap() {
        let (_, h) = limiter("");
        let before = h.host_calls();
        let again = RateLimit::configure(
            br#"{"max_buckets":64,"rules":[{"name":"a","key":[{"type":"path"}],"requests_per_unit":1,"unit":"second"}]}"#,
            &h,
        );
        assert!(again.is_ok());
        // The plugin_root_id property and the marker read: no walk over the 64 slots.
        assert_eq!(h.host_calls() - before, 2);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn bot_and_stage_conditions_need_edge() {
        let h = FakeHost::new();
        let e = RateLimit::configure(
            br#"{"rules":[{"name":"b","match":{"bot_categories":["unknown_bot"]},"key":[{"type":"client_ip"}],"requests_per_unit":1,"unit":"second"}]}"#,
            &h,
        )
        .err()
        .unwrap();
        assert_eq!(
            e.to_string(),
            "invalid configuration: rules[0].match.bot_categories: needs edge.wasm with a `bot_detection` section, which decides it"
        );
    }
}
