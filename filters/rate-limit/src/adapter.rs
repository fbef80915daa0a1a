//! The Proxy-Wasm adapter: configuration and metrics in the root context, the decision per
//! request in the HTTP context. Everything it does goes through `limiter`/`response`.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};

use edge_common::headermap::{host, HeaderMapView};
use edge_common::metrics::host::BatchedCounters;
use edge_common::path::{self, PathVerdict, RequestPath};

use crate::config::{Config, Mode};
use crate::limiter::{
    self, Leases, Outcome, RequestLine, RequestView, RuleVerdict, SharedStore, StoreError,
};
use crate::response;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { state: None, leases: Rc::default(), pending: Rc::default() }) });
}}

/// Per-rule counters: allowed, limited, shadow_limited, errors.
#[derive(Clone, Copy)]
struct RuleMetrics {
    allowed: u32,
    limited: u32,
    shadow_limited: u32,
    errors: u32,
}

struct State {
    cfg: Config,
    ns: String,
    metrics: Vec<RuleMetrics>,
    /// `rate_limit.bad_path`: paths refused (or, in shadow mode, that would be) with 400.
    bad_path: u32,
}

struct Root {
    state: Option<Rc<State>>,
    /// This worker's leased tokens (high-rate rules), shared by its requests.
    leases: Rc<RefCell<Leases>>,
    /// Counts not yet added to Envoy's counters (flushed every `FLUSH_PERIOD`).
    pending: Rc<RefCell<BatchedCounters>>,
}

const FLUSH_PERIOD: Duration = Duration::from_millis(100);

impl Context for Root {}

struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        hostcalls::get_shared_data(key).map_err(|_| StoreError::Unavailable)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(_) => Err(StoreError::Unavailable),
        }
    }
}

fn metric(name: &str) -> Result<u32, String> {
    hostcalls::define_metric(MetricType::Counter, name)
        .map_err(|e| format!("cannot define metric {name}: {e:?}"))
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let cfg = match Config::from_json(&bytes) {
            Ok(c) => c,
            Err(e) => {
                log::error(&e.to_string());
                return false;
            }
        };
        // Shared data is scoped to the VM id; the root id keeps two plugins in one VM apart.
        let root_id = self
            .get_property(vec!["plugin_root_id"])
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "rate_limit".into());
        let ns = format!("rl:{root_id}");
        if let Err(e) = limiter::ensure_slots(&ns, cfg.max_buckets, &HostStore) {
            log::error(&format!(
                "rate_limit: cannot create the bucket table in shared data: {e:?}"
            ));
            return false;
        }
        let mut metrics = Vec::with_capacity(cfg.rules.len());
        for r in &cfg.rules {
            let m = |what: &str| metric(&format!("rate_limit.{}.{what}", r.name));
            let rm = (|| {
                Ok::<_, String>(RuleMetrics {
                    allowed: m("allowed")?,
                    limited: m("limited")?,
                    shadow_limited: m("shadow_limited")?,
                    errors: m("errors")?,
                })
            })();
            match rm {
                Ok(rm) => metrics.push(rm),
                Err(e) => {
                    log::error(&e.to_string());
                    return false;
                }
            }
        }
        let bad_path = match metric("rate_limit.bad_path") {
            Ok(id) => id,
            Err(e) => {
                log::error(&e);
                return false;
            }
        };
        log::info(&format!(
            "configured {} rule(s), {} buckets, mode {:?}",
            cfg.rules.len(),
            cfg.max_buckets,
            cfg.mode
        ));
        self.state = Some(Rc::new(State {
            cfg,
            ns,
            metrics,
            bad_path,
        }));
        // Leases of the previous configuration's rules must not carry over.
        self.leases = Rc::default();
        if let Ok(mut p) = self.pending.try_borrow_mut() {
            p.flush();
        }
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
            leases: self.leases.clone(),
            pending: self.pending.clone(),
            report: None,
        }))
    }
}

struct Filter {
    state: Option<Rc<State>>,
    leases: Rc<RefCell<Leases>>,
    pending: Rc<RefCell<BatchedCounters>>,
    /// The verdict whose headers go on the upstream's response (allowed, enforce mode).
    report: Option<RuleVerdict>,
}

