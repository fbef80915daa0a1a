//! The bot-detection feature: per request, one pass over the headers, the verdict, and its
//! application (tag / block / allow); in `edge.wasm` the verdict also goes to later features.

use std::cell::RefCell;
use std::net::IpAddr;

use edge_common::headermap::HeaderMapView;
use edge_common::host::{
    counter, CallResponse, Decision, Decisions, Feature, Host, LogLevel, Request, StartError,
};
use edge_common::poll::{read_response, Answer, Response, SharedPoll, Tick};
use edge_common::CidrSet;

use crate::category::Category;
use crate::config::{Action, Config, FingerprintSource, Mode, PublishedRanges};
use crate::detect::{decide_polled, Signals};
use crate::ua::UaCache;

struct Metrics {
    /// By `Category::index()`.
    category: Vec<u32>,
    /// By action, enforce mode: allow, tag, block.
    action: [u32; 3],
    /// By action, shadow mode (what would have been done).
    shadow: [u32; 3],
    verified: u32,
    ranges_updates: u32,
    ranges_not_modified: u32,
    ranges_failures: u32,
}

/// One polled range file of one verified bot, on this worker.
struct RangePoll {
    /// Index in `verified_bots`, and in its `ranges_from`.
    bot: usize,
    source: usize,
    shared: SharedPoll,
    /// The ranges of the last good file (empty until one arrives).
    ranges: CidrSet,
    /// Hash of the last good file published, to tell a changed file from the same one again.
    published: Option<u64>,
}

pub struct BotDetection {
    pub cfg: Config,
    metrics: Metrics,
    /// This worker's user-agent classifications.
    cache: RefCell<UaCache>,
    polls: Vec<RefCell<RangePoll>>,
}

fn action_index(a: Action) -> usize {
    match a {
        Action::Allow => 0,
        Action::Tag => 1,
        Action::Block => 2,
    }
}

impl BotDetection {
    pub fn with_config(cfg: Config, host: &impl Host) -> Result<Self, StartError> {
        let mut category = Vec::with_capacity(Category::ALL.len());
        for c in Category::ALL {
            category.push(counter(
                host,
                &format!("bot_detection.category.{}", c.as_str()),
            )?);
        }
        let per_action = |prefix: &str| -> Result<[u32; 3], StartError> {
            Ok([
                counter(host, &format!("bot_detection.{prefix}.allow"))?,
                counter(host, &format!("bot_detection.{prefix}.tag"))?,
                counter(host, &format!("bot_detection.{prefix}.block"))?,
            ])
        };
        let metrics = Metrics {
            category,
            action: per_action("action")?,
            shadow: per_action("shadow_action")?,
            verified: counter(host, "bot_detection.verified")?,
            ranges_updates: counter(host, "bot_detection.ranges.updates")?,
            ranges_not_modified: counter(host, "bot_detection.ranges.not_modified")?,
            ranges_failures: counter(host, "bot_detection.ranges.failures")?,
        };
        let mut polls = Vec::new();
        for (bot, b) in cfg.verified_bots.iter().enumerate() {
            for (source, src) in b.sources.iter().enumerate() {
                let prefix = edge_common::poll::shared_prefix(
                    host,
                    "bot_detection",
                    &format!("/ranges/{bot}/{source}"),
                );
                polls.push(RefCell::new(RangePoll {
                    bot,
                    source,
                    shared: SharedPoll::new(host, &prefix, src),
                    ranges: CidrSet::default(),
                    published: None,
                }));
            }
        }
        let f = Self {
            cfg,
            metrics,
            cache: RefCell::default(),
            polls,
        };
        f.sync_ranges(host);
        Ok(f)
    }

    /// Whether `ip` is in the polled ranges of `verified_bots[bot]`.
    fn in_polled(&self, bot: usize, ip: IpAddr) -> bool {
        self.polls.iter().any(|p| {
            p.try_borrow()
                .is_ok_and(|p| p.bot == bot && p.ranges.contains(ip))
        })
    }

    fn what(&self, p: &RangePoll) -> String {
        let name = self
            .cfg
            .verified_bots
            .get(p.bot)
            .map_or("", |b| b.name.as_str());
        format!(
            "verified_bots[{}] ({name}) ranges_from[{}]",
            p.bot, p.source
        )
    }

