//! The Proxy-Wasm adapter (verify mode): per request, one header-map read, the route's check,
//! then a refusal with its reason, or the request forwarded with the token stripped.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use edge_common::headermap::host;
use edge_common::metrics::host::BatchedCounters;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

use crate::config::{Config, Location, Mode, Scheme};
use crate::schemes::Refusal;
use crate::verify::{route_for, verify, Request};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { state: None, pending: Rc::default() })
    });
}}

const FLUSH_PERIOD: Duration = Duration::from_millis(100);
/// Outcome counters per route, in this order.
const OUTCOMES: [&str; 7] = [
    "valid",
    "missing",
    "malformed",
    "expired",
    "not_yet_valid",
    "wrong_scope",
    "bad_signature",
];

fn outcome_index(r: &Result<(), Refusal>) -> usize {
    match r {
        Ok(()) => 0,
        Err(Refusal::Missing) => 1,
        Err(Refusal::Malformed) => 2,
        Err(Refusal::Expired) => 3,
        Err(Refusal::NotYetValid) => 4,
        Err(Refusal::WrongScope) => 5,
        Err(Refusal::BadSignature) => 6,
    }
}

struct State {
    cfg: Config,
    /// `metrics[route][outcome]`.
    metrics: Vec<[u32; 7]>,
}

struct Root {
    state: Option<Rc<State>>,
    pending: Rc<RefCell<BatchedCounters>>,
}

impl Context for Root {}

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
        let mut metrics = Vec::with_capacity(cfg.routes.len());
        for r in &cfg.routes {
            let mut ids = [0u32; 7];
            for (i, o) in OUTCOMES.iter().enumerate() {
                let name = format!("cdn_signing.{}.{o}", edge_common::metrics::segment(&r.name));
                match hostcalls::define_metric(MetricType::Counter, &name) {
                    Ok(id) => ids[i] = id,
                    Err(e) => {
                        let _ = hostcalls::log(
                            LogLevel::Error,
                            &format!("cannot define metric {name}: {e:?}"),
                        );
                        return false;
                    }
                }
            }
            metrics.push(ids);
        }
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

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return Action::Continue;
        };
        let cfg = &state.cfg;
        let Some(map) = host::header_map(host::REQUEST_HEADERS) else {
            return Action::Continue;
        };
        let Some(h) = map.view() else {
            let _ = hostcalls::log(
                LogLevel::Error,
                "malformed request header map from the host",
            );
            return Action::Continue;
        };
        let path = h.get_str(":path").unwrap_or("");
        let method = h.get_str(":method").unwrap_or("");
        let Some((_, route)) = route_for(cfg, path, method) else {
            return Action::Continue;
        };
        let token_header = match &route.scheme {
            Scheme::Akamai {
                location: Location::Header,
                token_name,
                ..
            } => h.get_str(token_name),
            _ => None,
        };
        // Looked up only for an Akamai token bound to an `ip` or a `$remote_addr` expression.
        let client = || {
            self.get_property(vec!["source", "address"])
                .and_then(|b| edge_common::ip::parse_address_ip_bytes(&b))
                .map(|ip| ip.to_string())
        };
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let req = Request {
            scheme: h.get_str(":scheme").unwrap_or("http"),
            authority: h.get_str(":authority").unwrap_or(""),
            path,
            method,
            cookie: h.get_str("cookie"),
            token_header,
            client_ip: &client,
            now,
        };
        let Some(out) = verify(cfg, &req) else {
            return Action::Continue;
        };
        if let (Ok(mut p), Some(ids)) =
            (self.pending.try_borrow_mut(), state.metrics.get(out.route))
        {
            if let Some(&id) = ids.get(outcome_index(&out.result)) {
                p.add(id, 1);
            }
        }
        if cfg.mode == Mode::Shadow {
            return Action::Continue;
        }
        match out.result {
            Ok(()) => {
                if let Some(p) = out.stripped_path {
                    self.set_http_request_header(":path", Some(&p));
                }
                Action::Continue
            }
            Err(refusal) => {
                let status = if refusal == Refusal::Expired {
                    cfg.expired_status
                } else {
                    403
                };
                let body = format!(
                    "{{\"error\":\"invalid_token\",\"reason\":\"{}\"}}\n",
                    refusal.as_str()
                );
                self.send_http_response(
                    status,
                    vec![
                        ("content-type", "application/json"),
                        ("x-cdn-signing-reason", refusal.as_str()),
                    ],
                    Some(body.as_bytes()),
                );
                Action::Pause
            }
        }
    }
}
