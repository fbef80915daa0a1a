//! The Proxy-Wasm adapter: per request, one header-map read, the assignment and the stage header
//! (Envoy then picks the route again by itself: see `on_http_request_headers`); on the tick, counters, stage data from shared data, and (on the one
//! worker holding the lease) the control-plane poll.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use edge_common::headermap::host;
use edge_common::metrics::host::BatchedCounters;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

use crate::assign::{assign, pin_cookie, Reason, Request};
use crate::config::{Config, Mode, StageData};
use crate::poll::{Outcome, Poller, Response};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

const TICK: Duration = Duration::from_millis(100);
/// A poller that stops renewing its lease (its VM went away) is replaced after this long.
const LEASE_MS: u64 = 3_000;

struct Metrics {
    /// Requests per stage.
    stages: Vec<u32>,
    /// Assignments per reason, in `Reason::ALL` order.
    reasons: Vec<u32>,
    override_rejected: u32,
    /// Pin cookies ignored: forged, stale or for another user.
    pin_rejected: u32,
    version: u32,
    updates: u32,
    not_modified: u32,
    failures: u32,
}

fn metric(t: MetricType, name: &str) -> Result<u32, String> {
    hostcalls::define_metric(t, name).map_err(|e| format!("cannot define metric {name}: {e:?}"))
}

fn define_metrics(cfg: &Config) -> Result<Metrics, String> {
    let mut stages = Vec::new();
    for s in &cfg.stages {
        stages.push(metric(
            MetricType::Counter,
            &format!(
                "stage_routing.stage.{}.requests",
                edge_common::metrics::segment(s)
            ),
        )?);
    }
    let mut reasons = Vec::new();
    for r in Reason::ALL {
        reasons.push(metric(
            MetricType::Counter,
            &format!("stage_routing.assigned.{}", r.as_str()),
        )?);
    }
    Ok(Metrics {
        stages,
        reasons,
        override_rejected: metric(MetricType::Counter, "stage_routing.override_rejected")?,
        pin_rejected: metric(MetricType::Counter, "stage_routing.pin_rejected")?,
        version: metric(MetricType::Gauge, "stage_routing.data_version")?,
        updates: metric(MetricType::Counter, "stage_routing.control_plane.updates")?,
        not_modified: metric(
            MetricType::Counter,
            "stage_routing.control_plane.not_modified",
        )?,
        failures: metric(MetricType::Counter, "stage_routing.control_plane.failures")?,
    })
}

struct State {
    cfg: Config,
    metrics: Metrics,
    /// The stage data in force on this worker.
    data: RefCell<Rc<StageData>>,
}

#[derive(Default)]
struct Root {
    state: Option<Rc<State>>,
    pending: Rc<RefCell<BatchedCounters>>,
    poller: Option<Poller>,
    /// Unique among this plugin's VMs (from a shared counter).
    id: u64,
    /// Shared-data keys: lease, data, id counter.
    keys: [String; 3],
    /// CAS of the shared stage data last applied.
    data_cas: Option<u32>,
    pending_call: Option<u32>,
    /// Whether this VM holds the poller lease.
    holder: bool,
}

