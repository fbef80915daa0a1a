//! `edge.wasm`: the four features in one module, in one pass per request.
//!
//! The configuration has one optional section per feature (`cdn_signing`, `bot_detection`,
//! `rate_limit`, `stage_routing`), each exactly that feature's own configuration; an absent
//! section costs nothing. Per request the header map is read once, then:
//!
//! 1. cdn-signing verifies (and strips, or signs);
//! 2. bot detection decides (and tags or blocks);
//! 3. stage routing *assigns* the stage (nothing applied yet);
//! 4. the rate limiter decides, with rules that may match or key on the bot verdict
//!    (`bot_categories`, `verified_bot`, `{"type":"bot_category"}`) and the stage
//!    (`stages`, `{"type":"stage"}`);
//! 5. stage routing applies the assignment (stage header, pin cookie, counters).
//!
//! A local reply ends the pass. Every feature is the same code as in its own module.

use bot_detection::BotDetection;
use cdn_signing::CdnSigning;
use edge_common::host::{CallResponse, Decision, Decisions, Feature, Host, Request, StartError};
use edge_common::{parse_config, ConfigError};
use rate_limit::config::Bundle;
use rate_limit::feature::Report;
use rate_limit::RateLimit;
use serde::Deserialize;
use stage_routing::assign::Assignment;
use stage_routing::feature::PinState;
use stage_routing::StageRouting;

/// The configuration as written: each section is passed to its feature as is.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdge {
    #[serde(default)]
    cdn_signing: Option<serde_json::Value>,
    #[serde(default)]
    bot_detection: Option<serde_json::Value>,
    #[serde(default)]
    rate_limit: Option<serde_json::Value>,
    #[serde(default)]
    stage_routing: Option<serde_json::Value>,
}

pub struct Edge {
    pub cdn: Option<CdnSigning>,
    pub bot: Option<BotDetection>,
    pub rate_limit: Option<RateLimit>,
    pub stage: Option<StageRouting>,
}

/// What a request keeps for its response: the rate limiter's report, the pin cookie.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeRequest {
    pub rate_limit: Report,
    pub stage: PinState,
    /// The stage assignment of a request waiting for the rate limit service, applied when it
    /// is let through.
    pub pending_stage: Option<Assignment>,
}

/// Configures one section, naming it in any error.
fn section<F>(
    name: &str,
    value: Option<serde_json::Value>,
    start: impl FnOnce(&[u8]) -> Result<F, StartError>,
) -> Result<Option<F>, StartError> {
    let Some(v) = value else {
        return Ok(None);
    };
    if !v.is_object() {
        return Err(
            ConfigError::new(name, "must be a JSON object (the feature's configuration)").into(),
        );
    }
    match start(v.to_string().as_bytes()) {
        Ok(f) => Ok(Some(f)),
        Err(StartError::Config(e)) => Err(StartError::Config(e.at(name))),
        Err(e) => Err(e),
    }
}

impl Feature for Edge {
    type Request = EdgeRequest;

    fn configure(json: &[u8], host: &impl Host) -> Result<Self, StartError> {
        let raw: RawEdge = parse_config(json)?;
        if raw.cdn_signing.is_none()
            && raw.bot_detection.is_none()
            && raw.rate_limit.is_none()
            && raw.stage_routing.is_none()
        {
            return Err(ConfigError::new(
                "",
                "configure at least one of cdn_signing, bot_detection, rate_limit, stage_routing",
            )
            .into());
        }
        let cdn = section("cdn_signing", raw.cdn_signing, |j| {
            CdnSigning::configure(j, host)
        })?;
        let bot = section("bot_detection", raw.bot_detection, |j| {
            BotDetection::configure(j, host)
        })?;
        let stage = section("stage_routing", raw.stage_routing, |j| {
            StageRouting::configure(j, host)
        })?;
        let bundle = Bundle {
            bot_categories: bot.as_ref().map(|_| {
                bot_detection::category::Category::ALL
                    .iter()
                    .map(|c| c.as_str())
                    .collect()
            }),
            stages: stage.as_ref().map(|s| s.cfg.stages.clone()),
        };
        let rate_limit = section("rate_limit", raw.rate_limit, |j| {
            RateLimit::configure_in(j, &bundle, host)
        })?;
        Ok(Edge {
            cdn,
            bot,
            rate_limit,
            stage,
        })
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = [
            self.cdn.as_ref().map(Feature::describe),
            self.bot.as_ref().map(Feature::describe),
            self.rate_limit.as_ref().map(Feature::describe),
            self.stage.as_ref().map(Feature::describe),
        ]
        .into_iter()
        .flatten()
        .collect();
        format!("edge: {}", parts.join("; "))
    }

