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
use crate::detect::{decide, Signals};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { state: None, pending: Rc::default() })
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
        }))
    }
}

struct Filter {
    state: Option<Rc<State>>,
    pending: Rc<RefCell<BatchedCounters>>,
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
        // The upstream must only ever see our verdict: drop client-sent copies, in every mode.
        for name in &cfg.headers {
            if h.contains(name) {
                self.set_http_request_header(name, None);
            }
        }
        let filter_state;
        let fingerprint = match cfg.fingerprint.as_ref().map(|f| &f.source) {
            Some(FingerprintSource::Header(name)) => h.get(name),
            Some(FingerprintSource::FilterState(key)) => {
                filter_state = self.get_property(vec!["filter_state", key]);
                filter_state.as_deref()
            }
            None => None,
        };
        let signals = signals(&h, fingerprint);
        let v = decide(cfg, &signals, &|| self.client_ip());

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

fn signals<'a>(h: &HeaderMapView<'a>, fingerprint: Option<&'a [u8]>) -> Signals<'a> {
    Signals {
        user_agent: h.get("user-agent"),
        accept: h.contains("accept"),
        accept_language: h.contains("accept-language"),
        sec_ch_ua: h.get("sec-ch-ua"),
        sec_ch_ua_platform: h.get("sec-ch-ua-platform"),
        fingerprint,
    }
}