fn now_ms(ctx: &dyn Context) -> u64 {
    ctx.get_current_time()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Root {
    fn log(level: LogLevel, msg: &str) {
        let _ = hostcalls::log(level, msg);
    }

    fn next_id(&self) -> u64 {
        for _ in 0..16 {
            let (bytes, cas) = hostcalls::get_shared_data(&self.keys[2]).unwrap_or((None, None));
            let n = bytes
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            if hostcalls::set_shared_data(&self.keys[2], Some(n.to_string().as_bytes()), cas)
                .is_ok()
            {
                return n;
            }
        }
        // Contention beyond reason: fall back to the clock, unique enough for a lease owner.
        now_ms(self)
    }

    /// Applies the stage data a poller published, if it changed since the last look.
    fn sync_data(&mut self) {
        let Some(state) = &self.state else { return };
        let Ok((Some(bytes), cas)) = hostcalls::get_shared_data(&self.keys[1]) else {
            return;
        };
        if cas == self.data_cas {
            return;
        }
        self.data_cas = cas;
        match state.cfg.parse_stage_data(&bytes) {
            Ok(d) => {
                let v = d.version;
                if let Ok(mut cur) = state.data.try_borrow_mut() {
                    *cur = Rc::new(d);
                }
                let _ = hostcalls::record_metric(state.metrics.version, v);
                if let Some(p) = &mut self.poller {
                    p.version = p.version.max(v);
                }
            }
            // Written by a VM with another configuration (e.g. before a reload): ignore it.
            Err(e) => Self::log(
                LogLevel::Warn,
                &format!(
                    "shared stage data does not fit this configuration, keeping version {}: {e}",
                    state.data.borrow().version
                ),
            ),
        }
    }

    /// Takes or renews the poller lease; true if this VM holds it.
    fn hold_lease(&self, now: u64) -> bool {
        let (bytes, cas) = hostcalls::get_shared_data(&self.keys[0]).unwrap_or((None, None));
        let current = bytes.and_then(|b| String::from_utf8(b).ok()).and_then(|s| {
            let (id, exp) = s.split_once(' ')?;
            Some((id.parse::<u64>().ok()?, exp.parse::<u64>().ok()?))
        });
        let free = match current {
            None => true,
            Some((id, exp)) => id == self.id || exp <= now,
        };
        free && hostcalls::set_shared_data(
            &self.keys[0],
            Some(format!("{} {}", self.id, now + LEASE_MS).as_bytes()),
            cas,
        )
        .is_ok()
    }

    fn poll(&mut self) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let Some(cp) = &state.cfg.control_plane else {
            return;
        };
        let now = now_ms(self);
        let due = self.poller.as_ref().is_some_and(|p| p.due(cp, now));
        // The holder renews on every tick; the others look only when their own poll is due.
        if self.holder || due {
            self.holder = self.hold_lease(now);
        }
        if !self.holder {
            if due {
                if let Some(p) = &mut self.poller {
                    // Not ours to poll: look again after an interval.
                    p.dispatch_failed_quietly(cp, now);
                }
            }
            return;
        }
        if !due || self.pending_call.is_some() {
            return;
        }
        let noise = edge_common::hash::hash64(self.id, &now.to_le_bytes());
        let Some(p) = &mut self.poller else { return };
        let headers = p.request_headers(cp);
        match hostcalls::dispatch_http_call(
            &cp.cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(cp.timeout_ms),
        ) {
            Ok(token) => {
                p.started(now);
                self.pending_call = Some(token);
            }
            Err(e) => {
                p.dispatch_failed(cp, now, noise);
                self.add(state.metrics.failures);
                Self::log(
                    LogLevel::Warn,
                    &format!(
                        "cannot call control plane cluster `{}` ({e:?}); keeping stage data version {}",
                        cp.cluster,
                        state.data.borrow().version
                    ),
                );
            }
        }
    }

    fn add(&self, id: u32) {
        if let Ok(mut p) = self.pending.try_borrow_mut() {
            p.add(id, 1);
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        if self.pending_call != Some(token) {
            return;
        }
        self.pending_call = None;
        let Some(state) = self.state.clone() else {
            return;
        };
        let map = if num_headers > 0 {
            host::header_map(host::HTTP_CALL_RESPONSE_HEADERS)
        } else {
            None
        };
        let view = map.as_ref().and_then(|m| m.view());
        let status = view
            .as_ref()
            .and_then(|h| h.get_str(":status"))
            .and_then(|s| s.parse::<u16>().ok());
        let etag = view.as_ref().and_then(|h| h.get_str("etag"));
        let body = if body_size > 0 {
            self.get_http_call_response_body(0, body_size)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let now = now_ms(self);
        let noise = edge_common::hash::hash64(self.id, &now.to_le_bytes());
        let Some(p) = &mut self.poller else { return };
        let outcome = p.on_response(
            &state.cfg,
            now,
            noise,
            &Response {
                status,
                etag,
                body: &body,
            },
        );
        match outcome {
            Outcome::Updated(d) => {
                let v = d.version;
                if hostcalls::set_shared_data(&self.keys[1], Some(&body), None).is_ok() {
                    self.add(state.metrics.updates);
                    Self::log(LogLevel::Info, &format!("applying stage data version {v}"));
                    self.sync_data();
                } else {
                    self.add(state.metrics.failures);
                    Self::log(LogLevel::Warn, "cannot publish stage data in shared data");
                }
            }
            Outcome::Unchanged => self.add(state.metrics.not_modified),
            Outcome::Failed(why) => {
                self.add(state.metrics.failures);
                Self::log(
                    LogLevel::Warn,
                    &format!(
                        "control plane poll failed: {why}; keeping stage data version {}",
                        state.data.borrow().version
                    ),
                );
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let cfg = match Config::from_json(&bytes) {
            Ok(c) => c,
            Err(e) => {
                Self::log(LogLevel::Error, &e.to_string());
                return false;
            }
        };
        let metrics = match define_metrics(&cfg) {
            Ok(m) => m,
            Err(e) => {
                Self::log(LogLevel::Error, &e);
                return false;
            }
        };
        let plugin = self
            .get_property(vec!["plugin_name"])
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| "stage_routing".into());
        self.keys = [
            format!("stage_routing/{plugin}/lease"),
            format!("stage_routing/{plugin}/data"),
            format!("stage_routing/{plugin}/ids"),
        ];
        if self.id == 0 {
            self.id = self.next_id();
        }
        let _ = hostcalls::record_metric(metrics.version, 0);
        let data = RefCell::new(Rc::new(cfg.data.clone()));
        let now = now_ms(self);
        self.poller = cfg
            .control_plane
            .as_ref()
            .map(|cp| Poller::new(cp, now, edge_common::hash::hash64(self.id, b"start")));
        self.state = Some(Rc::new(State { cfg, metrics, data }));
        self.data_cas = None;
        self.sync_data();
        self.set_tick_period(TICK);
        true
    }

    fn on_tick(&mut self) {
        if let Ok(mut p) = self.pending.try_borrow_mut() {
            p.flush();
        }
        self.sync_data();
        self.poll();
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            state: self.state.clone(),
            pending: self.pending.clone(),
            set_cookie: None,
        }))
    }
}