    fn source(&self, p: &RangePoll) -> Option<&edge_common::poll::Source> {
        self.cfg.verified_bots.get(p.bot)?.sources.get(p.source)
    }

    /// Applies range files other workers' polls published.
    fn sync_ranges(&self, host: &impl Host) {
        for cell in &self.polls {
            let Ok(mut p) = cell.try_borrow_mut() else {
                continue;
            };
            let Some(bytes) = p.shared.changed(host) else {
                continue;
            };
            match PublishedRanges::parse_file(&bytes) {
                Ok(set) => {
                    host.log(
                        LogLevel::Info,
                        &format!(
                            "{}: {} address intervals in force",
                            self.what(&p),
                            set.interval_count()
                        ),
                    );
                    p.published = Some(edge_common::hash::hash64(0, &bytes));
                    p.ranges = set;
                }
                Err(e) => host.log(
                    LogLevel::Warn,
                    &format!(
                        "{}: published ranges unreadable ({e}); keeping the last good ones",
                        self.what(&p)
                    ),
                ),
            }
        }
    }
}

impl Feature for BotDetection {
    type Request = ();

    fn configure(json: &[u8], host: &impl Host) -> Result<Self, StartError> {
        Self::with_config(Config::from_json(json)?, host)
    }

    fn describe(&self) -> String {
        format!(
            "bot_detection: {} user-agent patterns, {} verified bots, mode {:?}",
            self.cfg.matcher.len(),
            self.cfg.verified_bots.len(),
            self.cfg.mode
        )
    }