impl Context for Filter {}

/// The request as the limiter sees it: all headers from one host call, as bytes (a value that
/// is not UTF-8 must neither panic nor be altered), and the client address on demand.
struct Req<'a> {
    headers: HeaderMapView<'a>,
    filter: &'a Filter,
}

impl RequestView for Req<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    fn client_ip(&self) -> Option<IpAddr> {
        self.filter
            .get_property(vec!["source", "address"])
            .and_then(|b| edge_common::ip::parse_address_ip_bytes(&b))
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return Action::Continue;
        };
        let cfg = &state.cfg;
        let Some(map) = host::header_map(host::REQUEST_HEADERS) else {
            return Action::Continue;
        };
        let Some(headers) = map.view() else {
            log::error("malformed request header map from the host; request not limited");
            return Action::Continue;
        };
        let raw_path = headers.get_str(":path").unwrap_or("");
        let shadow = cfg.mode == Mode::Shadow;
        // Rules match the canonical path; a path that is unsafe, or not canonical under a path
        // condition, is refused (or rewritten to what is checked), never passed unchecked.
        let req_path = RequestPath::new(raw_path);
        if cfg.uses_paths {
            match path::verdict(&req_path, raw_path, cfg.paths, |p| cfg.path_covered(p)) {
                PathVerdict::Check => {}
                PathVerdict::Rewrite(p) => {
                    if !shadow {
                        self.set_http_request_header(":path", Some(&p));
                    }
                }
                PathVerdict::Reject(code) => {
                    if let Ok(mut p) = self.pending.try_borrow_mut() {
                        p.add(state.bad_path, 1);
                    }
                    if !shadow {
                        self.send_http_response(
                            400,
                            vec![
                                ("content-type", "application/json"),
                                ("x-rate-limit-reason", code),
                            ],
                            Some(path::reject_body(code).as_bytes()),
                        );
                        return Action::Pause;
                    }
                }
            }
        }
        let line = RequestLine::new(
            Some(req_path.canonical()),
            headers.get_str(":method"),
            headers.get_str(":authority"),
        );
        let clock = || {
            self.get_current_time()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        };
        let Ok(mut pending) = self.pending.try_borrow_mut() else {
            return Action::Continue;
        };
        let mut count = |v: &RuleVerdict| {
            let Some(m) = state.metrics.get(v.rule) else {
                return;
            };
            let id = match v.outcome {
                Outcome::Allowed => m.allowed,
                Outcome::Limited if shadow => m.shadow_limited,
                Outcome::Limited => m.limited,
                Outcome::Error { .. } => m.errors,
            };
            pending.add(id, 1);
            if let (Outcome::Error { denied: true }, false) = (v.outcome, shadow) {
                pending.add(m.limited, 1);
            }
        };
        let d = {
            let Ok(mut leases) = self.leases.try_borrow_mut() else {
                return Action::Continue;
            };
            limiter::decide(
                cfg,
                &state.ns,
                &line,
                &Req {
                    headers,
                    filter: self,
                },
                &HostStore,
                &mut leases,
                &clock,
                &mut count,
            )
        };
        drop(pending);
        if shadow {
            return Action::Continue;
        }
        let Some(report) = d.report else {
            return Action::Continue;
        };
        if d.limited {
            let mut headers = response::headers(cfg, &report, true);
            headers.push(("content-type", cfg.limited_content_type.clone()));
            let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            self.send_http_response(cfg.limited_status, hs, Some(cfg.limited_body.as_bytes()));
            return Action::Pause;
        }
        if cfg.headers_on_allowed && (cfg.ietf_draft || cfg.x_ratelimit) {
            self.report = Some(report);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if let (Some(report), Some(state)) = (self.report.take(), &self.state) {
            response::each_header(&state.cfg, &report, false, &mut |k, v| {
                self.set_http_response_header(k, Some(v));
            });
        }
        Action::Continue
    }
}

mod log {
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::LogLevel;

    pub fn error(msg: &str) {
        let _ = hostcalls::log(LogLevel::Error, msg);
    }

    pub fn info(msg: &str) {
        let _ = hostcalls::log(LogLevel::Info, msg);
    }
}