    fn on_request_headers(
        &self,
        host: &impl Host,
        req: &Request<'_>,
        decisions: &mut Decisions,
        state: &mut EdgeRequest,
    ) -> Decision {
        if let Some(f) = &self.cdn {
            if f.on_request_headers(host, req, decisions, &mut ()) == Decision::Replied {
                return Decision::Replied;
            }
        }
        if let Some(f) = &self.bot {
            if f.on_request_headers(host, req, decisions, &mut ()) == Decision::Replied {
                return Decision::Replied;
            }
        }
        let assignment = self.stage.as_ref().map(|s| {
            let a = s.assign(host, req, &s.data());
            decisions.stage = s.cfg.stages.get(a.stage).cloned();
            s.note(&a, decisions);
            a
        });
        if let Some(f) = &self.rate_limit {
            match f.on_request_headers(host, req, decisions, &mut state.rate_limit) {
                Decision::Continue => {}
                Decision::Replied => return Decision::Replied,
                Decision::Pause => {
                    state.pending_stage = assignment;
                    return Decision::Pause;
                }
            }
        }
        if let (Some(s), Some(a)) = (&self.stage, assignment) {
            s.apply(host, req, a, &mut state.stage);
        }
        Decision::Continue
    }

    fn on_response_headers(&self, host: &impl Host, state: &mut EdgeRequest) {
        if let Some(f) = &self.rate_limit {
            f.on_response_headers(host, &mut state.rate_limit);
        }
        if let Some(f) = &self.stage {
            f.on_response_headers(host, &mut state.stage);
        }
    }

    /// One filter state key for the whole pass, when any section asks for its decisions.
    fn decision_filter_state(&self) -> Option<&'static str> {
        let asked = self
            .bot
            .as_ref()
            .is_some_and(|f| f.cfg.decision_filter_state)
            || self
                .cdn
                .as_ref()
                .is_some_and(|f| f.cfg.decision_filter_state)
            || self
                .rate_limit
                .as_ref()
                .is_some_and(|f| f.cfg.decision_filter_state)
            || self
                .stage
                .as_ref()
                .is_some_and(|f| f.cfg.decision_filter_state);
        asked.then_some("edge.decision")
    }

    fn on_request_call_response(
        &self,
        host: &impl Host,
        state: &mut EdgeRequest,
        decisions: &mut Decisions,
        token: u32,
        response: CallResponse,
    ) -> Decision {
        let Some(f) = &self.rate_limit else {
            return Decision::Continue;
        };
        let d = f.on_request_call_response(host, &mut state.rate_limit, decisions, token, response);
        if d != Decision::Continue {
            return d;
        }
        // Let through: the stage is applied now, on the request's headers as they are.
        if let (Some(s), Some(a)) = (&self.stage, state.pending_stage.take()) {
            if let Some(bytes) = host.request_header_map() {
                if let Some(view) = edge_common::headermap::HeaderMapView::parse(&bytes) {
                    let req = Request::new(view);
                    s.apply(host, &req, a, &mut state.stage);
                }
            }
        }
        Decision::Continue
    }

    fn on_tick(&self, host: &impl Host) {
        if let Some(f) = &self.bot {
            f.on_tick(host);
        }
        if let Some(f) = &self.stage {
            f.on_tick(host);
        }
    }

    /// Polls (bot ranges, stage data): each feature answers only the calls it made.
    fn on_call_response(&self, host: &impl Host, token: u32, response: CallResponse) {
        if let Some(f) = &self.bot {
            f.on_call_response(host, token, response);
        }
        if let Some(f) = &self.stage {
            f.on_call_response(host, token, response);
        }
    }
}