    fn decision_filter_state(&self) -> Option<&'static str> {
        self.cfg
            .decision_filter_state
            .then_some("bot_detection.decision")
    }

    fn on_tick(&self, host: &impl Host) {
        if self.polls.is_empty() {
            return;
        }
        self.sync_ranges(host);
        for cell in &self.polls {
            let Ok(mut p) = cell.try_borrow_mut() else {
                continue;
            };
            let Some(src) = self.source(&p) else {
                continue;
            };
            if let Tick::DispatchFailed(why) = p.shared.tick(host, src) {
                host.count(self.metrics.ranges_failures, 1);
                host.log(
                    LogLevel::Warn,
                    &format!("{}: {why}; keeping the last good ranges", self.what(&p)),
                );
            }
        }
    }

    fn on_call_response(&self, host: &impl Host, token: u32, response: CallResponse) {
        let CallResponse::Http { headers, body } = response else {
            return;
        };
        let Some(cell) = self
            .polls
            .iter()
            .find(|c| c.try_borrow_mut().is_ok_and(|mut p| p.shared.owns(token)))
        else {
            return;
        };
        let Ok(mut p) = cell.try_borrow_mut() else {
            return;
        };
        let Some(src) = self.source(&p) else {
            return;
        };
        let (status, etag, body) = read_response(host, headers, body);
        let now = host.now_ns() / 1_000_000;
        let noise = p.shared.noise(now);
        let r = Response {
            status,
            etag: etag.as_deref(),
            body: &body,
        };
        let m = &self.metrics;
        match p.shared.poller.answer(src, now, noise, &r) {
            Answer::NotModified => host.count(m.ranges_not_modified, 1),
            Answer::Failed(why) => {
                host.count(m.ranges_failures, 1);
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "{}: poll failed: {why}; keeping the last good ranges",
                        self.what(&p)
                    ),
                );
            }
            Answer::Body(b) => match PublishedRanges::parse_file(b) {
                Ok(set) => {
                    p.shared.poller.accepted(src, now, noise, r.etag);
                    let hash = edge_common::hash::hash64(0, b);
                    if p.published == Some(hash) {
                        host.count(m.ranges_not_modified, 1);
                    } else if p.shared.publish(host, b) {
                        host.count(m.ranges_updates, 1);
                        host.log(
                            LogLevel::Info,
                            &format!(
                                "{}: {} address intervals fetched",
                                self.what(&p),
                                set.interval_count()
                            ),
                        );
                    } else {
                        host.count(m.ranges_failures, 1);
                        host.log(
                            LogLevel::Warn,
                            &format!("{}: cannot publish ranges in shared data", self.what(&p)),
                        );
                    }
                }
                Err(e) => {
                    p.shared.poller.rejected(src, now, noise);
                    host.count(m.ranges_failures, 1);
                    host.log(
                        LogLevel::Warn,
                        &format!(
                            "{}: invalid range file: {e}; keeping the last good ranges",
                            self.what(&p)
                        ),
                    );
                }
            },
        }
        drop(p);
        self.sync_ranges(host);
    }

    fn on_request_headers(
        &self,
        host: &impl Host,
        req: &Request<'_>,
        decisions: &mut Decisions,
        _: &mut (),
    ) -> Decision {
        let cfg = &self.cfg;
        let fp_header = match cfg.fingerprint.as_ref().map(|f| &f.source) {
            Some(FingerprintSource::Header(name)) => Some(name.as_str()),
            _ => None,
        };
        let (mut signals, ours) = scan(&req.headers, &cfg.headers, fp_header);
        // The upstream must only ever see our verdict: drop client-sent copies, in every mode.
        for (i, name) in cfg.headers.iter().enumerate() {
            if ours & (1 << i) != 0 {
                host.set_request_header(name, None);
            }
        }
        let filter_state;
        if let Some(FingerprintSource::FilterState(key)) =
            cfg.fingerprint.as_ref().map(|f| &f.source)
        {
            filter_state = host.property(&["filter_state", key]);
            signals.fingerprint = filter_state.as_deref();
        }
        let ua = signals.user_agent.unwrap_or(b"");
        let class = match self.cache.try_borrow_mut() {
            Ok(mut c) => cfg.matcher.classify_cached(ua, &mut c),
            Err(_) => cfg.matcher.classify(ua),
        };
        let v = decide_polled(cfg, &signals, class, &|| req.client_ip(host), &|i, ip| {
            self.in_polled(i, ip)
        });
        decisions.bot_category = Some(v.category.as_str());
        decisions.verified_bot = v.name.filter(|_| v.verified).map(str::to_string);
        if decisions.explain.is_some() {
            decisions.note("bot", &format!("{}/{}", v.category.as_str(), v.score));
            if let Some(n) = v.name {
                decisions.note("bot_name", n);
            }
            if v.verified {
                decisions.note("bot_verified", "true");
            }
            let action = match (cfg.mode, v.action) {
                (Mode::Shadow, _) => "shadow",
                (_, Action::Allow) => "allow",
                (_, Action::Tag) => "tag",
                (_, Action::Block) => "block",
            };
            decisions.note("bot_action", action);
        }

        let m = &self.metrics;
        if let Some(&id) = m.category.get(v.category.index()) {
            host.count(id, 1);
        }
        let per = if cfg.mode == Mode::Shadow {
            &m.shadow
        } else {
            &m.action
        };
        if let Some(&id) = per.get(action_index(v.action)) {
            host.count(id, 1);
        }
        if v.verified {
            host.count(m.verified, 1);
        }
        if cfg.mode == Mode::Shadow {
            return Decision::Continue;
        }
        match v.action {
            Action::Allow => Decision::Continue,
            Action::Tag => {
                let [score, category, name, verified] = &cfg.headers;
                host.set_request_header(score, Some(&v.score.to_string()));
                host.set_request_header(category, Some(v.category.as_str()));
                if let Some(n) = v.name {
                    host.set_request_header(name, Some(n));
                }
                host.set_request_header(verified, Some(if v.verified { "true" } else { "false" }));
                Decision::Continue
            }
            Action::Block => {
                let category = v.category.as_str();
                let content_type = ("content-type", cfg.block_content_type.as_str());
                let headers: &[(&str, &str)] = if cfg.block_reason_header {
                    &[content_type, ("x-bot-reason", category)]
                } else {
                    &[content_type]
                };
                host.send_reply(
                    v.status,
                    &format!("bot_detection.block.{category}"),
                    headers,
                    v.body.as_bytes(),
                );
                Decision::Replied
            }
        }
    }
}

