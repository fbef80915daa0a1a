//! The Proxy-Wasm adapter: configuration and metrics in the root context; per request, one read
//! of the whole header map, the verdict, and its application (tag / block / allow).

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use edge_common::headermap::{host, HeaderMapView};
use edge_common::metrics::host::BatchedCounters;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as ProxyAction, ContextType, LogLevel, MetricType};

use crate::category::Category;
use crate::config::{Action, Config, FingerprintSource, Mode};
use crate::detect::{decide_with, Signals};
use crate::ua::UaCache;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { state: None, pending: Rc::default(), cache: Rc::default() })
    });
}}

const FLUSH_PERIOD: Duration = Duration::from_millis(100);

struct Metrics {
    /// By `Category::index()`.
    category: Vec<u32>,
    /// By action, enforce mode: allow, tag, block.
    action: [u32; 3],
    /// By action, shadow mode (what would have been done).
    shadow: [u32; 3],
    verified: u32,
}

struct State {
    cfg: Config,
    metrics: Metrics,
}

struct Root {
    state: Option<Rc<State>>,
    pending: Rc<RefCell<BatchedCounters>>,
    /// This worker's user-agent classifications (reset with each configuration).
    cache: Rc<RefCell<UaCache>>,
}

impl Context for Root {}

fn counter(name: &str) -> Result<u32, String> {
    hostcalls::define_metric(MetricType::Counter, name)
        .map_err(|e| format!("cannot define metric {name}: {e:?}"))
}

fn define_metrics() -> Result<Metrics, String> {
    let mut category = Vec::with_capacity(Category::ALL.len());
    for c in Category::ALL {
        category.push(counter(&format!("bot_detection.category.{}", c.as_str()))?);
    }
    let per_action = |prefix: &str| -> Result<[u32; 3], String> {
        Ok([
            counter(&format!("bot_detection.{prefix}.allow"))?,
            counter(&format!("bot_detection.{prefix}.tag"))?,
            counter(&format!("bot_detection.{prefix}.block"))?,
        ])
    };
    Ok(Metrics {
        category,
        action: per_action("action")?,
        shadow: per_action("shadow_action")?,
        verified: counter("bot_detection.verified")?,
    })
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let cfg = match Config::from_json(&bytes) {
            Ok(c) => c,
            Err(e) => {
                let _ = hostcalls::log(LogLevel::Error, &e.to_string());
                return false;
            }
        };
        let metrics = match define_metrics() {
            Ok(m) => m,
            Err(e) => {
                let _ = hostcalls::log(LogLevel::Error, &e);
                return false;
            }
        };
        let _ = hostcalls::log(
            LogLevel::Info,
            &format!(
                "configured: {} user-agent patterns, {} verified bots, mode {:?}",
                cfg.matcher.len(),
                cfg.verified_bots.len(),
                cfg.mode
            ),
        );
        if let Ok(mut p) = self.pending.try_borrow_mut() {
            p.flush();
        }
        self.state = Some(Rc::new(State { cfg, metrics }));
        self.cache = Rc::default();
        self.set_tick_period(FLUSH_PERIOD);
        true
    }

    fn on_tick(&mut self) {
        if let Ok(mut p) = self.pending.try_borrow_mut() {
            p.flush();
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            state: self.state.clone(),
            pending: self.pending.clone(),
            cache: self.cache.clone(),
        }))
    }
}

struct Filter {
    state: Option<Rc<State>>,
    pending: Rc<RefCell<BatchedCounters>>,
    cache: Rc<RefCell<UaCache>>,
}

impl Context for Filter {}

impl Filter {
    fn client_ip(&self) -> Option<IpAddr> {
        self.get_property(vec!["source", "address"])
            .and_then(|b| edge_common::ip::parse_address_ip_bytes(&b))
    }
}

fn action_index(a: Action) -> usize {
    match a {
        Action::Allow => 0,
        Action::Tag => 1,
        Action::Block => 2,
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> ProxyAction {
        let Some(state) = self.state.clone() else {
            return ProxyAction::Continue;
        };
        let cfg = &state.cfg;
        let Some(map) = host::header_map(host::REQUEST_HEADERS) else {
            return ProxyAction::Continue;
        };
        let Some(h) = map.view() else {
            let _ = hostcalls::log(
                LogLevel::Error,
                "malformed request header map from the host",
            );
            return ProxyAction::Continue;
        };
        let fp_header = match cfg.fingerprint.as_ref().map(|f| &f.source) {
            Some(FingerprintSource::Header(name)) => Some(name.as_str()),
            _ => None,
        };
        let (mut signals, ours) = scan(&h, &cfg.headers, fp_header);
        // The upstream must only ever see our verdict: drop client-sent copies, in every mode.
        for (i, name) in cfg.headers.iter().enumerate() {
            if ours & (1 << i) != 0 {
                self.set_http_request_header(name, None);
            }
        }
        let filter_state;
        if let Some(FingerprintSource::FilterState(key)) =
            cfg.fingerprint.as_ref().map(|f| &f.source)
        {
            filter_state = self.get_property(vec!["filter_state", key]);
            signals.fingerprint = filter_state.as_deref();
        }
        let class = match self.cache.try_borrow_mut() {
            Ok(mut c) => cfg
                .matcher
                .classify_cached(signals.user_agent.unwrap_or(b""), &mut c),
            Err(_) => cfg.matcher.classify(signals.user_agent.unwrap_or(b"")),
        };
        let v = decide_with(cfg, &signals, class, &|| self.client_ip());

        if let Ok(mut p) = self.pending.try_borrow_mut() {
            let m = &state.metrics;
            if let Some(&id) = m.category.get(v.category.index()) {
                p.add(id, 1);
            }
            let per = if cfg.mode == Mode::Shadow {
                &m.shadow
            } else {
                &m.action
            };
            if let Some(&id) = per.get(action_index(v.action)) {
                p.add(id, 1);
            }
            if v.verified {
                p.add(m.verified, 1);
            }
        }
        if cfg.mode == Mode::Shadow {
            return ProxyAction::Continue;
        }
        match v.action {
            Action::Allow => ProxyAction::Continue,
            Action::Tag => {
                let [score, category, name, verified] = &cfg.headers;
                self.set_http_request_header(score, Some(&v.score.to_string()));
                self.set_http_request_header(category, Some(v.category.as_str()));
                if let Some(n) = v.name {
                    self.set_http_request_header(name, Some(n));
                }
                self.set_http_request_header(
                    verified,
                    Some(if v.verified { "true" } else { "false" }),
                );
                ProxyAction::Continue
            }
            Action::Block => {
                self.send_http_response(
                    v.status,
                    vec![("content-type", cfg.block_content_type.as_str())],
                    Some(v.body.as_bytes()),
                );
                ProxyAction::Pause
            }
        }
    }
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