#[cfg(target_os = "wasi")]
proxy_wasm::main! {{
    edge_common::host::wasm::start::<Edge>();
}}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_common::host::fake::{configure, respond, run, FakeHost};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const AKAMAI_KEY: &str = "52a152a152a152a152a152a152a1";

    /// The README's example: unknown bots at 1/minute per client, verified search engines
    /// unlimited, canary users with their own quota, everyone else a shared default.
    fn edge() -> (Edge, FakeHost) {
        configure::<Edge>(&format!(
            r#"{{
            "cdn_signing": {{"routes": [{{"name": "videos", "path_prefix": "/videos/",
                "verify": {{"scheme": "akamai_edgeauth", "keys": [{{"hex": "{AKAMAI_KEY}"}}]}}}}]}},
            "bot_detection": {{
                "verified_bots": [{{"name": "Googlebot", "user_agent_contains": ["googlebot"], "cidrs": ["66.249.64.0/19"]}}],
                "policy": [{{"categories": ["scanner", "impersonator"], "action": "block"}}],
                "default_action": "allow"}},
            "rate_limit": {{"rate_limit_headers": {{"ietf_draft": false}}, "rules": [
                {{"name": "crawlers", "match": {{"bot_categories": ["search_engine"], "verified_bot": true}}, "unlimited": true}},
                {{"name": "bots", "match": {{"bot_categories": ["unknown_bot", "http_library"]}},
                  "key": [{{"type": "client_ip"}}], "requests_per_unit": 1, "unit": "minute", "burst": 1}},
                {{"name": "canary", "match": {{"stages": ["canary"]}}, "key": [{{"type": "stage"}}],
                  "requests_per_unit": 2, "unit": "minute", "burst": 2}},
                {{"name": "default", "key": [{{"type": "header", "name": "x-user-id"}}],
                  "requests_per_unit": 3, "unit": "minute", "burst": 3}}]}},
            "stage_routing": {{"stages": [{{"name": "prod", "weight": 50}}, {{"name": "canary", "weight": 50}}],
                "sticky_key": [{{"type": "header", "name": "x-user-id"}}]}}
            }}"#
        ))
    }

    fn send(h: &FakeHost, path: &str, ua: &str, user: &str, client: &str) {
        h.request(&[
            (":method", "GET"),
            (":path", path),
            (":authority", "h"),
            ("user-agent", ua),
            ("accept", "*/*"),
            ("accept-language", "en"),
            ("x-user-id", user),
        ])
        .client(client);
    }

    fn user_on(f: &Edge, h: &FakeHost, stage: &str) -> String {
        let s = f.stage.as_ref().unwrap();
        (0..)
            .map(|i| format!("user-{i}"))
            .find(|id| {
                send(h, "/", CHROME, id, "198.51.100.1:1");
                let bytes = h.request_header_map().unwrap();
                let view = edge_common::headermap::HeaderMapView::parse(&bytes).unwrap();
                let req = Request::new(view);
                let a = s.assign(h, &req, &s.data());
                s.cfg.stages.get(a.stage).map(String::as_str) == Some(stage)
            })
            .unwrap_or_default()
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn limits_follow_the_bot_verdict_and_the_stage() {
        let (f, h) = edge();
        // An unknown bot: 1 per minute per client address.
        send(&h, "/", "python-requests/2.31", "u", "203.0.113.5:1");
        assert_eq!(run(&f, &h).decision, Decision::Continue);
        send(&h, "/", "python-requests/2.31", "u", "203.0.113.5:1");
        assert_eq!(run(&f, &h).decision, Decision::Replied);
        assert_eq!(h.reply().unwrap().status, 429);
        // A verified Googlebot is never limited.
        for _ in 0..10 {
            send(&h, "/", GOOGLEBOT, "g", "66.249.66.1:1");
            assert_eq!(run(&f, &h).decision, Decision::Continue);
        }
        // An impersonator is blocked by bot detection and never reaches the limiter.
        send(&h, "/", GOOGLEBOT, "g", "203.0.113.9:1");
        let out = run(&f, &h);
        assert_eq!(
            (out.decision, h.reply().unwrap().status),
            (Decision::Replied, 403)
        );
        // Canary users share the canary quota (2), prod users have 3 each.
        let canary = user_on(&f, &h, "canary");
        let prod = user_on(&f, &h, "prod");
        let admitted = |user: &str, n: usize| {
            (0..n)
                .filter(|_| {
                    send(&h, "/", CHROME, user, "198.51.100.1:1");
                    run(&f, &h).decision == Decision::Continue
                })
                .count()
        };
        assert_eq!(admitted(&canary, 5), 2);
        assert_eq!(admitted(&prod, 5), 3);
        assert_eq!(h.metric("rate_limit.bots.limited"), Some(1));
        assert_eq!(h.metric("rate_limit.crawlers.allowed"), Some(0));
        assert_eq!(h.metric("rate_limit.canary.limited"), Some(3));
        assert_eq!(h.metric("bot_detection.action.block"), Some(1));
        assert_eq!(h.metric("stage_routing.stage.canary.requests"), Some(2));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn one_pass_in_order_with_one_header_read() {
        let (f, h) = edge();
        // A missing token ends the pass at cdn-signing: no bot or limiter counters move.
        send(
            &h,
            "/videos/a.ts",
            "python-requests/2.31",
            "u",
            "203.0.113.5:1",
        );
        let out = run(&f, &h);
        assert_eq!(out.decision, Decision::Replied);
        assert_eq!(
            h.reply().unwrap().header("x-cdn-signing-reason"),
            Some("missing")
        );
        assert_eq!(h.metric("bot_detection.category.http_library"), Some(0));
        // A browser request with every feature on: one header-map read, the clock once, one
        // bucket read and write (a returning key: a new one reads both of its candidate slots),
        // the stage header.
        let prod = user_on(&f, &h, "prod");
        send(&h, "/", CHROME, &prod, "198.51.100.1:1");
        run(&f, &h);
        send(&h, "/", CHROME, &prod, "198.51.100.1:1");
        let mut out = run(&f, &h);
        assert_eq!(out.decision, Decision::Continue);
        assert_eq!(out.decisions.bot_category, Some("human"));
        assert_eq!(out.decisions.stage.as_deref(), Some("prod"));
        assert_eq!(h.forwarded_header("x-stage").as_deref(), Some("prod"));
        assert_eq!(out.host_calls, 5, "map, clock, bucket get + set, x-stage");
        respond(&f, &h, &mut out.state);
        assert_eq!(h.response_header("x-ratelimit-limit"), None);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn decisions_are_explained_only_when_asked() {
        let (f, h) = edge();
        assert_eq!(f.decision_filter_state(), None);
        send(&h, "/", "curl/8.5.0", "u1", "198.51.100.7:1");
        assert_eq!(run(&f, &h).decisions.explain, None);
        // One section asking turns on the explanation of the whole pass, under one key.
        let (f, h) = configure::<Edge>(
            r#"{"bot_detection": {"decision_filter_state": true, "default_action": "tag"},
                "rate_limit": {"rules": [{"name": "bots", "match": {"bot_categories": ["http_library"]},
                    "key": [{"type": "client_ip"}], "requests_per_unit": 1, "unit": "minute", "burst": 1}]},
                "stage_routing": {"stages": [{"name": "prod", "weight": 100}],
                    "sticky_key": [{"type": "header", "name": "x-user-id"}]}}"#,
        );
        assert_eq!(f.decision_filter_state(), Some("edge.decision"));
        send(&h, "/", "curl/8.5.0", "u1", "198.51.100.7:1");
        assert_eq!(
            run(&f, &h).decisions.explain.as_deref(),
            Some("bot=http_library/5 bot_name=curl bot_action=tag stage=prod/hash rate_limit=bots:allowed")
        );
        send(
            &h,
            "/",
            "Mozilla/5.0 (compatible; Zorblax Bot/1.0)",
            "u1",
            "198.51.100.7:1",
        );
        let out = run(&f, &h);
        assert_eq!(out.decision, Decision::Continue);
        assert_eq!(
            out.decisions.explain.as_deref(),
            Some("bot=unknown_bot/10 bot_name=bot_token bot_action=tag stage=prod/hash")
        );
        send(&h, "/", "curl/8.5.0", "u1", "198.51.100.7:1");
        let out = run(&f, &h);
        assert_eq!(out.decision, Decision::Replied);
        assert!(out
            .decisions
            .explain
            .as_deref()
            .is_some_and(|e| e.ends_with("rate_limit=bots:limited")));
    }

    /// The bench's combined request (valid Akamai token, browser, API key, sticky user) with the
    /// four sections at their defaults: the host calls it costs, by name.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn host_calls_of_the_combined_request() {
        use cdn_signing::schemes::akamai;
        let key = akamai::decode_hex_key(AKAMAI_KEY).unwrap_or_default();
        let spec = akamai::TokenSpec {
            exp: 4_102_444_800,
            acl: Some("/videos/*"),
            ..Default::default()
        };
        let token = akamai::generate(&key, akamai::Algorithm::Sha256, &spec);
        let path = format!("/videos/seg-1.ts?__token__={token}");
        let (f, h) = configure::<Edge>(&format!(
            r#"{{"cdn_signing": {{"routes": [{{"name": "videos", "path_prefix": "/videos/",
                  "verify": {{"scheme": "akamai_edgeauth", "keys": [{{"hex": "{AKAMAI_KEY}"}}]}}}}]}},
               "bot_detection": {{}},
               "rate_limit": {{"rules": [{{"name": "api", "key": [{{"type": "header", "name": "x-api-key"}}],
                  "requests_per_unit": 1000000000, "unit": "second"}}]}},
               "stage_routing": {{"stages": [{{"name": "prod", "weight": 90}}, {{"name": "canary", "weight": 10}}],
                  "sticky_key": [{{"type": "header", "name": "x-user-id"}}, {{"type": "client_ip"}}]}}}}"#
        ));
        let prod = user_on(&f, &h, "prod");
        let mut calls = vec![];
        for _ in 0..2 {
            h.request(&[
                (":method", "GET"),
                (":path", &path),
                (":authority", "h"),
                (":scheme", "http"),
                ("user-agent", CHROME),
                ("accept", "text/html"),
                ("x-api-key", "k"),
                ("x-user-id", &prod),
            ])
            .client("198.51.100.1:1");
            let start = h.trace().len();
            let mut out = run(&f, &h);
            let mid = h.trace().len();
            respond(&f, &h, &mut out.state);
            let t = h.trace();
            calls.push((t[start..mid].to_vec(), t[mid..].to_vec()));
        }
        // The first request of a key finds its bucket slot in shared data; later ones spend
        // the worker's lease. No response-phase calls: rate-limit headers are off on allowed
        // responses by default.
        let steady = vec![
            "request_header_map",
            "now_ns",
            "set_request_header",
            "set_request_header",
        ];
        assert_eq!(calls[1], (steady, vec![]));
        assert_eq!(
            h.forwarded_header(":path").as_deref(),
            Some("/videos/seg-1.ts")
        );
        assert_eq!(h.forwarded_header("x-stage").as_deref(), Some("prod"));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn configuration_errors_name_the_section_and_field() {
        let h = FakeHost::new();
        let err = |json: &str| {
            Edge::configure(json.as_bytes(), &h)
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(
            err(r#"{"rate_limit":{"rules":[{"name":"b","match":{"stages":["canary"]},"key":[{"type":"client_ip"}],"requests_per_unit":1,"unit":"second"}]}}"#).as_deref(),
            Some("invalid configuration: rate_limit.rules[0].match.stages: needs edge.wasm with a `stage_routing` section, which decides it")
        );
        assert_eq!(
            err(r#"{"bot_detection":{},"rate_limit":{"rules":[{"name":"b","match":{"bot_categories":["robots"]},"key":[{"type":"client_ip"}],"requests_per_unit":1,"unit":"second"}]}}"#)
                .map(|e| e.starts_with("invalid configuration: rate_limit.rules[0].match.bot_categories[0]: unknown `robots`: one of human, app,")),
            Some(true)
        );
        assert_eq!(
            err(r#"{"cdn_signing":{"leeway_seconds":7200,"routes":[]}}"#).as_deref(),
            Some("invalid configuration: cdn_signing.leeway_seconds: 7200 is more than 3600 (an hour): expired tokens would stay valid")
        );
        assert_eq!(
            err(r#"{"bot_detecton":{}}"#).map(|e| e.contains("unknown field `bot_detecton`")),
            Some(true)
        );
        assert_eq!(
            err("{}").as_deref(),
            Some("invalid configuration: (root): configure at least one of cdn_signing, bot_detection, rate_limit, stage_routing")
        );
        assert_eq!(
            err(r#"{"stage_routing":[]}"#).as_deref(),
            Some("invalid configuration: stage_routing: must be a JSON object (the feature's configuration)")
        );
    }
}