/// The signals of a request's headers, as the filter reads them (for tools such as `classify`).
pub fn signals<'a>(h: &HeaderMapView<'a>) -> Signals<'a> {
    scan(h, &Default::default(), None).0
}

/// One pass over the request headers: the signals, and a bit per header of ours the client sent.
fn scan<'a>(
    h: &HeaderMapView<'a>,
    ours: &[String; 4],
    fp_header: Option<&str>,
) -> (Signals<'a>, u8) {
    let mut s = Signals::default();
    let mut present = 0u8;
    for (name, value) in h.iter() {
        match name {
            b"user-agent" => s.user_agent = Some(value),
            b"accept" => s.accept = true,
            b"accept-language" => s.accept_language = true,
            b"sec-ch-ua" => s.sec_ch_ua = Some(value),
            b"sec-ch-ua-platform" => s.sec_ch_ua_platform = Some(value),
            n if n.first() == Some(&b':') => {}
            n => {
                if fp_header.is_some_and(|f| f.as_bytes() == n) {
                    s.fingerprint = Some(value);
                }
                for (i, o) in ours.iter().enumerate() {
                    if o.as_bytes() == n {
                        present |= 1 << i;
                    }
                }
            }
        }
    }
    (s, present)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_common::host::fake::{configure, run, FakeHost};
    use std::time::Duration;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    fn bot(extra: &str) -> (BotDetection, FakeHost) {
        configure::<BotDetection>(&format!(
            r#"{{{extra}"verified_bots":[{{"name":"Googlebot","user_agent_contains":["googlebot"],"cidrs":["66.249.64.0/19"]}}]}}"#
        ))
    }

    fn send(h: &FakeHost, ua: &str, client: &str, extra: &[(&str, &str)]) {
        let mut headers = vec![(":method", "GET"), (":path", "/"), ("user-agent", ua)];
        headers.extend_from_slice(extra);
        h.request(&headers).client(client);
    }

    const BROWSER: [(&str, &str); 2] = [("accept", "text/html"), ("accept-language", "en")];

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn browsers_pass_and_client_copies_of_our_headers_never_do() {
        let (f, h) = bot("");
        send(
            &h,
            CHROME,
            "198.51.100.1:1",
            &[
                BROWSER[0],
                BROWSER[1],
                ("x-bot-score", "100"),
                ("x-bot-category", "human"),
            ],
        );
        let out = run(&f, &h);
        assert_eq!(out.decision, Decision::Continue);
        assert_eq!(out.decisions.bot_category, Some("human"));
        for n in [
            "x-bot-score",
            "x-bot-category",
            "x-bot-name",
            "x-bot-verified",
        ] {
            assert_eq!(h.forwarded_header(n), None, "{n}");
        }
        assert_eq!(h.metric("bot_detection.category.human"), Some(1));
        assert_eq!(h.metric("bot_detection.action.allow"), Some(1));
        // A plain browser request costs the header map read only (no client address lookup).
        send(&h, CHROME, "198.51.100.1:1", &BROWSER);
        assert_eq!(run(&f, &h).host_calls, 1);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn verified_bots_are_tagged_and_impersonators_blocked() {
        let (f, h) = bot("");
        send(&h, GOOGLEBOT, "66.249.66.1:1", &[]);
        let out = run(&f, &h);
        assert_eq!(out.decision, Decision::Continue);
        assert_eq!(out.decisions.verified_bot.as_deref(), Some("Googlebot"));
        assert_eq!(
            h.forwarded_header("x-bot-category").as_deref(),
            Some("search_engine")
        );
        assert_eq!(
            h.forwarded_header("x-bot-verified").as_deref(),
            Some("true")
        );
        assert_eq!(
            h.forwarded_header("x-bot-name").as_deref(),
            Some("Googlebot")
        );
        assert_eq!(h.forwarded_header("x-bot-score").as_deref(), Some("10"));
        send(&h, GOOGLEBOT, "203.0.113.9:1", &[]);
        let out = run(&f, &h);
        assert_eq!(out.decision, Decision::Replied);
        assert_eq!(out.decisions.bot_category, Some("impersonator"));
        let r = h.reply().unwrap();
        assert_eq!((r.status, r.text().as_str()), (403, "forbidden\n"));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.details, "bot_detection.block.impersonator");
        assert_eq!(
            r.header("x-bot-reason"),
            None,
            "no reason for the client by default"
        );
        assert_eq!(h.metric("bot_detection.verified"), Some(1));
        assert_eq!(h.metric("bot_detection.action.block"), Some(1));
        assert_eq!(h.metric("bot_detection.action.tag"), Some(1));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn block_reason_header_when_configured() {
        let (f, h) = configure::<BotDetection>(r#"{"block_response": {"reason_header": true}}"#);
        send(&h, "sqlmap/1.8", "203.0.113.9:1", &[]);
        assert_eq!(run(&f, &h).decision, Decision::Replied);
        let r = h.reply().unwrap();
        assert_eq!((r.status, r.header("x-bot-reason")), (403, Some("scanner")));
        assert_eq!(r.details, "bot_detection.block.scanner");
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn policy_status_body_and_custom_header_names() {
        let (f, h) = bot(
            r#""policy":[{"categories":["ai_crawler"],"action":"block","status":429,"body":"no AI\n"},{"score_below":50,"action":"tag"}],
               "headers":{"score":"x-s","category":"x-c","name":"x-n","verified":"x-v"},"#,
        );
        send(&h, "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)", "1.2.3.4:1", &[]);
        assert_eq!(run(&f, &h).decision, Decision::Replied);
        let r = h.reply().unwrap();
        assert_eq!((r.status, r.text().as_str()), (429, "no AI\n"));
        send(&h, "curl/8.5.0", "1.2.3.4:1", &[("x-c", "human")]);
        assert_eq!(run(&f, &h).decision, Decision::Continue);
        assert_eq!(h.forwarded_header("x-c").as_deref(), Some("http_library"));
        assert_eq!(h.forwarded_header("x-bot-category"), None);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn shadow_mode_counts_what_it_would_do_and_changes_nothing_else() {
        let (f, h) = bot(r#""mode":"shadow","#);
        send(&h, GOOGLEBOT, "203.0.113.9:1", &[("x-bot-score", "100")]);
        assert_eq!(run(&f, &h).decision, Decision::Continue);
        assert_eq!(h.reply(), None);
        assert_eq!(h.forwarded_header("x-bot-category"), None);
        assert_eq!(
            h.forwarded_header("x-bot-score"),
            None,
            "client copies go in every mode"
        );
        assert_eq!(h.metric("bot_detection.shadow_action.block"), Some(1));
        assert_eq!(h.metric("bot_detection.action.block"), Some(0));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn tls_fingerprints_from_a_header_or_filter_state() {
        let (f, h) = bot(r#""tls_fingerprint":{"header":"x-ja4","deny":["t13d_bad"]},"#);
        send(
            &h,
            CHROME,
            "1.2.3.4:1",
            &[BROWSER[0], BROWSER[1], ("x-ja4", "t13d_bad")],
        );
        let out = run(&f, &h);
        assert_eq!(out.decisions.bot_category, Some("suspicious"));
        let (f, h) = bot(r#""tls_fingerprint":{"filter_state":"ja4","deny":["t13d_bad"]},"#);
        send(&h, CHROME, "1.2.3.4:1", &BROWSER);
        h.set_property(&["filter_state", "ja4"], b"t13d_bad");
        assert_eq!(run(&f, &h).decisions.bot_category, Some("suspicious"));
    }

    /// Serves `body` with `status` to the poll that went out last.
    fn serve(f: &BotDetection, h: &FakeHost, status: &str, etag: Option<&str>, body: &str) {
        let call = h.calls().pop().expect("a poll went out");
        let mut headers = vec![(":status", status)];
        if let Some(e) = etag {
            headers.push(("etag", e));
        }
        h.set_call_response(&headers, body.as_bytes());
        f.on_call_response(
            h,
            call.token,
            CallResponse::Http {
                headers: headers.len(),
                body: body.len(),
            },
        );
    }

    fn category(f: &BotDetection, h: &FakeHost, client: &str) -> Option<&'static str> {
        send(h, GOOGLEBOT, client, &BROWSER);
        run(f, h).decisions.bot_category
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn polled_ranges_follow_the_published_file_and_keep_the_last_good_one() {
        let (f, h) = configure::<BotDetection>(
            r#"{"verified_bots":[{"name":"Googlebot","user_agent_contains":["googlebot"],
                "cidrs":["66.249.64.0/27"],
                "ranges_from":[{"cluster":"google","path":"/static/search/apis/ipranges/googlebot.json","poll_interval_ms":1000,"jitter_percent":0}]}]}"#,
        );
        // Before any file: only the configured ranges.
        assert_eq!(category(&f, &h, "66.249.64.1"), Some("search_engine"));
        assert_eq!(category(&f, &h, "192.0.2.7"), Some("impersonator"));
        f.on_tick(&h);
        let call = h.calls().pop().unwrap();
        assert_eq!(call.cluster, "google");
        assert!(call.headers.contains(&(
            ":path".into(),
            "/static/search/apis/ipranges/googlebot.json".into()
        )));
        serve(
            &f,
            &h,
            "200",
            Some("\"a\""),
            r#"{"creationTime":"2026-11-27T00:00:00","prefixes":[{"ipv4Prefix":"192.0.2.0/24"},{"ipv6Prefix":"2001:db8::/32"}]}"#,
        );
        assert_eq!(h.metric("bot_detection.ranges.updates"), Some(1));
        assert_eq!(category(&f, &h, "192.0.2.7"), Some("search_engine"));
        assert_eq!(category(&f, &h, "2001:db8::1"), Some("search_engine"));
        assert_eq!(category(&f, &h, "66.249.64.1"), Some("search_engine"));
        // The file changes: the next poll (with the ETag) moves verification over.
        h.advance(Duration::from_millis(1_100));
        f.on_tick(&h);
        assert!(h
            .calls()
            .last()
            .unwrap()
            .headers
            .contains(&("if-none-match".into(), "\"a\"".into())));
        serve(
            &f,
            &h,
            "200",
            Some("\"b\""),
            r#"{"prefixes":[{"ipv4Prefix":"198.51.100.0/24"}]}"#,
        );
        assert_eq!(category(&f, &h, "198.51.100.9"), Some("search_engine"));
        assert_eq!(category(&f, &h, "192.0.2.7"), Some("impersonator"));
        // A bad file, an error status and a 304 keep the last good ranges.
        for (status, body) in [
            ("200", r#"{"prefixes":[{"ipv4Prefix":"not-a-cidr"}]}"#),
            ("200", r#"{"prefixes":[]}"#),
            ("200", "<html>"),
            ("503", "no healthy upstream"),
            ("304", ""),
        ] {
            h.advance(Duration::from_secs(600));
            f.on_tick(&h);
            serve(&f, &h, status, None, body);
            assert_eq!(
                category(&f, &h, "198.51.100.9"),
                Some("search_engine"),
                "{status} {body}"
            );
        }
        assert_eq!(h.metric("bot_detection.ranges.failures"), Some(4));
        assert_eq!(h.metric("bot_detection.ranges.not_modified"), Some(1));
        assert!(h.logs().iter().any(|(_, m)| m
            == "verified_bots[0] (Googlebot) ranges_from[0]: invalid range file: prefixes[0].ipv4Prefix: `not-a-cidr` is not a CIDR range or IP address; keeping the last good ranges"));
        assert!(h.logs().iter().any(|(_, m)| m.contains(
            "poll failed: no healthy upstream (status 503: the cluster has no endpoint up)"
        )));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn a_bot_may_have_only_polled_ranges_and_sources_are_checked() {
        assert!(Config::from_json(
            br#"{"verified_bots":[{"name":"Bingbot","user_agent_contains":["bingbot"],
                "ranges_from":[{"cluster":"bing","path":"/toolbox/bingbot.json"}]}]}"#
        )
        .is_ok_and(|c| c.verified_bots[0].sources[0].poll_interval_ms == 3_600_000));
        let e = Config::from_json(
            br#"{"verified_bots":[{"name":"Bingbot","user_agent_contains":["bingbot"],
                "ranges_from":[{"cluster":"bing","path":"bingbot.json"}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "verified_bots[0].ranges_from[0].path");
    }
}