struct Filter {
    state: Option<Rc<State>>,
    pending: Rc<RefCell<BatchedCounters>>,
    set_cookie: Option<String>,
}

impl Context for Filter {}

impl Filter {
    fn client_ip(&self) -> Option<IpAddr> {
        self.get_property(vec!["source", "address"])
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
        let Some(h) = map.view() else {
            return Action::Continue;
        };
        let data = state.data.borrow().clone();
        let header = |n: &str| h.get_str(n);
        let ip = || self.client_ip();
        let cookies = h.cookies();
        // The clock is read only when pins are configured (they carry an issue time).
        let now = if cfg.pin.is_some() {
            now_ms(self) / 1000
        } else {
            0
        };
        let req = Request {
            authority: h.get_str(":authority").unwrap_or(""),
            path: h.get_str(":path").unwrap_or(""),
            header: &header,
            cookie: cookies.as_deref(),
            client_ip: &ip,
            now,
        };
        let a = assign(cfg, &data, &req);
        let stage = cfg.stages.get(a.stage).map_or("", String::as_str);
        let set_cookie = match a.reason {
            Reason::Hash | Reason::Fallback => pin_cookie(cfg, &req, stage),
            _ => None,
        };
        let client_sent = h.contains(&cfg.stage_header);
        drop(cookies);
        drop(map);
        if let Ok(mut p) = self.pending.try_borrow_mut() {
            if let Some(&id) = state.metrics.stages.get(a.stage) {
                p.add(id, 1);
            }
            if let Some(&id) = state.metrics.reasons.get(a.reason.index()) {
                p.add(id, 1);
            }
            if a.override_rejected {
                p.add(state.metrics.override_rejected, 1);
            }
            if a.pin_rejected {
                p.add(state.metrics.pin_rejected, 1);
            }
        }
        // Changing a request header makes Envoy clear its route cache and match the routes again
        // (for modules of Proxy-Wasm ABI 0.2.1, which the Rust SDK exports; Envoy 1.33+ stopped
        // doing so only for later ABIs), so the route follows the header without a
        // `clear_route_cache` call, which would cost a second host call per request.
        if cfg.mode == Mode::Shadow {
            // Shadow: the route stays as it was, but a client never chooses it.
            if client_sent {
                self.set_http_request_header(&cfg.stage_header, None);
            }
            return Action::Continue;
        }
        if client_sent || a.stage != cfg.base || cfg.header_on_base_stage {
            self.set_http_request_header(&cfg.stage_header, Some(stage));
        }
        self.set_cookie = set_cookie;
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if let Some(c) = self.set_cookie.take() {
            self.add_http_response_header("set-cookie", &c);
        }
        Action::Continue
    }
}
