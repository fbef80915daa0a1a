//! The Proxy-Wasm adapter (verify mode): per request, one header-map read, the route's check,
//! then a refusal with its reason, or the request forwarded with the token stripped.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use edge_common::headermap::host;
use edge_common::metrics::host::BatchedCounters;
use edge_common::path::{self, PathVerdict, RequestPath};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

use crate::config::{Config, Location, Mode, Scheme};
use crate::schemes::Refusal;
use crate::sign::{apply, Cache, Input};
use crate::verify::{route_for, verify, Request};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { state: None, pending: Rc::default() })
    });
}}

const FLUSH_PERIOD: Duration = Duration::from_millis(100);
/// Counters per route, in this order: the verify outcomes, then `signed`.
const OUTCOMES: [&str; 8] = [
    "valid",
    "missing",
    "malformed",
    "expired",
    "not_yet_valid",
    "wrong_scope",
    "bad_signature",
    "signed",
];
/// Index of `signed` in `OUTCOMES`.
const SIGNED: usize = OUTCOMES.len() - 1;

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
    metrics: Vec<[u32; 8]>,
    /// This worker's cached tokens, per route (sign mode).
    tokens: RefCell<Vec<Cache>>,
    /// `cdn_signing.bad_path`: paths refused (or, in shadow mode, that would be) with 400.
    bad_path: u32,
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
            let mut ids = [0u32; 8];
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
        let bad_path = match hostcalls::define_metric(MetricType::Counter, "cdn_signing.bad_path") {
            Ok(id) => id,
            Err(e) => {
                let _ = hostcalls::log(
                    LogLevel::Error,
                    &format!("cannot define metric cdn_signing.bad_path: {e:?}"),
                );
                return false;
            }
        };
        if let Ok(mut p) = self.pending.try_borrow_mut() {
            p.flush();
        }
        let tokens = RefCell::new(cfg.routes.iter().map(|_| Cache::default()).collect());
        self.state = Some(Rc::new(State {
            cfg,
            metrics,
            tokens,
            bad_path,
        }));
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
        let raw_path = h.get_str(":path").unwrap_or("");
        let method = h.get_str(":method").unwrap_or("");
        let enforce = cfg.mode == Mode::Enforce;
        // Routes match the canonical path; a path that is unsafe, or not canonical under a
        // route, is refused (or rewritten to what is checked), never passed unchecked.
        let req_path = RequestPath::new(raw_path);
        let rewritten = match path::verdict(&req_path, raw_path, cfg.paths, |p| {
            route_for(cfg, p, method).is_some()
        }) {
            PathVerdict::Check => None,
            PathVerdict::Rewrite(p) => Some(p),
            PathVerdict::Reject(code) => {
                if let Ok(mut p) = self.pending.try_borrow_mut() {
                    p.add(state.bad_path, 1);
                }
                if !enforce {
                    return Action::Continue;
                }
                self.send_http_response(
                    400,
                    vec![
                        ("content-type", "application/json"),
                        ("x-cdn-signing-reason", code),
                    ],
                    Some(path::reject_body(code).as_bytes()),
                );
                return Action::Pause;
            }
        };
        let path = rewritten.as_deref().unwrap_or(raw_path);
        let Some((_, route)) = route_for(cfg, req_path.canonical(), method) else {
            return Action::Continue;
        };
        let token_header = match &route.scheme {
            Some(Scheme::Akamai {
                location: Location::Header,
                token_name,
                ..
            }) => h.get_str(token_name),
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
        let cookies = h.cookies();
        let req = Request {
            scheme: route
                .url_scheme
                .unwrap_or_else(|| h.get_str(":scheme").unwrap_or("http")),
            authority: h.get_str(":authority").unwrap_or(""),
            path,
            method,
            cookie: cookies.as_deref(),
            token_header,
            client_ip: &client,
            now,
        };
        let Some(out) = verify(cfg, &req) else {
            return Action::Continue;
        };
        let ids = state.metrics.get(out.route);
        let count = |i: usize| {
            if let (Ok(mut p), Some(&id)) =
                (self.pending.try_borrow_mut(), ids.and_then(|m| m.get(i)))
            {
                p.add(id, 1);
            }
        };
        if out.checked {
            count(outcome_index(&out.result));
        }
        if let (Err(refusal), true) = (out.result, enforce) {
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
            return Action::Pause;
        }
        // Shadow mode forwards everything as received, apart from what signing adds.
        let (mut new_path, mut new_cookie) = if enforce {
            (
                out.stripped_path.or_else(|| rewritten.clone()),
                out.stripped_cookie,
            )
        } else {
            (None, None)
        };
        if enforce && out.strip_header {
            if let Some(Scheme::Akamai { token_name, .. }) = &route.scheme {
                self.set_http_request_header(token_name, None);
            }
        }
        if let Some(signer) = &route.sign {
            let cur_path = new_path.as_deref().unwrap_or(path);
            let input = Input {
                scheme: req.scheme,
                authority: req.authority,
                path: cur_path,
                now,
            };
            let additions = match state.tokens.try_borrow_mut() {
                Ok(mut caches) => match caches.get_mut(out.route) {
                    Some(c) => c.additions(signer, &input),
                    None => signer.mint(&input),
                },
                Err(_) => signer.mint(&input),
            };
            let cur_cookie = match &new_cookie {
                Some(c) => Some(c.as_str()),
                None => req.cookie,
            };
            let rw = apply(cur_path, cur_cookie, additions);
            if let Some(p) = rw.path {
                new_path = Some(p);
            }
            if let Some(c) = rw.cookie {
                new_cookie = Some(c);
            }
            if let Some((name, value)) = rw.header {
                self.set_http_request_header(&name, Some(&value));
            }
            count(SIGNED);
        }
        if let Some(p) = new_path {
            self.set_http_request_header(":path", Some(&p));
        }
        if let Some(c) = new_cookie {
            let v = (!c.is_empty()).then_some(c.as_str());
            self.set_http_request_header("cookie", v);
        }
        Action::Continue
    }
}
